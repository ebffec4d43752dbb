// The operators through the CANN-compatible C API instead of the C++ API: the same arguments become aclTensors,
// the two-phase aclnn functions run the operator on the rank's stream, and the stream's synchronization gives the
// result. The harness uses it for RunOptions::api == Api::kCann, so every end-to-end case can run through both APIs.
#pragma once

#include <cstdint>
#include <string>

#include "moedist/ops.h"

typedef void* aclrtStream;

namespace moedist::testing {

// Which operators run: the main pair, or the siblings of SPEC decision 5 (same algorithms, features switched off;
// CombineV2/V3 return xOut = bf16(acc) without residual and RmsNorm).
enum class Ops {
  kDispatchV3CombineAddRmsNormV2,
  kDispatchV2CombineAddRmsNorm,
  kDispatchV3CombineV3,
  kDispatchV2CombineV2,
};
inline bool dispatchV2(Ops o) {
  return o == Ops::kDispatchV2CombineAddRmsNorm || o == Ops::kDispatchV2CombineV2;
}
inline bool combineAddsRmsNorm(Ops o) {
  return o == Ops::kDispatchV3CombineAddRmsNormV2 || o == Ops::kDispatchV2CombineAddRmsNorm;
}
inline Operator dispatchOperator(Ops o) {
  return dispatchV2(o) ? Operator::kDispatchV2 : Operator::kDispatchV3;
}
inline Operator combineOperator(Ops o) {
  switch (o) {
    case Ops::kDispatchV3CombineAddRmsNormV2:
      return Operator::kCombineAddRmsNormV2;
    case Ops::kDispatchV2CombineAddRmsNorm:
      return Operator::kCombineAddRmsNorm;
    case Ops::kDispatchV3CombineV3:
      return Operator::kCombineV3;
    case Ops::kDispatchV2CombineV2:
      return Operator::kCombineV2;
  }
  return Operator::kCombineAddRmsNormV2;
}

struct CannRank {
  aclrtStream stream = nullptr;
  std::string groupEp, groupTp;  // HcclGetCommName of the rank's EP and TP communicators ("" without TP)
  int64_t epWorldSize = 0, epRankId = 0, tpWorldSize = 0, tpRankId = 0;
};

Status cannDispatch(const CannRank& rank, const DispatchArgs& args, Ops ops = Ops::kDispatchV3CombineAddRmsNormV2);
Status cannCombine(const CannRank& rank, const CombineArgs& args, Ops ops = Ops::kDispatchV3CombineAddRmsNormV2);

// The status of an aclnn / acl call: ok for 0, else the code mapped back and aclGetRecentErrMsg().
Status cannStatus(int code, const char* what);

}  // namespace moedist::testing
