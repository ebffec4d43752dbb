// Elastic scale-in in the CANN API: 8 devices (EP world 8, 16 MoE experts, 2 per device), one thread per device.
//
// First every device runs a warm-up dispatch with the full world (as CANN's own example does, to set up the
// communication domain). Then devices 2-5 are taken out: elasticInfo tells the 4 survivors their new ids
// (physical 0, 1, 6, 7 -> 0, 1, 2, 3) and the new expert count M' = L * 4 = 8 (expert ids are already renumbered
// into [0, 8)). Only the survivors call dispatch and combine; the removed devices do nothing more. The expert FFN
// is the identity. Each survivor's outputs of the scale-in round are digested (examples/cann/common.h) and printed
// after the join, one line per survivor in physical rank order; the test suite compares them with the reference
// model.
#include <string>
#include <vector>

#include "acl_util.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "common.h"

using namespace moedist_examples;

namespace {

constexpr int kDevices = 8;
constexpr int32_t kTimeoutMs = 10000;

struct RankArgs {
  int32_t rank;
  HcclComm epComm;
  HcclComm tpComm;  // a communicator of size 1: no TP
  aclrtStream dispatchStream;
  aclrtStream combineStream;
  aclrtContext context;
};

int runRank(const RankArgs& args, std::string* line) {
  CHECK(aclrtSetCurrentContext(args.context));
  char epName[128] = {0};
  char tpName[128] = {0};
  CHECK(HcclGetCommName(args.epComm, epName));
  CHECK(HcclGetCommName(args.tpComm, tpName));

  const ExampleConfig c = elasticScaleInConfig();
  const int64_t Bs = c.Bs, H = c.H, K = c.K, A = c.A(), L = c.L();
  const RankInputs warmIn = makeRankInputs(c, args.rank, c.M);   // expert ids in [0, M)
  const RankInputs in = makeRankInputs(c, args.rank, c.Mafter);  // expert ids in [0, M')

  // Inputs.
  DeviceTensor x, warmExpertIds, expertIds, expertScales, residualX, gamma, elasticInfo;
  CHECK(x.create(in.x, {Bs, H}, ACL_BF16));
  CHECK(warmExpertIds.create(warmIn.expertIds, {Bs, K}, ACL_INT32));
  CHECK(expertIds.create(in.expertIds, {Bs, K}, ACL_INT32));
  CHECK(expertScales.create(in.expertScales, {Bs, K}, ACL_FLOAT));
  CHECK(residualX.create(in.residualX, {Bs, 1, H}, ACL_BF16));
  CHECK(gamma.create(in.gamma, {H}, ACL_BF16));
  CHECK(elasticInfo.create(c.elasticInfo, {4 + 2 * c.W}, ACL_INT32));

  // Outputs of dispatch (A rows of capacity) and of combine.
  DeviceTensor expandX, dynamicScales, assistInfo, expertTokenNums, epRecvCounts, tpRecvCounts, expandScales;
  CHECK(expandX.create(std::vector<uint16_t>(A * H), {A, H}, ACL_BF16));
  CHECK(dynamicScales.create(std::vector<float>(A), {A}, ACL_FLOAT));
  CHECK(assistInfo.create(std::vector<int32_t>(A * 128), {A * 128}, ACL_INT32));
  CHECK(expertTokenNums.create(std::vector<int64_t>(L), {L}, ACL_INT64));
  CHECK(epRecvCounts.create(std::vector<int32_t>(c.W * L), {c.W * L}, ACL_INT32));  // >= max(W, W*L)
  CHECK(tpRecvCounts.create(std::vector<int32_t>(1), {1}, ACL_INT32));
  CHECK(expandScales.create(std::vector<float>(A), {A}, ACL_FLOAT));
  DeviceTensor yOut, rstdOut, xOut;
  CHECK(yOut.create(std::vector<uint16_t>(Bs * H), {Bs, 1, H}, ACL_BF16));
  CHECK(rstdOut.create(std::vector<float>(Bs), {Bs, 1, 1}, ACL_FLOAT));
  CHECK(xOut.create(std::vector<uint16_t>(Bs * H), {Bs, 1, H}, ACL_BF16));

  // Warm-up: a dispatch of the full world, on every device. Phase 1 checks the arguments and sizes the
  // workspace, phase 2 enqueues the operator on the stream.
  uint64_t workspaceSize = 0;
  aclOpExecutor* executor = nullptr;
  void* workspace = nullptr;
  CHECK(aclnnMoeDistributeDispatchV3GetWorkspaceSize(
      x.get(), warmExpertIds.get(), nullptr, nullptr, expertScales.get(), nullptr, epName, c.W, args.rank, c.M, tpName,
      c.tp, 0, /*expertShardType=*/0, /*sharedExpertNum=*/0, /*sharedExpertRankNum=*/0, /*quantMode=*/0, c.globalBs(),
      /*expertTokenNumsType=*/1, nullptr, c.Z, c.C, c.Q, expandX.get(), dynamicScales.get(), assistInfo.get(),
      expertTokenNums.get(), epRecvCounts.get(), tpRecvCounts.get(), expandScales.get(), &workspaceSize, &executor));
  if (workspaceSize > 0) CHECK(aclrtMalloc(&workspace, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST));
  CHECK(aclnnMoeDistributeDispatchV3(workspace, workspaceSize, executor, args.dispatchStream));
  CHECK(aclrtSynchronizeStreamWithTimeout(args.dispatchStream, kTimeoutMs));
  if (workspace != nullptr) CHECK(aclrtFree(workspace));
  workspace = nullptr;

  // Devices 2-5 are removed: they must not call the operators any more.
  if (!elasticSurvivor(args.rank)) return 0;

  // Dispatch of the scaled-in world. epWorldSize and epRankId stay the physical ones; elasticInfo maps them.
  workspaceSize = 0;
  executor = nullptr;
  CHECK(aclnnMoeDistributeDispatchV3GetWorkspaceSize(
      x.get(), expertIds.get(), nullptr, nullptr, expertScales.get(), elasticInfo.get(), epName, c.W, args.rank, c.M,
      tpName, c.tp, 0, /*expertShardType=*/0, /*sharedExpertNum=*/0, /*sharedExpertRankNum=*/0, /*quantMode=*/0,
      c.globalBs(),
      /*expertTokenNumsType=*/1, nullptr, c.Z, c.C, c.Q, expandX.get(), dynamicScales.get(), assistInfo.get(),
      expertTokenNums.get(), epRecvCounts.get(), tpRecvCounts.get(), expandScales.get(), &workspaceSize, &executor));
  if (workspaceSize > 0) CHECK(aclrtMalloc(&workspace, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST));
  CHECK(aclnnMoeDistributeDispatchV3(workspace, workspaceSize, executor, args.dispatchStream));
  CHECK(aclrtSynchronizeStreamWithTimeout(args.dispatchStream, kTimeoutMs));
  if (workspace != nullptr) CHECK(aclrtFree(workspace));
  workspace = nullptr;

  // The expert FFN would run here on expandX; this example uses the identity, so combine gets expandX as is.

  // Combine + add + RMSNorm.
  workspaceSize = 0;
  executor = nullptr;
  CHECK(aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
      expandX.get(), expertIds.get(), assistInfo.get(), epRecvCounts.get(), expertScales.get(), residualX.get(),
      gamma.get(), tpRecvCounts.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, elasticInfo.get(), nullptr,
      nullptr, nullptr, nullptr, epName, c.W, args.rank, c.M, tpName, c.tp, 0, 0, 0, 0, c.globalBs(),
      /*outDtype=*/0, /*commQuantMode=*/0, /*groupListType=*/1, nullptr, /*normEps=*/1e-6f, c.Z, c.C, c.Q, yOut.get(),
      rstdOut.get(), xOut.get(), &workspaceSize, &executor));
  if (workspaceSize > 0) CHECK(aclrtMalloc(&workspace, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST));
  CHECK(aclnnMoeDistributeCombineAddRmsNormV2(workspace, workspaceSize, executor, args.combineStream));
  CHECK(aclrtSynchronizeStreamWithTimeout(args.combineStream, kTimeoutMs));
  if (workspace != nullptr) CHECK(aclrtFree(workspace));

  // Read back and digest what was written: W'*L prefix sums, Nown rows (the last of them), 3*Nown triples.
  std::vector<uint16_t> hExpandX, hXOut, hYOut;
  std::vector<int32_t> hAssist, hEp;
  std::vector<float> hRstd;
  CHECK(expandX.read(&hExpandX));
  CHECK(assistInfo.read(&hAssist));
  CHECK(epRecvCounts.read(&hEp));
  CHECK(xOut.read(&hXOut));
  CHECK(yOut.read(&hYOut));
  CHECK(rstdOut.read(&hRstd));
  const int64_t nOwn = hEp[c.Wafter * L - 1];
  *line = digestLine(args.rank, digestOutputs(c, hExpandX.data(), nOwn, hAssist.data(), nOwn, hEp.data(), c.Wafter * L,
                                              hXOut.data(), hYOut.data(), hRstd.data()));
  return 0;
}

}  // namespace

int main() {
  CHECK(aclInit(nullptr));

  RankArgs args[kDevices];
  int32_t devices[kDevices];
  HcclComm epComms[kDevices];
  HcclComm tpComms[kDevices];
  for (int32_t d = 0; d < kDevices; ++d) {
    CHECK(aclrtSetDevice(d));
    CHECK(aclrtCreateContext(&args[d].context, d));
    CHECK(aclrtCreateStream(&args[d].dispatchStream));
    CHECK(aclrtCreateStream(&args[d].combineStream));
    devices[d] = d;
  }
  CHECK(HcclCommInitAll(kDevices, devices, epComms));  // EP: all 8 devices, rank d = device d
  for (int32_t d = 0; d < kDevices; ++d) {
    CHECK(HcclCommInitAll(1, &devices[d], &tpComms[d]));  // TP world of 1 per device
    args[d].rank = d;
    args[d].epComm = epComms[d];
    args[d].tpComm = tpComms[d];
  }

  const bool ok = runDevices(
      kDevices, [&](int d, std::string* line) { return runRank(args[d], line); }, elasticSurvivor);

  for (int32_t d = 0; d < kDevices; ++d) {
    CHECK(HcclCommDestroy(epComms[d]));
    CHECK(HcclCommDestroy(tpComms[d]));
    CHECK(aclrtDestroyStream(args[d].dispatchStream));
    CHECK(aclrtDestroyStream(args[d].combineStream));
    CHECK(aclrtDestroyContext(args[d].context));
    CHECK(aclrtResetDevice(d));
  }
  CHECK(aclFinalize());
  if (!ok) return 1;
  std::printf("example ok\n");
  return 0;
}
