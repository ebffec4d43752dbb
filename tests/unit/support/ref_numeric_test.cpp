// Tests of the reference's numeric helpers. Every expected value is derived by hand in the comments.
#include <gtest/gtest.h>
#include <moedist_ref/numeric.h>

#include <cmath>
#include <vector>

namespace moedist::ref {
namespace {

TEST(RefBf16, WideningIsExact) {
  EXPECT_EQ(bf16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(bf16ToFloat(0x4049), 3.140625f);  // 1.5703125 * 2
  EXPECT_EQ(bf16ToFloat(0xC000), -2.0f);
  EXPECT_TRUE(std::isinf(bf16ToFloat(0x7F80)));
}

TEST(RefBf16, RoundsToNearestEven) {
  EXPECT_EQ(floatToBf16(1.0f), 0x3F80);
  EXPECT_EQ(floatToBf16(-1.0f), 0xBF80);
  // 1 + 2^-8 is halfway between 1 (0x3F80, even) and 1 + 2^-7 (0x3F81): even wins.
  EXPECT_EQ(floatToBf16(1.0f + 0x1p-8f), 0x3F80);
  // 1 + 3*2^-8 is halfway between 0x3F81 (odd) and 0x3F82 (even).
  EXPECT_EQ(floatToBf16(1.0f + 3 * 0x1p-8f), 0x3F82);
  // Just above the first tie rounds up.
  EXPECT_EQ(floatToBf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);
  // Just below a tie rounds down.
  EXPECT_EQ(floatToBf16(1.0f + 3 * 0x1p-8f - 0x1p-20f), 0x3F81);
  // FLT_MAX (0x7F7FFFFF) is above the midpoint 0x7F7F8000 between the largest bf16 and "2^128": infinity.
  EXPECT_EQ(floatToBf16(bitsFloat(0x7F7FFFFFu)), 0x7F80);
  EXPECT_EQ(floatToBf16(INFINITY), 0x7F80);
  EXPECT_EQ(floatToBf16(-0.0f), 0x8000);
}

TEST(RefBf16, NanStaysNan) {
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(NAN))));
  // A signalling-looking NaN whose payload sits only in the low 16 bits must not become infinity.
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(bitsFloat(0x7F800001u)))));
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(bitsFloat(0xFF800001u)))));
}

TEST(RefFp16, Widening) {
  EXPECT_EQ(fp16ToFloat(0x3C00), 1.0f);
  EXPECT_EQ(fp16ToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16ToFloat(0x0001), 0x1p-24f);         // smallest subnormal
  EXPECT_EQ(fp16ToFloat(0x0400), 0x1p-14f);         // smallest normal
  EXPECT_EQ(fp16ToFloat(0x3555), 0.333251953125f);  // 1.3330078125 * 2^-2 (0x155 = 341, 1 + 341/1024)
  EXPECT_EQ(fp16ToFloat(0xC000), -2.0f);
  EXPECT_TRUE(std::isinf(fp16ToFloat(0x7C00)));
  EXPECT_TRUE(std::isnan(fp16ToFloat(0x7E00)));
}

TEST(RefFp16, RoundsToNearestEven) {
  EXPECT_EQ(floatToFp16(1.0f), 0x3C00);
  EXPECT_EQ(floatToFp16(-2.0f), 0xC000);
  EXPECT_EQ(floatToFp16(1.0f + 0x1p-11f), 0x3C00);      // tie, even kept
  EXPECT_EQ(floatToFp16(1.0f + 3 * 0x1p-11f), 0x3C02);  // tie between 0x3C01 and 0x3C02
  EXPECT_EQ(floatToFp16(65504.0f), 0x7BFF);
  EXPECT_EQ(floatToFp16(65519.0f), 0x7BFF);  // below the midpoint 65520
  EXPECT_EQ(floatToFp16(65520.0f), 0x7C00);  // midpoint, "even" is the infinity encoding
  EXPECT_EQ(floatToFp16(1e9f), 0x7C00);
  EXPECT_EQ(floatToFp16(0x1p-14f), 0x0400);
  EXPECT_EQ(floatToFp16(0x1p-24f), 0x0001);
  EXPECT_EQ(floatToFp16(0x1p-25f), 0x0000);      // half of the smallest subnormal: tie to 0
  EXPECT_EQ(floatToFp16(3 * 0x1p-25f), 0x0002);  // 1.5 units: tie to 2
  EXPECT_EQ(floatToFp16(0x1p-25f + 0x1p-30f), 0x0001);
  EXPECT_EQ(floatToFp16(-0x1p-24f), 0x8001);
  // Largest subnormal plus a half unit rounds up into the smallest normal (carry is right).
  EXPECT_EQ(floatToFp16(1023.5f * 0x1p-24f), 0x0400);
  // Mantissa carry into the exponent: 2 - 2^-11 is the midpoint of 1.9990234375 (0x3BFF, odd) and 2.0 (0x4000).
  EXPECT_EQ(floatToFp16(2.0f - 0x1p-11f), 0x4000);
  EXPECT_TRUE(std::isnan(fp16ToFloat(floatToFp16(NAN))));
}

TEST(RefRint, HalfEven) {
  EXPECT_EQ(rintHalfEven(0.5f), 0.0f);
  EXPECT_EQ(rintHalfEven(1.5f), 2.0f);
  EXPECT_EQ(rintHalfEven(2.5f), 2.0f);
  EXPECT_EQ(rintHalfEven(3.5f), 4.0f);
  EXPECT_EQ(rintHalfEven(-2.5f), -2.0f);
  EXPECT_EQ(rintHalfEven(-3.5f), -4.0f);
  EXPECT_EQ(rintHalfEven(-0.5f), 0.0f);
  EXPECT_EQ(rintHalfEven(2.4999998f), 2.0f);
  EXPECT_EQ(rintHalfEven(2.5000002f), 3.0f);
  EXPECT_EQ(rintHalfEven(1e10f), 1e10f);
  EXPECT_TRUE(std::isnan(rintHalfEven(NAN)));
}

// SPEC 2.5 by hand. Row [1, -2, 0.5, 4]: m = 4, d = 127/4 = 31.75 (exact), v*d = [31.75, -63.5, 15.875, 127]
// -> [32, -64 (tie, even), 16, 127]; scale = fl(1/31.75) = fl(4/127). 4/127 = 2^-5 * (1 + 2^-7 + 2^-14 + 2^-21 +
// 2^-28 + ...); the tail from 2^-28 is below half an ulp (2^-24), so the float is 2^-5 * (1 + 2^-7 + 2^-14 + 2^-21)
// = 0x3D010204.
TEST(RefDynamicQuant, HandComputedRow) {
  const float v[4] = {1.0f, -2.0f, 0.5f, 4.0f};
  int8_t q[4];
  const float scale = dynamicQuantRow(v, 4, q);
  EXPECT_EQ(q[0], 32);
  EXPECT_EQ(q[1], -64);
  EXPECT_EQ(q[2], 16);
  EXPECT_EQ(q[3], 127);
  EXPECT_EQ(floatBits(scale), 0x3D010204u);
}

// m = 127 -> d = 1: q = rint_even(v): 2.5 -> 2, -0.5 -> 0, 1.5 -> 2; scale = 1.
TEST(RefDynamicQuant, TiesToEven) {
  const float v[4] = {127.0f, 2.5f, -0.5f, 1.5f};
  int8_t q[4];
  EXPECT_EQ(dynamicQuantRow(v, 4, q), 1.0f);
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[1], 2);
  EXPECT_EQ(q[2], 0);
  EXPECT_EQ(q[3], 2);
}

// The stored scale is fl(1/d), not fl(m/127). m = 1.0859375 = 139/128: 127/m = 116 + 132/139; in ulps of 2^-17 the
// fraction is 124471.25, so d = 116 + 124471 * 2^-17 = (127/m)(1 - 1.6427e-8). m/127 = 9181232.378 ulps of 2^-30,
// and 1/d = (m/127)(1 + 1.6427e-8) = 9181232.529 ulps -> 9181233 * 2^-30 = 0x3C0C1831 (m/127 would round to
// 0x3C0C1830). q = [rint(127 - tiny) = 127, rint(-0.5 d = -58.47) = -58].
TEST(RefDynamicQuant, ScaleIsReciprocalOfD) {
  const float v[2] = {1.0859375f, -0.5f};
  int8_t q[2];
  const float scale = dynamicQuantRow(v, 2, q);
  EXPECT_EQ(floatBits(scale), 0x3C0C1831u);
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[1], -58);
}

// SPEC 10.3: all-zero row -> q = 0, scale = 1/inf = 0.
TEST(RefDynamicQuant, AllZeroRow) {
  const float v[3] = {0.0f, -0.0f, 0.0f};
  int8_t q[3] = {5, 5, 5};
  const float scale = dynamicQuantRow(v, 3, q);
  EXPECT_EQ(scale, 0.0f);
  EXPECT_FALSE(std::signbit(scale));
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[1], 0);
  EXPECT_EQ(q[2], 0);
}

// SPEC 3.7 by hand, H = 16 (two groups of 8).
// fl(1/127) = 2^-7 (1 + 2^-7 + 2^-14 + 2^-21) = (1/127)(1 - 2^-28).
// Group 0, max 127: sc = fl(127 * fl(1/127)) = fl(1 - 2^-28) = 1 (closer to 1 than to 1 - 2^-24); sb = 1.
//   q = rint_even(fp16(v)): 127, 63.5 -> 64, -1, 0, 2.5 -> 2, bf16(0.3) = 0.30078125 -> 0, 100.5 -> 100, -101.5 ->
//   -102.
// Group 1, max 3: sc = 3 fl(1/127) exactly (2^-6 (1 + 2^-1 + 2^-7 + 2^-8 + 2^-14 + 2^-15 + 2^-21 + 2^-22)).
//   3/sc = 127(1 + 2^-28) -> fl 127 -> q 127
//   1/sc = 42.33333 -> fp16 42.34375 (spacing 2^-5) -> 42
//   2/sc = 84.66667 -> fp16 84.6875 (spacing 2^-4) -> 85
//   -1.5/sc = -63.5(1 + 2^-28) -> fl -63.5 -> -64 (tie, even)
//   0.5/sc = 21.16667 -> fp16 21.171875 -> 21;  0.25/sc = 10.58333 -> fp16 10.5859375 -> 11;  0 -> 0
//   sb = bf16(sc): mantissa 1.1000001 1000001... -> rounds up to 1.1000010 = 1.515625, sb = 194 * 2^-13.
//   ret = bf16(q * sb): 127*194 = 24638 * 2^-13 = 3.0076 -> 3.0;  42*194 = 8148 -> 0.99463 -> 0.99609375;
//   85*194 = 16490 -> 2.01294 -> 2.015625;  -64*194 -> -1.515625 (exact);  21*194 = 4074 -> 0.49731 -> 0.498046875;
//   11*194 = 2134 -> 0.26050 -> 0.259765625.
TEST(RefCommQuant, HandComputedGroups) {
  std::vector<uint16_t> in = {floatToBf16(127.0f), floatToBf16(63.5f),    floatToBf16(-1.0f),  floatToBf16(0.0f),
                              floatToBf16(2.5f),   0x3E9A /*0.30078125*/, floatToBf16(100.5f), floatToBf16(-101.5f),
                              floatToBf16(3.0f),   floatToBf16(1.0f),     floatToBf16(2.0f),   floatToBf16(-1.5f),
                              floatToBf16(0.5f),   floatToBf16(0.25f),    floatToBf16(0.0f),   floatToBf16(0.0f)};
  std::vector<uint16_t> out(16);
  commQuantRoundTrip(in.data(), 16, out.data());
  const float expect[16] = {127,        64,           -1,           0, 2, 0, 100, -102, 3.0f, 0.99609375f, 2.015625f,
                            -1.515625f, 0.498046875f, 0.259765625f, 0, 0};
  for (int h = 0; h < 16; ++h) EXPECT_EQ(bf16ToFloat(out[static_cast<size_t>(h)]), expect[h]) << "h=" << h;
}

// The fp32 -> fp16 -> int8 double rounding. Group [1.125, 1.09375, 0 x 6]:
// fl(1.125 * fl(1/127)): mantissa (1 + 2^-7 + 2^-14 + 2^-21)(1 + 2^-3) = 1 + 2^-3 + 2^-7 + 2^-10 + 2^-14 + 2^-17 +
// 2^-21 + 2^-24; the 2^-24 is a tie with an even last bit, so sc = (9/1016)(1 - 2^-28) - 2^-31 = (9/1016)(1 - 5.63e-8).
// 1.125/sc = 127 + 7.2e-6 -> fl 127 + 2^-17 -> fp16 127 -> q 127.
// 1.09375/sc = 123.47222 + 7e-6 -> fp16 (spacing 1/16) 123.5 -> rint even 124 (a single rounding would give 123).
// sb = bf16(sc) = 2^-7 * 1.0010001b = 1.1328125 * 2^-7. ret: 127 * 1.1328125 = 143.87 -> 144/128 = 1.125;
// 124 * 1.1328125 = 140.47 -> 140/128 = 1.09375 (q = 123 would give 139.34 -> 1.0859375).
TEST(RefCommQuant, Fp16DoubleRounding) {
  std::vector<uint16_t> in(8, 0);
  in[0] = floatToBf16(1.125f);
  in[1] = floatToBf16(1.09375f);
  std::vector<uint16_t> out(8, 0xFFFF);
  commQuantRoundTrip(in.data(), 8, out.data());
  EXPECT_EQ(bf16ToFloat(out[0]), 1.125f);
  EXPECT_EQ(bf16ToFloat(out[1]), 1.09375f);
  for (int h = 2; h < 8; ++h) EXPECT_EQ(out[static_cast<size_t>(h)], 0);
}

// SPEC 10.4: a group whose max is 0 dequantizes to 0; padding to 16 elements does not disturb a short row.
TEST(RefCommQuant, ZeroGroupAndShortRow) {
  std::vector<uint16_t> in = {0, 0, 0, 0, 0, 0, 0, 0, floatToBf16(-127.0f), floatToBf16(1.0f)};
  std::vector<uint16_t> out(10, 0xFFFF);
  commQuantRoundTrip(in.data(), 10, out.data());
  for (int h = 0; h < 8; ++h) EXPECT_EQ(bf16ToFloat(out[static_cast<size_t>(h)]), 0.0f);
  EXPECT_EQ(bf16ToFloat(out[8]), -127.0f);  // second group: max 127 -> sc = 1
  EXPECT_EQ(bf16ToFloat(out[9]), 1.0f);
}

// SPEC 3.4 / 10.2: one chunk [2^24, 1 x 63]. Tree: level 1 (2^24 + 1) -> 2^24 (tie, even), 31 pairs -> 2;
// then 2^24 + 2, + 4, + 8, + 16, + 32 all exact -> 2^24 + 62 = 16777278. (Left-to-right would give 2^24, the exact
// sum is 2^24 + 63.)
TEST(RefReduceSum, TreeOrderInsideChunk) {
  std::vector<float> v(64, 1.0f);
  v[0] = 16777216.0f;
  EXPECT_EQ(reduceSumAscend(v.data(), 64), 16777278.0f);
}

// Chunks are added left to right: [2^24, 0 x 63 | 1, 0 x 63 | 1] -> (2^24 + 1) + 1 = 2^24 (two ties to even);
// a tree over the chunk sums would give 2^24 + 2.
TEST(RefReduceSum, ChunksSequential) {
  std::vector<float> v(129, 0.0f);
  v[0] = 16777216.0f;
  v[64] = 1.0f;
  v[128] = 1.0f;
  EXPECT_EQ(reduceSumAscend(v.data(), 129), 16777216.0f);
}

// Partial chunk: [2^24, 1, 1, 1] padded with zeros: (2^24 + 1) -> 2^24, (1 + 1) = 2, then 2^24 + 2 (the zero
// lanes add nothing). Sequential summation would give 2^24.
TEST(RefReduceSum, PartialChunkTree) {
  const float v[4] = {16777216.0f, 1.0f, 1.0f, 1.0f};
  EXPECT_EQ(reduceSumAscend(v, 4), 16777218.0f);
  const float one[1] = {3.0f};
  EXPECT_EQ(reduceSumAscend(one, 1), 3.0f);
}

// Constant row x = 1, gamma = 1, H = 64: inv = 2^-6, sq = 2^-6 each, ms = 1 exactly.
// fl(1 + fl(1e-6)) = 1 + 8*2^-23 (1e-6 is 8.39 ulps of 1), sqrt -> 1 + 2^-21, rstd = fl(1/(1 + 2^-21)) = 1 - 2^-21.
// y = bf16(bf16(1 - 2^-21) * 1) = 1.
TEST(RefRmsNorm, ConstantRow) {
  std::vector<float> x(64, 1.0f);
  std::vector<uint16_t> gamma(64, floatToBf16(1.0f)), y(64);
  const float rstd = rmsNormRow(x.data(), gamma.data(), 64, 1e-6f, y.data());
  EXPECT_EQ(rstd, 1.0f - 0x1p-21f);
  for (uint16_t b : y) EXPECT_EQ(b, 0x3F80);
}

// Double rounding of y: x has 3 x 1.5, 5 x 0.5 and 56 x 1 (sum of squares 6.75 + 1.25 + 56 = 64, so ms = 1 and
// rstd = 1 - 2^-21 as above). For x = 1.5 and gamma = 1 + 2^-7: bf16(1.5 - 3*2^-22) = 1.5, then 1.5 * (1 + 2^-7) =
// 1.51171875 is a tie between 1.5078125 (odd) and 1.515625 (even) -> 1.515625 (0x3FC2). A single rounding of
// (x*rstd)*gamma would give 1.5078125.
TEST(RefRmsNorm, DoubleRoundingOfY) {
  std::vector<float> x(64, 1.0f);
  std::vector<uint16_t> gamma(64, floatToBf16(1.0f)), y(64);
  for (int h = 0; h < 3; ++h) {
    x[static_cast<size_t>(h)] = 1.5f;
    gamma[static_cast<size_t>(h)] = 0x3F81;  // 1 + 2^-7
  }
  for (int h = 3; h < 8; ++h) x[static_cast<size_t>(h)] = 0.5f;
  const float rstd = rmsNormRow(x.data(), gamma.data(), 64, 1e-6f, y.data());
  EXPECT_EQ(rstd, 1.0f - 0x1p-21f);
  for (int h = 0; h < 3; ++h) EXPECT_EQ(y[static_cast<size_t>(h)], 0x3FC2);
  for (int h = 3; h < 8; ++h) EXPECT_EQ(y[static_cast<size_t>(h)], 0x3F00);  // bf16(0.5 - 2^-22) = 0.5
  for (int h = 8; h < 64; ++h) EXPECT_EQ(y[static_cast<size_t>(h)], 0x3F80);
}

}  // namespace
}  // namespace moedist::ref
