// launcher.h: ranks as threads (in-process and shared-memory engines) or as the processes of an mpirun job.
#include "launcher.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "comm/copying_engine.h"
#include "comm/registry.h"
#include "support/rank_launcher.h"

#ifdef MOEDIST_HAVE_SHM_ENGINE
#include "comm/shm/shm_engine.h"
#endif
#ifdef MOEDIST_CONFORMANCE_MPI
#include <mpi.h>

#include "comm/mpi/mpi_engine.h"
#endif

namespace moedist::conformance {

namespace {

using comm::Engine;
using namespace std::chrono_literals;

constexpr auto kBarrierTimeout = 60s;
[[maybe_unused]] constexpr size_t kEngineMemory = size_t{64} << 20;  // shared window / segment per rank

// A barrier among the threads of a run that forgets the ranks whose body has ended, so that a rank that failed
// (or departed) never leaves the others waiting.
#ifndef MOEDIST_CONFORMANCE_MPI

class ThreadBarrier {
 public:
  explicit ThreadBarrier(int ranks) : active_(ranks) {}

  void arriveAndWait() {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t generation = generation_;
    if (++arrived_ >= active_) {
      release();
      return;
    }
    if (!cv_.wait_for(lock, kBarrierTimeout, [&] { return generation_ != generation; })) {
      --arrived_;
      throw std::runtime_error("barrier: the other ranks did not arrive within 60 s");
    }
  }

  // A rank's body has ended: it takes part in no more barriers.
  void leave() {
    std::lock_guard<std::mutex> lock(mu_);
    --active_;
    if (arrived_ > 0 && arrived_ >= active_) release();
  }

 private:
  void release() {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  int active_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

class ThreadRank final : public RankContext {
 public:
  ThreadRank(const std::string& kind, int rank, int ranks, std::unique_ptr<Engine>* slot, ThreadBarrier* barrier)
      : RankContext(kind, rank, ranks), slot_(slot), barrier_(barrier) {}

  Engine& engine() override {
    if (!*slot_) throw std::logic_error("rank " + std::to_string(rank()) + ": the engine was destroyed");
    return **slot_;
  }
  void destroyEngine() override { slot_->reset(); }
  void barrier() override { barrier_->arriveAndWait(); }

 private:
  std::unique_ptr<Engine>* slot_;
  ThreadBarrier* barrier_;
};

RunResult runThreads(const std::string& kind, int numRanks, const std::string& name, const RankBody& body,
                     std::chrono::milliseconds watchdog) {
  std::vector<std::unique_ptr<Engine>> engines;
  std::string shmId;
  if (kind == "inproc" || kind == "inproc_copy") {
    const Status s = comm::createInprocEngines(name, numRanks, &engines);
    if (!s.ok()) throw std::runtime_error("createInprocEngines: " + s.toString());
    if (kind == "inproc_copy")
      for (auto& e : engines) e = std::make_unique<comm::CopyingEngine>(std::move(e));
  } else if (kind == "shm") {
#ifdef MOEDIST_HAVE_SHM_ENGINE
    const Status s = comm::shm::newUniqueId(&shmId);
    if (!s.ok()) throw std::runtime_error("shm::newUniqueId: " + s.toString());
    engines.resize(static_cast<size_t>(numRanks));
#else
    throw std::runtime_error("the shared-memory engine is not built");
#endif
  } else {
    throw std::runtime_error("unknown engine kind '" + kind + "'");
  }

  ThreadBarrier barrier(numRanks);
  std::vector<std::unique_ptr<ThreadRank>> contexts;
  for (int r = 0; r < numRanks; ++r)
    contexts.push_back(std::make_unique<ThreadRank>(kind, r, numRanks, &engines[static_cast<size_t>(r)], &barrier));

  const std::vector<std::string> errors = testing::runRanks(
      numRanks,
      [&](int rank) {
        struct Leave {
          ThreadBarrier& b;
          ~Leave() { b.leave(); }
        } leave{barrier};
#ifdef MOEDIST_HAVE_SHM_ENGINE
        if (kind == "shm") {
          comm::shm::Options options;
          options.name = name;
          options.segmentBytes = kEngineMemory;
          options.connectTimeout = 30s;
          const Status s = comm::shm::createEngine(shmId, numRanks, rank, options, &engines[static_cast<size_t>(rank)]);
          if (!s.ok()) throw std::runtime_error("shm::createEngine: " + s.toString());
        }
#endif
        body(*contexts[static_cast<size_t>(rank)]);
      },
      watchdog);

  RunResult result;
  for (int r = 0; r < numRanks; ++r) {
    RankOutcome outcome;
    outcome.rank = r;
    outcome.failures = contexts[static_cast<size_t>(r)]->failures();
    if (!errors[static_cast<size_t>(r)].empty())
      outcome.failures.push_back("ended by: " + errors[static_cast<size_t>(r)]);
    result.ranks.push_back(std::move(outcome));
  }
  engines.clear();
  return result;
}

#endif  // !MOEDIST_CONFORMANCE_MPI

#ifdef MOEDIST_CONFORMANCE_MPI

// A barrier that sleeps while it waits (the idle processes of a job must not take the cores from the busy ones) and
// aborts the job rather than hang when some process never arrives.
void politeBarrier(MPI_Comm comm, const char* what) {
  MPI_Request request;
  MPI_Ibarrier(comm, &request);
  const auto until = std::chrono::steady_clock::now() + kBarrierTimeout;
  for (;;) {
    int done = 0;
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    if (std::chrono::steady_clock::now() > until) {
      int me = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &me);
      std::fprintf(stderr, "[process %d] %s: the other processes did not arrive within 60 s; aborting\n", me, what);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    std::this_thread::sleep_for(200us);
  }
}

class MpiRank final : public RankContext {
 public:
  MpiRank(const std::string& kind, int rank, int ranks, std::unique_ptr<Engine>* engine, MPI_Comm comm)
      : RankContext(kind, rank, ranks), engine_(engine), comm_(comm) {}

  Engine& engine() override {
    if (!*engine_) throw std::logic_error("rank " + std::to_string(rank()) + ": the engine was destroyed");
    return **engine_;
  }
  void destroyEngine() override { engine_->reset(); }
  void barrier() override { politeBarrier(comm_, "barrier of a test body"); }

 private:
  std::unique_ptr<Engine>* engine_;
  MPI_Comm comm_;
};

RunResult runMpi(const std::string& kind, int numRanks, const std::string& name, const RankBody& body,
                 std::chrono::milliseconds watchdog) {
  if (kind != "mpi_shm" && kind != "mpi_msg") throw std::runtime_error("unknown engine kind '" + kind + "'");
  int me = 0, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  RunResult result;
  if (world < numRanks) {
    result.skipped = true;
    result.skipReason = "needs " + std::to_string(numRanks) + " processes, the job has " + std::to_string(world);
    return result;
  }
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, me < numRanks ? 0 : MPI_UNDEFINED, me, &comm);
  if (me < numRanks) {
    std::unique_ptr<Engine> engine;
    const Status s = comm::mpi::createEngine(comm, name, kind == "mpi_shm", kEngineMemory, &engine);
    RankOutcome outcome;
    outcome.rank = me;
    if (!s.ok()) {
      outcome.failures.push_back("mpi::createEngine: " + s.toString());
    } else {
      MpiRank context(kind, me, numRanks, &engine, comm);
      // On a thread of its own for the rank launcher's watchdog (mpi_main.cpp asks for MPI_THREAD_MULTIPLE).
      const std::vector<std::string> errors = testing::runRanks(
          1, [&](int) { body(context); }, watchdog);
      outcome.failures = context.failures();
      if (!errors[0].empty()) outcome.failures.push_back("ended by: " + errors[0]);
    }
    result.ranks.push_back(std::move(outcome));
    engine.reset();  // collective over the ranks of this host (the shared window)
    MPI_Comm_free(&comm);
  }
  politeBarrier(MPI_COMM_WORLD, "end of a test case");
  return result;
}

#endif  // MOEDIST_CONFORMANCE_MPI

}  // namespace

std::vector<std::string> kinds() {
#ifdef MOEDIST_CONFORMANCE_MPI
  return {"mpi_shm", "mpi_msg"};
#else
  std::vector<std::string> k = {"inproc", "inproc_copy"};
#ifdef MOEDIST_HAVE_SHM_ENGINE
  k.push_back("shm");
#endif
  return k;
#endif
}

Mapping kindMapping(const std::string& kind) {
  if (kind == "mpi_shm") {
    const char* hosts = std::getenv("MOEDIST_HOSTS");
    return hosts != nullptr && std::atoi(hosts) > 1 ? Mapping::kSome : Mapping::kAll;
  }
  return kind == "inproc" || kind == "shm" ? Mapping::kAll : Mapping::kNone;
}

RunResult runOnRanks(const std::string& kind, int numRanks, const std::string& name, const RankBody& body,
                     std::chrono::milliseconds watchdog) {
  if (numRanks < 1) throw std::invalid_argument("runOnRanks: numRanks is " + std::to_string(numRanks));
#ifdef MOEDIST_CONFORMANCE_MPI
  return runMpi(kind, numRanks, name, body, watchdog);
#else
  return runThreads(kind, numRanks, name, body, watchdog);
#endif
}

}  // namespace moedist::conformance
