// Tensor parallelism (TP 2) in the CANN API: 4 EP ranks x 2 TP ranks = 8 devices, one thread per device.
//
// Device d is EP rank d / 2 and TP rank d % 2. As in CANN's own example, there is one EP communicator per TP index
// (devicesEp[tp][ep] = ep*2 + tp) and one TP communicator per EP rank (the pair {2e, 2e+1}). Each device has its
// own 8 tokens (H 1024, top-3) for the 4 MoE experts, one per EP rank. Dispatch gathers on each TP rank its own
// rows and then its TP peer's rows (expandX = own rows, then peer rows; tpRecvCounts[tpRank] = own count).
//
// The expert FFN is the identity, on both TP ranks: in a real model each TP rank would compute a partial result
// of the expert for every row, and combine sums the two partials (a reduce-scatter over the TP pair). Here both
// partials of a row are the row itself, so the TP reduce doubles it: combine returns 2 * x-row * scale.
//
// Each device's outputs are digested (examples/cann/common.h) and printed after the join, one line per device in
// device order; the test suite compares the lines with the reference model.
#include <string>
#include <vector>

#include "acl_util.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "common.h"

using namespace moedist_examples;

namespace {

constexpr int kEp = 4, kTp = 2, kDevices = kEp * kTp;
constexpr int32_t kTimeoutMs = 10000;

struct RankArgs {
  int32_t device;
  int32_t epRank;
  int32_t tpRank;
  HcclComm epComm;
  HcclComm tpComm;
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

  const ExampleConfig c = tp2Config();
  const int64_t Bs = c.Bs, H = c.H, K = c.K, A = c.A(), L = c.L();  // L == 1
  const RankInputs in = makeRankInputs(c, args.device, c.M);

  // Inputs.
  DeviceTensor x, expertIds, expertScales, residualX, gamma;
  CHECK(x.create(in.x, {Bs, H}, ACL_BF16));
  CHECK(expertIds.create(in.expertIds, {Bs, K}, ACL_INT32));
  CHECK(expertScales.create(in.expertScales, {Bs, K}, ACL_FLOAT));
  CHECK(residualX.create(in.residualX, {Bs, 1, H}, ACL_BF16));
  CHECK(gamma.create(in.gamma, {H}, ACL_BF16));

  // Outputs of dispatch (tp * A rows of capacity: own rows, then the peer's) and of combine.
  const int64_t tp = c.tp;
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
      x.get(), expertIds.get(), nullptr, nullptr, expertScales.get(), nullptr, epName, c.W, args.epRank, c.M, tpName,
      c.tp, args.tpRank, /*expertShardType=*/0, /*sharedExpertNum=*/0, /*sharedExpertRankNum=*/0, /*quantMode=*/0,
      c.globalBs(),
      /*expertTokenNumsType=*/1, nullptr, c.Z, c.C, c.Q, expandX.get(), dynamicScales.get(), assistInfo.get(),
      expertTokenNums.get(), epRecvCounts.get(), tpRecvCounts.get(), expandScales.get(), &workspaceSize, &executor));
  void* workspace = nullptr;
  if (workspaceSize > 0) CHECK(aclrtMalloc(&workspace, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST));
  CHECK(aclnnMoeDistributeDispatchV3(workspace, workspaceSize, executor, args.dispatchStream));
  CHECK(aclrtSynchronizeStreamWithTimeout(args.dispatchStream, kTimeoutMs));
  if (workspace != nullptr) CHECK(aclrtFree(workspace));

  // The expert FFN would run here on expandX (both TP ranks: a partial result per row); this example uses the
  // identity, so combine gets expandX as is, and the TP reduce of the two partials doubles each row.

  // Combine + add + RMSNorm.
  workspaceSize = 0;
  executor = nullptr;
  CHECK(aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
      expandX.get(), expertIds.get(), assistInfo.get(), epRecvCounts.get(), expertScales.get(), residualX.get(),
      gamma.get(), tpRecvCounts.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
      nullptr, nullptr, epName, c.W, args.epRank, c.M, tpName, c.tp, args.tpRank, 0, 0, 0, c.globalBs(),
      /*outDtype=*/0, /*commQuantMode=*/0, /*groupListType=*/1, nullptr, /*normEps=*/1e-6f, c.Z, c.C, c.Q, yOut.get(),
      rstdOut.get(), xOut.get(), &workspaceSize, &executor));
  if (workspaceSize > 0) CHECK(aclrtMalloc(&workspace, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST));
  CHECK(aclnnMoeDistributeCombineAddRmsNormV2(workspace, workspaceSize, executor, args.combineStream));
  CHECK(aclrtSynchronizeStreamWithTimeout(args.combineStream, kTimeoutMs));
  if (workspace != nullptr) CHECK(aclrtFree(workspace));

  // Read back and digest what was written: Nown + Npeer rows (tpRecvCounts), 3*Nown triples, 2W prefix sums (own
  // ones, then the peer's).
  std::vector<uint16_t> hExpandX, hXOut, hYOut;
  std::vector<int32_t> hAssist, hEp;
  std::vector<float> hRstd;
  CHECK(expandX.read(&hExpandX));
  CHECK(assistInfo.read(&hAssist));
  CHECK(epRecvCounts.read(&hEp));
  CHECK(xOut.read(&hXOut));
  CHECK(yOut.read(&hYOut));
  CHECK(rstdOut.read(&hRstd));
  std::vector<int32_t> hTp;
  CHECK(tpRecvCounts.read(&hTp));
  const int64_t nOwn = hTp[args.tpRank], nRows = hTp[0] + hTp[1];
  *line = digestLine(args.device, digestOutputs(c, hExpandX.data(), nRows, hAssist.data(), nOwn, hEp.data(),
                                                tp * c.W * L, hXOut.data(), hYOut.data(), hRstd.data()));
  return 0;
}

}  // namespace

int main() {
  CHECK(aclInit(nullptr));

  RankArgs args[kDevices];
  for (int32_t d = 0; d < kDevices; ++d) {
    CHECK(aclrtSetDevice(d));
    CHECK(aclrtCreateContext(&args[d].context, d));
    CHECK(aclrtCreateStream(&args[d].dispatchStream));
    CHECK(aclrtCreateStream(&args[d].combineStream));
    args[d].device = d;
    args[d].epRank = d / kTp;
    args[d].tpRank = d % kTp;
  }
  // One EP communicator per TP index: EP rank e of group tp is device e*2 + tp.
  int32_t devicesEp[kTp][kEp];
  HcclComm epComms[kTp][kEp];
  for (int32_t tp = 0; tp < kTp; ++tp) {
    for (int32_t ep = 0; ep < kEp; ++ep) devicesEp[tp][ep] = ep * kTp + tp;
    CHECK(HcclCommInitAll(kEp, devicesEp[tp], epComms[tp]));
  }
  // One TP communicator per EP rank: the pair of devices {e*2, e*2 + 1}.
  int32_t devicesTp[kEp][kTp];
  HcclComm tpComms[kEp][kTp];
  for (int32_t ep = 0; ep < kEp; ++ep) {
    for (int32_t tp = 0; tp < kTp; ++tp) devicesTp[ep][tp] = ep * kTp + tp;
    CHECK(HcclCommInitAll(kTp, devicesTp[ep], tpComms[ep]));
  }
  for (int32_t d = 0; d < kDevices; ++d) {
    args[d].epComm = epComms[args[d].tpRank][args[d].epRank];
    args[d].tpComm = tpComms[args[d].epRank][args[d].tpRank];
  }

  const bool ok = runDevices(kDevices, [&](int d, std::string* line) { return runRank(args[d], line); });

  for (int32_t d = 0; d < kDevices; ++d) {
    CHECK(HcclCommDestroy(args[d].epComm));
    CHECK(HcclCommDestroy(args[d].tpComm));
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
