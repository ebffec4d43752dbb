// moedist: the argument vocabulary of the MoE distribute operators: which operator, the rank attributes CANN passes
// explicitly, the attributes, the input and output tensors of each call, and the output lengths a call needs.
// Field names and meanings are those of the CANN documents (see docs/operators/); the entry points are in
// moedist/ops.h. Attributes marked (*) must be equal on all ranks.
#pragma once

#include <cstdint>
#include <string>

#include "moedist/tensor.h"

namespace moedist {

// The six aclnn operators. DispatchV2, CombineAddRmsNorm and CombineV2 are the earlier versions of DispatchV3,
// CombineAddRmsNormV2 and CombineV3, without elasticInfo and special experts; CombineV3 / CombineV2 return the
// weighted sum without residual and RmsNorm (xOut (Bs, H) in x's dtype).
enum class Operator : uint8_t {
  kDispatchV3,           // aclnnMoeDistributeDispatchV3
  kDispatchV2,           // aclnnMoeDistributeDispatchV2
  kCombineAddRmsNormV2,  // aclnnMoeDistributeCombineAddRmsNormV2
  kCombineAddRmsNorm,    // aclnnMoeDistributeCombineAddRmsNorm
  kCombineV3,            // aclnnMoeDistributeCombineV3
  kCombineV2,            // aclnnMoeDistributeCombineV2
};
const char* toString(Operator op);  // "DispatchV3", "CombineAddRmsNormV2", ...
bool isDispatch(Operator op);

// What CANN passes as epWorldSize, epRankId, tpWorldSize and tpRankId. The entry points that take communicators
// only read these from them; the explicit forms check that they match.
struct RankAttrs {
  int64_t epWorldSize = 0;
  int64_t epRankId = 0;
  int64_t tpWorldSize = 0;  // 0 or 1: no TP; 2: the TP pair
  int64_t tpRankId = 0;
};

// Attributes shared by dispatch and combine; pass the same values to both.
struct MoeAttrs {
  int64_t moeExpertNum = 0;         // (*) M, MoE experts over all MoE ranks; M % (W - sharedExpertRankNum) == 0
  int64_t expertShardType = 0;      // (*) only 0: shared-expert ranks come first
  int64_t sharedExpertNum = 1;      // (*) S, 0..4; CANN's default 1 means 0 when sharedExpertRankNum is 0
  int64_t sharedExpertRankNum = 0;  // (*) ranks [0, sharedExpertRankNum) host shared experts
  int64_t globalBs = 0;             // (*) 0 (all ranks have the same Bs) or maxBs * W
  int64_t zeroExpertNum = 0;        // (*) special experts, ids [M, M+Z), [M+Z, M+Z+C), [M+Z+C, M+Z+C+Q)
  int64_t copyExpertNum = 0;        // (*)
  int64_t constExpertNum = 0;       // (*)
  std::string commAlg;              // (*) "", "fullmesh_v1" or "fullmesh_v2"
};

struct DispatchArgs : MoeAttrs {
  // Inputs.
  TensorView x;                     // (Bs, H) bf16 or fp16
  TensorView expertIds;             // (Bs, K) int32
  TensorView scales;                // optional (S + M, H) fp32 smooth scales; quantMode 2 only
  TensorView xActiveMask;           // optional (Bs,) or (Bs, K) bool
  TensorView expertScales;          // optional (Bs, K) fp32; accepted and ignored, as on Atlas A3
  TensorView elasticInfo;           // optional (4 + 2W,) int32 scale-in description
  int64_t quantMode = 0;            // (*) 0 none, 2 dynamic per-row int8
  int64_t expertTokenNumsType = 1;  // 0 cumulative, 1 per expert counts
  // Outputs.
  TensorView expandX;               // (max(tp,1)*A, H) x dtype, or int8 with quantMode 2
  TensorView dynamicScales;         // (max(tp,1)*A,) fp32; written with quantMode 2
  TensorView assistInfoForCombine;  // (A*128,) int32: (source rank, token, slot) per received row
  TensorView expertTokenNums;       // (localExpertNum,) int64
  TensorView epRecvCounts;          // (W*localExpertNum*(tp==2?2:1),) int32 inclusive prefix sums
  TensorView tpRecvCounts;          // (tp,) int32
  TensorView expandScales;          // (A,) fp32; never written (as on Atlas A3)
};

struct CombineArgs : MoeAttrs {
  // Inputs.
  TensorView expandX;               // (max(tp,1)*A, H) bf16: expert outputs, rows aligned with dispatch's expandX
  TensorView expertIds;             // (Bs, K) int32, the same as given to dispatch
  TensorView assistInfoForCombine;  // dispatch's assistInfoForCombine
  TensorView epSendCounts;          // dispatch's epRecvCounts
  TensorView expertScales;          // (Bs, K) fp32 router weights
  TensorView residualX;             // (Bs, 1, H) bf16
  TensorView gamma;                 // (H,) bf16
  TensorView tpSendCounts;          // (tp,) int32: dispatch's tpRecvCounts
  TensorView xActiveMask;           // optional (Bs,) or (Bs, K) bool, the same as given to dispatch
  TensorView activationScale;       // reserved: must be absent
  TensorView weightScale;           // reserved: must be absent
  TensorView groupList;             // reserved: must be absent
  TensorView expandScales;          // reserved: ignored
  TensorView sharedExpertX;         // optional (Bs, H) or (d0, d1, H) with d0*d1 == Bs, bf16
  TensorView elasticInfo;           // optional (4 + 2W,) int32, the same as given to dispatch
  TensorView oriX;                  // (Bs, H) bf16, required with copy or const experts
  TensorView constExpertAlpha1;     // (Q,) bf16, required with const experts
  TensorView constExpertAlpha2;     // (Q,) bf16
  TensorView constExpertV;          // (Q, H) bf16
  int64_t outDtype = 0;             // reserved
  int64_t commQuantMode = 0;        // (*) 0, or 2: int8 transport of the returned rows (no TP)
  int64_t groupListType = 0;        // reserved
  float normEps = 1e-6f;
  // Outputs.
  TensorView yOut;     // (Bs, 1, H) bf16 RmsNorm output
  TensorView rstdOut;  // (Bs, 1, 1) fp32
  TensorView xOut;     // (Bs, 1, H) bf16 combine output + residual
};

// What the output lengths of a call depend on besides the attributes (docs/operators/).
struct ShapeQuery {
  int64_t Bs = 0;        // local tokens
  int64_t H = 0;         // hidden size
  int64_t K = 0;         // top-k
  bool elastic = false;  // elasticInfo is given (its contents do not matter)
};

// The length of every output of dispatch (and of the combine inputs that are dispatch outputs) on one rank.
struct OutputShapes {
  int64_t A = 0;                     // output row capacity of the rank
  int64_t localExpertNum = 0;        // 1 on a shared-expert rank, else (and always with elasticInfo) L
  int64_t expandXRows = 0;           // max(tp,1)*A: expandX is (expandXRows, H), dynamicScales (expandXRows,)
  int64_t assistInfoForCombine = 0;  // A*128
  int64_t expertTokenNums = 0;       // localExpertNum
  int64_t epRecvCounts = 0;          // W*localExpertNum*(tp==2 ? 2 : 1) (with elasticInfo: max(W, W*L)*...)
  int64_t tpRecvCounts = 0;          // tpWorldSize
  int64_t expandScales = 0;          // A
  int64_t H = 0;                     // combine: yOut, xOut (Bs, 1, H) ((Bs, H): CombineV3/V2), rstdOut (Bs, 1, 1)
  int64_t Bs = 0;                    // local tokens, as queried
  // The CANN window (HCCL_BUFFSIZE) the operators require of every communicator for these shapes, in bytes:
  // 2*(maxBs*W*L*Align512(Align32(2H)+44) + maxBs*(K+S)*Align512(2H)) (commAlg "fullmesh_v2": ceil(y/480)*512 for
  // Align512(y)). Set HCCL_BUFFSIZE to at least ceil(windowBytes / 2^20) (MB).
  int64_t windowBytes = 0;
};

}  // namespace moedist
