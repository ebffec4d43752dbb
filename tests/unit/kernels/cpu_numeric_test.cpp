// kernels/cpu/cpu_numeric.h: the branch-free fp16 conversions must match util/numeric.h bit for bit, checked
// exhaustively for fp16 -> float, and for float -> fp16 on every sign, exponent and top-10 mantissa pattern
// combined with the low 13 bits that decide the rounding (0, 1, just below/at/above the half, all ones, random).
// roundToFp16Precision must equal a round trip through fp16 (up to the sign of zero) for |y| < 2^15, and
// roundToBf16Precision a round trip through bf16, bit for bit. (cpu's bf16 conversions are util's own.)
#include "kernels/cpu/cpu_numeric.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <random>

#include "util/numeric.h"

namespace moedist::kernels::cpu {
namespace {

TEST(CpuNumeric, Fp16ToFloatEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const auto v = static_cast<uint16_t>(h);
    ASSERT_EQ(std::bit_cast<uint32_t>(fp16ToFloat(v)), std::bit_cast<uint32_t>(util::fp16ToFloat(v))) << std::hex << h;
  }
}

TEST(CpuNumeric, FloatToFp16RoundingBoundaries) {
  std::mt19937 rng(7);
  const uint32_t lows[] = {0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x0800};
  for (uint32_t sign = 0; sign < 2; ++sign) {
    for (uint32_t exp = 0; exp < 256; ++exp) {
      for (uint32_t top = 0; top < 1024; ++top) {
        for (int j = 0; j <= 7; ++j) {
          const uint32_t low = j < 7 ? lows[j] : rng() & 0x1fffu;  // the last one random
          const uint32_t u = (sign << 31) | (exp << 23) | (top << 13) | low;
          const float f = std::bit_cast<float>(u);
          ASSERT_EQ(floatToFp16(f), util::floatToFp16(f)) << std::hex << u;
        }
      }
    }
  }
}

TEST(CpuNumeric, RoundToFp16PrecisionBelow2To15) {
  std::mt19937 rng(9);
  const uint32_t lows[] = {0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x0800};
  for (uint32_t sign = 0; sign < 2; ++sign) {
    for (uint32_t exp = 0; exp < 127 + 15; ++exp) {  // |y| < 2^15
      for (uint32_t top = 0; top < 1024; ++top) {
        for (int j = 0; j <= 7; ++j) {
          const uint32_t low = j < 7 ? lows[j] : rng() & 0x1fffu;
          const float y = std::bit_cast<float>((sign << 31) | (exp << 23) | (top << 13) | low);
          const float expected = util::fp16ToFloat(util::floatToFp16(y));
          ASSERT_EQ(roundToFp16Precision(y), expected) << y;  // == : -0 and +0 may differ in sign
        }
      }
    }
  }
}

TEST(CpuNumeric, RoundToBf16PrecisionIsARoundTrip) {
  // Every sign, exponent and top-7 mantissa pattern, with the low 16 bits at the rounding boundaries and random.
  std::mt19937 rng(8);
  const uint32_t lows[] = {0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff};
  for (uint32_t high = 0; high < 0x10000; ++high) {
    for (int j = 0; j <= 6; ++j) {
      const uint32_t low = j < 6 ? lows[j] : rng() & 0xffffu;
      const float f = std::bit_cast<float>((high << 16) | low);
      const float expected = util::bf16ToFloat(util::floatToBf16(f));
      ASSERT_EQ(std::bit_cast<uint32_t>(roundToBf16Precision(f)), std::bit_cast<uint32_t>(expected))
          << std::hex << ((high << 16) | low);
    }
  }
}

}  // namespace
}  // namespace moedist::kernels::cpu
