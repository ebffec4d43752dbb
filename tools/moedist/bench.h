// `moedist bench`: the operators on every engine that is built, next to what users would write instead (the
// hand-written MPI_Alltoallv pipeline and the PyTorch gloo pipeline of bench/), the scalar reference kernels and the
// machine's copy bandwidth, over a sweep of shapes, all measured in one run. Every engine and baseline runs as a
// child process (`moedist run --json`, the baselines with --json) with a deadline, so each has its own peak memory and
// none can hang the sweep; this process reads their JSON, prints a table like nccl-tests' and writes --json.
#pragma once

#include <string>
#include <vector>

#include "bench_case.h"

namespace moedist::tool {

struct BenchFlags {
  std::string preset;  // decode, prefill, seed, scale; empty: the shape lists below
  std::vector<int> worldSizes{4}, tokens{128}, hiddens{7168}, topks{8};
  std::vector<int> experts{0};         // 0: 256, or the largest multiple of the world size below 256
  std::vector<std::string> engines;    // inproc, shm, mpi (default: those built)
  std::vector<std::string> baselines;  // mpi_pipeline, torch_pipeline, ref (default: those available)
  int iterations = 20, warmup = 3;
  int rounds = 1;  // runs of every runner per point, in turn; their timed iterations are pooled
  bool noCheck = false;
  std::string json;                         // --json FILE
  std::string workDir;                      // cases and logs (default: a fresh folder under /tmp)
  std::string writeCase;                    // --write-case DIR: write the first point's case and exit
  std::string mpirun = "mpirun";            // the MPI launcher
  std::string hostfile;                     // its --hostfile (MPI runners across hosts)
  std::string mpirunArgs;                   // more of its flags, as words separated by spaces
  std::string python = "/usr/bin/python3";  // for the PyTorch pipeline
  std::string mpiPipeline, torchPipeline;   // the baselines (default: those of this build tree)
  int timeoutSeconds = 900;                 // per engine or baseline run
  int maxProcesses = 64;                    // runners with a process per rank skip larger world sizes
  uint64_t seed = 1;
};

// Runs the sweep; returns 0 when every run passed its check, 1 when one failed, 2 on a usage error.
int runBench(const BenchFlags& flags);

}  // namespace moedist::tool
