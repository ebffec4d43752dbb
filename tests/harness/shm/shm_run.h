// The harness with one process per rank over the shared-memory engine (moedist/shm.h), with no launcher: the calling
// process makes the unique ids (one per EP group, one per TP pair) and forks one child per rank; process p is EP rank
// p % W of TP group p / W, as runScenario numbers its threads and runScenarioMpi its MPI processes. Each child creates
// its communicators with createShmCommunicator, runs its rank through runScenarioRank (which checks that rank's
// outputs against the reference model) and sends its result back over a pipe; the parent merges the results as
// runScenario does. Used by the shared-memory end-to-end tests and by `moedist run --engine shm`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "harness/pipeline.h"

namespace moedist::testing {

// Runs `sc` with `o` on W * numGroups forked processes. The ranks meet before each operator (when
// o.syncAroundEachOp) at a process-shared barrier in memory made before fork, whose waits are bounded by o.timeout
// + 60 s, and again after their last call (so that a rank that skips a call is late rather than gone); o.rankBarrier
// is ignored. The parent waits at most o.timeout + 60 s for its children: children still
// running then are killed (SIGKILL) and reported as failures, as are children that crashed. When any child could
// not create its communicators, every child returns without running and the result names the failures.
// The tensors a rank publishes (dispatch's x, combine's expandX) are in the caller's memory, which the engine stages
// into the segment every call, unless o.tensorsInCommMemory puts them in the segment (memAlloc).
RunResult runScenarioShm(const Scenario& sc, const RunOptions& o);

// One process's RunResult (runScenarioRank's: at most one rank) as bytes, and back (false: malformed or cut short).
// For results sent between processes (the children's pipes).
std::string encodeRunResult(const RunResult& r);
bool decodeRunResult(std::string_view bytes, RunResult* out);

// The results of the processes of one run, process p being EP rank p % W of TP group p / W, merged as runScenario
// reports a run on threads: every rank's RankResult in order (none when a process did not run its rank), the
// failures in process order (at most 50, then a line saying how many more), the slowest participating rank's time
// per call, and the byte totals.
RunResult mergeRunResults(int W, const std::vector<RunResult>& perProcess);

}  // namespace moedist::testing
