// Numeric helpers of the reference model (moedist_ref): fp32 <-> bf16 / fp16 conversions and the row-level
// rounding recipes of SPEC.md (2.5 dynamic quantization, 3.4 ReduceSum / RmsNorm, 3.7 int8 comm quantization).
//
// Written apart from src/util on purpose: the oracle must not share code with what it checks. Everything is plain
// scalar fp32 arithmetic, one operation per statement, so that the result is the IEEE round-to-nearest-even value
// of each step (the reference library is compiled with -ffp-contract=off -fno-fast-math: no FMA, no reassociation;
// the targets that link moedist_reference get these two flags too, for the inline helpers below).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace moedist::ref {

inline uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// ---------------------------------------------------------------------------------------------------------------
// bf16

// Exact widening.
inline float bf16ToFloat(uint16_t b) {
  return bitsFloat(static_cast<uint32_t>(b) << 16);
}

// Round to nearest, ties to even. NaN stays NaN (quiet, sign kept); overflow rounds to infinity.
inline uint16_t floatToBf16(float f) {
  const uint32_t u = floatBits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  const uint32_t lsb = (u >> 16) & 1u;
  return static_cast<uint16_t>((u + 0x7FFFu + lsb) >> 16);
}

// ---------------------------------------------------------------------------------------------------------------
// rounding of an fp32 value to an integral fp32 value, ties to even (Ascend CAST_RINT)

inline float rintHalfEven(float x) {
  if (!(std::fabs(x) < 8388608.0f)) return x;  // already integral (|x| >= 2^23), or NaN
  const float lo = std::floor(x);
  const float diff = x - lo;  // exact for |x| < 2^23
  if (diff > 0.5f) return lo + 1.0f;
  if (diff < 0.5f) return lo;
  const float half = lo * 0.5f;
  return (std::floor(half) == half) ? lo : lo + 1.0f;
}

// ---------------------------------------------------------------------------------------------------------------
// fp16 (IEEE binary16)

inline float fp16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24, exact in fp32
    const float mag = static_cast<float>(mant) * 0x1p-24f;
    return (sign != 0) ? -mag : mag;
  }
  if (exp == 31) return bitsFloat(sign | 0x7F800000u | (mant << 13));  // inf / NaN (payload kept)
  return bitsFloat(sign | ((exp - 15u + 127u) << 23) | (mant << 13));
}

// Round to nearest, ties to even, with fp16 subnormals; overflow -> infinity; NaN stays NaN (quiet).
inline uint16_t floatToFp16(float f) {
  const uint32_t u = floatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7C00u);  // |f| >= 65536 (or inf)
  if (a < 0x38800000u) {
    // |f| < 2^-14: the fp16 result is a multiple of 2^-24; scaling by 2^24 is exact in fp32.
    const float units = rintHalfEven(bitsFloat(a) * 0x1p24f);  // 0 .. 1024 (1024 = smallest normal)
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(units));
  }
  const uint32_t exp16 = (a >> 23) - 127u + 15u;  // 1 .. 31
  const uint32_t mant = a & 0x7FFFFFu;
  uint32_t r = (exp16 << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (r & 1u) != 0)) r += 1;  // a carry into the exponent is correct
  return static_cast<uint16_t>(sign | r);                            // (0x7BFF + 1 = 0x7C00 = inf)
}

// ---------------------------------------------------------------------------------------------------------------
// The row-level rounding recipes. Defined in reference.cpp, which is compiled with -ffp-contract=off
// -fno-fast-math, so that they do not depend on the flags of the file that calls them.

// NaN -> 0 (SPEC 10.3 / 10.4), otherwise saturate to [-128, 127] and truncate (callers pass integral values).
int8_t nanSafeToInt8(float r);

// SPEC 2.5: dynamic per-row int8 quantization of dispatch (quantMode 2). v: the row after widening and optional
// smooth scaling. Writes q[0..n) and returns the stored scale fl(1/d), d = fl(127/max|v|).
// All-zero row (SPEC 10.3): d = +inf, v*d = 0*inf = NaN -> q = 0; scale = fl(1/inf) = 0.
float dynamicQuantRow(const float* v, int64_t n, int8_t* q);

// SPEC 3.7: int8 communication quantization of combine (commQuantMode 2) of one bf16 row, and its dequantization
// (the value the source side then uses). Groups of 8 consecutive elements, the row padded with zeros to a multiple
// of 16 elements; sc = fl(max * fl(1/127)), sb = bf16(sc), q = rint_even(fp16(fl(v/sc))) saturated to int8,
// out = bf16(fl(q * f(sb))). A group whose max is 0 (0/0 = NaN) gives q = 0, so 0 (SPEC 10.4).
void commQuantRoundTrip(const uint16_t* inBf16, int64_t n, uint16_t* outBf16);

// SPEC 3.4 / 10.2: the A3 "count" ReduceSum. 64-element chunks; each chunk summed by an adjacent-pair binary tree
// (missing lanes of a partial last chunk are 0); the chunk sums are added left to right.
float reduceSumAscend(const float* v, int64_t n);

// SPEC 3.4: RmsNorm of one unrounded fp32 row x of n elements. Writes y (bf16) and returns rstd.
float rmsNormRow(const float* x, const uint16_t* gammaBf16, int64_t n, float eps, uint16_t* yBf16);

}  // namespace moedist::ref
