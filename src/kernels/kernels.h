// The kernel interface: the arithmetic of the operators, one row or one token at a time, on raw pointers.
// Kernels never move data between ranks and never see tensors; core calls them and spreads rows over threads.
//
// Every entry has a scalar reference implementation (kernels/ref, the oracle and the last fallback) and a
// vectorized one (kernels/cpu). Both follow SPEC.md's rounding recipes to the bit; tests compare them.
// Rows of 2-byte floats are passed as uint16_t bit patterns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace moedist::kernels {

enum class Float16Kind : uint8_t { kBf16, kFp16 };

// What one combine slot of a token contributes (SPEC 3.3), in slot order k = 0..K-1, then shared slots.
enum class SlotKind : uint8_t {
  kSkip,    // masked out, zero expert, or an id beyond every range: contributes nothing
  kMoe,     // acc += f(row) * weight
  kCopy,    // acc += f(oriX) * weight
  kConst,   // acc += (f(oriX) * f(alpha1[c]) + f(V[c]) * f(alpha2[c])) * weight
  kShared,  // acc += f(row)   (unweighted)
};

// Number of int8 comm-quant groups of 8 elements for a row of h elements (SPEC 3.7: ceil(h/16)*2).
constexpr int64_t commQuantGroups(int64_t h) {
  return (h + 15) / 16 * 2;
}

struct CombineTokenArgs {
  int64_t h = 0;
  int numSlots = 0;                         // K + S
  const SlotKind* kinds = nullptr;          // [numSlots]
  const uint16_t* const* rows = nullptr;    // [numSlots] returned rows (kMoe, kShared); others unused
  const float* weights = nullptr;           // [numSlots] router weights (read for kMoe, kCopy, kConst)
  const int32_t* constIdx = nullptr;        // [numSlots] const expert index c (read for kConst)
  const uint16_t* oriX = nullptr;           // [h] (kCopy, kConst)
  const uint16_t* alpha1 = nullptr;         // [Q] (kConst)
  const uint16_t* alpha2 = nullptr;         // [Q]
  const uint16_t* constV = nullptr;         // [Q][h]
  const uint16_t* sharedExpertX = nullptr;  // [h] or nullptr: added once, unweighted
  // With residual: x = acc + f(residual); xOut = bf16(x); RmsNorm -> yOut, rstdOut (SPEC 3.3-3.4).
  // Without residual (CombineV2/V3): xOut = round(acc) in outKind; yOut and rstdOut unused.
  const uint16_t* residual = nullptr;  // [h] bf16
  const uint16_t* gamma = nullptr;     // [h] bf16
  float eps = 1e-6f;
  float invH = 0.0f;  // fl(1.0f / h), computed once by the caller
  // The format of the 16-bit inputs above (rows .. sharedExpertX) and of xOut: bf16 when there is a residual
  // (outKind is then ignored); without one, outKind (the expandX dtype of CombineV2/V3: bf16 or fp16).
  Float16Kind outKind = Float16Kind::kBf16;
  float* scratch = nullptr;  // [h] fp32 work space
  uint16_t* xOut = nullptr;  // [h]
  uint16_t* yOut = nullptr;  // [h]
  float* rstdOut = nullptr;  // [1]
  // Optional: the rows of the token to be combined next ([numSlots], nullptr entries allowed), which the vectorized
  // kernels prefetch block by block while they reduce this token, so that reading peers' rows from memory overlaps
  // the arithmetic. Changes no result.
  const uint16_t* const* nextRows = nullptr;
};

struct KernelTable {
  const char* name;

  // SPEC 2.5 quantMode 2: one (token, destination expert) copy of a row -> int8 row and its scale.
  // smooth is the expert's smooth-scale row or nullptr.
  void (*quantizeRow)(const uint16_t* in, Float16Kind kind, const float* smooth, int64_t h, int8_t* out, float* scale);

  // SPEC 3.7 commQuantMode 2: bf16 row -> int8 row plus commQuantGroups(h) bf16 group scales, and back.
  void (*commQuantRow)(const uint16_t* in, int64_t h, int8_t* q, uint16_t* groupScales);
  void (*commDequantRow)(const int8_t* q, const uint16_t* groupScales, int64_t h, uint16_t* out);

  // SPEC 3.2 TP reduce: out = round(f(a) + f(b)) (bf16: one fp32 add then RNE; fp16: RNE of the exact sum).
  void (*addRows)(const uint16_t* a, const uint16_t* b, Float16Kind kind, int64_t h, uint16_t* out);

  // SPEC 3.3-3.4: weighted sum of one token's slots, shared terms, residual add and RmsNorm.
  void (*combineToken)(const CombineTokenArgs& args);

  // memcpy for rows the caller will not read back soon (dispatch's expandX when a call's rows outgrow the caches):
  // the vectorized x86 kernels store around the caches (non-temporal stores, fenced before returning), so each
  // byte costs one write to memory instead of a read for ownership and a write. The same bytes as memcpy.
  void (*streamRow)(void* dst, const void* src, size_t bytes);
};

// The registered tables: "ref" (scalar reference) and "cpu" (vectorized). Unknown names give nullptr.
const KernelTable* findKernels(std::string_view name);
// The table the operators use: MOEDIST_KERNELS if set to a known name, else "cpu".
const KernelTable& defaultKernels();

}  // namespace moedist::kernels
