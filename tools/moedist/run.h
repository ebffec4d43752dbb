// `moedist run`: its flags, the scenario and harness options they give, and the summary both engines print (the
// in-process engine alone, or the MPI engine side by side with the in-process one).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/pipeline.h"

namespace moedist::tool {

struct RunFlags {
  int worldSize = 8, tokens = 8, hidden = 7168, topk = 3, experts = 8;
  int zeroExperts = 7, copyExperts = 8, constExperts = 10;
  double specialFraction = 0.3;
  int sharedExperts = 0, sharedExpertRanks = 0;
  int tp = 0, quantMode = 0, commQuantMode = 0, globalBs = 0, expertTokenNumsType = 1;
  bool smoothScales = false, fp16 = false, elastic = false, strided = false, noCheck = false, noSharedX = false;
  bool noBaseline = false;
  bool staging = false;  // x and the expert rows in the caller's memory (shm, mpi: one staging copy per call)
  std::string mask = "none";
  std::string engine = "inproc";  // inproc, mpi or shm
  std::vector<int> removeRanks;
  int layers = 3, kernelThreads = 1, timeoutMs = 120000;
  int warmup = 0;                   // untimed layers before the timed ones
  bool engineOnly = false;          // --engine mpi / shm: without the in-process run side by side
  std::string checkLayers = "all";  // which layers are compared with the reference model: all or first
  std::string json;                 // --json FILE: every figure, the configuration and the verdict
  uint64_t seed = 1;
};

// Time per call of the slowest rank over the timed layers (after the warm-up ones).
struct CallStats {
  double best = 0, median = 0, p99 = 0;
};
CallStats callStats(const std::vector<double>& slowestPerLayer, int warmup);

testing::Scenario scenarioFrom(const RunFlags& f);
testing::RunOptions runOptionsFrom(const RunFlags& f, const testing::Scenario& sc);

// The kernel table the communicators use ("cpu" unless MOEDIST_KERNELS says otherwise).
std::string kernelsName();
// Where a run with ranks as processes keeps x and the expert rows: "in the <space> (memAlloc)", or in the caller's
// memory with --staging.
std::string publishedTensors(const RunFlags& f, std::string_view space);

// One engine's runs of the scenario: with the flags' kernels, and with the scalar reference kernels (the baseline;
// all zero with --no-baseline).
struct EngineRuns {
  std::string name;  // the engine's column in the summary; empty when the summary shows one engine only
  testing::RunResult run;
  testing::RunResult base;
};

// Runs the scenario through `run` (one engine) with `o`, then, unless --no-baseline, with the reference kernels.
// With `print`: the rows each rank received after the first run (when `printRows`), and a failure as "result: FAIL
// (<what>)", where `what` names the engine ("" for the only one). Returns 0, 1 when a run failed, 2 when it threw.
int runEngine(const RunFlags& f, const testing::Scenario& sc, const testing::RunOptions& o, const std::string& what,
              const std::function<testing::RunResult(const testing::RunOptions&)>& run, bool print, bool printRows,
              EngineRuns* out);

// The end of a passing run: the match line, the time per call of every engine (with the ratio of the first to the
// second when there are two), the memcpy bandwidth measured now with one thread per rank, and "result: PASS".
// Returns the memcpy bandwidth in GB/s.
double printSummary(const RunFlags& f, const testing::RunOptions& o, const std::vector<EngineRuns>& engines);

// --json FILE (nothing without it): the configuration, every engine's figures (per layer and per rank), the memcpy
// bandwidth (0 when not measured) and the verdict of exit code rc ("pass", "not checked", "fail" or "error").
// Returns rc, or 2 when the file cannot be written.
int writeJson(const RunFlags& f, const std::vector<EngineRuns>& engines, double copyGBs, int rc);

// `moedist run --engine inproc`: every rank a thread of this process.
int runInProcess(const RunFlags& f);

// `moedist run --engine mpi`: every rank an MPI process (one per rank, under mpirun); process 0 then runs the same
// scenario on the in-process engine and prints both side by side. Without MPI: an error naming --engine.
int runMpi(const RunFlags& f);

// `moedist run --engine shm`: every rank a process forked by this one, over the shared-memory engine; then the same
// scenario in-process, both side by side (and the MPI engine first, when built with MPI and run under mpirun with one
// process per rank).
int runShm(const RunFlags& f);

}  // namespace moedist::tool
