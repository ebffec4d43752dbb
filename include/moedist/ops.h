// moedist: the MoE distribute operators of CANN's aclnn API as C++ functions.
//
//   dispatch()           = aclnnMoeDistributeDispatchV3
//   combineAddRmsNorm()  = aclnnMoeDistributeCombineAddRmsNormV2
//
// Every rank of the expert-parallel (EP) communicator calls the operator with its own handle; with tensor
// parallelism (tpWorldSize 2) each rank also passes its TP pair communicator. Field names and meanings are those
// of the CANN document (see docs/ and SPEC.md); the values the CANN API passes as epWorldSize, epRankId,
// tpWorldSize and tpRankId come from the communicators here. Attributes marked (*) must be equal on all ranks.
#pragma once

#include <cstdint>
#include <string>

#include "moedist/communicator.h"
#include "moedist/status.h"
#include "moedist/tensor.h"

namespace moedist {

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

// tp is null (tpWorldSize 0) or this rank's TP communicator (size 1, or 2 for the TP pair).
Status dispatch(const Communicator& ep, const Communicator* tp, const DispatchArgs& args);
Status combineAddRmsNorm(const Communicator& ep, const Communicator* tp, const CombineArgs& args);

}  // namespace moedist
