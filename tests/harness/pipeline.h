// The end-to-end harness shared by the e2e tests and `moedist run`: it runs a Scenario through the public C++
// API or the CANN C API (dispatch -> stand-in expert FFN -> combine) on in-process ranks, one thread per rank, and
// checks every output byte against the reference model, including the bytes the operators must leave untouched.
// runScenarioRank runs the part of one rank alone, for ranks that are processes (the MPI tests).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "harness/cann_calls.h"
#include "moedist/ops.h"
#include "support/scenario.h"

namespace moedist::testing {

// Which API the harness calls the operators through.
enum class Api {
  kCpp,         // the named C++ operators of RunOptions::ops (moedist::dispatchV3, combineAddRmsNormV2, ...)
  kCppGeneral,  // the general C++ forms: rankAttrs(), workspaceBytes(), then moedist::dispatch / combine with the
                // RankAttrs and a workspace of the caller's (RunOptions::workspaceSize)
  kCann,        // aclnn two-phase functions on streams, HCCL communicators, devices as ranks (the CANN C API)
};

struct RunOptions {
  Api api = Api::kCpp;
  Ops ops = Ops::kDispatchV3CombineAddRmsNormV2;
  int kernelThreads = 1;  // C++ API only (the CANN API takes it from MOEDIST_KERNEL_THREADS)
  std::string kernels;    // CommOptions::kernels: "" (default), "cpu" or "ref"
  std::chrono::milliseconds timeout{120000};
  int layers = 1;               // dispatch -> FFN -> combine repeated on the same communicators, each one checked
  bool warmupDispatch = false;  // one extra dispatch of all ranks without elasticInfo first (the seed example)
  bool stridedInputs = false;   // pass the inputs as strided (non-contiguous) views
  // Ranks meet before and after each operator (for timing: no rank's FFN or checks take a core from a peer still
  // inside the call); false lets calls overlap.
  bool syncAroundEachOp = true;
  // runScenarioRank: where the ranks meet when syncAroundEachOp (an MPI_Barrier over the job, say); empty: nowhere.
  std::function<void()> rankBarrier;
  bool check = true;                 // compare with the reference model
  bool checkFirstLayerOnly = false;  // with check: only the first layer's outputs (timing runs: the checks between
                                     // layers stretch the next layer's calls, see `moedist run --check-layers`)
  // x and the expert rows that combine returns live in the communicator's memory space (moedist::memAlloc: the
  // shared-memory segment, the MPI window, page-aligned ordinary memory for in-process ranks), so that processes
  // publish them without a staging copy and every engine sees them laid out alike. The C++ APIs only.
  bool tensorsInCommMemory = false;
  // Hooks to corrupt one rank's arguments (error tests); run right before the call on that rank's thread.
  std::function<void(int tpIdx, int epRank, DispatchArgs&)> editDispatch;
  std::function<void(int tpIdx, int epRank, CombineArgs&)> editCombine;
  // Ranks that skip their calls although they take part (deadline tests).
  std::function<bool(int tpIdx, int epRank)> skipDispatch;
  std::function<bool(int tpIdx, int epRank)> skipCombine;
  // Ranks removed by elastic scale-in call dispatch anyway (which must fail on them alone).
  bool removedRanksCall = false;
  // kCppGeneral: the bytes of workspace a rank passes, given what workspaceBytes() returned (empty: exactly that;
  // 0 bytes means the rank's own arena), and an edit of the RankAttrs that rankAttrs() returned.
  std::function<size_t(int tpIdx, int epRank, size_t bytes)> workspaceSize;
  std::function<void(int tpIdx, int epRank, RankAttrs&)> editRanks;
};

struct RankResult {
  int tpIdx = 0;
  int epRank = 0;
  bool participates = true;
  int64_t ownRows = 0;    // rows received over EP (Nown)
  int64_t totalRows = 0;  // Nown + Npeer
  Status dispatchStatus;  // of the last layer
  Status combineStatus;
  double dispatchSeconds = 0;  // per call, the best layer
  double combineSeconds = 0;
  std::vector<double> dispatchLayerSeconds;  // per call, every layer in order (empty when the rank did not call)
  std::vector<double> combineLayerSeconds;
  int64_t peakRssBytes = 0;  // the peak resident set of the process that ran the rank, when the rank was done
  // kCppGeneral: what workspaceBytes() returned (the last layer), and whether the calls wrote into the workspace
  // they were given (which is filled with a pattern before each call).
  size_t dispatchWorkspaceBytes = 0;
  size_t combineWorkspaceBytes = 0;
  bool workspaceWritten = false;
};

struct RunResult {
  std::vector<RankResult> ranks;  // [tpIdx * W + epRank]
  // Statuses that were not ok, output mismatches, and outputs a failed call wrote anyway (these contain the
  // words "half-written"); at most 50.
  std::vector<std::string> failures;
  double dispatchSeconds = 0;  // slowest rank's time per call, best layer
  double combineSeconds = 0;
  std::vector<double> dispatchLayerSeconds;  // slowest rank's time per call, every layer
  std::vector<double> combineLayerSeconds;
  int64_t dispatchBytes = 0;  // payload bytes written by all ranks' dispatch (one layer)
  int64_t combineBytes = 0;   // payload bytes read back by all ranks' combine (one layer)
  // The bytes of the tensors the ranks of this process handed the operators (inputs, outputs and combine's expandX,
  // at the shapes the contract asks for): the memory a caller must have, to compare the peak resident set with.
  int64_t tensorBytes = 0;
  bool ok() const { return failures.empty(); }
  std::string summary() const;  // failures, one per line
};

RunResult runScenario(const Scenario& scenario, const RunOptions& options = {});

// Folds a participating rank's times into a run's: the slowest rank per call, of the best layer and of each layer.
void addRankTimes(const RankResult& rank, RunResult* run);

// The peak resident set of this process so far (getrusage), in bytes.
int64_t peakRssBytes();

// The CommOptions of the communicators runScenario creates: options.timeout, kernelThreads and kernels.
CommOptions commOptionsFor(const RunOptions& options);

// The part of EP rank `epRank` of TP group `tpIdx` in runScenario(scenario, options), with that rank's
// communicators: `ep` (W ranks, this one is rank epRank) and `tp` (the TP communicator of cfg.tp ranks, this one
// is rank tpIdx; nullptr when cfg.tp is 0), created with commOptionsFor(options). Every rank of the run calls it,
// each in its own process, and checks its own outputs against the reference model, which every process computes
// whole (the scenario is deterministic). C++ API only (kCpp or kCppGeneral). result.ranks holds this rank's RankResult
// alone, and the totals cover this rank alone.
RunResult runScenarioRank(const Scenario& scenario, const RunOptions& options, int tpIdx, int epRank,
                          const Communicator& ep, const Communicator* tp);

}  // namespace moedist::testing
