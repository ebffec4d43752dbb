// Floating-point conversions with the roundings the operators need (round to nearest, ties to even).
//
// bf16: written by hand; the conversion must be RNE with NaN kept quiet, and no library in Debian offers that
// for a plain uint16_t payload. fp16: the compiler's _Float16 conversions (IEEE RNE, exact widening).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace moedist::util {

inline float bf16ToFloat(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

inline uint16_t floatToBf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN stays quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even; overflow carries into the exponent (-> inf)
  return static_cast<uint16_t>(u >> 16);
}

inline float fp16ToFloat(uint16_t h) {
  return static_cast<float>(std::bit_cast<_Float16>(h));
}

inline uint16_t floatToFp16(float f) {
  return std::bit_cast<uint16_t>(static_cast<_Float16>(f));
}

// Round to the nearest integer, ties to even (the current rounding mode is assumed to be the default).
inline float rintEven(float v) {
  return std::nearbyint(v);
}

}  // namespace moedist::util
