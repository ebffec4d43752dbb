// Randomized differential tests: every vectorized table ("cpu" and each ISA variant the machine runs) must give
// the same bytes as the scalar "ref" table for many hidden sizes (every size up to 300 for the comm quantization;
// block and chunk edges, 1024, 1056, 7168, 8192 and random sizes in [1024, 8192] for all), random slot kinds and
// weights, both 16-bit formats, and data salted with special values (signed zeros, infinities, subnormals, huge
// values, NaNs). The one allowance: where the inputs contain NaNs, an output that is NaN in both may differ in
// payload and sign (see Salt in kernel_test_util.h); everything else is compared bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/kernels.h"

namespace moedist::kernels::test {
namespace {

const KernelTable& ref() {
  return *findKernels("ref");
}

// Each test runs once per vectorized table: "cpu" and every ISA variant the machine supports.
class Differential : public ::testing::TestWithParam<std::string> {
 protected:
  const KernelTable& cpu() const { return tableNamed(GetParam()); }
};

template <typename T>
bool sameBytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <typename T>
int64_t firstDiff(const std::vector<T>& a, const std::vector<T>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return static_cast<int64_t>(i);
  }
  return -1;
}

bool isNaN(uint16_t v, Float16Kind kind) {
  return kind == Float16Kind::kBf16 ? (v & 0x7fff) > 0x7f80 : (v & 0x7fff) > 0x7c00;
}
bool isNaN(uint32_t floatBits) {
  return (floatBits & 0x7fffffffu) > 0x7f800000u;
}

// Equal bytes, except that with NaN inputs two NaNs with different payloads count as equal (see Salt).
::testing::AssertionResult same16(const std::vector<uint16_t>& ref, const std::vector<uint16_t>& cpu, Float16Kind kind,
                                  bool nanInputs) {
  if (ref.size() != cpu.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (size_t i = 0; i < ref.size(); ++i) {
    if (ref[i] == cpu[i] || (nanInputs && isNaN(ref[i], kind) && isNaN(cpu[i], kind))) continue;
    return ::testing::AssertionFailure() << "element " << i << ": ref " << std::hex << ref[i] << " cpu " << cpu[i];
  }
  return ::testing::AssertionSuccess();
}

// Salt per test round: most rounds are clean, some have specials without NaN (strict), some with NaN.
Salt salt(int round) {
  static constexpr Salt kSalts[] = {{0.0, false}, {0.0, false}, {0.001, false}, {0.02, false},
                                    {0.3, false}, {0.02, true}, {0.3, true}};
  return kSalts[round % 7];
}

TEST_P(Differential, QuantizeRow) {
  RowGen gen(101);
  for (int64_t h : hiddenSizes(1, 12)) {
    for (int round = 0; round < 28; ++round) {
      // Outputs never depend on a NaN's payload here (NaNs are left out of the max and quantize to 0): strict.
      const Float16Kind kind = round % 2 ? Float16Kind::kFp16 : Float16Kind::kBf16;
      const Salt sa = salt(round / 2);
      const auto in = gen.row(h, kind, sa, round % 3 == 0 ? 1e-3f : 1.0f);
      std::vector<float> smooth;
      if (round % 4 >= 2) {
        for (int64_t i = 0; i < h; ++i) smooth.push_back(gen.weight(sa) * 4);
      }
      const float* s = smooth.empty() ? nullptr : smooth.data();
      std::vector<int8_t> qr(static_cast<size_t>(h), 1), qc(static_cast<size_t>(h), 2);
      float sr = 1, sc = 2;
      ref().quantizeRow(in.data(), kind, s, h, qr.data(), &sr);
      cpu().quantizeRow(in.data(), kind, s, h, qc.data(), &sc);
      ASSERT_TRUE(sameBytes(qr, qc)) << "h=" << h << " round=" << round << " at " << firstDiff(qr, qc);
      ASSERT_EQ(bitsOf(sr), bitsOf(sc)) << "h=" << h << " round=" << round;
    }
  }
}

TEST_P(Differential, CommQuantAndDequant) {
  RowGen gen(202);
  std::vector<int64_t> hs = hiddenSizes(2, 12);
  for (int64_t h = 1; h <= 300; ++h) hs.push_back(h);  // every remainder modulo 16 and the 128-element block
  for (int64_t h : hs) {
    for (int round = 0; round < 7; ++round) {
      // Strict: maxima ignore NaN, and the dequant product meets at most one NaN (the scale).
      const auto in = gen.bf16Row(h, salt(round), round == 1 ? 1e-30f : 1.0f);
      const auto groups = static_cast<size_t>(commQuantGroups(h));
      std::vector<int8_t> qr(static_cast<size_t>(h), 1), qc(static_cast<size_t>(h), 2);
      std::vector<uint16_t> sr(groups + 1, 1), sc(groups + 1, 1);  // one extra: must stay untouched
      ref().commQuantRow(in.data(), h, qr.data(), sr.data());
      cpu().commQuantRow(in.data(), h, qc.data(), sc.data());
      ASSERT_TRUE(sameBytes(qr, qc)) << "h=" << h << " round=" << round << " at " << firstDiff(qr, qc);
      ASSERT_TRUE(sameBytes(sr, sc)) << "h=" << h << " round=" << round << " at " << firstDiff(sr, sc);
      ASSERT_EQ(sc.back(), 1);

      // Dequantize arbitrary bytes with arbitrary scales (every bf16 pattern can arrive over the wire).
      std::vector<int8_t> q(static_cast<size_t>(h));
      for (auto& v : q) v = static_cast<int8_t>(gen.below(256) - 128);
      std::vector<uint16_t> scales(groups);
      for (auto& v : scales) v = static_cast<uint16_t>(gen.below(65536));
      std::vector<uint16_t> dr(static_cast<size_t>(h) + 1, 7), dc(static_cast<size_t>(h) + 1, 7);
      ref().commDequantRow(q.data(), scales.data(), h, dr.data());
      cpu().commDequantRow(q.data(), scales.data(), h, dc.data());
      ASSERT_TRUE(sameBytes(dr, dc)) << "h=" << h << " round=" << round << " at " << firstDiff(dr, dc);
      ASSERT_EQ(dc.back(), 7);
    }
  }
}

TEST_P(Differential, AddRowsEveryBitPattern) {
  RowGen gen(303);
  for (Float16Kind kind : {Float16Kind::kBf16, Float16Kind::kFp16}) {
    // Every 16-bit pattern of a against random b, then random rows of typical values.
    constexpr int64_t kAll = 65536;
    std::vector<uint16_t> a(kAll), b(kAll);
    for (int64_t i = 0; i < kAll; ++i) {
      a[static_cast<size_t>(i)] = static_cast<uint16_t>(i);
      b[static_cast<size_t>(i)] = static_cast<uint16_t>(gen.below(65536));
    }
    std::vector<uint16_t> outR(kAll), outC(kAll);
    ref().addRows(a.data(), b.data(), kind, kAll, outR.data());
    cpu().addRows(a.data(), b.data(), kind, kAll, outC.data());
    ASSERT_TRUE(same16(outR, outC, kind, true));
    for (int64_t h : hiddenSizes(3, 6)) {
      for (int round = 0; round < 7; ++round) {
        const auto x = gen.row(h, kind, salt(round));
        const auto y = gen.row(h, kind, salt(round));
        std::vector<uint16_t> r(static_cast<size_t>(h)), c(static_cast<size_t>(h));
        ref().addRows(x.data(), y.data(), kind, h, r.data());
        cpu().addRows(x.data(), y.data(), kind, h, c.data());
        ASSERT_TRUE(same16(r, c, kind, salt(round).nan)) << "h=" << h << " round=" << round;
      }
    }
  }
}

// A random token: K routed slots of random kinds, S shared slots, optional shared expert input, and either a
// residual (AddRmsNorm, bf16) or none (CombineV2/V3, bf16 or fp16 data).
TokenCase randomToken(RowGen& gen, int64_t h, int round) {
  const Salt special = salt(round);
  TokenCase c;
  c.h = h;
  const int k = 1 + static_cast<int>(gen.below(9));
  const int s = static_cast<int>(gen.below(3));
  const int q = 1 + static_cast<int>(gen.below(3));
  const bool withResidual = gen.below(3) != 0;
  const Float16Kind kind = !withResidual && gen.below(2) ? Float16Kind::kFp16 : Float16Kind::kBf16;
  c.outKind = kind;
  c.oriX = gen.row(h, kind, special);
  c.alpha1 = gen.row(q, kind, special);
  c.alpha2 = gen.row(q, kind, special);
  c.constV = gen.row(q * h, kind, special);
  for (int i = 0; i < k; ++i) {
    const auto slot = static_cast<SlotKind>(gen.below(5));
    const bool hasRow = slot == SlotKind::kMoe || slot == SlotKind::kShared;
    c.addSlot(slot, hasRow ? gen.row(h, kind, special) : std::vector<uint16_t>{}, gen.weight(special),
              static_cast<int32_t>(gen.below(q)));
  }
  for (int j = 0; j < s; ++j) c.addSlot(SlotKind::kShared, gen.row(h, kind, special), gen.weight(special));
  if (gen.below(2)) c.sharedX = gen.row(h, kind, special);
  if (withResidual) {
    c.residual = gen.bf16Row(h, special);
    c.gamma = gen.bf16Row(h, special);
    c.eps = gen.below(4) == 0 ? 0.0f : 1e-6f;
  }
  return c;
}

TEST_P(Differential, CombineToken) {
  RowGen gen(404);
  for (int64_t h : hiddenSizes(4, 16)) {
    for (int round = 0; round < 21; ++round) {
      const TokenCase c = randomToken(gen, h, round);
      const bool nan = salt(round).nan;
      const TokenResult r = runToken(ref(), c);
      const TokenResult x = runToken(cpu(), c);
      ASSERT_TRUE(same16(r.xOut, x.xOut, c.outKind, nan)) << "xOut h=" << h << " round=" << round;
      ASSERT_TRUE(same16(r.yOut, x.yOut, Float16Kind::kBf16, nan)) << "yOut h=" << h << " round=" << round;
      ASSERT_TRUE(r.rstdBits == x.rstdBits || (nan && isNaN(r.rstdBits) && isNaN(x.rstdBits)))
          << "h=" << h << " round=" << round;
    }
  }
}

TEST_P(Differential, CombineTokenTypicalShapes) {
  // The shapes of the field (K = 8, S in {0, 1}, H in {7168, 8192, 1056}) with clean data and many tokens.
  RowGen gen(505);
  for (int64_t h : {int64_t{7168}, int64_t{8192}, int64_t{1056}, int64_t{1024}}) {
    for (int t = 0; t < 20; ++t) {
      TokenCase c;
      c.h = h;
      for (int i = 0; i < 8; ++i) c.addSlot(SlotKind::kMoe, gen.bf16Row(h), gen.weight());
      if (t % 2) c.addSlot(SlotKind::kShared, gen.bf16Row(h), 0.0f);
      c.residual = gen.bf16Row(h);
      c.gamma = gen.bf16Row(h);
      const TokenResult r = runToken(ref(), c);
      const TokenResult x = runToken(cpu(), c);
      ASSERT_TRUE(sameBytes(r.xOut, x.xOut)) << "h=" << h << " t=" << t;
      ASSERT_TRUE(sameBytes(r.yOut, x.yOut)) << "h=" << h << " t=" << t;
      ASSERT_EQ(r.rstdBits, x.rstdBits) << "h=" << h << " t=" << t;
    }
  }
}

TEST_P(Differential, CombineTokenPrefetchingTheNextTokenChangesNothing) {
  // The same token with and without the next token's rows to prefetch (slots without a row among them): identical
  // bits; and the reference kernels, which ignore the hint, agree.
  RowGen gen(606);
  for (int64_t h : hiddenSizes(4, 8)) {
    for (int round = 0; round < 7; ++round) {
      const TokenCase c = randomToken(gen, h, round);
      const TokenCase following = randomToken(gen, h, round + 1);
      std::vector<const uint16_t*> next(c.kinds.size(), nullptr);
      for (size_t k = 0; k < next.size() && k < following.rows.size(); ++k)
        if (!following.rows[k].empty()) next[k] = following.rows[k].data();
      const bool nan = salt(round).nan;
      const TokenResult plain = runToken(cpu(), c);
      const TokenResult prefetching = runToken(cpu(), c, next.data());
      ASSERT_TRUE(same16(plain.xOut, prefetching.xOut, c.outKind, nan)) << "h=" << h << " round=" << round;
      ASSERT_TRUE(same16(plain.yOut, prefetching.yOut, Float16Kind::kBf16, nan)) << "h=" << h << " round=" << round;
      ASSERT_TRUE(plain.rstdBits == prefetching.rstdBits || nan) << "h=" << h << " round=" << round;
      const TokenResult r = runToken(ref(), c, next.data());  // the reference ignores the hint
      ASSERT_TRUE(same16(r.xOut, prefetching.xOut, c.outKind, nan)) << "h=" << h << " round=" << round;
    }
  }
}

TEST_P(Differential, StreamRowCopiesEveryByte) {
  // Every length up to 300 at every destination and source offset within a cache line, and row lengths of the
  // field: the bytes of memcpy, none written outside [dst, dst + bytes).
  std::vector<uint8_t> src(16384 + 128), dst(16384 + 256);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 131 + 7);
  auto check = [&](size_t d, size_t s, size_t bytes) {
    std::fill(dst.begin(), dst.end(), uint8_t{0xA5});
    cpu().streamRow(dst.data() + d, src.data() + s, bytes);
    for (size_t i = 0; i < dst.size(); ++i) {
      const bool inside = i >= d && i < d + bytes;
      const uint8_t want = inside ? src[s + i - d] : uint8_t{0xA5};
      if (dst[i] != want)
        return ::testing::AssertionFailure() << "d=" << d << " s=" << s << " bytes=" << bytes << " at " << i;
    }
    return ::testing::AssertionSuccess();
  };
  for (size_t bytes = 0; bytes <= 300; ++bytes)
    for (size_t d = 0; d < 64; d += 7)
      for (size_t s : {size_t{0}, size_t{3}, size_t{64}}) ASSERT_TRUE(check(d, s, bytes));
  for (size_t bytes : {size_t{2048}, size_t{14336}, size_t{16384}})
    for (size_t d : {size_t{0}, size_t{16}, size_t{33}}) ASSERT_TRUE(check(d, 5, bytes));
}

INSTANTIATE_TEST_SUITE_P(Tables, Differential, ::testing::ValuesIn(cpuTableNames()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return paramName(p.param); });

}  // namespace
}  // namespace moedist::kernels::test
