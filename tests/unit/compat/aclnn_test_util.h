// Helpers of the aclnn entry-point tests: host tensors made with aclCreateTensor, and the valid baseline calls of
// aclnnMoeDistributeDispatchV3 and aclnnMoeDistributeCombineAddRmsNormV2 in the configuration of the CANN
// document's example (W = 8, Bs = 8, H = 7168, K = 3, moeExpertNum = 8, 7 zero / 8 copy / 10 const experts,
// tpWorldSize 1, globalBs 64, so A = 64).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"

namespace moedist::testing {

inline int64_t aclElementBytes(aclDataType t) {
  switch (t) {
    case ACL_BF16:
    case ACL_FLOAT16:
      return 2;
    case ACL_FLOAT:
    case ACL_INT32:
      return 4;
    case ACL_INT64:
    case ACL_DOUBLE:
      return 8;
    default:
      return 1;
  }
}

// Owns host buffers and the aclTensors over them; everything is destroyed with the pool.
class TensorPool {
 public:
  TensorPool() = default;
  TensorPool(const TensorPool&) = delete;
  TensorPool& operator=(const TensorPool&) = delete;
  ~TensorPool() {
    for (aclTensor* t : tensors_) aclDestroyTensor(t);
  }

  // A dense tensor of `shape` (zero-filled, 64-byte aligned storage).
  aclTensor* make(std::vector<int64_t> shape, aclDataType dtype, aclFormat format = ACL_FORMAT_ND) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return over(alloc(n * aclElementBytes(dtype)), shape, {}, dtype, format);
  }
  // A view with explicit element strides over fresh storage of `storageElems` elements.
  aclTensor* strided(std::vector<int64_t> shape, std::vector<int64_t> strides, int64_t storageElems,
                     aclDataType dtype) {
    return over(alloc(storageElems * aclElementBytes(dtype)), shape, strides, dtype, ACL_FORMAT_ND);
  }
  // A tensor that is created and destroyed at once: its pointer is stale.
  aclTensor* stale() {
    std::vector<int64_t> shape{1};
    aclTensor* t = aclCreateTensor(shape.data(), 1, ACL_INT32, nullptr, 0, ACL_FORMAT_ND, shape.data(), 1, alloc(4));
    aclDestroyTensor(t);
    return t;
  }

 private:
  void* alloc(int64_t bytes) {
    buffers_.emplace_back(static_cast<size_t>((bytes + 63) / 64 + 1));
    return buffers_.back().data();
  }
  aclTensor* over(void* data, std::vector<int64_t> shape, std::vector<int64_t> strides, aclDataType dtype,
                  aclFormat format) {
    aclTensor* t = aclCreateTensor(shape.data(), shape.size(), dtype, strides.empty() ? nullptr : strides.data(), 0,
                                   format, shape.data(), shape.size(), data);
    if (t != nullptr) tensors_.push_back(t);
    return t;
  }

  struct alignas(64) Line {
    unsigned char bytes[64];
  };
  std::vector<std::vector<Line>> buffers_;
  std::vector<aclTensor*> tensors_;
};

inline constexpr int64_t kW = 8, kBs = 8, kH = 7168, kK = 3, kM = 8, kZ = 7, kC = 8, kQ = 10, kA = 64;

// Every argument of aclnnMoeDistributeDispatchV3GetWorkspaceSize.
struct DispatchV3Args {
  const aclTensor* x = nullptr;
  const aclTensor* expertIds = nullptr;
  const aclTensor* scales = nullptr;
  const aclTensor* xActiveMask = nullptr;
  const aclTensor* expertScales = nullptr;
  const aclTensor* elasticInfo = nullptr;
  const char* groupEp = "moedist_test_ep";
  int64_t epWorldSize = kW;
  int64_t epRankId = 0;
  int64_t moeExpertNum = kM;
  const char* groupTp = "moedist_test_tp";
  int64_t tpWorldSize = 1;
  int64_t tpRankId = 0;
  int64_t expertShardType = 0;
  int64_t sharedExpertNum = 0;
  int64_t sharedExpertRankNum = 0;
  int64_t quantMode = 0;
  int64_t globalBs = kBs * kW;
  int64_t expertTokenNumsType = 1;
  const char* commAlg = nullptr;
  int64_t zeroExpertNum = kZ;
  int64_t copyExpertNum = kC;
  int64_t constExpertNum = kQ;
  aclTensor* expandX = nullptr;
  aclTensor* dynamicScales = nullptr;
  aclTensor* assistInfoForCombine = nullptr;
  aclTensor* expertTokenNums = nullptr;
  aclTensor* epRecvCounts = nullptr;
  aclTensor* tpRecvCounts = nullptr;
  aclTensor* expandScales = nullptr;

  aclnnStatus call(uint64_t* workspaceSize, aclOpExecutor** executor) const {
    return aclnnMoeDistributeDispatchV3GetWorkspaceSize(
        x, expertIds, scales, xActiveMask, expertScales, elasticInfo, groupEp, epWorldSize, epRankId, moeExpertNum,
        groupTp, tpWorldSize, tpRankId, expertShardType, sharedExpertNum, sharedExpertRankNum, quantMode, globalBs,
        expertTokenNumsType, commAlg, zeroExpertNum, copyExpertNum, constExpertNum, expandX, dynamicScales,
        assistInfoForCombine, expertTokenNums, epRecvCounts, tpRecvCounts, expandScales, workspaceSize, executor);
  }
};

inline DispatchV3Args dispatchBaseline(TensorPool& p) {
  DispatchV3Args a;
  a.x = p.make({kBs, kH}, ACL_BF16);
  a.expertIds = p.make({kBs, kK}, ACL_INT32);
  a.expertScales = p.make({kBs, kK}, ACL_FLOAT);
  a.expandX = p.make({kA, kH}, ACL_BF16);
  a.dynamicScales = p.make({kA}, ACL_FLOAT);
  a.assistInfoForCombine = p.make({kA * 128}, ACL_INT32);
  a.expertTokenNums = p.make({1}, ACL_INT64);
  a.epRecvCounts = p.make({kW}, ACL_INT32);
  a.tpRecvCounts = p.make({1}, ACL_INT32);
  a.expandScales = p.make({kA}, ACL_FLOAT);
  return a;
}

// Every argument of aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize.
struct CombineV2Args {
  const aclTensor* expandX = nullptr;
  const aclTensor* expertIds = nullptr;
  const aclTensor* assistInfoForCombine = nullptr;
  const aclTensor* epSendCounts = nullptr;
  const aclTensor* expertScales = nullptr;
  const aclTensor* residualX = nullptr;
  const aclTensor* gamma = nullptr;
  const aclTensor* tpSendCounts = nullptr;
  const aclTensor* xActiveMask = nullptr;
  const aclTensor* activationScale = nullptr;
  const aclTensor* weightScale = nullptr;
  const aclTensor* groupList = nullptr;
  const aclTensor* expandScales = nullptr;
  const aclTensor* sharedExpertX = nullptr;
  const aclTensor* elasticInfo = nullptr;
  const aclTensor* oriX = nullptr;
  const aclTensor* constExpertAlpha1 = nullptr;
  const aclTensor* constExpertAlpha2 = nullptr;
  const aclTensor* constExpertV = nullptr;
  const char* groupEp = "moedist_test_ep";
  int64_t epWorldSize = kW;
  int64_t epRankId = 0;
  int64_t moeExpertNum = kM;
  const char* groupTp = "moedist_test_tp";
  int64_t tpWorldSize = 1;
  int64_t tpRankId = 0;
  int64_t expertShardType = 0;
  int64_t sharedExpertNum = 0;
  int64_t sharedExpertRankNum = 0;
  int64_t globalBs = kBs * kW;
  int64_t outDtype = 0;
  int64_t commQuantMode = 0;
  int64_t groupListType = 1;
  const char* commAlg = nullptr;
  float normEps = 1e-6f;
  int64_t zeroExpertNum = kZ;
  int64_t copyExpertNum = kC;
  int64_t constExpertNum = kQ;
  aclTensor* yOut = nullptr;
  aclTensor* rstdOut = nullptr;
  aclTensor* xOut = nullptr;

  aclnnStatus call(uint64_t* workspaceSize, aclOpExecutor** executor) const {
    return aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
        expandX, expertIds, assistInfoForCombine, epSendCounts, expertScales, residualX, gamma, tpSendCounts,
        xActiveMask, activationScale, weightScale, groupList, expandScales, sharedExpertX, elasticInfo, oriX,
        constExpertAlpha1, constExpertAlpha2, constExpertV, groupEp, epWorldSize, epRankId, moeExpertNum, groupTp,
        tpWorldSize, tpRankId, expertShardType, sharedExpertNum, sharedExpertRankNum, globalBs, outDtype, commQuantMode,
        groupListType, commAlg, normEps, zeroExpertNum, copyExpertNum, constExpertNum, yOut, rstdOut, xOut,
        workspaceSize, executor);
  }
};

inline CombineV2Args combineBaseline(TensorPool& p) {
  CombineV2Args a;
  a.expandX = p.make({kA, kH}, ACL_BF16);
  a.expertIds = p.make({kBs, kK}, ACL_INT32);
  a.assistInfoForCombine = p.make({kA * 128}, ACL_INT32);
  a.epSendCounts = p.make({kW}, ACL_INT32);
  a.expertScales = p.make({kBs, kK}, ACL_FLOAT);
  a.residualX = p.make({kBs, 1, kH}, ACL_BF16);
  a.gamma = p.make({kH}, ACL_BF16);
  a.tpSendCounts = p.make({1}, ACL_INT32);
  a.sharedExpertX = p.make({kBs, 1, kH}, ACL_BF16);
  a.oriX = p.make({kBs, kH}, ACL_BF16);
  a.constExpertAlpha1 = p.make({kQ}, ACL_BF16);
  a.constExpertAlpha2 = p.make({kQ}, ACL_BF16);
  a.constExpertV = p.make({kQ, kH}, ACL_BF16);
  a.yOut = p.make({kBs, 1, kH}, ACL_BF16);
  a.rstdOut = p.make({kBs, 1, 1}, ACL_FLOAT);
  a.xOut = p.make({kBs, 1, kH}, ACL_BF16);
  return a;
}

// The message aclGetRecentErrMsg() returns now ("" when there is none).
inline std::string recentError() {
  const char* m = aclGetRecentErrMsg();
  return m == nullptr ? std::string() : std::string(m);
}

}  // namespace moedist::testing
