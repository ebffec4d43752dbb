// The vectorized CPU kernels ("cpu" table): the same arithmetic as kernels/ref, to the bit, only faster.
//
// Bit-exactness comes from doing, for every element, exactly the fp32 operations of the reference in the same
// order; vectorization only ever runs across the hidden dimension h, where elements are independent. Nothing is
// reassociated: a token's slots are still added one after another per element, and the RmsNorm ReduceSum is the
// same adjacent-pair tree, each tree level one vectorized loop. The code is plain loops that the compiler
// vectorizes. A combined token is processed in blocks of kBlock elements whose fp32 accumulator stays in L1 while
// the slot rows stream through it (up to four consecutive MoE slots per pass). Conversions are branch-free integer
// code so that they vectorize too: bf16 is util/numeric.h's own, fp16 is rewritten in cpu_numeric.h (compilers
// do not vectorize _Float16 casts) and tested against util/numeric.h. Rounding to an integer, and to fp16
// precision inside the comm quantization, uses "magic number" additions (fl(v + M) - M with M = 1.5 * 2^k),
// exact round-to-nearest-even in the ranges where they are used. Selects compare integers (float bit patterns):
// under the default -ftrapping-math, GCC does not vectorize a loop that selects on a float comparison.
//
// On x86-64 (GCC 12+) the bodies are compiled three times through target attributes: x86-64-v4 (AVX-512),
// x86-64-v3 (AVX2) and the baseline; the "cpu" table forwards to the best one the machine supports, and the
// tests run every one. -ffp-contract=off (project-wide) keeps the compiler from fusing multiplies and adds.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "kernels/cpu/cpu_numeric.h"
#include "kernels/cpu/cpu_variants.h"
#include "kernels/kernels.h"

// The x86 variants need GCC 12's target("arch=x86-64-vN") and __builtin_cpu_supports("x86-64-vN").
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define MOEDIST_CPU_X86_VARIANTS 1
#else
#define MOEDIST_CPU_X86_VARIANTS 0
#endif

#define MOEDIST_INLINE inline __attribute__((always_inline))

namespace moedist::kernels {
namespace {

using cpu::bf16ToFloat;
using cpu::floatToBf16;
using cpu::floatToFp16;
using cpu::fp16ToFloat;

// Elements per block of a combined token: a multiple of the 64-element ReduceSum chunk, small enough that the
// accumulator, the squares and the tree buffers stay in L1.
constexpr int64_t kBlock = 512;

template <Float16Kind kKind>
MOEDIST_INLINE float widen(uint16_t v) {
  if constexpr (kKind == Float16Kind::kBf16) {
    return bf16ToFloat(v);
  } else {
    return fp16ToFloat(v);
  }
}

template <Float16Kind kKind>
MOEDIST_INLINE uint16_t narrow(float v) {
  if constexpr (kKind == Float16Kind::kBf16) {
    return floatToBf16(v);
  } else {
    return floatToFp16(v);
  }
}

// The bit pattern of |v|, with NaN replaced by 0: the maxima of SPEC 2.5/3.7 ignore NaN elements. Non-negative
// floats order like their bit patterns, and a maximum does not depend on the order it is taken in.
MOEDIST_INLINE uint32_t absBitsOrZero(float v) {
  const uint32_t a = std::bit_cast<uint32_t>(v) & 0x7fffffffu;
  return a > 0x7f800000u ? 0u : a;
}

// v with NaN replaced by 0 and the magnitude limited to 128: after this, rounding (to fp16 or to an integer)
// and saturating to [-128, 127] give what they give on v itself, because 128 is an fp16 value and an integer.
MOEDIST_INLINE float limitTo128(float v) {
  const uint32_t u = std::bit_cast<uint32_t>(v);
  uint32_t a = u & 0x7fffffffu;
  a = a > 0x7f800000u ? 0u : (a < 0x43000000u ? a : 0x43000000u);  // 0x43000000 = 128.0f
  return std::bit_cast<float>(a | (u & 0x80000000u));
}

// NaN -> 0, round to nearest even, saturate to [-128, 127].
MOEDIST_INLINE int8_t toInt8(float v) {
  const float r = (limitTo128(v) + 12582912.0f) - 12582912.0f;  // 1.5 * 2^23: rounds to an integer, ties to even
  const int32_t i = static_cast<int32_t>(r);                    // in [-128, 128]
  return static_cast<int8_t>(i < 127 ? i : 127);
}

// ---------------------------------------------------------------------------------------------- quantizeRow

template <Float16Kind kKind, bool kSmooth>
MOEDIST_INLINE float quantValue(const uint16_t* in, const float* smooth, int64_t i) {
  float v = widen<kKind>(in[i]);
  if constexpr (kSmooth) v = v * smooth[i];
  return v;
}

template <Float16Kind kKind, bool kSmooth>
MOEDIST_INLINE void quantizeRowImpl(const uint16_t* __restrict in, const float* __restrict smooth, int64_t h,
                                    int8_t* __restrict out, float* scale) {
  // The maximum, kept per lane (the compiler does not vectorize it as a single reduction), then across lanes.
  constexpr int kLanes = 64;
  uint32_t lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= h; i += kLanes) {
    for (int j = 0; j < kLanes; ++j)
      lane[j] = std::max(lane[j], absBitsOrZero(quantValue<kKind, kSmooth>(in, smooth, i + j)));
  }
  for (; i < h; ++i) lane[0] = std::max(lane[0], absBitsOrZero(quantValue<kKind, kSmooth>(in, smooth, i)));
  uint32_t mBits = 0;
  for (int j = 0; j < kLanes; ++j) mBits = std::max(mBits, lane[j]);
  const float m = std::bit_cast<float>(mBits);

  const float d = 127.0f / m;
  for (int64_t k = 0; k < h; ++k) out[k] = toInt8(quantValue<kKind, kSmooth>(in, smooth, k) * d);
  *scale = 1.0f / d;
}

MOEDIST_INLINE void quantizeRowBody(const uint16_t* in, Float16Kind kind, const float* smooth, int64_t h, int8_t* out,
                                    float* scale) {
  if (kind == Float16Kind::kBf16) {
    if (smooth != nullptr) {
      quantizeRowImpl<Float16Kind::kBf16, true>(in, smooth, h, out, scale);
    } else {
      quantizeRowImpl<Float16Kind::kBf16, false>(in, smooth, h, out, scale);
    }
  } else {
    if (smooth != nullptr) {
      quantizeRowImpl<Float16Kind::kFp16, true>(in, smooth, h, out, scale);
    } else {
      quantizeRowImpl<Float16Kind::kFp16, false>(in, smooth, h, out, scale);
    }
  }
}

// ------------------------------------------------------------------------------------- comm quant / dequant

// Elements per comm-quant block: 16 groups of 8. A row's groups come in pairs (16 elements), so a partial last
// block, padded with zeros, yields exactly the row's remaining commQuantGroups.
constexpr int64_t kQuantBlock = 128;
constexpr int64_t kQuantBlockGroups = kQuantBlock / 8;

MOEDIST_INLINE void pairMax(const uint32_t* __restrict in, uint32_t* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = std::max(in[2 * i], in[2 * i + 1]);
}

MOEDIST_INLINE void commQuantBlock(const float* __restrict v, int8_t* __restrict q, uint16_t* __restrict scales,
                                   int64_t n, int64_t groups) {
  const float inv127 = 1.0f / 127.0f;
  uint32_t a[kQuantBlock];
  uint32_t m64[kQuantBlock / 2];
  uint32_t m32[kQuantBlock / 4];
  uint32_t m16[kQuantBlockGroups];
  for (int64_t i = 0; i < kQuantBlock; ++i) a[i] = absBitsOrZero(v[i]);
  pairMax(a, m64, kQuantBlock / 2);
  pairMax(m64, m32, kQuantBlock / 4);
  pairMax(m32, m16, kQuantBlockGroups);
  float sc[kQuantBlock];
  for (int64_t g = 0; g < kQuantBlockGroups; ++g) {
    const float s = std::bit_cast<float>(m16[g]) * inv127;
    for (int j = 0; j < 8; ++j) sc[g * 8 + j] = s;
  }
  for (int64_t g = 0; g < groups; ++g) scales[g] = floatToBf16(sc[g * 8]);
  int8_t qb[kQuantBlock];
  for (int64_t i = 0; i < kQuantBlock; ++i) {
    const float y = limitTo128(v[i] / sc[i]);      // group max 0: 0/0 = NaN -> 0
    qb[i] = toInt8(cpu::roundToFp16Precision(y));  // = fp16ToFloat(floatToFp16(y)) since |y| <= 128
  }
  std::memcpy(q, qb, static_cast<size_t>(n));
}

MOEDIST_INLINE void commQuantRowBody(const uint16_t* in, int64_t h, int8_t* q, uint16_t* groupScales) {
  const int64_t groups = commQuantGroups(h);
  for (int64_t b = 0; b < h; b += kQuantBlock) {
    const int64_t n = std::min(kQuantBlock, h - b);
    float v[kQuantBlock];
    for (int64_t i = 0; i < n; ++i) v[i] = bf16ToFloat(in[b + i]);
    for (int64_t i = n; i < kQuantBlock; ++i) v[i] = 0.0f;
    const int64_t g0 = b / 8;
    commQuantBlock(v, q + b, groupScales + g0, n, std::min(kQuantBlockGroups, groups - g0));
  }
}

MOEDIST_INLINE void commDequantRowBody(const int8_t* __restrict q, const uint16_t* __restrict groupScales, int64_t h,
                                       uint16_t* __restrict out) {
  const int64_t full = h / 8;  // complete groups; the elements after them form a partial group `full`
  for (int64_t g = 0; g < full; ++g) {
    const float s = bf16ToFloat(groupScales[g]);
    for (int j = 0; j < 8; ++j) out[g * 8 + j] = floatToBf16(static_cast<float>(q[g * 8 + j]) * s);
  }
  for (int64_t i = full * 8; i < h; ++i)
    out[i] = floatToBf16(static_cast<float>(q[i]) * bf16ToFloat(groupScales[full]));
}

// ------------------------------------------------------------------------------------------------- addRows

template <Float16Kind kKind>
MOEDIST_INLINE void addRowsImpl(const uint16_t* __restrict a, const uint16_t* __restrict b, int64_t h,
                                uint16_t* __restrict out) {
  for (int64_t i = 0; i < h; ++i) out[i] = narrow<kKind>(widen<kKind>(a[i]) + widen<kKind>(b[i]));
}

MOEDIST_INLINE void addRowsBody(const uint16_t* a, const uint16_t* b, Float16Kind kind, int64_t h, uint16_t* out) {
  if (kind == Float16Kind::kBf16) {
    addRowsImpl<Float16Kind::kBf16>(a, b, h, out);
  } else {
    addRowsImpl<Float16Kind::kFp16>(a, b, h, out);
  }
}

// -------------------------------------------------------------------------------------------- combineToken
//
// Pair layout. A block's elements are taken in pairs (2i, 2i + 1), each read as one little-endian 32-bit word
// w: the even element is its low half and the odd element its high half, so a bf16 pair widens to fp32 with
// w << 16 and w & 0xffff0000 and narrows back the same way, with no shuffles. The block's fp32 values live in
// two arrays, even[i] and odd[i]. Every operation is still per element; only where a value is stored changes.
// The ReduceSum gains too: its first tree level is even[i] + odd[i]. An odd n (the last block of an odd h)
// leaves one element alone, kept at even[n / 2].

static_assert(std::endian::native == std::endian::little, "the pair layout reads two 16-bit values as one word");

MOEDIST_INLINE uint32_t loadPair(const uint16_t* p, int64_t i) {
  uint32_t w;
  std::memcpy(&w, p + 2 * i, sizeof(w));
  return w;
}

MOEDIST_INLINE void storePair(uint16_t* p, int64_t i, uint32_t w) {
  std::memcpy(p + 2 * i, &w, sizeof(w));
}

template <Float16Kind kKind>
MOEDIST_INLINE float evenOf(uint32_t w) {
  if constexpr (kKind == Float16Kind::kBf16) {
    return std::bit_cast<float>(w << 16);
  } else {
    return fp16ToFloat(static_cast<uint16_t>(w & 0xffffu));
  }
}

template <Float16Kind kKind>
MOEDIST_INLINE float oddOf(uint32_t w) {
  if constexpr (kKind == Float16Kind::kBf16) {
    return std::bit_cast<float>(w & 0xffff0000u);
  } else {
    return fp16ToFloat(static_cast<uint16_t>(w >> 16));
  }
}

template <Float16Kind kKind>
MOEDIST_INLINE uint32_t narrowPair(float even, float odd) {
  if constexpr (kKind == Float16Kind::kBf16) {  // the rounded values' high halves, moved into place
    return (std::bit_cast<uint32_t>(cpu::roundToBf16Precision(even)) >> 16) |
           std::bit_cast<uint32_t>(cpu::roundToBf16Precision(odd));
  } else {
    return static_cast<uint32_t>(floatToFp16(even)) | (static_cast<uint32_t>(floatToFp16(odd)) << 16);
  }
}

// The slot kernels, for the 16-bit format kKind of the token's inputs (bf16, or fp16 in CombineV2/V3). Each
// adds one slot's term to the block's n values (e: even elements, o: odd elements).
// kN consecutive weighted rows (rows[k] + b, weights[k]) in one pass, kN = 1, 2 or 4: per element the same
// roundings in slot order as one row at a time, with the accumulator read and written once per pass, not per row.
template <Float16Kind kKind, int kN>
MOEDIST_INLINE void accumulateScaled(float* __restrict e, float* __restrict o, const uint16_t* const* rows,
                                     const float* weights, int64_t b, int64_t n) {
  const uint16_t* r[kN];
  float w[kN];
  for (int k = 0; k < kN; ++k) r[k] = rows[k] + b, w[k] = weights[k];
  const int64_t pairs = n / 2;
  for (int64_t i = 0; i < pairs; ++i) {
    float ve = e[i], vo = o[i];
    for (int k = 0; k < kN; ++k) {
      const uint32_t p = loadPair(r[k], i);
      ve = ve + evenOf<kKind>(p) * w[k];
      vo = vo + oddOf<kKind>(p) * w[k];
    }
    e[i] = ve;
    o[i] = vo;
  }
  if (n % 2) {
    float v = e[pairs];
    for (int k = 0; k < kN; ++k) v = v + widen<kKind>(r[k][n - 1]) * w[k];
    e[pairs] = v;
  }
}

template <Float16Kind kKind>
MOEDIST_INLINE void accumulate(float* __restrict e, float* __restrict o, const uint16_t* __restrict row, int64_t n) {
  const int64_t pairs = n / 2;
  for (int64_t i = 0; i < pairs; ++i) {
    const uint32_t p = loadPair(row, i);
    e[i] = e[i] + evenOf<kKind>(p);
    o[i] = o[i] + oddOf<kKind>(p);
  }
  if (n % 2) e[pairs] = e[pairs] + widen<kKind>(row[n - 1]);
}

template <Float16Kind kKind>
MOEDIST_INLINE void accumulateConst(float* __restrict e, float* __restrict o, const uint16_t* __restrict oriX,
                                    const uint16_t* __restrict v, float alpha1, float alpha2, float w, int64_t n) {
  const int64_t pairs = n / 2;
  for (int64_t i = 0; i < pairs; ++i) {
    const uint32_t px = loadPair(oriX, i), pv = loadPair(v, i);
    const float tmpE = evenOf<kKind>(px) * alpha1 + evenOf<kKind>(pv) * alpha2;
    const float tmpO = oddOf<kKind>(px) * alpha1 + oddOf<kKind>(pv) * alpha2;
    e[i] = e[i] + tmpE * w;
    o[i] = o[i] + tmpO * w;
  }
  if (n % 2) e[pairs] = e[pairs] + (widen<kKind>(oriX[n - 1]) * alpha1 + widen<kKind>(v[n - 1]) * alpha2) * w;
}

// e/o (zero on entry) += the weighted sum of SPEC 3.3 for elements [b, b + n) of the token, slot by slot.
template <Float16Kind kKind>
MOEDIST_INLINE void accumulateSlots(const CombineTokenArgs& a, int64_t b, int64_t n, float* __restrict e,
                                    float* __restrict o) {
  for (int k = 0; k < a.numSlots; ++k) {
    switch (a.kinds[k]) {
      case SlotKind::kSkip:
        break;
      case SlotKind::kMoe: {  // up to four consecutive MoE slots in one pass
        int run = 1;
        while (run < 4 && k + run < a.numSlots && a.kinds[k + run] == SlotKind::kMoe) ++run;
        if (run == 4) {
          accumulateScaled<kKind, 4>(e, o, a.rows + k, a.weights + k, b, n);
        } else if (run >= 2) {
          accumulateScaled<kKind, 2>(e, o, a.rows + k, a.weights + k, b, n);
          run = 2;
        } else {
          accumulateScaled<kKind, 1>(e, o, a.rows + k, a.weights + k, b, n);
        }
        k += run - 1;
        break;
      }
      case SlotKind::kCopy:
        accumulateScaled<kKind, 1>(e, o, &a.oriX, a.weights + k, b, n);
        break;
      case SlotKind::kConst: {
        const int64_t c = a.constIdx[k];
        accumulateConst<kKind>(e, o, a.oriX + b, a.constV + c * a.h + b, widen<kKind>(a.alpha1[c]),
                               widen<kKind>(a.alpha2[c]), a.weights[k], n);
        break;
      }
      case SlotKind::kShared:
        accumulate<kKind>(e, o, a.rows[k] + b, n);
        break;
    }
  }
  if (a.sharedExpertX != nullptr) accumulate<kKind>(e, o, a.sharedExpertX + b, n);
}

// The passes that consume the block's sums (storeRounded, addResidual) also clear them for the next block: that
// is cheaper than a separate memset, which compilers emit as a slow `rep stos` for this size.
template <Float16Kind kKind>
MOEDIST_INLINE void storeRounded(float* __restrict e, float* __restrict o, uint16_t* __restrict out, int64_t n) {
  const int64_t pairs = n / 2;
  for (int64_t i = 0; i < pairs; ++i) {
    storePair(out, i, narrowPair<kKind>(e[i], o[i]));
    e[i] = o[i] = 0.0f;
  }
  if (n % 2) {
    out[n - 1] = narrow<kKind>(e[pairs]);
    e[pairs] = 0.0f;
  }
}

// x = acc + residual: kept unrounded in xE/xO (scratch, for the second pass), rounded in xOut, and squared and
// scaled into sqE/sqO for the ReduceSum.
MOEDIST_INLINE void addResidual(float* __restrict e, float* __restrict o, const uint16_t* __restrict residual,
                                float invH, float* __restrict xE, float* __restrict xO, uint16_t* __restrict xOut,
                                float* __restrict sqE, float* __restrict sqO, int64_t n) {
  const int64_t pairs = n / 2;
  for (int64_t i = 0; i < pairs; ++i) {
    const uint32_t p = loadPair(residual, i);
    const float x0 = e[i] + evenOf<Float16Kind::kBf16>(p);
    const float x1 = o[i] + oddOf<Float16Kind::kBf16>(p);
    xE[i] = x0;
    xO[i] = x1;
    storePair(xOut, i, narrowPair<Float16Kind::kBf16>(x0, x1));
    sqE[i] = x0 * x0 * invH;
    sqO[i] = x1 * x1 * invH;
    e[i] = o[i] = 0.0f;
  }
  if (n % 2) {
    const float x0 = e[pairs] + bf16ToFloat(residual[n - 1]);
    xE[pairs] = x0;
    xOut[n - 1] = floatToBf16(x0);
    sqE[pairs] = x0 * x0 * invH;
    e[pairs] = 0.0f;
  }
}

MOEDIST_INLINE void normalize(const float* __restrict xE, const float* __restrict xO, float rstd,
                              const uint16_t* __restrict gamma, uint16_t* __restrict y, int64_t n) {
  const int64_t pairs = n / 2;
  for (int64_t i = 0; i < pairs; ++i) {
    const uint32_t g = loadPair(gamma, i);
    const float y0 = cpu::roundToBf16Precision(xE[i] * rstd) * evenOf<Float16Kind::kBf16>(g);
    const float y1 = cpu::roundToBf16Precision(xO[i] * rstd) * oddOf<Float16Kind::kBf16>(g);
    storePair(y, i, narrowPair<Float16Kind::kBf16>(y0, y1));
  }
  if (n % 2) y[n - 1] = floatToBf16(cpu::roundToBf16Precision(xE[pairs] * rstd) * bf16ToFloat(gamma[n - 1]));
}

template <int64_t kN>
MOEDIST_INLINE void pairSum(const float* __restrict in, float* __restrict out) {
  for (int64_t i = 0; i < kN; ++i) out[i] = in[2 * i] + in[2 * i + 1];
}

// The SPEC 3.4 ReduceSum of the block's squares (sqE/sqO, n values in pair layout, room for kBlock), added into
// the running sum ms. The block starts on a chunk boundary, so its chunks are the row's chunks. The tree always
// runs over the whole block (fixed trip counts vectorize without remainder loops): zeros past n fill the missing
// lanes of a partial last chunk, and the sums of chunks past the row's end are never used.
MOEDIST_INLINE void addChunkSums(float* __restrict sqE, float* __restrict sqO, int64_t n, bool firstBlock, float& ms) {
  for (int64_t i = (n + 1) / 2; i < kBlock / 2; ++i) sqE[i] = 0.0f;
  for (int64_t i = n / 2; i < kBlock / 2; ++i) sqO[i] = 0.0f;
  float l32[kBlock / 2], l16[kBlock / 4], l8[kBlock / 8], l4[kBlock / 16], l2[kBlock / 32], l1[kBlock / 64];
  for (int64_t i = 0; i < kBlock / 2; ++i) l32[i] = sqE[i] + sqO[i];  // level 1: element 2i + element 2i + 1
  pairSum<kBlock / 4>(l32, l16);
  pairSum<kBlock / 8>(l16, l8);
  pairSum<kBlock / 16>(l8, l4);
  pairSum<kBlock / 32>(l4, l2);
  pairSum<kBlock / 64>(l2, l1);
  const int64_t chunks = (n + 63) / 64;
  int64_t c = 0;
  if (firstBlock) ms = l1[c++];  // the sequential sum starts from the first chunk's sum
  for (; c < chunks; ++c) ms = ms + l1[c];
}

// Prefetches the next token's rows over the elements [b, b + n) of the block being reduced: by the time that token
// is combined its rows are in the caches, and the memory reads ran while this token's arithmetic did.
MOEDIST_INLINE void prefetchNext(const CombineTokenArgs& a, int64_t b, int64_t n) {
  constexpr int64_t kLine = 64 / sizeof(uint16_t);  // elements per cache line
  for (int k = 0; k < a.numSlots; ++k) {
    const uint16_t* row = a.nextRows[k];
    if (row == nullptr) continue;
    for (int64_t i = 0; i < n; i += kLine) __builtin_prefetch(row + b + i, 0, 1);
  }
}

MOEDIST_INLINE void combineTokenBody(const CombineTokenArgs& a) {
  const int64_t h = a.h;
  const bool fp16 = a.residual == nullptr && a.outKind == Float16Kind::kFp16;  // CombineV2/V3 on fp16 data
  // The scratch row holds x block by block in pair layout: a block's n values are its (n + 1) / 2 even elements,
  // then its n / 2 odd ones.
  auto evenX = [&](int64_t b) { return a.scratch + b; };
  auto oddX = [&](int64_t b, int64_t n) { return a.scratch + b + (n + 1) / 2; };
  float ms = 0.0f;
  float e[kBlock / 2] = {}, o[kBlock / 2] = {};  // the block's sums in pair layout, zero between blocks
  for (int64_t b = 0; b < h; b += kBlock) {
    const int64_t n = std::min(kBlock, h - b);
    if (a.nextRows != nullptr) prefetchNext(a, b, n);
    if (fp16) {
      accumulateSlots<Float16Kind::kFp16>(a, b, n, e, o);
      storeRounded<Float16Kind::kFp16>(e, o, a.xOut + b, n);
      continue;
    }
    accumulateSlots<Float16Kind::kBf16>(a, b, n, e, o);
    if (a.residual == nullptr) {  // CombineV2/V3: round the sum to bf16
      storeRounded<Float16Kind::kBf16>(e, o, a.xOut + b, n);
      continue;
    }
    float sqE[kBlock / 2], sqO[kBlock / 2];
    addResidual(e, o, a.residual + b, a.invH, evenX(b), oddX(b, n), a.xOut + b, sqE, sqO, n);
    addChunkSums(sqE, sqO, n, b == 0, ms);
  }
  if (a.residual == nullptr) return;

  const float den = __builtin_sqrtf(ms + a.eps);
  const float rstd = 1.0f / den;
  *a.rstdOut = rstd;
  for (int64_t b = 0; b < h; b += kBlock) {
    const int64_t n = std::min(kBlock, h - b);
    normalize(evenX(b), oddX(b, n), rstd, a.gamma + b, a.yOut + b, n);
  }
}

// ------------------------------------------------------------------------------------------------ streamRow

// x86-64: 16-byte non-temporal stores (SSE2, in every variant) between a head and a tail copied normally, so that
// the streamed part starts and ends on cache lines; then a store fence, so the bytes are in memory order before
// the caller signals that it is done. Elsewhere memcpy.
MOEDIST_INLINE void streamRowBody(void* dst, const void* src, size_t bytes) {
#if defined(__x86_64__)
  auto* d = static_cast<std::byte*>(dst);
  const auto* s = static_cast<const std::byte*>(src);
  const size_t head = std::min(bytes, (64 - reinterpret_cast<uintptr_t>(d) % 64) % 64);
  std::memcpy(d, s, head);
  const size_t body = (bytes - head) / 64 * 64;
  for (size_t i = head; i < head + body; i += 64) {
    for (size_t j = 0; j < 64; j += 16)
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + j),
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + j)));
  }
  std::memcpy(d + head + body, s + head + body, bytes - head - body);
  _mm_sfence();
#else
  std::memcpy(dst, src, bytes);
#endif
}

// ------------------------------------------------------------------------------------ ISA variants, dispatch

// One variant = the five bodies above compiled for one instruction set (ATTR is its target attribute).
#define MOEDIST_CPU_VARIANT(NS, ISA, ATTR)                                                                           \
  namespace NS {                                                                                                     \
  ATTR void quantizeRow(const uint16_t* in, Float16Kind kind, const float* smooth, int64_t h, int8_t* out,           \
                        float* scale) {                                                                              \
    quantizeRowBody(in, kind, smooth, h, out, scale);                                                                \
  }                                                                                                                  \
  ATTR void commQuantRow(const uint16_t* in, int64_t h, int8_t* q, uint16_t* groupScales) {                          \
    commQuantRowBody(in, h, q, groupScales);                                                                         \
  }                                                                                                                  \
  ATTR void commDequantRow(const int8_t* q, const uint16_t* groupScales, int64_t h, uint16_t* out) {                 \
    commDequantRowBody(q, groupScales, h, out);                                                                      \
  }                                                                                                                  \
  ATTR void addRows(const uint16_t* a, const uint16_t* b, Float16Kind kind, int64_t h, uint16_t* out) {              \
    addRowsBody(a, b, kind, h, out);                                                                                 \
  }                                                                                                                  \
  ATTR void combineToken(const CombineTokenArgs& args) {                                                             \
    combineTokenBody(args);                                                                                          \
  }                                                                                                                  \
  ATTR void streamRow(void* dst, const void* src, size_t bytes) {                                                    \
    streamRowBody(dst, src, bytes);                                                                                  \
  }                                                                                                                  \
  constexpr KernelTable kTable = {ISA, quantizeRow, commQuantRow, commDequantRow, addRows, combineToken, streamRow}; \
  }

MOEDIST_CPU_VARIANT(generic, "cpu-generic", )
#if MOEDIST_CPU_X86_VARIANTS
MOEDIST_CPU_VARIANT(avx2, "cpu-avx2", __attribute__((target("arch=x86-64-v3"))))
MOEDIST_CPU_VARIANT(avx512, "cpu-avx512", __attribute__((target("arch=x86-64-v4"))))
#endif
#undef MOEDIST_CPU_VARIANT

const KernelTable& best() {
  static const KernelTable* const table = [] {
    for (const cpu::Variant& v : cpu::variants()) {
      if (v.supported) return v.table;
    }
    return &generic::kTable;
  }();
  return *table;
}

// The "cpu" table forwards to the best variant this machine supports (chosen once).
void quantizeRow(const uint16_t* in, Float16Kind kind, const float* smooth, int64_t h, int8_t* out, float* scale) {
  best().quantizeRow(in, kind, smooth, h, out, scale);
}
void commQuantRow(const uint16_t* in, int64_t h, int8_t* q, uint16_t* groupScales) {
  best().commQuantRow(in, h, q, groupScales);
}
void commDequantRow(const int8_t* q, const uint16_t* groupScales, int64_t h, uint16_t* out) {
  best().commDequantRow(q, groupScales, h, out);
}
void addRows(const uint16_t* a, const uint16_t* b, Float16Kind kind, int64_t h, uint16_t* out) {
  best().addRows(a, b, kind, h, out);
}
void combineToken(const CombineTokenArgs& args) {
  best().combineToken(args);
}
void streamRow(void* dst, const void* src, size_t bytes) {
  best().streamRow(dst, src, bytes);
}

}  // namespace

std::vector<cpu::Variant> cpu::variants() {
  std::vector<Variant> v;
#if MOEDIST_CPU_X86_VARIANTS
  __builtin_cpu_init();  // in case this runs before the constructors that normally do it
  v.push_back({&avx512::kTable, __builtin_cpu_supports("x86-64-v4") != 0});
  v.push_back({&avx2::kTable, __builtin_cpu_supports("x86-64-v3") != 0});
#endif
  v.push_back({&generic::kTable, true});
  return v;
}

extern const KernelTable kCpuKernels;
const KernelTable kCpuKernels = {
    .name = "cpu",
    .quantizeRow = quantizeRow,
    .commQuantRow = commQuantRow,
    .commDequantRow = commDequantRow,
    .addRows = addRows,
    .combineToken = combineToken,
    .streamRow = streamRow,
};

}  // namespace moedist::kernels
