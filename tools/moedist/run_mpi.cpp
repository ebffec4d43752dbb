// `moedist run --engine mpi`: one MPI process per rank, under mpirun. Process p is EP rank p % W of TP group p / W,
// as the in-process harness numbers its threads. Every process builds the same scenario from the same flags and runs
// its own rank through the harness (runScenarioMpi: communicators from createMpiCommunicator over MPI_Comm_split of
// MPI_COMM_WORLD), which checks that rank's outputs against the reference model. The processes send their times, row
// counts and failures to process 0, which prints the summary: the slowest rank per call, as the in-process summary. So
// that both engines are timed on the same shapes, in the same run and on the same cores, process 0 then runs the
// scenario on the in-process engine while the others wait asleep, and prints the two side by side.
#include <fmt/format.h>

#include "run.h"

#if MOEDIST_TOOL_MPI
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "harness/mpi/mpi_run.h"
#include "moedist/mpi.h"
#include "mpi_job.h"
#endif

namespace moedist::tool {

#if MOEDIST_TOOL_MPI

namespace {

using testing::RankResult;
using testing::RunOptions;
using testing::RunResult;
using testing::Scenario;

constexpr size_t kMaxFailures = 50;  // printed by process 0, as many as one in-process run reports

// The number of hosts of the job (groups of processes that can share memory).
int hostCount() {
  MPI_Comm host = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &host);
  int rankOnHost = 0;
  MPI_Comm_rank(host, &rankOnHost);
  MPI_Comm_free(&host);
  const int first = rankOnHost == 0 ? 1 : 0;
  int hosts = 0;
  MPI_Allreduce(&first, &hosts, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  return hosts;
}

// What one process tells process 0 about its rank (sent as bytes: the hosts of one job share a data layout).
struct RankRecord {
  int64_t ran = 0;  // runScenarioRank got as far as running the rank
  int64_t participates = 0, ownRows = 0, totalRows = 0, dispatchBytes = 0, combineBytes = 0, peakRssBytes = 0;
  double dispatchSeconds = 0, combineSeconds = 0;
};

// On process 0: the failures of every process, in process order. Collective.
std::vector<std::string> gatherFailures(const std::vector<std::string>& mine) {
  std::string packed;  // each failure followed by '\0'
  for (const std::string& f : mine) packed += f + '\0';
  const int length = static_cast<int>(packed.size());
  const int n = processCount();
  std::vector<int> lengths(static_cast<size_t>(n)), offsets(static_cast<size_t>(n));
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  int total = 0;
  for (int q = 0; q < n; ++q) offsets[static_cast<size_t>(q)] = total, total += lengths[static_cast<size_t>(q)];
  std::string all(static_cast<size_t>(total), '\0');
  MPI_Gatherv(packed.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
  std::vector<std::string> out;
  for (size_t at = 0; at < all.size();) {
    const size_t end = all.find('\0', at);
    out.push_back(all.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

// The run on every process; the exit code is the same everywhere.
int runOnEveryProcess(const RunFlags& f, int threadLevel) {
  const bool root = processId() == 0;
  if (threadLevel < MPI_THREAD_MULTIPLE) {  // the harness runs each rank's calls on a thread of their own
    if (root)
      fmt::print(stderr, "moedist run --engine mpi: MPI_Init_thread did not provide MPI_THREAD_MULTIPLE (got {})\n",
                 threadLevel);
    return 2;
  }
  const Scenario sc = scenarioFrom(f);
  const int ranks = f.worldSize * sc.numGroups();
  if (processCount() != ranks) {
    if (root)
      fmt::print(stderr,
                 "moedist run --engine mpi: -w {}{} means {} ranks, one MPI process each, but the job has {} "
                 "process(es); run it as mpirun -np {} moedist run --engine mpi ...\n",
                 f.worldSize, sc.numGroups() > 1 ? " with --tp 2" : "", ranks, processCount(), ranks);
    return 2;
  }
  RunOptions o = runOptionsFrom(f, sc);
  o.rankBarrier = [timeout = o.timeout] { meetingBarrier(timeout); };  // the processes meet before each operator
  const int hosts = hostCount();
  if (root) {
    fmt::print("moedist run\n  {}\n", sc.describe());
    fmt::print(
        "  engine: MPI, {} ranks as processes on {} host(s), {} kernel thread(s) per rank, kernels {}; x and expert "
        "rows {}\n",
        ranks, hosts, f.kernelThreads, kernelsName(), publishedTensors(f, "shared window"));
    if (!f.engineOnly) fmt::print("  compared with: the in-process engine on process 0, {} ranks as threads\n", ranks);
    if (!f.noBaseline) fmt::print("  baseline: the same runs with the scalar reference kernels (\"ref\")\n");
    std::fflush(stdout);
  }
  EngineRuns mpi{"mpi", {}, {}};
  const auto onMpi = [&sc](const RunOptions& ro) { return runJob(sc, ro); };
  int rc = runEngine(f, sc, o, "MPI engine", onMpi, root, /*printRows=*/true, &mpi);
  if (rc != 0) return root ? writeJson(f, {mpi}, 0, rc) : rc;  // runJob's verdict is the same on every process

  // The same scenario on the in-process engine, on process 0, while the others sleep.
  if (root) {
    std::fflush(stdout);
    std::vector<EngineRuns> engines{mpi};
    if (!f.engineOnly) {
      EngineRuns inproc{"inproc", {}, {}};
      const auto onThreads = [&sc](const RunOptions& ro) { return testing::runScenario(sc, ro); };
      rc = runEngine(f, sc, runOptionsFrom(f, sc), "in-process engine", onThreads, true, /*printRows=*/false, &inproc);
      engines.push_back(inproc);
    }
    rc = writeJson(f, engines, rc == 0 ? printSummary(f, o, engines) : 0, rc);
    std::fflush(stdout);
  }
  sleepingBarrier();
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return rc;
}

}  // namespace

int processId() {
  int p = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &p);
  return p;
}

int processCount() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

void sleepingBarrier() {
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  for (int done = 0;;) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void meetingBarrier(std::chrono::milliseconds timeout) {
  const auto start = std::chrono::steady_clock::now();
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  for (int done = 0, polls = 0;; ++polls) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    if (polls % 1024 == 0 && std::chrono::steady_clock::now() - start > timeout) {
      fmt::print(stderr,
                 "moedist run: process {}: not every process came to the meeting before an operator within {} ms "
                 "(the operators' deadline): a process or its host is gone, or stopped; ending the job\n",
                 processId(), timeout.count());
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
  }
}

RunResult runJob(const Scenario& sc, const RunOptions& o) {
  const int W = sc.cfg.W, p = processId(), n = processCount();
  RunResult mine;
  try {
    mine = testing::runScenarioMpi(sc, o);  // the communicators are gone before the next run creates its own
  } catch (const std::exception& e) {
    mine.failures.push_back(fmt::format("process {}: {}", p, e.what()));
  }

  RankRecord record;
  if (!mine.ranks.empty()) {
    const RankResult& r = mine.ranks.front();
    record.ran = 1;
    record.participates = r.participates ? 1 : 0;
    record.ownRows = r.ownRows;
    record.totalRows = r.totalRows;
    record.dispatchSeconds = r.dispatchSeconds;
    record.combineSeconds = r.combineSeconds;
  }
  record.peakRssBytes = testing::peakRssBytes();
  record.dispatchBytes = mine.dispatchBytes;
  record.combineBytes = mine.combineBytes;
  std::vector<RankRecord> records(static_cast<size_t>(n));
  MPI_Gather(&record, sizeof(RankRecord), MPI_BYTE, records.data(), sizeof(RankRecord), MPI_BYTE, 0, MPI_COMM_WORLD);
  // Every layer's times, o.layers of each per process (zeros where a rank did not call).
  const auto gatherLayers = [&](std::vector<double> mine) {
    mine.resize(static_cast<size_t>(o.layers), 0.0);
    std::vector<double> all(static_cast<size_t>(o.layers) * static_cast<size_t>(n));
    MPI_Gather(mine.data(), o.layers, MPI_DOUBLE, all.data(), o.layers, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return all;
  };
  const RankResult none;
  const RankResult& own = mine.ranks.empty() ? none : mine.ranks.front();
  const std::vector<double> dispatchLayers = gatherLayers(own.dispatchLayerSeconds);
  const std::vector<double> combineLayers = gatherLayers(own.combineLayerSeconds);
  std::vector<std::string> failures = gatherFailures(mine.failures);
  const int failed = mine.ok() ? 0 : 1;
  int anyFailed = 0;
  MPI_Allreduce(&failed, &anyFailed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);

  RunResult job;
  if (p != 0) {
    if (anyFailed != 0) job.failures.push_back("failed (process 0 prints the failures of every process)");
    return job;
  }
  for (int q = 0; q < n; ++q) {
    const RankRecord& r = records[static_cast<size_t>(q)];
    RankResult rank;
    rank.tpIdx = q / W;
    rank.epRank = q % W;
    rank.participates = r.participates != 0;
    rank.ownRows = r.ownRows;
    rank.totalRows = r.totalRows;
    rank.dispatchSeconds = r.dispatchSeconds;
    rank.combineSeconds = r.combineSeconds;
    rank.peakRssBytes = r.peakRssBytes;
    const auto layers = [&](const std::vector<double>& all) {
      const auto first = all.begin() + static_cast<ptrdiff_t>(q) * o.layers;
      return std::vector<double>(first, first + o.layers);
    };
    rank.dispatchLayerSeconds = layers(dispatchLayers);
    rank.combineLayerSeconds = layers(combineLayers);
    job.ranks.push_back(rank);
    testing::addRankTimes(rank, &job);  // the slowest rank per call, as runScenario
    job.dispatchBytes += r.dispatchBytes;
    job.combineBytes += r.combineBytes;
  }
  if (failures.size() > kMaxFailures) {
    const size_t more = failures.size() - kMaxFailures;
    failures.resize(kMaxFailures);
    failures.push_back(fmt::format("... and {} more", more));
  }
  job.failures = std::move(failures);
  const bool everyRankRan = std::all_of(records.begin(), records.end(), [](const RankRecord& r) { return r.ran != 0; });
  if (!everyRankRan) job.ranks.clear();  // no rows table: the run stopped before the ranks ran
  return job;
}

int runMpi(const RunFlags& f) {
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
  const int rc = runOnEveryProcess(f, provided);
  MPI_Finalize();
  return rc;
}

#else

int runMpi(const RunFlags&) {
  fmt::print(stderr,
             "moedist run: --engine mpi: this moedist was built without MPI (CMake found none, so MOEDIST_WITH_MPI "
             "is OFF); install MPI (Open MPI or MPICH) and rebuild, or use --engine inproc\n");
  return 2;
}

#endif

}  // namespace moedist::tool
