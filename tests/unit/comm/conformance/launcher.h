// The launcher of the engine conformance suite (engine_conformance_test.cpp): runs one test body per rank of a
// fresh N-rank communicator of a given engine kind, and collects what went wrong on each rank (gloo's transport
// tests: the same body, written once against Engine&, on every engine).
//
//   Kind         ranks are                          communicator
//   inproc       threads of this process            createInprocEngines
//   inproc_copy  threads of this process            createInprocEngines, each wrapped in a CopyingEngine
//   shm          threads of this process            shm::newUniqueId, then shm::createEngine on every rank thread
//   mpi_shm      the processes of the mpirun job    mpi::createEngine over the first N processes, shared window
//   mpi_msg      the processes of the mpirun job    the same, no window: every peer through messages
//
// Under MPI each process runs its own rank only (the job's size is fixed by mpirun): a case of N ranks runs on the
// first N processes, the others wait for it, and every process skips it when the job has fewer than N.
//
// Inside a body, check() records a failure and goes on, so that a rank still reaches the barriers its peers wait
// in; an exception (require()) ends the body and is recorded too.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/engine.h"

namespace moedist::conformance {

// One rank's view of a run.
class RankContext {
 public:
  virtual ~RankContext() = default;

  int rank() const { return rank_; }
  int ranks() const { return ranks_; }
  const std::string& kind() const { return kind_; }

  // This rank's engine (throws std::logic_error once destroyEngine() was called).
  virtual comm::Engine& engine() = 0;
  // Destroys this rank's engine now (a rank that departs). No barrier() after it: under MPI the destruction may wait
  // for the peers' engines (the shared window is freed collectively).
  virtual void destroyEngine() = 0;
  // Waits until every rank of the run has reached it (threads: every rank whose body is still running).
  virtual void barrier() = 0;

  // Records a failure of this rank (when !ok) and goes on.
  void check(bool ok, const std::string& what) {
    if (!ok) fail(what);
  }
  void fail(const std::string& what) { failures_.push_back(what); }
  const std::vector<std::string>& failures() const { return failures_; }

 protected:
  RankContext(std::string kind, int rank, int ranks) : kind_(std::move(kind)), rank_(rank), ranks_(ranks) {}

 private:
  std::string kind_;
  int rank_;
  int ranks_;
  std::vector<std::string> failures_;
};

using RankBody = std::function<void(RankContext&)>;

struct RankOutcome {
  int rank = -1;
  std::vector<std::string> failures;  // empty: the rank passed
};

struct RunResult {
  bool skipped = false;
  std::string skipReason;
  // Threads: every rank. MPI: this process's rank, or nothing when this process is not among the first N.
  std::vector<RankOutcome> ranks;
};

// The engine kinds this binary runs (the instantiation of the suite).
std::vector<std::string> kinds();

// Which participants' regions calls of `kind` map (when they fit the engine's memory): all (mapped() == true), none
// but this rank's own, or some (the MPI engine's shared window across test hosts, scripts/netns-hosts.sh, which sets
// MOEDIST_HOSTS: the ranks of this host only).
enum class Mapping { kAll, kNone, kSome };
Mapping kindMapping(const std::string& kind);

// Runs body on every rank of a fresh communicator of `numRanks` ranks of engine `kind` named after `name`. Throws
// std::runtime_error when the communicator cannot be created; aborts (with the running ranks) after `watchdog`.
RunResult runOnRanks(const std::string& kind, int numRanks, const std::string& name, const RankBody& body,
                     std::chrono::milliseconds watchdog = std::chrono::minutes(2));

}  // namespace moedist::conformance
