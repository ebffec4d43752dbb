// The MoE pipeline in the CANN API with one MPI process per device, the way multi-process CANN programs run:
//
//   mpirun -np N moedist_example_cann_mpi_pipeline [--tp 2]
//
// N = W * tp processes: W EP ranks, and tp = 1 (the default: no TP) or 2 TP ranks. Process p (its MPI_COMM_WORLD
// rank) uses device p and is EP rank p / tp and TP rank p % tp, as the devices of tp2.cpp: the EP group of TP index
// t is the W processes with p % tp == t, and the TP group of EP rank e is the processes {e*tp, ..., e*tp + tp - 1}
// (the pair {2e, 2e + 1} with TP 2; the process alone without TP).
//
// Each group's HCCL communicator is made as in CANN: the group's rank 0 calls HcclGetRootInfo, the application
// broadcasts the HcclRootInfo bytes to the group (here MPI_Bcast over an MPI_Comm_split of MPI_COMM_WORLD), and
// every member calls HcclCommInitRootInfo with the group size and its rank in the group. HcclGetCommName gives the
// group names that the operators receive as groupEp / groupTp.
//
// Then every process runs the pipeline of examples/cann/pipeline.h on its own 16 tokens (mpiPipelineConfig in
// examples/cann/common.h: H 1024, top-4, 2 MoE experts per EP rank without TP and 1 with TP, 2 zero, 2 copy and 2
// const experts): dispatch (aclnnMoeDistributeDispatchV3) -> the identity as expert FFN -> combine
// (aclnnMoeDistributeCombineAddRmsNormV2).
// Once every process has succeeded, each one prints its own digest line and process 0 prints "example ok"; the
// lines of different processes come out in any order. The test suite sorts them and compares them with the lines
// of the reference model.
//
// The operators run on the streams' worker threads, which use MPI: MPI must be initialized with
// MPI_THREAD_MULTIPLE.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1  // MPI's C API only
#endif
#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "acl_util.h"
#include "common.h"
#include "pipeline.h"

using namespace moedist_examples;

namespace {

constexpr int32_t kTimeoutMs = 10000;

// This process's place in the job and the resources it holds.
struct Process {
  int worldRank = 0;
  int worldSize = 0;
  int tp = 1;
  MPI_Comm epGroup = MPI_COMM_NULL;  // the processes of this process's EP group, in EP rank order
  MPI_Comm tpGroup = MPI_COMM_NULL;  // the processes of this process's TP group, in TP rank order
  PipelineRank rank{};
};

// Makes this process's rank of an HCCL communicator over the processes of `group`: the group's rank 0 gets the
// root info, MPI_Bcast hands its bytes to the others, and every member joins with its rank in `group`.
int initGroupComm(MPI_Comm group, HcclComm* comm) {
  int rank = 0, size = 0;
  MPI_Comm_rank(group, &rank);
  MPI_Comm_size(group, &size);
  HcclRootInfo rootInfo;
  std::memset(&rootInfo, 0, sizeof rootInfo);
  if (rank == 0) CHECK(HcclGetRootInfo(&rootInfo));
  MPI_Bcast(&rootInfo, static_cast<int>(sizeof rootInfo), MPI_BYTE, 0, group);
  CHECK(HcclCommInitRootInfo(static_cast<uint32_t>(size), &rootInfo, static_cast<uint32_t>(rank), comm));
  return 0;
}

// The device, its streams and the EP and TP communicators of this process.
int setUp(Process* p) {
  PipelineRank& r = p->rank;
  r.device = p->worldRank;
  r.epRank = p->worldRank / p->tp;
  r.tpRank = p->worldRank % p->tp;
  CHECK(aclInit(nullptr));
  CHECK(aclrtSetDevice(r.device));
  CHECK(aclrtCreateStream(&r.dispatchStream));
  CHECK(aclrtCreateStream(&r.combineStream));
  MPI_Comm_split(MPI_COMM_WORLD, /*color=*/r.tpRank, /*key=*/r.epRank, &p->epGroup);
  MPI_Comm_split(MPI_COMM_WORLD, /*color=*/r.epRank, /*key=*/r.tpRank, &p->tpGroup);
  if (initGroupComm(p->epGroup, &r.epComm) != 0) return 1;
  if (initGroupComm(p->tpGroup, &r.tpComm) != 0) return 1;
  return 0;
}

int tearDown(Process* p) {
  PipelineRank& r = p->rank;
  CHECK(HcclCommDestroy(r.epComm));
  CHECK(HcclCommDestroy(r.tpComm));
  CHECK(aclrtDestroyStream(r.dispatchStream));
  CHECK(aclrtDestroyStream(r.combineStream));
  CHECK(aclrtResetDevice(r.device));
  CHECK(aclFinalize());
  MPI_Comm_free(&p->epGroup);
  MPI_Comm_free(&p->tpGroup);
  return 0;
}

// The TP world size from the command line: none, or "--tp 1" / "--tp 2". 0 when the arguments are not understood.
int parseTp(int argc, char** argv) {
  if (argc == 1) return 1;
  if (argc == 3 && std::strcmp(argv[1], "--tp") == 0) {
    if (std::strcmp(argv[2], "1") == 0) return 1;
    if (std::strcmp(argv[2], "2") == 0) return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  Process p;
  MPI_Comm_rank(MPI_COMM_WORLD, &p.worldRank);
  MPI_Comm_size(MPI_COMM_WORLD, &p.worldSize);
  p.tp = parseTp(argc, argv);
  const char* problem = nullptr;
  if (provided < MPI_THREAD_MULTIPLE)
    problem = "MPI does not provide MPI_THREAD_MULTIPLE";
  else if (p.tp == 0)
    problem = "usage: mpirun -np N mpi_pipeline [--tp 1|2]";
  else if (p.worldSize % p.tp != 0 || p.worldSize / p.tp < 2)
    problem = "the number of processes must be W * tp, with W >= 2 EP ranks";
  if (problem != nullptr) {
    if (p.worldRank == 0) std::fprintf(stderr, "[ERROR] %s\n", problem);
    MPI_Finalize();
    return 1;
  }

  // A process that fails to set up aborts the job: the others would wait for it in the collective calls.
  if (setUp(&p) != 0) {
    std::fprintf(stderr, "[ERROR] process %d: setup failed\n", p.worldRank);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

  const ExampleConfig c = mpiPipelineConfig(p.worldSize / p.tp, p.tp);
  std::string line;
  const int failed = runPipelineRank(c, p.rank, &line, kTimeoutMs) != 0 ? 1 : 0;
  int anyFailed = 0;
  MPI_Allreduce(&failed, &anyFailed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (failed) std::fprintf(stderr, "[ERROR] process %d (device %d) failed\n", p.worldRank, p.rank.device);
  if (!anyFailed) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

  const bool ok = tearDown(&p) == 0 && !anyFailed;
  if (ok && p.worldRank == 0) std::printf("example ok\n");
  std::fflush(stdout);
  MPI_Finalize();
  return ok ? 0 : 1;
}
