// The instruction-set variants of the "cpu" kernel table, for tests and benchmarks: every variant must give the
// same bits as "ref", so the tests run each one the machine can execute.
#pragma once

#include <vector>

#include "kernels/kernels.h"

namespace moedist::kernels::cpu {

struct Variant {
  const KernelTable* table;  // name: "cpu-avx512", "cpu-avx2" or "cpu-generic"
  bool supported;            // this machine can run it
};

// Best first; "cpu" forwards to the first supported one. x86-64: AVX-512 (x86-64-v4), AVX2 (x86-64-v3) and the
// baseline build; elsewhere only the baseline.
std::vector<Variant> variants();

}  // namespace moedist::kernels::cpu
