// util/numeric.h: bf16 and fp16 conversions with round to nearest, ties to even, and rintEven.
#include "util/numeric.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace moedist::util {
namespace {

float fromBits(uint32_t u) {
  return std::bit_cast<float>(u);
}
uint32_t bitsOf(float f) {
  return std::bit_cast<uint32_t>(f);
}

TEST(Bf16, WidensExactly) {
  EXPECT_EQ(bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(bf16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(bitsOf(bf16ToFloat(0x8000)), 0x80000000u);  // -0
  EXPECT_EQ(bf16ToFloat(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(bitsOf(bf16ToFloat(0x0001)), 0x00010000u);  // smallest subnormal stays subnormal
  EXPECT_EQ(bitsOf(bf16ToFloat(0x7fc1)), 0x7fc10000u);  // NaN payload kept
}

TEST(Bf16, RoundsToNearestTiesToEven) {
  EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(floatToBf16(1.0f + 0x1p-8f), 0x3f80);             // tie, 0x3f80 is even
  EXPECT_EQ(floatToBf16(1.0f + 3 * 0x1p-8f), 0x3f82);         // tie, 0x3f81 is odd: up
  EXPECT_EQ(floatToBf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);  // just above the tie
  EXPECT_EQ(floatToBf16(fromBits(0x3f807fff)), 0x3f80);       // just below the tie
  EXPECT_EQ(floatToBf16(-(1.0f + 0x1p-8f)), 0xbf80);
  EXPECT_EQ(floatToBf16(-(1.0f + 3 * 0x1p-8f)), 0xbf82);
  EXPECT_EQ(floatToBf16(fromBits(0x3fffffff)), 0x4000);  // mantissa carry into the exponent
  EXPECT_EQ(floatToBf16(-0.0f), 0x8000);
  EXPECT_EQ(floatToBf16(fromBits(0x00008000)), 0x0000);  // subnormal tie to even
  EXPECT_EQ(floatToBf16(fromBits(0x00018000)), 0x0002);
}

TEST(Bf16, OverflowsToInfinity) {
  EXPECT_EQ(floatToBf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(floatToBf16(fromBits(0x7f7f8000)), 0x7f80);  // tie above the largest bf16 (odd): up to inf
  EXPECT_EQ(floatToBf16(fromBits(0x7f7f7fff)), 0x7f7f);
  EXPECT_EQ(floatToBf16(-std::numeric_limits<float>::max()), 0xff80);
  EXPECT_EQ(floatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(floatToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
}

TEST(Bf16, NanStaysQuietNan) {
  EXPECT_EQ(floatToBf16(fromBits(0x7fc00000)), 0x7fc0);
  EXPECT_EQ(floatToBf16(fromBits(0xffc00000)), 0xffc0);
  EXPECT_EQ(floatToBf16(fromBits(0x7f800001)), 0x7fc0);  // payload only in dropped bits: not inf
  EXPECT_EQ(floatToBf16(fromBits(0x7fffffff)), 0x7fff);  // no rounding carry out of a NaN
  EXPECT_EQ(floatToBf16(fromBits(0x7fa00000)), 0x7fe0);  // signaling NaN made quiet, payload kept
}

TEST(Bf16, RoundTripsEveryValue) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const bool nan = (b & 0x7fff) > 0x7f80;
    const uint16_t expected = nan ? static_cast<uint16_t>(b | 0x0040) : static_cast<uint16_t>(b);
    ASSERT_EQ(floatToBf16(bf16ToFloat(static_cast<uint16_t>(b))), expected) << std::hex << b;
  }
}

TEST(Fp16, WidensExactly) {
  EXPECT_EQ(fp16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(fp16ToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(fp16ToFloat(0x0001), 0x1p-24f);
  EXPECT_EQ(fp16ToFloat(0x03ff), 1023 * 0x1p-24f);
  EXPECT_EQ(fp16ToFloat(0x0400), 0x1p-14f);
  EXPECT_EQ(bitsOf(fp16ToFloat(0x8000)), 0x80000000u);
  EXPECT_EQ(fp16ToFloat(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(fp16ToFloat(0x7e00)));
  EXPECT_TRUE(std::isnan(fp16ToFloat(0x7c01)));
}

TEST(Fp16, RoundsToNearestTiesToEven) {
  EXPECT_EQ(floatToFp16(1.0f + 0x1p-11f), 0x3c00);      // tie to even
  EXPECT_EQ(floatToFp16(1.0f + 3 * 0x1p-11f), 0x3c02);  // tie, odd below: up
  EXPECT_EQ(floatToFp16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
  EXPECT_EQ(floatToFp16(0x1p-24f), 0x0001);
  EXPECT_EQ(floatToFp16(0x1p-25f), 0x0000);  // tie between 0 and the smallest subnormal
  EXPECT_EQ(floatToFp16(1.5f * 0x1p-25f), 0x0001);
  EXPECT_EQ(floatToFp16(3 * 0x1p-25f), 0x0002);         // tie between 1 and 2 units: even
  EXPECT_EQ(floatToFp16(0x1p-14f - 0x1p-26f), 0x0400);  // rounds up into the normal range
  EXPECT_EQ(floatToFp16(-0.0f), 0x8000);
  EXPECT_EQ(floatToFp16(-2.5f), 0xc100);
}

TEST(Fp16, OverflowAndNan) {
  EXPECT_EQ(floatToFp16(65504.0f), 0x7bff);
  EXPECT_EQ(floatToFp16(65519.996f), 0x7bff);
  EXPECT_EQ(floatToFp16(65520.0f), 0x7c00);  // the tie above the largest fp16 goes to inf
  EXPECT_EQ(floatToFp16(1e10f), 0x7c00);
  EXPECT_EQ(floatToFp16(-1e10f), 0xfc00);
  EXPECT_EQ(floatToFp16(std::numeric_limits<float>::infinity()), 0x7c00);
  const uint16_t n = floatToFp16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(n & 0x7c00, 0x7c00);
  EXPECT_NE(n & 0x03ff, 0);
}

TEST(Fp16, RoundTripsEveryNonNanValue) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    if ((b & 0x7fff) > 0x7c00) continue;
    ASSERT_EQ(floatToFp16(fp16ToFloat(static_cast<uint16_t>(b))), b) << std::hex << b;
  }
}

TEST(RintEven, TiesGoToEven) {
  EXPECT_EQ(rintEven(0.5f), 0.0f);
  EXPECT_EQ(rintEven(1.5f), 2.0f);
  EXPECT_EQ(rintEven(2.5f), 2.0f);
  EXPECT_EQ(rintEven(-2.5f), -2.0f);
  EXPECT_EQ(rintEven(-3.5f), -4.0f);
  EXPECT_EQ(rintEven(2.5000002f), 3.0f);
  EXPECT_EQ(bitsOf(rintEven(-0.5f)), 0x80000000u);
}

}  // namespace
}  // namespace moedist::util
