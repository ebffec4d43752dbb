// The basic MoE pipeline in the CANN API: 8 devices (EP world 8, no TP), one thread per device.
//
// Each device dispatches its 16 tokens (H 1024, top-4) to 16 MoE experts (2 per device) and to the special
// experts (2 zero, 2 copy, 2 const experts, which combine computes from oriX and the const tensors), runs the
// "expert FFN" - here the identity: combine receives dispatch's expandX unchanged - and combines with
// add + RMSNorm. Each device's outputs are digested (examples/cann/common.h) and printed after the join, one line
// per device in rank order; the test suite compares the lines with the reference model.
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

  const ExampleConfig c = basicPipelineConfig();
  const int64_t Bs = c.Bs, H = c.H, K = c.K, A = c.A(), L = c.L();
  const RankInputs in = makeRankInputs(c, args.rank, c.M);

  // Inputs.
  DeviceTensor x, expertIds, expertScales, residualX, gamma, oriX, alpha1, alpha2, constV;
  CHECK(x.create(in.x, {Bs, H}, ACL_BF16));
  CHECK(expertIds.create(in.expertIds, {Bs, K}, ACL_INT32));
  CHECK(expertScales.create(in.expertScales, {Bs, K}, ACL_FLOAT));
  CHECK(residualX.create(in.residualX, {Bs, 1, H}, ACL_BF16));
  CHECK(gamma.create(in.gamma, {H}, ACL_BF16));
  CHECK(oriX.create(in.oriX, {Bs, H}, ACL_BF16));
  CHECK(alpha1.create(in.alpha1, {c.Q}, ACL_BF16));
  CHECK(alpha2.create(in.alpha2, {c.Q}, ACL_BF16));
  CHECK(constV.create(in.constV, {c.Q, H}, ACL_BF16));

  // Outputs of dispatch (A rows of capacity) and of combine.
  DeviceTensor expandX, dynamicScales, assistInfo, expertTokenNums, epRecvCounts, tpRecvCounts, expandScales;
  CHECK(expandX.create(std::vector<uint16_t>(A * H), {A, H}, ACL_BF16));
  CHECK(dynamicScales.create(std::vector<float>(A), {A}, ACL_FLOAT));
  CHECK(assistInfo.create(std::vector<int32_t>(A * 128), {A * 128}, ACL_INT32));
  CHECK(expertTokenNums.create(std::vector<int64_t>(L), {L}, ACL_INT64));
  CHECK(epRecvCounts.create(std::vector<int32_t>(c.W * L), {c.W * L}, ACL_INT32));
  CHECK(tpRecvCounts.create(std::vector<int32_t>(1), {1}, ACL_INT32));
  CHECK(expandScales.create(std::vector<float>(A), {A}, ACL_FLOAT));
  DeviceTensor yOut, rstdOut, xOut;
  CHECK(yOut.create(std::vector<uint16_t>(Bs * H), {Bs, 1, H}, ACL_BF16));
  CHECK(rstdOut.create(std::vector<float>(Bs), {Bs, 1, 1}, ACL_FLOAT));
  CHECK(xOut.create(std::vector<uint16_t>(Bs * H), {Bs, 1, H}, ACL_BF16));

  // Dispatch: phase 1 checks the arguments and sizes the workspace, phase 2 enqueues the operator on the stream.
  uint64_t workspaceSize = 0;
  aclOpExecutor* executor = nullptr;
  CHECK(aclnnMoeDistributeDispatchV3GetWorkspaceSize(
      x.get(), expertIds.get(), nullptr, nullptr, expertScales.get(), nullptr, epName, c.W, args.rank, c.M, tpName,
      c.tp, 0, /*expertShardType=*/0, /*sharedExpertNum=*/0, /*sharedExpertRankNum=*/0, /*quantMode=*/0, c.globalBs(),
      /*expertTokenNumsType=*/1, nullptr, c.Z, c.C, c.Q, expandX.get(), dynamicScales.get(), assistInfo.get(),
      expertTokenNums.get(), epRecvCounts.get(), tpRecvCounts.get(), expandScales.get(), &workspaceSize, &executor));
  void* workspace = nullptr;
  if (workspaceSize > 0) CHECK(aclrtMalloc(&workspace, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST));
  CHECK(aclnnMoeDistributeDispatchV3(workspace, workspaceSize, executor, args.dispatchStream));
  CHECK(aclrtSynchronizeStreamWithTimeout(args.dispatchStream, kTimeoutMs));
  if (workspace != nullptr) CHECK(aclrtFree(workspace));

  // The expert FFN would run here on expandX; this example uses the identity, so combine gets expandX as is.

  // Combine + add + RMSNorm.
  workspaceSize = 0;
  executor = nullptr;
  CHECK(aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
      expandX.get(), expertIds.get(), assistInfo.get(), epRecvCounts.get(), expertScales.get(), residualX.get(),
      gamma.get(), tpRecvCounts.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, oriX.get(),
      alpha1.get(), alpha2.get(), constV.get(), epName, c.W, args.rank, c.M, tpName, c.tp, 0, 0, 0, 0, c.globalBs(),
      /*outDtype=*/0, /*commQuantMode=*/0, /*groupListType=*/1, nullptr, /*normEps=*/1e-6f, c.Z, c.C, c.Q, yOut.get(),
      rstdOut.get(), xOut.get(), &workspaceSize, &executor));
  if (workspaceSize > 0) CHECK(aclrtMalloc(&workspace, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST));
  CHECK(aclnnMoeDistributeCombineAddRmsNormV2(workspace, workspaceSize, executor, args.combineStream));
  CHECK(aclrtSynchronizeStreamWithTimeout(args.combineStream, kTimeoutMs));
  if (workspace != nullptr) CHECK(aclrtFree(workspace));

  // Read back and digest what was written: Nown rows (the last prefix sum of epRecvCounts), 3*Nown triples.
  std::vector<uint16_t> hExpandX, hXOut, hYOut;
  std::vector<int32_t> hAssist, hEp;
  std::vector<float> hRstd;
  CHECK(expandX.read(&hExpandX));
  CHECK(assistInfo.read(&hAssist));
  CHECK(epRecvCounts.read(&hEp));
  CHECK(xOut.read(&hXOut));
  CHECK(yOut.read(&hYOut));
  CHECK(rstdOut.read(&hRstd));
  const int64_t nOwn = hEp[c.W * L - 1];
  *line = digestLine(args.rank, digestOutputs(c, hExpandX.data(), nOwn, hAssist.data(), nOwn, hEp.data(), c.W * L,
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

  const bool ok = runDevices(kDevices, [&](int d, std::string* line) { return runRank(args[d], line); });

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
