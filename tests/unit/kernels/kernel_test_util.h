// Helpers shared by the kernel tests: building one combined token's arguments from owned buffers, running a
// kernel table on it, and random rows with optional special values (zeros of both signs, infinities, NaNs,
// subnormals, values near the top of the range).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_variants.h"
#include "kernels/kernels.h"
#include "util/numeric.h"

namespace moedist::kernels::test {

// The vectorized tables under test: "cpu" (the best variant) and every ISA variant this machine can run.
inline std::vector<std::string> cpuTableNames() {
  std::vector<std::string> names = {"cpu"};
  for (const cpu::Variant& v : cpu::variants()) {
    if (v.supported) names.push_back(v.table->name);
  }
  return names;
}

inline const KernelTable& tableNamed(const std::string& name) {
  if (const KernelTable* t = findKernels(name)) return *t;
  for (const cpu::Variant& v : cpu::variants()) {
    if (name == v.table->name) return *v.table;
  }
  std::abort();
}

// gtest parameter names may not contain '-'.
inline std::string paramName(const std::string& table) {
  std::string s = table;
  for (char& ch : s) ch = ch == '-' ? '_' : ch;
  return s;
}

inline uint16_t bf(float f) {
  return util::floatToBf16(f);
}
inline uint16_t fp(float f) {
  return util::floatToFp16(f);
}
inline uint32_t bitsOf(float f) {
  return std::bit_cast<uint32_t>(f);
}

// One token of combineToken, with every buffer owned. Slots without a row (kSkip, kCopy, kConst) keep an empty
// vector. Outputs are pre-filled with a sentinel so that "untouched" can be checked.
struct TokenCase {
  int64_t h = 0;
  std::vector<SlotKind> kinds;
  std::vector<std::vector<uint16_t>> rows;
  std::vector<float> weights;
  std::vector<int32_t> constIdx;
  std::vector<uint16_t> oriX, alpha1, alpha2, constV;  // constV: [Q][h]
  std::vector<uint16_t> sharedX;                       // empty: not given
  std::vector<uint16_t> residual, gamma;               // residual empty: CombineV2/V3 mode
  float eps = 1e-6f;
  Float16Kind outKind = Float16Kind::kBf16;

  void addSlot(SlotKind kind, std::vector<uint16_t> row = {}, float weight = 0.0f, int32_t c = 0) {
    kinds.push_back(kind);
    rows.push_back(std::move(row));
    weights.push_back(weight);
    constIdx.push_back(c);
  }
};

constexpr uint16_t kSentinel16 = 0xdead;
constexpr uint32_t kSentinel32 = 0xdeadbeef;

struct TokenResult {
  std::vector<uint16_t> xOut, yOut;
  uint32_t rstdBits = kSentinel32;
};

// `next`: the rows of a next token to prefetch (CombineTokenArgs::nextRows), [numSlots] with nullptr entries.
inline TokenResult runToken(const KernelTable& table, const TokenCase& c, const uint16_t* const* next = nullptr) {
  const auto n = static_cast<size_t>(c.h);
  std::vector<const uint16_t*> rowPtrs;
  for (const auto& r : c.rows) rowPtrs.push_back(r.empty() ? nullptr : r.data());
  std::vector<float> scratch(n, std::bit_cast<float>(kSentinel32));
  TokenResult res;
  res.xOut.assign(n, kSentinel16);
  res.yOut.assign(n, kSentinel16);
  float rstd = std::bit_cast<float>(kSentinel32);

  CombineTokenArgs a;
  a.h = c.h;
  a.numSlots = static_cast<int>(c.kinds.size());
  a.kinds = c.kinds.data();
  a.rows = rowPtrs.data();
  a.weights = c.weights.data();
  a.constIdx = c.constIdx.data();
  a.oriX = c.oriX.empty() ? nullptr : c.oriX.data();
  a.alpha1 = c.alpha1.empty() ? nullptr : c.alpha1.data();
  a.alpha2 = c.alpha2.empty() ? nullptr : c.alpha2.data();
  a.constV = c.constV.empty() ? nullptr : c.constV.data();
  a.sharedExpertX = c.sharedX.empty() ? nullptr : c.sharedX.data();
  a.residual = c.residual.empty() ? nullptr : c.residual.data();
  a.gamma = c.gamma.empty() ? nullptr : c.gamma.data();
  a.eps = c.eps;
  a.invH = 1.0f / static_cast<float>(c.h);
  a.outKind = c.outKind;
  a.scratch = scratch.data();
  a.xOut = res.xOut.data();
  a.yOut = res.yOut.data();
  a.rstdOut = &rstd;
  a.nextRows = next;
  table.combineToken(a);
  res.rstdBits = std::bit_cast<uint32_t>(rstd);
  return res;
}

// How often special values appear in random data, and whether NaNs are among them. Without NaN inputs every
// NaN that arises (inf - inf, 0 * inf) is the machine's default NaN, and all outputs must match to the bit.
// With NaN inputs, an operation that meets two different NaNs returns one of them, and which one depends on the
// operand order the compiler picked (x86 returns the first source's NaN; compilers treat + and * as commutative),
// so such outputs are only required to be NaN in both.
struct Salt {
  double rate = 0.0;
  bool nan = false;
};

// Random rows and weights.
class RowGen {
 public:
  explicit RowGen(uint64_t seed) : rng_(seed) {}

  std::mt19937_64& rng() { return rng_; }

  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
  int64_t below(int64_t n) { return std::uniform_int_distribution<int64_t>(0, n - 1)(rng_); }

  // A "typical" activation: sign * 2^e * (1 + u), u in [0, 1), e in [-8, 4].
  float normalValue() {
    const double m = 1.0 + uniform();
    const int e = static_cast<int>(below(13)) - 8;
    const double s = below(2) ? -1.0 : 1.0;
    return static_cast<float>(s * std::ldexp(m, e));
  }

  // Special values; the first kNumNaN entries of each list are NaNs (quiet and signaling, both signs).
  static constexpr int kNumNaN = 4;
  uint16_t special(Float16Kind kind, bool nan) {
    static constexpr uint16_t kBf16[] = {0x7fc0, 0xffc0, 0x7f81, 0xffa5, 0x0000, 0x8000, 0x7f80, 0xff80,
                                         0x0001, 0x807f, 0x0080, 0x7f7f, 0xff7f, 0x7f00, 0x0040};
    static constexpr uint16_t kFp16[] = {0x7e00, 0xfe00, 0x7c01, 0xfd55, 0x0000, 0x8000, 0x7c00, 0xfc00,
                                         0x0001, 0x83ff, 0x0400, 0x7bff, 0xfbff, 0x7800, 0x0200};
    const int64_t first = nan ? 0 : kNumNaN;
    const int64_t i = first + below(static_cast<int64_t>(std::size(kBf16)) - first);
    return kind == Float16Kind::kBf16 ? kBf16[i] : kFp16[i];
  }

  // A row of h values; with probability `salt.rate` an element is a special value (NaN only if salt.nan).
  std::vector<uint16_t> row(int64_t h, Float16Kind kind, Salt salt = {}, float scale = 1.0f) {
    std::vector<uint16_t> r(static_cast<size_t>(h));
    for (auto& v : r) {
      if (salt.rate > 0 && uniform() < salt.rate) {
        v = special(kind, salt.nan);
      } else {
        const float x = normalValue() * scale;
        v = kind == Float16Kind::kBf16 ? util::floatToBf16(x) : util::floatToFp16(x);
      }
    }
    return r;
  }
  std::vector<uint16_t> bf16Row(int64_t h, Salt salt = {}, float scale = 1.0f) {
    return row(h, Float16Kind::kBf16, salt, scale);
  }

  // Weights: mostly router-like values in (0, 1), sometimes negative, zero, -0, huge, inf or NaN.
  float weight(Salt salt = {}) {
    if (salt.rate > 0 && uniform() < salt.rate) {
      static constexpr float kSpecials[] = {
          std::numeric_limits<float>::quiet_NaN(), 0.0f, -0.0f, 1.0f, -1.0f, 3e38f, -3e38f, 1e-40f,
          std::numeric_limits<float>::infinity()};
      const int64_t first = salt.nan ? 0 : 1;
      return kSpecials[first + below(static_cast<int64_t>(std::size(kSpecials)) - first)];
    }
    const float w = static_cast<float>(uniform());
    return below(10) == 0 ? -w : w;
  }

 private:
  std::mt19937_64 rng_;
};

inline std::vector<int64_t> hiddenSizes(uint64_t seed, int randomCount) {
  // Block and chunk edges, the common model sizes, and random sizes in [1024, 8192].
  std::vector<int64_t> hs = {1,   2,   7,   8,   9,   15,   16,   17,   31,   63,   64,   65,   127,  128, 129,
                             255, 256, 511, 512, 513, 1000, 1024, 1056, 1088, 2048, 4096, 5120, 7168, 8192};
  std::mt19937_64 rng(seed);
  for (int i = 0; i < randomCount; ++i) hs.push_back(std::uniform_int_distribution<int64_t>(1024, 8192)(rng));
  return hs;
}

}  // namespace moedist::kernels::test
