// The per-rank body of the CANN example pipelines (basic_pipeline, tp2, mpi_pipeline): dispatch
// (aclnnMoeDistributeDispatchV3) -> expert FFN -> combine (aclnnMoeDistributeCombineAddRmsNormV2) on one rank, with
// the inputs of examples/cann/common.h, and the digest line of what the rank's outputs hold.
//
// The expert FFN is the identity: combine receives dispatch's expandX unchanged. With TP (tpWorldSize 2) both TP
// ranks would compute a partial result of the expert for every row in a real model, and combine sums the two
// partials (a reduce-scatter over the TP pair); here both partials of a row are the row itself, so the TP reduce
// doubles it. Special experts (zero / copy / const) are computed by combine from oriX and the const tensors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "acl_util.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "common.h"

namespace moedist_examples {

// One rank of a pipeline: where it sits in the EP and TP groups, and its communicators and streams.
struct PipelineRank {
  int32_t device;  // the device / physical rank id: selects the inputs and labels the digest line
  int32_t epRank;
  int32_t tpRank;   // 0 without TP
  HcclComm epComm;  // the EP group, c.W ranks
  HcclComm tpComm;  // the TP group, c.tp ranks (a communicator of size 1 without TP)
  aclrtStream dispatchStream;
  aclrtStream combineStream;
};

// Runs dispatch -> identity FFN -> combine + add + RMSNorm for one rank of configuration `c` (the calling thread is
// bound to the rank's device) and puts the rank's digest line in *line. Returns non-zero after printing the failed
// call. Each wait for the stream gives up after timeoutMs.
inline int runPipelineRank(const ExampleConfig& c, const PipelineRank& r, std::string* line,
                           int32_t timeoutMs = 10000) {
  char epName[128] = {0};
  char tpName[128] = {0};
  CHECK(HcclGetCommName(r.epComm, epName));
  CHECK(HcclGetCommName(r.tpComm, tpName));

  const int64_t Bs = c.Bs, H = c.H, K = c.K, A = c.A(), L = c.L(), tp = c.tp;
  const bool specials = c.Z + c.C + c.Q > 0;
  const RankInputs in = makeRankInputs(c, r.device, c.M);

  // Inputs.
  DeviceTensor x, expertIds, expertScales, residualX, gamma, oriX, alpha1, alpha2, constV;
  CHECK(x.create(in.x, {Bs, H}, ACL_BF16));
  CHECK(expertIds.create(in.expertIds, {Bs, K}, ACL_INT32));
  CHECK(expertScales.create(in.expertScales, {Bs, K}, ACL_FLOAT));
  CHECK(residualX.create(in.residualX, {Bs, 1, H}, ACL_BF16));
  CHECK(gamma.create(in.gamma, {H}, ACL_BF16));
  if (specials) CHECK(oriX.create(in.oriX, {Bs, H}, ACL_BF16));
  if (c.Q > 0) {
    CHECK(alpha1.create(in.alpha1, {c.Q}, ACL_BF16));
    CHECK(alpha2.create(in.alpha2, {c.Q}, ACL_BF16));
    CHECK(constV.create(in.constV, {c.Q, H}, ACL_BF16));
  }

  // Outputs of dispatch (tp * A rows of capacity: own rows, then the TP peer's) and of combine.
  DeviceTensor expandX, dynamicScales, assistInfo, expertTokenNums, epRecvCounts, tpRecvCounts, expandScales;
  CHECK(expandX.create(std::vector<uint16_t>(tp * A * H), {tp * A, H}, ACL_BF16));
  CHECK(dynamicScales.create(std::vector<float>(tp * A), {tp * A}, ACL_FLOAT));
  CHECK(assistInfo.create(std::vector<int32_t>(A * 128), {A * 128}, ACL_INT32));
  CHECK(expertTokenNums.create(std::vector<int64_t>(L), {L}, ACL_INT64));
  CHECK(epRecvCounts.create(std::vector<int32_t>(tp * c.W * L), {tp * c.W * L}, ACL_INT32));
  CHECK(tpRecvCounts.create(std::vector<int32_t>(tp), {tp}, ACL_INT32));
  CHECK(expandScales.create(std::vector<float>(A), {A}, ACL_FLOAT));
  DeviceTensor yOut, rstdOut, xOut;
  CHECK(yOut.create(std::vector<uint16_t>(Bs * H), {Bs, 1, H}, ACL_BF16));
  CHECK(rstdOut.create(std::vector<float>(Bs), {Bs, 1, 1}, ACL_FLOAT));
  CHECK(xOut.create(std::vector<uint16_t>(Bs * H), {Bs, 1, H}, ACL_BF16));

  // Dispatch: phase 1 checks the arguments and sizes the workspace, phase 2 enqueues the operator on the stream.
  uint64_t workspaceSize = 0;
  aclOpExecutor* executor = nullptr;
  CHECK(aclnnMoeDistributeDispatchV3GetWorkspaceSize(
      x.get(), expertIds.get(), nullptr, nullptr, expertScales.get(), nullptr, epName, c.W, r.epRank, c.M, tpName, tp,
      r.tpRank, /*expertShardType=*/0, /*sharedExpertNum=*/0, /*sharedExpertRankNum=*/0, /*quantMode=*/0, c.globalBs(),
      /*expertTokenNumsType=*/1, nullptr, c.Z, c.C, c.Q, expandX.get(), dynamicScales.get(), assistInfo.get(),
      expertTokenNums.get(), epRecvCounts.get(), tpRecvCounts.get(), expandScales.get(), &workspaceSize, &executor));
  void* workspace = nullptr;
  if (workspaceSize > 0) CHECK(aclrtMalloc(&workspace, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST));
  CHECK(aclnnMoeDistributeDispatchV3(workspace, workspaceSize, executor, r.dispatchStream));
  CHECK(aclrtSynchronizeStreamWithTimeout(r.dispatchStream, timeoutMs));
  if (workspace != nullptr) CHECK(aclrtFree(workspace));
  workspace = nullptr;

  // The expert FFN would run here on expandX (with TP, on both TP ranks: a partial result per row); this example
  // uses the identity, so combine gets expandX as is.

  // Combine + add + RMSNorm.
  workspaceSize = 0;
  executor = nullptr;
  CHECK(aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
      expandX.get(), expertIds.get(), assistInfo.get(), epRecvCounts.get(), expertScales.get(), residualX.get(),
      gamma.get(), tpRecvCounts.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, oriX.get(),
      alpha1.get(), alpha2.get(), constV.get(), epName, c.W, r.epRank, c.M, tpName, tp, r.tpRank, 0, 0, 0, c.globalBs(),
      /*outDtype=*/0, /*commQuantMode=*/0, /*groupListType=*/1, nullptr, /*normEps=*/1e-6f, c.Z, c.C, c.Q, yOut.get(),
      rstdOut.get(), xOut.get(), &workspaceSize, &executor));
  if (workspaceSize > 0) CHECK(aclrtMalloc(&workspace, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST));
  CHECK(aclnnMoeDistributeCombineAddRmsNormV2(workspace, workspaceSize, executor, r.combineStream));
  CHECK(aclrtSynchronizeStreamWithTimeout(r.combineStream, timeoutMs));
  if (workspace != nullptr) CHECK(aclrtFree(workspace));

  // Read back and digest what was written: Nown own rows, then (TP) the peer's Npeer rows, 3*Nown triples, and the
  // tp*W*L prefix sums of epRecvCounts. Without TP, Nown is the last prefix sum (tpRecvCounts is written with TP
  // only); with TP, tpRecvCounts holds both TP ranks' counts.
  std::vector<uint16_t> hExpandX, hXOut, hYOut;
  std::vector<int32_t> hAssist, hEp, hTp;
  std::vector<float> hRstd;
  CHECK(expandX.read(&hExpandX));
  CHECK(assistInfo.read(&hAssist));
  CHECK(epRecvCounts.read(&hEp));
  CHECK(tpRecvCounts.read(&hTp));
  CHECK(xOut.read(&hXOut));
  CHECK(yOut.read(&hYOut));
  CHECK(rstdOut.read(&hRstd));
  const int64_t nOwn = tp == 2 ? hTp[r.tpRank] : hEp[c.W * L - 1];
  const int64_t nRows = tp == 2 ? hTp[0] + hTp[1] : nOwn;
  *line = digestLine(r.device, digestOutputs(c, hExpandX.data(), nRows, hAssist.data(), nOwn, hEp.data(), tp * c.W * L,
                                             hXOut.data(), hYOut.data(), hRstd.data()));
  return 0;
}

}  // namespace moedist_examples
