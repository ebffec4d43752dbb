#include "harness/cann_calls.h"

#include <memory>
#include <vector>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"

namespace moedist::testing {

namespace {

aclDataType aclTypeOf(DType t) {
  switch (t) {
    case DType::kBFloat16:
      return ACL_BF16;
    case DType::kFloat16:
      return ACL_FLOAT16;
    case DType::kFloat32:
      return ACL_FLOAT;
    case DType::kInt8:
      return ACL_INT8;
    case DType::kInt32:
      return ACL_INT32;
    case DType::kInt64:
      return ACL_INT64;
    case DType::kBool:
      return ACL_BOOL;
  }
  return ACL_DT_UNDEFINED;
}

// The aclTensors of one call; destroyed with it.
class Tensors {
 public:
  ~Tensors() {
    for (aclTensor* t : owned_) aclDestroyTensor(t);
  }
  // nullptr for an absent view. The storage is described as one dimension holding every element the view reaches.
  aclTensor* make(const TensorView& v) {
    if (!v.defined()) return nullptr;
    std::vector<int64_t> dims(v.shape().begin(), v.shape().end());
    std::vector<int64_t> strides(v.strides().begin(), v.strides().end());
    int64_t extent = 1;
    for (int d = 0; d < v.ndim(); ++d) extent += (v.dim(d) - 1) * v.stride(d);
    if (v.numel() == 0) extent = 0;
    const int64_t storage[1] = {extent};
    aclTensor* t = aclCreateTensor(dims.data(), dims.size(), aclTypeOf(v.dtype()), strides.data(), 0, ACL_FORMAT_ND,
                                   storage, 1, v.data());
    owned_.push_back(t);
    return t;
  }

 private:
  std::vector<aclTensor*> owned_;
};

// Phase 2 and the stream: workspace, execute, synchronize.
Status execute(const CannRank& rank, uint64_t workspaceSize, aclOpExecutor* executor,
               aclnnStatus (*run)(void*, uint64_t, aclOpExecutor*, aclrtStream), const char* name) {
  void* workspace = nullptr;
  if (workspaceSize > 0) {
    if (Status s = cannStatus(aclrtMalloc(&workspace, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST), "aclrtMalloc");
        !s.ok())
      return s;
  }
  Status s = cannStatus(run(workspace, workspaceSize, executor, rank.stream), name);
  if (s.ok()) s = cannStatus(aclrtSynchronizeStream(rank.stream), "aclrtSynchronizeStream");
  if (workspace != nullptr) aclrtFree(workspace);
  return s;
}

}  // namespace

Status cannStatus(int code, const char* what) {
  if (code == 0) return okStatus();
  const char* msg = aclGetRecentErrMsg();
  const std::string text = std::string(what) + " returned " + std::to_string(code) + ": " + (msg ? msg : "");
  switch (code) {
    case ACLNN_ERR_PARAM_NULLPTR:
      return Status(StatusCode::kNullArgument, text);
    case ACLNN_ERR_PARAM_INVALID:
      return Status(StatusCode::kInvalidArgument, text);
    case ACLNN_ERR_INNER_TILING_ERROR:
      return Status(StatusCode::kInvalidValue, text);
    case ACLNN_ERR_RUNTIME_ERROR:
      return Status(StatusCode::kTimeout, text);
    default:
      return Status(StatusCode::kInternal, text);
  }
}

Status cannDispatch(const CannRank& rank, const DispatchArgs& a, Ops ops) {
  Tensors t;
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  const char* alg = a.commAlg.empty() ? nullptr : a.commAlg.c_str();
  if (dispatchV2(ops)) {
    const aclnnStatus s = aclnnMoeDistributeDispatchV2GetWorkspaceSize(
        t.make(a.x), t.make(a.expertIds), t.make(a.scales), t.make(a.xActiveMask), t.make(a.expertScales),
        rank.groupEp.c_str(), rank.epWorldSize, rank.epRankId, a.moeExpertNum, rank.groupTp.c_str(), rank.tpWorldSize,
        rank.tpRankId, a.expertShardType, a.sharedExpertNum, a.sharedExpertRankNum, a.quantMode, a.globalBs,
        a.expertTokenNumsType, alg, t.make(a.expandX), t.make(a.dynamicScales), t.make(a.assistInfoForCombine),
        t.make(a.expertTokenNums), t.make(a.epRecvCounts), t.make(a.tpRecvCounts), t.make(a.expandScales), &ws, &ex);
    if (s != 0) return cannStatus(s, "aclnnMoeDistributeDispatchV2GetWorkspaceSize");
    return execute(rank, ws, ex, aclnnMoeDistributeDispatchV2, "aclnnMoeDistributeDispatchV2");
  }
  const aclnnStatus s = aclnnMoeDistributeDispatchV3GetWorkspaceSize(
      t.make(a.x), t.make(a.expertIds), t.make(a.scales), t.make(a.xActiveMask), t.make(a.expertScales),
      t.make(a.elasticInfo), rank.groupEp.c_str(), rank.epWorldSize, rank.epRankId, a.moeExpertNum,
      rank.groupTp.c_str(), rank.tpWorldSize, rank.tpRankId, a.expertShardType, a.sharedExpertNum,
      a.sharedExpertRankNum, a.quantMode, a.globalBs, a.expertTokenNumsType, alg, a.zeroExpertNum, a.copyExpertNum,
      a.constExpertNum, t.make(a.expandX), t.make(a.dynamicScales), t.make(a.assistInfoForCombine),
      t.make(a.expertTokenNums), t.make(a.epRecvCounts), t.make(a.tpRecvCounts), t.make(a.expandScales), &ws, &ex);
  if (s != 0) return cannStatus(s, "aclnnMoeDistributeDispatchV3GetWorkspaceSize");
  return execute(rank, ws, ex, aclnnMoeDistributeDispatchV3, "aclnnMoeDistributeDispatchV3");
}

Status cannCombine(const CannRank& rank, const CombineArgs& a, Ops ops) {
  Tensors t;
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  const char* alg = a.commAlg.empty() ? nullptr : a.commAlg.c_str();
  const char* ep = rank.groupEp.c_str();
  const char* tp = rank.groupTp.c_str();
  aclnnStatus s = 0;
  switch (ops) {
    case Ops::kDispatchV3CombineAddRmsNormV2:
      s = aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
          t.make(a.expandX), t.make(a.expertIds), t.make(a.assistInfoForCombine), t.make(a.epSendCounts),
          t.make(a.expertScales), t.make(a.residualX), t.make(a.gamma), t.make(a.tpSendCounts), t.make(a.xActiveMask),
          t.make(a.activationScale), t.make(a.weightScale), t.make(a.groupList), t.make(a.expandScales),
          t.make(a.sharedExpertX), t.make(a.elasticInfo), t.make(a.oriX), t.make(a.constExpertAlpha1),
          t.make(a.constExpertAlpha2), t.make(a.constExpertV), ep, rank.epWorldSize, rank.epRankId, a.moeExpertNum, tp,
          rank.tpWorldSize, rank.tpRankId, a.expertShardType, a.sharedExpertNum, a.sharedExpertRankNum, a.globalBs,
          a.outDtype, a.commQuantMode, a.groupListType, alg, a.normEps, a.zeroExpertNum, a.copyExpertNum,
          a.constExpertNum, t.make(a.yOut), t.make(a.rstdOut), t.make(a.xOut), &ws, &ex);
      if (s != 0) return cannStatus(s, "aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize");
      return execute(rank, ws, ex, aclnnMoeDistributeCombineAddRmsNormV2, "aclnnMoeDistributeCombineAddRmsNormV2");
    case Ops::kDispatchV2CombineAddRmsNorm:
      s = aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize(
          t.make(a.expandX), t.make(a.expertIds), t.make(a.assistInfoForCombine), t.make(a.epSendCounts),
          t.make(a.expertScales), t.make(a.residualX), t.make(a.gamma), t.make(a.tpSendCounts), t.make(a.xActiveMask),
          t.make(a.activationScale), t.make(a.weightScale), t.make(a.groupList), t.make(a.expandScales),
          t.make(a.sharedExpertX), ep, rank.epWorldSize, rank.epRankId, a.moeExpertNum, tp, rank.tpWorldSize,
          rank.tpRankId, a.expertShardType, a.sharedExpertNum, a.sharedExpertRankNum, a.globalBs, a.outDtype,
          a.commQuantMode, a.groupListType, alg, a.normEps, t.make(a.yOut), t.make(a.rstdOut), t.make(a.xOut), &ws,
          &ex);
      if (s != 0) return cannStatus(s, "aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize");
      return execute(rank, ws, ex, aclnnMoeDistributeCombineAddRmsNorm, "aclnnMoeDistributeCombineAddRmsNorm");
    case Ops::kDispatchV3CombineV3:
      s = aclnnMoeDistributeCombineV3GetWorkspaceSize(
          t.make(a.expandX), t.make(a.expertIds), t.make(a.assistInfoForCombine), t.make(a.epSendCounts),
          t.make(a.expertScales), t.make(a.tpSendCounts), t.make(a.xActiveMask), t.make(a.activationScale),
          t.make(a.weightScale), t.make(a.groupList), t.make(a.expandScales), t.make(a.sharedExpertX),
          t.make(a.elasticInfo), t.make(a.oriX), t.make(a.constExpertAlpha1), t.make(a.constExpertAlpha2),
          t.make(a.constExpertV), ep, rank.epWorldSize, rank.epRankId, a.moeExpertNum, tp, rank.tpWorldSize,
          rank.tpRankId, a.expertShardType, a.sharedExpertNum, a.sharedExpertRankNum, a.globalBs, a.outDtype,
          a.commQuantMode, a.groupListType, alg, a.zeroExpertNum, a.copyExpertNum, a.constExpertNum, t.make(a.xOut),
          &ws, &ex);
      if (s != 0) return cannStatus(s, "aclnnMoeDistributeCombineV3GetWorkspaceSize");
      return execute(rank, ws, ex, aclnnMoeDistributeCombineV3, "aclnnMoeDistributeCombineV3");
    case Ops::kDispatchV2CombineV2:
      s = aclnnMoeDistributeCombineV2GetWorkspaceSize(
          t.make(a.expandX), t.make(a.expertIds), t.make(a.assistInfoForCombine), t.make(a.epSendCounts),
          t.make(a.expertScales), t.make(a.tpSendCounts), t.make(a.xActiveMask), t.make(a.activationScale),
          t.make(a.weightScale), t.make(a.groupList), t.make(a.expandScales), t.make(a.sharedExpertX), ep,
          rank.epWorldSize, rank.epRankId, a.moeExpertNum, tp, rank.tpWorldSize, rank.tpRankId, a.expertShardType,
          a.sharedExpertNum, a.sharedExpertRankNum, a.globalBs, a.outDtype, a.commQuantMode, a.groupListType, alg,
          t.make(a.xOut), &ws, &ex);
      if (s != 0) return cannStatus(s, "aclnnMoeDistributeCombineV2GetWorkspaceSize");
      return execute(rank, ws, ex, aclnnMoeDistributeCombineV2, "aclnnMoeDistributeCombineV2");
  }
  return Status(StatusCode::kInternal, "cannCombine: unknown operator pair");
}

}  // namespace moedist::testing
