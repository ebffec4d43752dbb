// The basic MoE pipeline in the CANN API: 8 devices (EP world 8, no TP), one thread per device.
//
// Each device dispatches its 16 tokens (H 1024, top-4) to 16 MoE experts (2 per device) and to the special
// experts (2 zero, 2 copy, 2 const experts, which combine computes from oriX and the const tensors), runs the
// "expert FFN" - here the identity: combine receives dispatch's expandX unchanged - and combines with
// add + RMSNorm (the per-rank body is runPipelineRank of examples/cann/pipeline.h). Each device's outputs are
// digested (examples/cann/common.h) and printed after the join, one line per device in rank order; the test suite
// compares the lines with the reference model.
#include <string>

#include "acl_util.h"
#include "common.h"
#include "pipeline.h"

using namespace moedist_examples;

namespace {

constexpr int kDevices = 8;

struct RankArgs {
  PipelineRank rank;
  aclrtContext context;
};

int runRank(const RankArgs& args, std::string* line) {
  CHECK(aclrtSetCurrentContext(args.context));
  return runPipelineRank(basicPipelineConfig(), args.rank, line);
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
    CHECK(aclrtCreateStream(&args[d].rank.dispatchStream));
    CHECK(aclrtCreateStream(&args[d].rank.combineStream));
    devices[d] = d;
  }
  CHECK(HcclCommInitAll(kDevices, devices, epComms));  // EP: all 8 devices, rank d = device d
  for (int32_t d = 0; d < kDevices; ++d) {
    CHECK(HcclCommInitAll(1, &devices[d], &tpComms[d]));  // TP world of 1 per device
    args[d].rank.device = d;
    args[d].rank.epRank = d;
    args[d].rank.tpRank = 0;
    args[d].rank.epComm = epComms[d];
    args[d].rank.tpComm = tpComms[d];
  }

  const bool ok = runDevices(kDevices, [&](int d, std::string* line) { return runRank(args[d], line); });

  for (int32_t d = 0; d < kDevices; ++d) {
    CHECK(HcclCommDestroy(epComms[d]));
    CHECK(HcclCommDestroy(tpComms[d]));
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
