// Closed-form kernel tests: inputs chosen so that the exact result is known by hand (worked out in the comments),
// run on every kernel table. Each case pins one rounding rule of SPEC 2.5, 3.2-3.4 or 3.7.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/kernels.h"
#include "util/numeric.h"

namespace moedist::kernels::test {
namespace {

class ClosedForm : public ::testing::TestWithParam<std::string> {
 protected:
  const KernelTable& k() const { return tableNamed(GetParam()); }
};

std::vector<uint16_t> bfRow(std::initializer_list<float> v) {
  std::vector<uint16_t> r;
  for (float f : v) r.push_back(bf(f));
  return r;
}

std::vector<uint16_t> fpRow(std::initializer_list<float> v) {
  std::vector<uint16_t> r;
  for (float f : v) r.push_back(fp(f));
  return r;
}

// ------------------------------------------------------------------------------------ quantizeRow (SPEC 2.5)

TEST_P(ClosedForm, QuantizeScaleIsOneOverD) {
  // m = 1.0859375 (bf16 0x3f8b): d = fl(127/m) = 116.94964 (0x42e9e637); scale = fl(1/d) = 0x3c0c1831, which is
  // one ulp away from fl(m/127) = 0x3c0c1830. q = rint(v*d): 127, 58.47 -> 58, -29.24 -> -29, 116.95 -> 117.
  const std::vector<uint16_t> in = {0x3f8b, bf(0.5f), bf(-0.25f), bf(1.0f), 0xbf8b};
  std::vector<int8_t> q(in.size());
  float scale = 0;
  k().quantizeRow(in.data(), Float16Kind::kBf16, nullptr, 5, q.data(), &scale);
  EXPECT_EQ(q, (std::vector<int8_t>{127, 58, -29, 117, -127}));
  EXPECT_EQ(bitsOf(scale), 0x3c0c1831u);
}

TEST_P(ClosedForm, QuantizeRoundsTiesToEven) {
  // m = 127: d = 1, so q = rint(v) with ties to even.
  const auto in = bfRow({127, 2.5f, -2.5f, 3.5f, 0.5f, -0.5f, 1.5f, -127});
  std::vector<int8_t> q(in.size());
  float scale = 0;
  k().quantizeRow(in.data(), Float16Kind::kBf16, nullptr, 8, q.data(), &scale);
  EXPECT_EQ(q, (std::vector<int8_t>{127, 2, -2, 4, 0, 0, 2, -127}));
  EXPECT_EQ(scale, 1.0f);
}

TEST_P(ClosedForm, QuantizeAppliesSmoothScalesFirst) {
  // v = x * smooth = {127, 63.5, -1, 0}: m = 127, d = 1; 63.5 is a tie and goes to 64.
  const auto in = bfRow({1, 1, 1, 1});
  const std::vector<float> smooth = {127, 63.5f, -1, 0};
  std::vector<int8_t> q(4);
  float scale = 0;
  k().quantizeRow(in.data(), Float16Kind::kBf16, smooth.data(), 4, q.data(), &scale);
  EXPECT_EQ(q, (std::vector<int8_t>{127, 64, -1, 0}));
  EXPECT_EQ(scale, 1.0f);
}

TEST_P(ClosedForm, QuantizeFp16Input) {
  // fp16 holds 100.5 and -101.5 exactly (bf16 would not): d = 1, ties to even give 100 and -102.
  const std::vector<uint16_t> in = {fp(127), fp(100.5f), fp(-101.5f), fp(0.5f)};
  std::vector<int8_t> q(4);
  float scale = 0;
  k().quantizeRow(in.data(), Float16Kind::kFp16, nullptr, 4, q.data(), &scale);
  EXPECT_EQ(q, (std::vector<int8_t>{127, 100, -102, 0}));
  EXPECT_EQ(scale, 1.0f);
}

TEST_P(ClosedForm, QuantizeAllZeroRow) {
  // m = 0: d = +inf, every v*d is 0*inf = NaN -> 0 (SPEC 10.3), scale = 1/inf = +0.
  const std::vector<uint16_t> in = {0x0000, 0x8000, 0x0000, 0x8000, 0x0000};
  std::vector<int8_t> q(5, 99);
  float scale = -1;
  k().quantizeRow(in.data(), Float16Kind::kBf16, nullptr, 5, q.data(), &scale);
  EXPECT_EQ(q, (std::vector<int8_t>(5, 0)));
  EXPECT_EQ(bitsOf(scale), 0u);
}

TEST_P(ClosedForm, QuantizeIgnoresNanInTheMax) {
  // NaN is left out of m = 2: d = 63.5; NaN -> 0, 1 * 63.5 = 63.5 -> 64 (tie), -2 * 63.5 = -127.
  const std::vector<uint16_t> in = {0x7fc0, bf(1), bf(-2)};
  std::vector<int8_t> q(3);
  float scale = 0;
  k().quantizeRow(in.data(), Float16Kind::kBf16, nullptr, 3, q.data(), &scale);
  EXPECT_EQ(q, (std::vector<int8_t>{0, 64, -127}));
  EXPECT_EQ(scale, 1.0f / 63.5f);
  // An infinite element makes m = inf and d = 0: inf * 0 = NaN -> 0, everything else 0; scale = 1/0 = inf.
  const std::vector<uint16_t> inf = {0x7f80, bf(1), 0x7fc0, bf(-2)};
  std::vector<int8_t> q2(4, 99);
  k().quantizeRow(inf.data(), Float16Kind::kBf16, nullptr, 4, q2.data(), &scale);
  EXPECT_EQ(q2, (std::vector<int8_t>(4, 0)));
  EXPECT_EQ(scale, std::numeric_limits<float>::infinity());
}

// --------------------------------------------------------------------------- comm quant / dequant (SPEC 3.7)

// Group max 3: sc = fl(3 * fl(1/127)) = 0.023622047 (0x3cc18306), stored as bf16 0x3cc2. v/sc for
// 0.1298828125 (0x3e05) is 5.49837, which fp16 rounds to 5.5 and then rint to 6 (a direct rint would give 5);
// 0.248046875 (0x3e7e) gives 10.50065 -> fp16 10.5 -> 10 (direct: 11). 1 -> 42.33 -> 42, 0.5 -> 21.17 -> 21.
const std::vector<uint16_t> kGroup = {bf(3), 0x3e05, 0x3e7e, 0xbe05, bf(0), bf(-3), bf(1), bf(0.5f)};
const std::vector<int8_t> kGroupQ = {127, 6, 10, -6, 0, -127, 42, 21};
// Dequantized with the bf16 scale 0.023681640625: bf16(q * s).
const std::vector<uint16_t> kGroupDequant = {0x4040, 0x3e12, 0x3e72, 0xbe12, 0x0000, 0xc040, 0x3f7f, 0x3eff};

TEST_P(ClosedForm, CommQuantDoubleRoundsThroughFp16) {
  std::vector<uint16_t> in = kGroup;
  in.resize(16, 0);  // second group all zero: 0/0 -> q 0, scale 0
  std::vector<int8_t> q(16, 99);
  std::vector<uint16_t> scales(3, kSentinel16);
  k().commQuantRow(in.data(), 16, q.data(), scales.data());
  EXPECT_EQ(std::vector<int8_t>(q.begin(), q.begin() + 8), kGroupQ);
  EXPECT_EQ(std::vector<int8_t>(q.begin() + 8, q.end()), std::vector<int8_t>(8, 0));
  EXPECT_EQ(scales, (std::vector<uint16_t>{0x3cc2, 0x0000, kSentinel16}));

  std::vector<uint16_t> out(16, kSentinel16);
  k().commDequantRow(q.data(), scales.data(), 16, out.data());
  EXPECT_EQ(std::vector<uint16_t>(out.begin(), out.begin() + 8), kGroupDequant);
  EXPECT_EQ(std::vector<uint16_t>(out.begin() + 8, out.end()), std::vector<uint16_t>(8, 0));
}

TEST_P(ClosedForm, CommQuantRowNotMultipleOf16) {
  // h = 20: commQuantGroups = ceil(20/16)*2 = 4. Group 0: max 254, sc = 2 -> {127, 1, 1.5->2, 2.5->2, -2, -2, 0,
  // 0.5->0}. Group 1: zeros. Group 2 = elements 16..19 padded with zeros: max 127, sc = 1 -> {127, -1, 0, 63.5->64}.
  // Group 3 is all padding: scale 0.
  std::vector<uint16_t> in = bfRow({254, 2, 3, 5, -3, -5, 0, 1});
  in.resize(16, 0);
  for (float v : {127.0f, -1.0f, 0.5f, 63.5f}) in.push_back(bf(v));
  std::vector<int8_t> q(24, 99);
  std::vector<uint16_t> scales(5, kSentinel16);
  k().commQuantRow(in.data(), 20, q.data(), scales.data());
  const std::vector<int8_t> expected = {127, 1, 2, 2, -2,  -2, 0, 0,  0,  0,  0,  0,
                                        0,   0, 0, 0, 127, -1, 0, 64, 99, 99, 99, 99};
  EXPECT_EQ(q, expected);
  EXPECT_EQ(scales, (std::vector<uint16_t>{0x4000, 0x0000, 0x3f80, 0x0000, kSentinel16}));

  std::vector<uint16_t> out(21, kSentinel16);
  k().commDequantRow(q.data(), scales.data(), 20, out.data());
  const std::vector<uint16_t> deq = bfRow({254, 2, 4, 4, -4, -4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 127, -1, 0, 64});
  EXPECT_EQ(std::vector<uint16_t>(out.begin(), out.begin() + 20), deq);
  EXPECT_EQ(out[20], kSentinel16);
}

TEST_P(ClosedForm, CommQuantShortRow) {
  // h = 3 < 8: two groups, the second is all padding.
  std::vector<uint16_t> in = bfRow({-127, 0.5f, 1.5f});
  std::vector<int8_t> q(3);
  std::vector<uint16_t> scales(2, kSentinel16);
  k().commQuantRow(in.data(), 3, q.data(), scales.data());
  EXPECT_EQ(q, (std::vector<int8_t>{-127, 0, 2}));
  EXPECT_EQ(scales, (std::vector<uint16_t>{0x3f80, 0x0000}));
}

// ------------------------------------------------------------------------------------- addRows (SPEC 3.2)

TEST_P(ClosedForm, AddRowsBf16) {
  // 1 + 2^-8 is a tie (-> 1.0, even); (1 + 2^-7) + 2^-8 is a tie with an odd lower neighbour (-> 1 + 2^-6);
  // max + max overflows to inf; -0 + -0 = -0; -0 + 0 = +0.
  const std::vector<uint16_t> a = {bf(1), 0x3f81, bf(-1), 0x7f7f, 0x8000, 0x8000};
  const std::vector<uint16_t> b = {bf(0x1p-8f), bf(0x1p-8f), bf(-0x1p-8f), 0x7f7f, 0x8000, 0x0000};
  std::vector<uint16_t> out(6);
  k().addRows(a.data(), b.data(), Float16Kind::kBf16, 6, out.data());
  EXPECT_EQ(out, (std::vector<uint16_t>{0x3f80, 0x3f82, 0xbf80, 0x7f80, 0x8000, 0x0000}));
}

TEST_P(ClosedForm, AddRowsFp16) {
  // 1 + 2^-11 ties to 1; (1 + 2^-10) + 2^-11 ties up to 1 + 2^-9; 65504 + 65504 -> inf;
  // 2048 + (1 + 2^-10) = 2049.0009765625 is just above the tie between 2048 and 2050 -> 2050.
  const std::vector<uint16_t> a = {0x3c00, 0x3c01, 0x7bff, 0x6800};
  const std::vector<uint16_t> b = {0x1000, 0x1000, 0x7bff, 0x3c01};
  std::vector<uint16_t> out(4);
  k().addRows(a.data(), b.data(), Float16Kind::kFp16, 4, out.data());
  EXPECT_EQ(out, (std::vector<uint16_t>{0x3c00, 0x3c02, 0x7c00, 0x6801}));
}

// ------------------------------------------------------------------------------- combineToken (SPEC 3.3-3.4)

TEST_P(ClosedForm, RmsNormOfConstantRow) {
  // x = 2 everywhere, h = 1024: sq = 4/1024 = 2^-8, every chunk sums to 0.25 exactly, ms = 16 * 0.25 = 4.
  // eps = 5: den = sqrt(9) = 3, rstd = fl(1/3) = 0x3eaaaaab; bf16(2 * rstd) = 0x3f2b; times gamma 2 -> 0x3fab.
  TokenCase c;
  c.h = 1024;
  c.residual.assign(1024, bf(2));
  c.gamma.assign(1024, bf(2));
  c.eps = 5;
  const TokenResult r = runToken(k(), c);
  EXPECT_EQ(r.rstdBits, 0x3eaaaaabu);
  EXPECT_EQ(r.xOut, std::vector<uint16_t>(1024, bf(2)));
  EXPECT_EQ(r.yOut, std::vector<uint16_t>(1024, 0x3fab));
}

TEST_P(ClosedForm, ReduceSumIsAPairwiseTree) {
  // h = 64, x = {4096, 1, 1, ..., 1}, invH = 2^-6: sq = {2^18, 2^-6, ...}. Summed left to right every 2^-6 is a
  // tie at 2^18 and is lost: ms = 2^18, rstd = 1/512. The tree first adds 2^18 + 2^-6 (lost), then the other 62
  // small terms pair up into 2^-5 + 2^-4 + ... + 2^-1 = 31/32, which 2^18 can hold: ms = 2^18 + 31/32,
  // rstd = fl(1/sqrt(262144.96875)) = 0x3affffe2.
  TokenCase c;
  c.h = 64;
  c.residual.assign(64, bf(1));
  c.residual[0] = bf(4096);
  c.gamma.assign(64, bf(1));
  c.eps = 0;
  const TokenResult r = runToken(k(), c);
  EXPECT_EQ(r.rstdBits, 0x3affffe2u);
  EXPECT_NE(r.rstdBits, bitsOf(1.0f / 512));
}

TEST_P(ClosedForm, ReduceSumPartialLastChunk) {
  // h = 1056 = 16 chunks + 32: x = 1 except x[1024] = 4096 and x[1025..1055] = 0.5. In the partial chunk the
  // tree keeps the 31 small squares that a sequential sum would drop (each is below half an ulp of 15887.5):
  // ms = 0x467841f8 (sequential: 0x467841f1), eps = 1e-6, rstd = 0x3c01fb0a.
  TokenCase c;
  c.h = 1056;
  c.residual.assign(1056, bf(1));
  c.residual[1024] = bf(4096);
  for (int i = 1025; i < 1056; ++i) c.residual[i] = bf(0.5f);
  c.gamma.assign(1056, bf(1));
  const TokenResult r = runToken(k(), c);
  EXPECT_EQ(r.rstdBits, 0x3c01fb0au);
  EXPECT_EQ(r.yOut[0], bf(std::bit_cast<float>(0x3c01fb0au)));
}

TEST_P(ClosedForm, RmsNormOfZeroRow) {
  // x = 0: ms = 0, eps = 0.25 -> den = 0.5, rstd = 2, y = 0.
  TokenCase c;
  c.h = 100;
  c.residual.assign(100, 0);
  c.gamma.assign(100, bf(3));
  c.eps = 0.25f;
  const TokenResult r = runToken(k(), c);
  EXPECT_EQ(r.rstdBits, bitsOf(2.0f));
  EXPECT_EQ(r.yOut, std::vector<uint16_t>(100, 0));
  EXPECT_EQ(r.xOut, std::vector<uint16_t>(100, 0));
}

TEST_P(ClosedForm, XOutRoundsTiesToEven) {
  // x = acc + residual = 2^-8 + 1 (tie -> 1.0) and 2^-8 + (1 + 2^-7) (tie -> 1 + 2^-6).
  TokenCase c;
  c.h = 2;
  c.addSlot(SlotKind::kMoe, {bf(0x1p-8f), bf(0x1p-8f)}, 1.0f);
  c.residual = {bf(1), 0x3f81};
  c.gamma = {bf(1), bf(1)};
  EXPECT_EQ(runToken(k(), c).xOut, (std::vector<uint16_t>{0x3f80, 0x3f82}));
  c.outKind = Float16Kind::kFp16;  // ignored with a residual: everything stays bf16
  EXPECT_EQ(runToken(k(), c).xOut, (std::vector<uint16_t>{0x3f80, 0x3f82}));
}

TEST_P(ClosedForm, EverySlotKind) {
  // oriX = {3, 2}; const expert 1: alpha1 = 3, alpha2 = 0.5, V = {4, 8}. Slots: moe {1, 1} * 0.25; skip (its
  // weight is NaN and must not be read); copy * 0.5; const * 2; shared {1, -1} (weight 100 ignored);
  // sharedExpertX {0.25, 0.25}.
  // h=0: 0.25 + 1.5 = 1.75; tmp = 9 + 2 = 11, * 2 -> 23.75; + 1 -> 24.75; + 0.25 -> 25.
  // h=1: 0.25 + 1 = 1.25; tmp = 6 + 4 = 10, * 2 -> 21.25; - 1 -> 20.25; + 0.25 -> 20.5.
  // The same token in both formats (CombineV2/V3 reads its inputs in outKind).
  for (Float16Kind kind : {Float16Kind::kBf16, Float16Kind::kFp16}) {
    auto row = [kind](std::initializer_list<float> v) { return kind == Float16Kind::kBf16 ? bfRow(v) : fpRow(v); };
    TokenCase c;
    c.h = 2;
    c.outKind = kind;
    c.oriX = row({3, 2});
    c.alpha1 = row({7, 3});
    c.alpha2 = row({7, 0.5f});
    c.constV = row({7, 7, 4, 8});
    c.addSlot(SlotKind::kMoe, row({1, 1}), 0.25f);
    c.addSlot(SlotKind::kSkip, {}, std::numeric_limits<float>::quiet_NaN());
    c.addSlot(SlotKind::kCopy, {}, 0.5f);
    c.addSlot(SlotKind::kConst, {}, 2.0f, 1);
    c.addSlot(SlotKind::kShared, row({1, -1}), 100.0f);
    c.sharedX = row({0.25f, 0.25f});
    const TokenResult r = runToken(k(), c);
    EXPECT_EQ(r.xOut, row({25, 20.5f}));
    EXPECT_EQ(r.yOut, std::vector<uint16_t>(2, kSentinel16));  // CombineV2/V3 mode: untouched
    EXPECT_EQ(r.rstdBits, kSentinel32);
  }
}

TEST_P(ClosedForm, Fp16InputsKeepTheirPrecision) {
  // 1 + 2^-10 (fp16 0x3c01) has no bf16 equivalent: an fp16 CombineV3 token must read its rows as fp16.
  TokenCase c;
  c.h = 1;
  c.outKind = Float16Kind::kFp16;
  c.addSlot(SlotKind::kMoe, {0x3c01}, 1.0f);
  c.addSlot(SlotKind::kMoe, {fp(0x1p-10f)}, 0.5f);  // + 2^-11: 1 + 3 * 2^-11, a tie -> 1 + 2^-9 (0x3c02)
  EXPECT_EQ(runToken(k(), c).xOut, std::vector<uint16_t>{0x3c02});
}

TEST_P(ClosedForm, SlotsAreAddedInOrderWithoutReassociation) {
  // 0 + 2^24 = 2^24; + 1 is a tie at 2^24 and is lost; - 2^24 = 0. Any other grouping would give 1.
  TokenCase c;
  c.h = 1;
  c.addSlot(SlotKind::kMoe, {bf(0x1p24f)}, 1.0f);
  c.addSlot(SlotKind::kMoe, {bf(1)}, 1.0f);
  c.addSlot(SlotKind::kMoe, {bf(-0x1p24f)}, 1.0f);
  EXPECT_EQ(runToken(k(), c).xOut, std::vector<uint16_t>{0x0000});
  c.residual = {bf(1)};
  c.gamma = {bf(1)};
  EXPECT_EQ(runToken(k(), c).xOut, std::vector<uint16_t>{bf(1)});
}

TEST_P(ClosedForm, NegativeZeroBecomesPositiveZero) {
  // acc starts at +0 and 0 + (-0) = +0, so a token whose only term is -0 gives +0, in both formats (0x8000 is -0
  // in both).
  TokenCase c;
  c.h = 3;
  c.addSlot(SlotKind::kMoe, {0x8000, bf(0), 0x8000}, 1.0f);
  c.addSlot(SlotKind::kMoe, {0x8000, 0x8000, bf(0)}, -0.0f);  // -0 * -0 = +0, 0 * -0 = -0
  EXPECT_EQ(runToken(k(), c).xOut, (std::vector<uint16_t>{0, 0, 0}));
  c.outKind = Float16Kind::kFp16;
  EXPECT_EQ(runToken(k(), c).xOut, (std::vector<uint16_t>{0, 0, 0}));
  TokenCase empty;  // no slots at all
  empty.h = 2;
  EXPECT_EQ(runToken(k(), empty).xOut, (std::vector<uint16_t>{0, 0}));
}

TEST_P(ClosedForm, Fp16OutputRoundsTiesToEven) {
  // 2048 + 1 = 2049 is a tie between the fp16 values 2048 and 2050: -> 2048 (even).
  TokenCase c;
  c.h = 1;
  c.addSlot(SlotKind::kMoe, {fp(2048)}, 1.0f);
  c.addSlot(SlotKind::kMoe, {fp(1)}, 1.0f);
  c.outKind = Float16Kind::kFp16;
  EXPECT_EQ(runToken(k(), c).xOut, std::vector<uint16_t>{0x6800});
  c.addSlot(SlotKind::kMoe, {fp(2)}, 1.0f);  // 2051: tie between 2050 and 2052 -> 2052
  EXPECT_EQ(runToken(k(), c).xOut, std::vector<uint16_t>{0x6802});
}

std::vector<std::string> allTables() {
  std::vector<std::string> names = {"ref"};
  for (const std::string& n : cpuTableNames()) names.push_back(n);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Tables, ClosedForm, ::testing::ValuesIn(allTables()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return paramName(p.param); });

TEST(Registry, NamesBothTables) {
  // The x86-64 baseline variant runs everywhere; "cpu" forwards to one of the variants.
  ASSERT_FALSE(cpu::variants().empty());
  EXPECT_STREQ(cpu::variants().back().table->name, "cpu-generic");
  EXPECT_TRUE(cpu::variants().back().supported);
  ASSERT_NE(findKernels("ref"), nullptr);
  ASSERT_NE(findKernels("cpu"), nullptr);
  EXPECT_STREQ(findKernels("ref")->name, "ref");
  EXPECT_STREQ(findKernels("cpu")->name, "cpu");
  EXPECT_EQ(findKernels("nope"), nullptr);
  EXPECT_EQ(commQuantGroups(1), 2);
  EXPECT_EQ(commQuantGroups(16), 2);
  EXPECT_EQ(commQuantGroups(17), 4);
  EXPECT_EQ(commQuantGroups(7168), 896);
}

}  // namespace
}  // namespace moedist::kernels::test
