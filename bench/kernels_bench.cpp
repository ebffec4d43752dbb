// Kernel benchmarks: every entry of the "ref" and "cpu" kernel tables at the field's decode shape (H = 7168,
// top-8, with S = 0 or 1 shared expert), and a memcpy moving the same number of bytes.
//
// "Bytes" are the bytes a kernel must read plus the bytes it writes (its inputs and outputs, not its scratch);
// the memcpy baseline copies half that many bytes, so it too reads plus writes the same total, and both report
// it through SetBytesProcessed. Every benchmark cycles through kSets independent copies of its data, so that
// the working set (several MB for a combined token) is the same for a kernel and for its memcpy baseline and
// does not sit in L1. Ratios to read off one run: cpu time / ref time (speedup), and kernel GB/s over the
// matching memcpy GB/s (fraction of the machine's copy bandwidth).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_variants.h"
#include "kernels/kernels.h"
#include "util/numeric.h"

namespace {

using moedist::kernels::CombineTokenArgs;
using moedist::kernels::commQuantGroups;
using moedist::kernels::findKernels;
using moedist::kernels::Float16Kind;
using moedist::kernels::KernelTable;
using moedist::kernels::SlotKind;

constexpr int64_t kH = 7168;
constexpr int kK = 8;
constexpr int kSets = 32;
constexpr auto kRow = static_cast<size_t>(kH);

std::vector<uint16_t> randomRow(std::mt19937& rng, size_t n, Float16Kind kind = Float16Kind::kBf16) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<uint16_t> r(n);
  for (auto& v : r) {
    const float x = dist(rng);
    v = kind == Float16Kind::kBf16 ? moedist::util::floatToBf16(x) : moedist::util::floatToFp16(x);
  }
  return r;
}

void memcpyBaseline(benchmark::State& st, int64_t bytes) {
  const auto n = static_cast<size_t>(bytes / 2);
  std::vector<std::vector<char>> src(kSets, std::vector<char>(n, 1)), dst(kSets, std::vector<char>(n, 0));
  int i = 0;
  for (auto _ : st) {
    std::memcpy(dst[i].data(), src[i].data(), n);
    benchmark::ClobberMemory();
    i = (i + 1) % kSets;
  }
  st.SetBytesProcessed(st.iterations() * bytes);
}

int64_t combineBytes(int s, bool norm) {
  const int64_t in = (kK + s + (norm ? 2 : 0)) * kH * 2;  // slot rows (+ residual and gamma)
  const int64_t out = (norm ? 2 : 1) * kH * 2;            // xOut (+ yOut)
  return in + out;
}

// One combined token per iteration: K MoE slots (+ S shared), optional residual + RmsNorm (else CombineV3).
void combineToken(benchmark::State& st, const KernelTable* t, int s, bool norm) {
  std::mt19937 rng(1);
  const int slots = kK + s;
  std::vector<std::vector<uint16_t>> rows(static_cast<size_t>(kSets * slots));
  for (auto& r : rows) r = randomRow(rng, kRow);
  std::vector<std::vector<uint16_t>> residual(kSets), gamma(kSets), xOut(kSets), yOut(kSets);
  for (int i = 0; i < kSets; ++i) {
    residual[i] = randomRow(rng, kRow);
    gamma[i] = randomRow(rng, kRow);
    xOut[i].assign(kRow, 0);
    yOut[i].assign(kRow, 0);
  }
  std::vector<SlotKind> kinds(static_cast<size_t>(slots), SlotKind::kMoe);
  for (int j = kK; j < slots; ++j) kinds[j] = SlotKind::kShared;
  std::vector<float> weights(static_cast<size_t>(slots), 0.125f);
  std::vector<int32_t> constIdx(static_cast<size_t>(slots), 0);
  std::vector<const uint16_t*> rowPtrs(static_cast<size_t>(slots));
  std::vector<float> scratch(kRow);
  float rstd = 0;

  CombineTokenArgs a;
  a.h = kH;
  a.numSlots = slots;
  a.kinds = kinds.data();
  a.rows = rowPtrs.data();
  a.weights = weights.data();
  a.constIdx = constIdx.data();
  a.invH = 1.0f / static_cast<float>(kH);
  a.scratch = scratch.data();
  a.rstdOut = &rstd;
  int i = 0;
  for (auto _ : st) {
    for (int j = 0; j < slots; ++j) rowPtrs[j] = rows[i * slots + j].data();
    a.residual = norm ? residual[i].data() : nullptr;
    a.gamma = gamma[i].data();
    a.xOut = xOut[i].data();
    a.yOut = yOut[i].data();
    t->combineToken(a);
    benchmark::ClobberMemory();
    i = (i + 1) % kSets;
  }
  st.SetBytesProcessed(st.iterations() * combineBytes(s, norm));
}

int64_t quantizeBytes(bool smooth) {
  return kH * 2 + (smooth ? kH * 4 : 0) + kH + 4;
}

void quantizeRow(benchmark::State& st, const KernelTable* t, bool smooth) {
  std::mt19937 rng(2);
  std::vector<std::vector<uint16_t>> in(kSets);
  std::vector<std::vector<float>> sm(kSets);
  std::vector<std::vector<int8_t>> out(kSets, std::vector<int8_t>(kRow));
  std::uniform_real_distribution<float> dist(0.5f, 2.0f);
  for (int i = 0; i < kSets; ++i) {
    in[i] = randomRow(rng, kRow);
    for (size_t j = 0; j < kRow; ++j) sm[i].push_back(dist(rng));
  }
  float scale = 0;
  int i = 0;
  for (auto _ : st) {
    t->quantizeRow(in[i].data(), Float16Kind::kBf16, smooth ? sm[i].data() : nullptr, kH, out[i].data(), &scale);
    benchmark::ClobberMemory();
    i = (i + 1) % kSets;
  }
  st.SetBytesProcessed(st.iterations() * quantizeBytes(smooth));
}

int64_t commQuantBytes() {
  return kH * 2 + kH + commQuantGroups(kH) * 2;
}

void commQuantRow(benchmark::State& st, const KernelTable* t) {
  std::mt19937 rng(3);
  const auto groups = static_cast<size_t>(commQuantGroups(kH));
  std::vector<std::vector<uint16_t>> in(kSets), scales(kSets, std::vector<uint16_t>(groups));
  std::vector<std::vector<int8_t>> q(kSets, std::vector<int8_t>(kRow));
  for (auto& r : in) r = randomRow(rng, kRow);
  int i = 0;
  for (auto _ : st) {
    t->commQuantRow(in[i].data(), kH, q[i].data(), scales[i].data());
    benchmark::ClobberMemory();
    i = (i + 1) % kSets;
  }
  st.SetBytesProcessed(st.iterations() * commQuantBytes());
}

void commDequantRow(benchmark::State& st, const KernelTable* t) {
  std::mt19937 rng(4);
  const auto groups = static_cast<size_t>(commQuantGroups(kH));
  std::vector<std::vector<uint16_t>> in(kSets), scales(kSets, std::vector<uint16_t>(groups)),
      out(kSets, std::vector<uint16_t>(kRow));
  std::vector<std::vector<int8_t>> q(kSets, std::vector<int8_t>(kRow));
  for (int i = 0; i < kSets; ++i) {
    in[i] = randomRow(rng, kRow);
    findKernels("ref")->commQuantRow(in[i].data(), kH, q[i].data(), scales[i].data());
  }
  int i = 0;
  for (auto _ : st) {
    t->commDequantRow(q[i].data(), scales[i].data(), kH, out[i].data());
    benchmark::ClobberMemory();
    i = (i + 1) % kSets;
  }
  st.SetBytesProcessed(st.iterations() * commQuantBytes());
}

int64_t addRowsBytes() {
  return 3 * kH * 2;
}

void addRows(benchmark::State& st, const KernelTable* t, Float16Kind kind) {
  std::mt19937 rng(5);
  std::vector<std::vector<uint16_t>> a(kSets), b(kSets), out(kSets, std::vector<uint16_t>(kRow));
  for (int i = 0; i < kSets; ++i) {
    a[i] = randomRow(rng, kRow, kind);
    b[i] = randomRow(rng, kRow, kind);
  }
  int i = 0;
  for (auto _ : st) {
    t->addRows(a[i].data(), b[i].data(), kind, kH, out[i].data());
    benchmark::ClobberMemory();
    i = (i + 1) % kSets;
  }
  st.SetBytesProcessed(st.iterations() * addRowsBytes());
}

// "ref", "cpu", and the cpu table's ISA variants that this machine runs (to see what each instruction set buys).
std::vector<const KernelTable*> tables() {
  std::vector<const KernelTable*> t = {findKernels("ref"), findKernels("cpu")};
  for (const moedist::kernels::cpu::Variant& v : moedist::kernels::cpu::variants()) {
    if (v.supported) t.push_back(v.table);
  }
  return t;
}

void registerAll() {
  auto reg = [](const std::string& name, auto fn) { benchmark::RegisterBenchmark(name.c_str(), fn); };
  for (int s : {0, 1}) {
    for (bool norm : {true, false}) {
      const std::string shape =
          std::string(norm ? "combineAddRmsNorm" : "combineV3") + "/H7168_K8_S" + std::to_string(s);
      reg("memcpy/" + shape, [=](benchmark::State& st) { memcpyBaseline(st, combineBytes(s, norm)); });
      for (const KernelTable* t : tables()) {
        reg(shape + "/" + t->name, [=](benchmark::State& st) { combineToken(st, t, s, norm); });
      }
    }
  }
  for (bool smooth : {false, true}) {
    const std::string shape = std::string("quantizeRow/H7168") + (smooth ? "_smooth" : "");
    reg("memcpy/" + shape, [=](benchmark::State& st) { memcpyBaseline(st, quantizeBytes(smooth)); });
    for (const KernelTable* t : tables()) {
      reg(shape + "/" + t->name, [=](benchmark::State& st) { quantizeRow(st, t, smooth); });
    }
  }
  reg("memcpy/commQuant/H7168", [](benchmark::State& st) { memcpyBaseline(st, commQuantBytes()); });
  for (const KernelTable* t : tables()) {
    reg(std::string("commQuantRow/H7168/") + t->name, [=](benchmark::State& st) { commQuantRow(st, t); });
    reg(std::string("commDequantRow/H7168/") + t->name, [=](benchmark::State& st) { commDequantRow(st, t); });
  }
  reg("memcpy/addRows/H7168", [](benchmark::State& st) { memcpyBaseline(st, addRowsBytes()); });
  for (Float16Kind kind : {Float16Kind::kBf16, Float16Kind::kFp16}) {
    for (const KernelTable* t : tables()) {
      const std::string name =
          std::string("addRows/H7168_") + (kind == Float16Kind::kBf16 ? "bf16/" : "fp16/") + t->name;
      reg(name, [=](benchmark::State& st) { addRows(st, t, kind); });
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  registerAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
