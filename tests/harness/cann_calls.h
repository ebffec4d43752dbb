// The operators through the CANN-compatible C API instead of the C++ API: the same arguments become aclTensors,
// the two-phase aclnn functions run the operator on the rank's stream, and the stream's synchronization gives the
// result. The harness uses it for RunOptions::api == Api::kCann, so every end-to-end case can run through both APIs.
#pragma once

#include <cstdint>
#include <string>

#include "moedist/ops.h"

typedef void* aclrtStream;

namespace moedist::testing {

struct CannRank {
  aclrtStream stream = nullptr;
  std::string groupEp, groupTp;  // HcclGetCommName of the rank's EP and TP communicators ("" without TP)
  int64_t epWorldSize = 0, epRankId = 0, tpWorldSize = 0, tpRankId = 0;
};

Status cannDispatch(const CannRank& rank, const DispatchArgs& args);
Status cannCombine(const CannRank& rank, const CombineArgs& args);

// The status of an aclnn / acl call: ok for 0, else the code mapped back and aclGetRecentErrMsg().
Status cannStatus(int code, const char* what);

}  // namespace moedist::testing
