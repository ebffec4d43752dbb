// The global-view reference model: all ranks' inputs in, all ranks' outputs out, with plain loops that follow
// SPEC.md literally. It is the oracle of the tests and of `moedist run`, and a product of its own (golden data for
// people who test their own kernels: docs/reference.md; the Python module moedist.reference). It is written apart
// from the operators: it uses no moedist code (only its own bf16/fp16 helpers in moedist_ref/numeric.h), and the
// library moedist_reference links nothing but the C++ standard library.
//
// Ranks are indexed [tpIdx][epRank]: with tp == 2 there are two EP groups of W ranks (tpIdx 0 and 1), and the
// TP pair of EP rank e is {[0][e], [1][e]}. Without TP there is one group (tpIdx 0).
//
// Outputs are returned as the prefix of each output tensor that the operator writes; everything after it must
// keep the caller's bytes. Combine returns, per token, whether its rows were written.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moedist::ref {

// Attributes, as CANN passes them (the same on all ranks).
struct Config {
  int W = 8;                // epWorldSize
  int M = 8;                // moeExpertNum
  int sharedExpertNum = 0;  // attribute value; the effective S follows SPEC section 1
  int sharedExpertRankNum = 0;
  int K = 3;
  int H = 7168;
  int Z = 0, C = 0, Q = 0;  // zero / copy / const experts
  int globalBs = 0;         // attribute: 0 or maxBs * W
  int tp = 0;               // tpWorldSize: 0, 1 or 2
  bool fp16 = false;        // x dtype: bf16 (false) or fp16
  int quantMode = 0;        // 0 or 2
  int expertTokenNumsType = 1;
  int commQuantMode = 0;  // 0 or 2
  float normEps = 1e-6f;
  std::vector<int32_t> elasticInfo;  // empty: not given; else 4 + 2W int32 (SPEC section 5)
  int maskDims = 0;                  // 0: no xActiveMask, 1: (Bs,), 2: (Bs, K)
  bool addRmsNorm = true;            // false: CombineV2/V3 (SPEC 9): xOut = round(acc), no residual and no RmsNorm
};

// The format of combine's 16-bit inputs (expandX, sharedExpertX, oriX, constExpertAlpha1/Alpha2/V) and of xOut:
// CombineV2/V3 work in x's dtype (bf16 or fp16, SPEC 9); the AddRmsNorm combines in bf16.
inline bool combineFp16(const Config& c) {
  return !c.addRmsNorm && c.fp16;
}

struct DispatchInput {  // one rank
  int Bs = 0;
  std::vector<uint16_t> x;         // Bs*H bf16 or fp16 bits
  std::vector<int32_t> expertIds;  // Bs*K
  std::vector<uint8_t> mask;       // Bs (maskDims 1) or Bs*K (maskDims 2), 0/1
  std::vector<float> scales;       // (S + M)*H smooth scales, or empty
};

struct DispatchOutput {                  // one rank: written prefixes
  bool participates = true;              // false for a rank removed by elastic scale-in (it does not call)
  int64_t numOwnRows = 0;                // Nown
  int64_t numRows = 0;                   // Nown + Npeer
  std::vector<uint8_t> expandX;          // numRows * H * (2 bytes, or 1 byte with quantMode 2)
  std::vector<float> dynamicScales;      // numRows (quantMode 2), else empty
  std::vector<int32_t> assistInfo;       // 3 * Nown
  std::vector<int64_t> expertTokenNums;  // written prefix
  std::vector<int32_t> epRecvCounts;     // written prefix
  std::vector<int32_t> tpRecvCounts;     // 2 entries with tp == 2, else empty
};

struct CombineInput {                 // one rank; expert-side tensors are what dispatch produced (after the expert FFN)
  std::vector<uint16_t> expandX;      // >= numRows * H rows (bf16, or fp16 when combineFp16)
  std::vector<int32_t> assistInfo;    // dispatch's assistInfo prefix (3 * Nown)
  std::vector<int32_t> epSendCounts;  // dispatch's epRecvCounts prefix
  std::vector<int32_t> tpSendCounts;  // dispatch's tpRecvCounts (2 entries with tp == 2)
  std::vector<float> expertScales;    // Bs*K
  std::vector<uint16_t> residualX;    // Bs*H bf16
  std::vector<uint16_t> gamma;        // H bf16
  std::vector<uint16_t> sharedExpertX;   // Bs*H bf16 (fp16 when combineFp16) or empty
  std::vector<uint16_t> oriX;            // Bs*H bf16 (fp16 when combineFp16) or empty
  std::vector<uint16_t> alpha1, alpha2;  // Q bf16 (fp16 when combineFp16) or empty
  std::vector<uint16_t> constV;          // Q*H bf16 (fp16 when combineFp16) or empty
};

struct CombineOutput {  // one rank
  bool participates = true;
  std::vector<uint8_t> written;  // Bs flags: token t's rows of yOut, rstdOut, xOut were written
  std::vector<uint16_t> yOut;    // Bs*H bf16 (rows of unwritten tokens are unspecified here)
  std::vector<float> rstdOut;    // Bs
  std::vector<uint16_t> xOut;    // Bs*H bf16 (fp16 when combineFp16)
};

using DispatchInputs = std::vector<std::vector<DispatchInput>>;  // [tpIdx][epRank]
using DispatchOutputs = std::vector<std::vector<DispatchOutput>>;
using CombineInputs = std::vector<std::vector<CombineInput>>;
using CombineOutputs = std::vector<std::vector<CombineOutput>>;

// Both return an error message (and nothing else) when the inputs are outside the contract (SPEC decision 2);
// std::nullopt means success.
std::optional<std::string> dispatch(const Config& cfg, const DispatchInputs& in, DispatchOutputs* out);
std::optional<std::string> combine(const Config& cfg, const DispatchInputs& dispatchIn, const CombineInputs& in,
                                   CombineOutputs* out);

}  // namespace moedist::ref
