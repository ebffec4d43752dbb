// Tensor parallelism (TP 2) in the CANN API: 4 EP ranks x 2 TP ranks = 8 devices, one thread per device.
//
// Device d is EP rank d / 2 and TP rank d % 2. As in CANN's own example, there is one EP communicator per TP index
// (devicesEp[tp][ep] = ep*2 + tp) and one TP communicator per EP rank (the pair {2e, 2e+1}). Each device has its
// own 8 tokens (H 1024, top-3) for the 4 MoE experts, one per EP rank. Dispatch gathers on each TP rank its own
// rows and then its TP peer's rows (expandX = own rows, then peer rows; tpRecvCounts[tpRank] = own count).
//
// The expert FFN is the identity, on both TP ranks: in a real model each TP rank would compute a partial result
// of the expert for every row, and combine sums the two partials (a reduce-scatter over the TP pair). Here both
// partials of a row are the row itself, so the TP reduce doubles it: combine returns 2 * x-row * scale. The
// per-rank body is runPipelineRank of examples/cann/pipeline.h.
//
// Each device's outputs are digested (examples/cann/common.h) and printed after the join, one line per device in
// device order; the test suite compares the lines with the reference model.
#include <string>

#include "acl_util.h"
#include "common.h"
#include "pipeline.h"

using namespace moedist_examples;

namespace {

constexpr int kEp = 4, kTp = 2, kDevices = kEp * kTp;

struct RankArgs {
  PipelineRank rank;
  aclrtContext context;
};

int runRank(const RankArgs& args, std::string* line) {
  CHECK(aclrtSetCurrentContext(args.context));
  return runPipelineRank(tp2Config(), args.rank, line);
}

}  // namespace

int main() {
  CHECK(aclInit(nullptr));

  RankArgs args[kDevices];
  for (int32_t d = 0; d < kDevices; ++d) {
    CHECK(aclrtSetDevice(d));
    CHECK(aclrtCreateContext(&args[d].context, d));
    CHECK(aclrtCreateStream(&args[d].rank.dispatchStream));
    CHECK(aclrtCreateStream(&args[d].rank.combineStream));
    args[d].rank.device = d;
    args[d].rank.epRank = d / kTp;
    args[d].rank.tpRank = d % kTp;
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
    args[d].rank.epComm = epComms[args[d].rank.tpRank][args[d].rank.epRank];
    args[d].rank.tpComm = tpComms[args[d].rank.epRank][args[d].rank.tpRank];
  }

  const bool ok = runDevices(kDevices, [&](int d, std::string* line) { return runRank(args[d], line); });

  for (int32_t d = 0; d < kDevices; ++d) {
    CHECK(HcclCommDestroy(args[d].rank.epComm));
    CHECK(HcclCommDestroy(args[d].rank.tpComm));
    CHECK(aclrtDestroyStream(args[d].rank.dispatchStream));
    CHECK(aclrtDestroyStream(args[d].rank.combineStream));
    CHECK(aclrtDestroyContext(args[d].context));
    CHECK(aclrtResetDevice(d));
  }
  CHECK(aclFinalize());
  if (!ok) return 1;
  std::printf("example ok\n");
  return 0;
}
