// The scalar reference kernels: the oracle of the tests and the last fallback ("ref" table).
//
// Each function is a plain element-by-element transcription of SPEC.md (2.5 dispatch dynamic quantization,
// 3.2 TP add, 3.3 weighted combine, 3.4 RmsNorm, 3.7 int8 comm quantization). Every fp32 operation is written as
// one C++ operation on floats, in the order the SPEC lists them; the project compiles with -ffp-contract=off
// and -fno-fast-math, so each line is one IEEE round-to-nearest-even step (the SPEC's fl(.)). Conversions go
// through util/numeric.h. Speed is not a goal here; kernels/cpu must produce the same bits, only faster.
//
// Choices where SPEC section 10 leaves the behaviour open (the "most plausible reading"):
//  * a float -> int8 conversion of NaN gives 0 (10.3, 10.4); everything else saturates to [-128, 127];
//  * the maxima of 2.5 and 3.7 ignore NaN elements (they then quantize to 0 through the rule above);
//  * the ReduceSum of 3.4 pads a partial last 64-element chunk with zeros (10.2);
//  * a CombineV2/V3 token (no residual) reads its 16-bit inputs in outKind, the expandX dtype (kernels.h).
// NaN payloads are not part of the contract: when one operation meets two different NaNs, which one survives
// depends on the operand order the compiler chose (x86 keeps the first operand's), so ref and cpu agree on
// every bit except, possibly, the payload and sign of such NaNs.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/kernels.h"
#include "util/numeric.h"

namespace moedist::kernels {
namespace {

using util::bf16ToFloat;
using util::floatToBf16;
using util::floatToFp16;
using util::fp16ToFloat;

float widen(uint16_t v, Float16Kind kind) {
  return kind == Float16Kind::kBf16 ? bf16ToFloat(v) : fp16ToFloat(v);
}

uint16_t narrow(float v, Float16Kind kind) {
  return kind == Float16Kind::kBf16 ? floatToBf16(v) : floatToFp16(v);
}

// rint to nearest even, then to int8: NaN -> 0 (SPEC 10.3/10.4), out of range saturates.
int8_t toInt8(float v) {
  if (std::isnan(v)) return 0;
  float r = util::rintEven(v);
  if (r > 127.0f) r = 127.0f;
  if (r < -128.0f) r = -128.0f;
  return static_cast<int8_t>(r);
}

// max(m, |v|) that ignores a NaN v (m is never NaN).
float maxAbs(float m, float v) {
  float a = std::fabs(v);
  return a > m ? a : m;
}

void quantizeRow(const uint16_t* in, Float16Kind kind, const float* smooth, int64_t h, int8_t* out, float* scale) {
  auto value = [&](int64_t i) {
    float v = widen(in[i], kind);
    if (smooth != nullptr) v = v * smooth[i];
    return v;
  };
  float m = 0.0f;
  for (int64_t i = 0; i < h; ++i) m = maxAbs(m, value(i));
  const float d = 127.0f / m;  // m == 0: +inf, and every q below is NaN -> 0
  for (int64_t i = 0; i < h; ++i) out[i] = toInt8(value(i) * d);
  *scale = 1.0f / d;
}

void commQuantRow(const uint16_t* in, int64_t h, int8_t* q, uint16_t* groupScales) {
  const float inv127 = 1.0f / 127.0f;
  const int64_t groups = commQuantGroups(h);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t begin = g * 8;
    float m = 0.0f;  // padding elements (index >= h) are 0 and cannot raise the max
    for (int64_t i = begin; i < begin + 8 && i < h; ++i) m = maxAbs(m, bf16ToFloat(in[i]));
    const float sc = m * inv127;
    groupScales[g] = floatToBf16(sc);
    for (int64_t i = begin; i < begin + 8 && i < h; ++i) {
      const float y = bf16ToFloat(in[i]) / sc;     // group max 0: 0/0 = NaN -> 0
      q[i] = toInt8(fp16ToFloat(floatToFp16(y)));  // fp32 -> fp16 (RNE) -> int8 (RNE)
    }
  }
}

void commDequantRow(const int8_t* q, const uint16_t* groupScales, int64_t h, uint16_t* out) {
  for (int64_t i = 0; i < h; ++i) out[i] = floatToBf16(static_cast<float>(q[i]) * bf16ToFloat(groupScales[i / 8]));
}

void addRows(const uint16_t* a, const uint16_t* b, Float16Kind kind, int64_t h, uint16_t* out) {
  // fp16: the fp32 sum of two fp16 values is exact or within half an fp32 ulp, and 24 >= 2*11 + 2 makes the
  // second rounding to fp16 equal to a single rounding of the exact sum.
  for (int64_t i = 0; i < h; ++i) out[i] = narrow(widen(a[i], kind) + widen(b[i], kind), kind);
}

// SPEC 3.4 ReduceSum of one 64-element chunk (n <= 64 elements, missing lanes are 0): adjacent pairs, then
// adjacent pairs of those, ... down to one value.
float chunkTreeSum(const float* v, int64_t n) {
  float lane[64];
  for (int64_t j = 0; j < 64; ++j) lane[j] = j < n ? v[j] : 0.0f;
  for (int width = 32; width >= 1; width /= 2) {
    for (int j = 0; j < width; ++j) lane[j] = lane[2 * j] + lane[2 * j + 1];
  }
  return lane[0];
}

void combineToken(const CombineTokenArgs& a) {
  const int64_t h = a.h;
  // The 16-bit inputs are bf16 with a residual, else in outKind (CombineV2/V3 with an fp16 expandX).
  const Float16Kind kind = a.residual != nullptr ? Float16Kind::kBf16 : a.outKind;
  auto f = [kind](uint16_t v) { return widen(v, kind); };
  float* acc = a.scratch;
  for (int64_t i = 0; i < h; ++i) {
    float s = 0.0f;  // "0 + first term" is kept: it turns a -0 first term into +0
    for (int k = 0; k < a.numSlots; ++k) {
      switch (a.kinds[k]) {
        case SlotKind::kSkip:
          break;
        case SlotKind::kMoe:
          s = s + f(a.rows[k][i]) * a.weights[k];
          break;
        case SlotKind::kCopy:
          s = s + f(a.oriX[i]) * a.weights[k];
          break;
        case SlotKind::kConst: {
          const int64_t c = a.constIdx[k];
          const float tmp = f(a.oriX[i]) * f(a.alpha1[c]) + f(a.constV[c * h + i]) * f(a.alpha2[c]);
          s = s + tmp * a.weights[k];
          break;
        }
        case SlotKind::kShared:
          s = s + f(a.rows[k][i]);
          break;
      }
    }
    if (a.sharedExpertX != nullptr) s = s + f(a.sharedExpertX[i]);
    acc[i] = s;
  }

  if (a.residual == nullptr) {  // CombineV2/V3: round the sum to the output dtype
    for (int64_t i = 0; i < h; ++i) a.xOut[i] = narrow(acc[i], a.outKind);
    return;
  }

  float* x = acc;  // x replaces acc in place and stays unrounded for the norm
  for (int64_t i = 0; i < h; ++i) {
    x[i] = acc[i] + bf16ToFloat(a.residual[i]);
    a.xOut[i] = floatToBf16(x[i]);
  }
  float ms = 0.0f;
  for (int64_t begin = 0; begin < h; begin += 64) {
    float sq[64];
    const int64_t n = h - begin < 64 ? h - begin : 64;
    for (int64_t j = 0; j < n; ++j) sq[j] = x[begin + j] * x[begin + j] * a.invH;
    const float chunk = chunkTreeSum(sq, n);
    ms = begin == 0 ? chunk : ms + chunk;  // sequential, starting from the first chunk's sum
  }
  const float den = std::sqrt(ms + a.eps);
  const float rstd = 1.0f / den;
  *a.rstdOut = rstd;
  for (int64_t i = 0; i < h; ++i) {
    const float norm = bf16ToFloat(floatToBf16(x[i] * rstd));  // rounded to bf16 before gamma (double rounding)
    a.yOut[i] = floatToBf16(norm * bf16ToFloat(a.gamma[i]));
  }
}

void streamRow(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}

}  // namespace

extern const KernelTable kRefKernels;
const KernelTable kRefKernels = {
    .name = "ref",
    .quantizeRow = quantizeRow,
    .commQuantRow = commQuantRow,
    .commDequantRow = commDequantRow,
    .addRows = addRows,
    .combineToken = combineToken,
    .streamRow = streamRow,
};

}  // namespace moedist::kernels
