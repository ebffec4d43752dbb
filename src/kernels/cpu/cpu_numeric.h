// Branch-free float <-> bf16/fp16 conversions for the vectorized kernels, bit-identical to util/numeric.h.
//
// bf16 is util/numeric.h's own code (it already vectorizes). fp16 is redone with integer operations because
// compilers turn _Float16 casts into one scalar instruction or library call per element; the versions here are
// written as selects between the cases (zero/subnormal, normal, overflow, NaN) so that a loop over them
// vectorizes. NaNs behave as the hardware and libgcc conversions do: the payload's top bits are kept and the
// result is made quiet. tests/unit/kernels checks them against util/numeric.h exhaustively (fp16 -> float)
// and around every rounding boundary (float -> fp16).
// roundToBf16Precision and roundToFp16Precision are cheaper equivalents of a round trip through the 16-bit format
// (the latter for |y| < 2^15 only).
#pragma once

#include <bit>
#include <cstdint>

#include "util/numeric.h"

namespace moedist::kernels::cpu {

using util::bf16ToFloat;
using util::floatToBf16;

// cond ? a : b written with masks: a ternary would let the compiler move the float operation that computes
// one side into a branch, and with the default -ftrapping-math it then refuses to vectorize the loop.
inline uint32_t select(bool cond, uint32_t a, uint32_t b) {
  return b ^ ((a ^ b) & (0u - static_cast<uint32_t>(cond)));
}

inline float fp16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;                    // exponent and mantissa
  const uint32_t normal = (em << 13) + (112u << 23);  // rebias the exponent: 127 - 15
  const uint32_t special = (em << 13) | 0x7f800000u | (em > 0x7c00u ? 0x00400000u : 0u);  // inf, quiet NaN
  // zero and subnormals: em * 2^-24, exact in fp32
  const uint32_t small = std::bit_cast<uint32_t>(static_cast<float>(static_cast<int32_t>(em)) * 0x1p-24f);
  const uint32_t mag = select(em >= 0x7c00u, special, select(em >= 0x0400u, normal, small));
  return std::bit_cast<float>(sign | mag);
}

inline uint16_t floatToFp16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  const uint32_t nan = 0x7e00u | ((a >> 13) & 0x03ffu);
  // normal results: rebias, then round to nearest even on the 13 dropped bits (a carry may reach 0x7c00 = inf)
  const uint32_t normal = (a - (112u << 23) + 0x0fffu + ((a >> 13) & 1u)) >> 13;
  // subnormal results (|f| < 2^-14): adding 0.5 rounds |f| to a multiple of 2^-24 (RNE), counted in the low bits
  const uint32_t small = std::bit_cast<uint32_t>(std::bit_cast<float>(a) + 0.5f) - 0x3f000000u;
  const uint32_t finite = select(a >= 0x477ff000u, 0x7c00u, select(a >= 0x38800000u, normal, small));  // 65520+: inf
  const uint32_t mag = select(a > 0x7f800000u, nan, finite);
  return static_cast<uint16_t>(sign | mag);
}

// bf16ToFloat(floatToBf16(v)) without leaving 32-bit lanes: the rounding of floatToBf16, low half cleared.
inline float roundToBf16Precision(float v) {
  const uint32_t u = std::bit_cast<uint32_t>(v);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  const uint32_t quietNan = (u | 0x00400000u) & 0xffff0000u;
  return std::bit_cast<float>((u & 0x7fffffffu) > 0x7f800000u ? quietNan : rounded);  // integers only: vectorizes
}

// fp16ToFloat(floatToFp16(y)) for |y| < 2^15, in fp32 arithmetic: with e the exponent of y (at least -14, the
// fp16 subnormal exponent), M = 1.5 * 2^(e + 13) has an fp32 ulp of 2^(e - 10), the fp16 ulp at y, so
// fl(y + M) rounds y to fp16 precision (ties to even: M's mantissa is even), and subtracting M is exact.
inline float roundToFp16Precision(float y) {
  const uint32_t e = std::bit_cast<uint32_t>(y) & 0x7f800000u;
  const uint32_t m = (e > 0x38800000u ? e : 0x38800000u) + (13u << 23) + 0x00400000u;  // 0x38800000 = 2^-14
  const float big = std::bit_cast<float>(m);
  return (y + big) - big;
}

}  // namespace moedist::kernels::cpu
