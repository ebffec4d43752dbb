// aclnnMoeDistributeDispatchV3: CANN's two-phase MoE dispatch with elastic scale-in and special experts
// (moedist implementation; SPEC section 2, checks of SPEC 6.1). See docs/operators/dispatch.md.
#ifndef ACLNNOP_ACLNN_MOE_DISTRIBUTE_DISPATCH_V3_H_
#define ACLNNOP_ACLNN_MOE_DISTRIBUTE_DISPATCH_V3_H_

#include <stdint.h>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

// Phase 1: checks every argument (SPEC 6.1 order and codes) and returns the workspace bytes phase 2 needs and a
// single-use executor. Optional tensors may be nullptr; commAlg nullptr means "".
ACLNN_API aclnnStatus aclnnMoeDistributeDispatchV3GetWorkspaceSize(
    const aclTensor* x, const aclTensor* expertIds, const aclTensor* scalesOptional,
    const aclTensor* xActiveMaskOptional, const aclTensor* expertScalesOptional, const aclTensor* elasticInfoOptional,
    const char* groupEp, int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char* groupTp,
    int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum,
    int64_t sharedExpertRankNum, int64_t quantMode, int64_t globalBS, int64_t expertTokenNumsType, const char* commAlg,
    int64_t zeroExpertNum, int64_t copyExpertNum, int64_t constExpertNum, aclTensor* expandXOut,
    aclTensor* dynamicScalesOut, aclTensor* assistInfoForCombineOut, aclTensor* expertTokenNumsOut,
    aclTensor* epRecvCountsOut, aclTensor* tpRecvCountsOut, aclTensor* expandScalesOut, uint64_t* workspaceSize,
    aclOpExecutor** executor);

// Phase 2: enqueues the operator on `stream` and consumes the executor.
ACLNN_API aclnnStatus aclnnMoeDistributeDispatchV3(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                                   aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif  // ACLNNOP_ACLNN_MOE_DISTRIBUTE_DISPATCH_V3_H_
