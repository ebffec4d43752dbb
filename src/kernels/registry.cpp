// The kernel tables, named in one place.
#include "kernels/kernels.h"
#include "util/env.h"

namespace moedist::kernels {

extern const KernelTable kRefKernels;  // kernels/ref
extern const KernelTable kCpuKernels;  // kernels/cpu

const KernelTable* findKernels(std::string_view name) {
  if (name == kRefKernels.name) return &kRefKernels;
  if (name == kCpuKernels.name) return &kCpuKernels;
  return nullptr;
}

const KernelTable& defaultKernels() {
  static const KernelTable* table = [] {
    const KernelTable* t = findKernels(util::envKernelTable());
    return t != nullptr ? t : &kCpuKernels;
  }();
  return *table;
}

}  // namespace moedist::kernels
