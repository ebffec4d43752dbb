// The end-to-end tests of the MPI engine: every process of the job is one rank (process p is EP rank p % W of TP
// group p / W, as runScenario numbers its threads), with communicators from createMpiCommunicator over
// MPI_Comm_split of MPI_COMM_WORLD. Each process builds the same scenario, runs its own rank through the harness
// (runScenarioRank) and checks its outputs bit for bit against the reference model, untouched bytes included.
// The cases are the in-process ones (harness/grid.h, harness/features.h) whose number of ranks is the number of
// processes (the grid topped up with small points where its sample has few), plus scale-in, deadlines,
// back-to-back layers and the point-to-point data path (MOEDIST_MPI_SHM=0).
// Every test ends with the processes agreeing on its verdict, so that process 0's report names a test that failed
// on another process only.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "harness/features.h"
#include "harness/grid.h"
#include "harness/mpi/mpi_run.h"
#include "harness/pipeline.h"
#include "support/scoped_env.h"

namespace moedist::testing {
namespace {

int processCount() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

int processId() {
  int p = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &p);
  return p;
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

// The largest value over all processes.
double maxOverProcesses(double mine) {
  double all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return all;
}

// The number of processes for which `mine` holds.
int countOverProcesses(bool mine) {
  const int one = mine ? 1 : 0;
  int all = 0;
  MPI_Allreduce(&one, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  return all;
}

class MpiTest : public ::testing::Test {
 protected:
  void TearDown() override {
    const int mine = HasFailure() ? 1 : 0;
    int any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any != 0 && mine == 0) ADD_FAILURE() << "failed on another process (its lines start with [process p])";
  }
};

// What the MPI tests change in the default options: a deadline short enough that an engine which loses a message
// reports it as a timeout well before the ctest timeout, and the processes meeting before each operator, as the
// threads of runScenario do.
RunOptions mpiOptions() {
  RunOptions o;
  o.timeout = std::chrono::seconds(60);
  o.rankBarrier = [] { MPI_Barrier(MPI_COMM_WORLD); };
  return o;
}

// Runs this process's rank of `sc` (runScenarioMpi). `shm`: the value of MOEDIST_MPI_SHM while the communicators
// are created (nullopt: the environment's, unset by default).
RunResult runHere(const Scenario& sc, const RunOptions& o, std::optional<std::string> shm = std::nullopt) {
  std::optional<ScopedEnv> env;
  if (shm) env.emplace("MOEDIST_MPI_SHM", *shm);
  return runScenarioMpi(sc, o);
}

std::string where() {
  return "process " + std::to_string(processId()) + " of " + std::to_string(processCount());
}

void expectMatches(const Scenario& sc, const RunResult& r) {
  EXPECT_TRUE(r.ok()) << where() << ": " << sc.describe() << "\n" << r.summary();
}

// --- Across test hosts (scripts/netns-hosts.sh, which sets MOEDIST_HOSTS): the job spans that many hosts, each with
// a network stack of its own, and Open MPI's shared memory joins only the processes of one host, so the engine's
// window holds a host's ranks only and every other rank is reached through messages over TCP.

class MpiHosts : public MpiTest {};

TEST_F(MpiHosts, EachHostHasItsOwnNetworkAndSharedMemory) {
  const char* hosts = std::getenv("MOEDIST_HOSTS");
  if (hosts == nullptr) GTEST_SKIP() << "not across test hosts (MOEDIST_HOSTS is unset)";
  const int expected = std::atoi(hosts);
  // The network namespace of each process, by inode.
  struct stat ns {};
  ASSERT_EQ(::stat("/proc/self/ns/net", &ns), 0);
  const auto mine = static_cast<unsigned long long>(ns.st_ino);
  std::vector<unsigned long long> all(static_cast<size_t>(processCount()));
  MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all.data(), 1, MPI_UNSIGNED_LONG_LONG, MPI_COMM_WORLD);
  const auto sameHost = std::count(all.begin(), all.end(), mine);
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::unique(all.begin(), all.end()) - all.begin(), expected) << "network namespaces among the processes";

  // The processes that share memory with this one, as MPI sees them (and as the engine splits them).
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int onNode = 0;
  MPI_Comm_size(node, &onNode);
  MPI_Comm_free(&node);
  EXPECT_EQ(onNode, sameHost) << where() << ": MPI's shared-memory node should be exactly the processes of this host";
}

// --- The checks can fail: process 0 dispatches other tokens than the scenario's, and the processes that receive its
// rows find them wrong. Bytes that crossed the engine are what each process checks.

class MpiHarness : public MpiTest {};

TEST_F(MpiHarness, ReceiversDetectWrongRows) {
  const int N = processCount();
  const Scenario sc = features::worldScenario(N, 97);
  const int64_t Bs = sc.bs[0], H = sc.cfg.H;
  std::vector<uint16_t> otherX(static_cast<size_t>(Bs * H), 0x3F80);  // bf16 1.0 everywhere
  RunOptions o = mpiOptions();
  o.editDispatch = [&](int, int epRank, DispatchArgs& d) {
    if (epRank == 0) d.x = TensorView(otherX.data(), DType::kBFloat16, {Bs, H});
  };
  const RunResult r = runHere(sc, o);
  ASSERT_EQ(r.ranks.size(), 1u);
  EXPECT_TRUE(r.ranks[0].dispatchStatus.ok()) << where() << ": " << r.ranks[0].dispatchStatus.toString();
  const bool caught = processId() != 0 && contains(r.summary(), "dispatch expandX");
  EXPECT_GT(countOverProcesses(caught), 0) << "no process other than 0 noticed process 0's wrong rows";
}

// --- The size grid, at the points with as many ranks as the job has processes (topped up with small points where
// the sample has few).

class MpiGrid : public MpiTest, public ::testing::WithParamInterface<GridPoint> {};

TEST_P(MpiGrid, MatchesReference) {
  Scenario sc;
  RunOptions o = mpiOptions();
  gridCase(GetParam(), &sc, &o);
  // As in the in-process grid test, the large corners need more than CANN's default 200 MB window; the points of up
  // to 8 ranks need 388 MB at most. Not the in-process test's 4096: every rank allocates a shared window of this
  // size, and the windows of all the host's ranks must fit in /dev/shm together (their pages are touched only when
  // used, but Open MPI reserves the space).
  ScopedEnv buffSize("HCCL_BUFFSIZE", "512");
  expectMatches(sc, runHere(sc, o));
}

INSTANTIATE_TEST_SUITE_P(MPI, MpiGrid, ::testing::ValuesIn(gridPointsWithRanks(processCount())),
                         [](const ::testing::TestParamInfo<GridPoint>& info) { return info.param.name(); });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(MpiGrid);  // a job of one process

// --- The feature cases with as many ranks as the job has processes.

std::vector<features::Case> featureCasesHere() {
  std::vector<features::Case> out;
  for (const features::Case& c : features::cases()) {
    Scenario sc = features::base();
    RunOptions o;
    c.setup(sc, o);
    if (sc.numGroups() * sc.cfg.W == processCount()) out.push_back(c);
  }
  return out;
}

class MpiFeatures : public MpiTest, public ::testing::WithParamInterface<features::Case> {};

TEST_P(MpiFeatures, MatchesReference) {
  Scenario sc = features::base();
  RunOptions o = mpiOptions();
  GetParam().setup(sc, o);
  expectMatches(sc, runHere(sc, o));
}

INSTANTIATE_TEST_SUITE_P(MPI, MpiFeatures, ::testing::ValuesIn(featureCasesHere()),
                         [](const ::testing::TestParamInfo<features::Case>& info) { return info.param.name; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(MpiFeatures);

// --- Elastic scale-in: the removed processes stay in the job but never call; the survivors' outputs are the
// reference model's.

class MpiElastic : public MpiTest {};

TEST_F(MpiElastic, RemovedRanksStayAliveAndDoNotCall) {
  const int N = processCount();
  Scenario sc = features::worldScenario(N, 97);
  sc.removedRanks = {N - 1};
  if (N >= 4) sc.removedRanks = {1, N - 2};  // one from the middle, survivors on both sides
  const RunResult r = runHere(sc, mpiOptions());
  expectMatches(sc, r);
  ASSERT_EQ(r.ranks.size(), 1u);
  const bool removed = std::find(sc.removedRanks.begin(), sc.removedRanks.end(), processId()) != sc.removedRanks.end();
  EXPECT_EQ(r.ranks[0].participates, !removed) << where();
}

TEST_F(MpiElastic, RemovedSharedRankAndRankThatCallsAnyway) {
  const int N = processCount();
  Scenario sc = features::worldScenario(N, 97);
  if (N >= 3) {  // a shared expert on rank 0 of N, which stays; the last rank goes
    sc.cfg.sharedExpertNum = 1, sc.cfg.sharedExpertRankNum = 1, sc.cfg.M = 2 * (N - 1);
    sc.cfg.K = std::min(3, 2 * (N - 2));
  }
  sc.removedRanks = {N - 1};
  RunOptions o = mpiOptions();
  o.removedRanksCall = true;  // the removed rank calls dispatch: it must fail there alone, without a peer
  const RunResult r = runHere(sc, o);
  ASSERT_EQ(r.ranks.size(), 1u);
  const RankResult& me = r.ranks[0];
  if (processId() == N - 1) {
    EXPECT_EQ(me.dispatchStatus.code(), StatusCode::kInvalidArgument) << me.dispatchStatus.toString();
    EXPECT_TRUE(contains(me.dispatchStatus.message(), "was removed by the scale-in")) << me.dispatchStatus.message();
  } else {
    expectMatches(sc, r);
  }
}

// --- Layers back to back on the same communicators, through both data paths of the engine: shared-memory windows
// (the default on one host) and point-to-point messages for every peer (MOEDIST_MPI_SHM=0, as across hosts); on the
// windows with x and the expert rows in the caller's memory (staged) and in the window (memAlloc, in place).

struct PathCase {
  std::string name;
  std::optional<std::string> shm;  // MOEDIST_MPI_SHM
  bool tp;                         // TP pairs: W = processes / 2
  bool sync;                       // syncAroundEachOp: false lets the layers' calls overlap
  bool memAlloc = false;           // tensorsInCommMemory
};

void PrintTo(const PathCase& c, std::ostream* os) {
  *os << c.name;
}

std::vector<PathCase> pathCasesHere() {
  std::vector<PathCase> out = {
      {"SharedMemory", std::nullopt, false, true},
      {"SharedMemoryNoBarriers", std::nullopt, false, false},
      {"PointToPoint", "0", false, true},
      {"PointToPointNoBarriers", "0", false, false},
      {"SharedMemoryMemAlloc", std::nullopt, false, true, true},
      {"SharedMemoryMemAllocNoBarriers", std::nullopt, false, false, true},
      {"PointToPointMemAlloc", "0", false, true, true},
  };
  if (processCount() % 2 == 0 && processCount() >= 4) {  // TP pairs of EP groups of at least 2 ranks
    out.push_back({"SharedMemoryTp", std::nullopt, true, true});
    out.push_back({"PointToPointTp", "0", true, false});
    out.push_back({"SharedMemoryMemAllocTp", std::nullopt, true, false, true});
  }
  return out;
}

class MpiLayers : public MpiTest, public ::testing::WithParamInterface<PathCase> {};

TEST_P(MpiLayers, ThreeLayersMatchReference) {
  const PathCase& c = GetParam();
  const int N = processCount();
  Scenario sc = features::worldScenario(c.tp ? N / 2 : N, 97);
  sc.cfg.quantMode = 2, sc.smoothScales = true;
  if (c.tp)  // one expert per MoE rank; commQuantMode 2 needs tp <= 1
    sc.cfg.tp = 2, sc.cfg.M = sc.cfg.W, sc.cfg.K = std::min(sc.cfg.K, sc.cfg.M);
  else
    sc.cfg.commQuantMode = 2;
  RunOptions o = mpiOptions();
  o.layers = 3;
  o.syncAroundEachOp = c.sync;
  o.tensorsInCommMemory = c.memAlloc;
  o.kernelThreads = 2;
  expectMatches(sc, runHere(sc, o, c.shm));
}

INSTANTIATE_TEST_SUITE_P(MPI, MpiLayers, ::testing::ValuesIn(pathCasesHere()),
                         [](const ::testing::TestParamInfo<PathCase>& info) { return info.param.name; });

// --- Deadlines: one process skips a call; every other one returns kTimeout naming it, near the deadline, with
// nothing half-written; then the job goes on with fresh communicators, on both data paths. Last in the file, so
// that they run last: a deadline leaves messages to ranks that never read them, and an engine that lets those
// reach a later communicator fails the rerun here, with the messages named, rather than a later test.

constexpr std::chrono::milliseconds kShortTimeout{1500};
// Above the deadline a timed-out call may take: the engine's polling interval, the messages that tell the others
// that a call was abandoned, and up to 8 processes sharing 2 cores.
constexpr std::chrono::milliseconds kDeadlineMargin{3000};

class MpiDeadlines : public MpiTest, public ::testing::WithParamInterface<std::optional<std::string>> {
 protected:
  // Checks this process's part of a run in which process `skipper` skipped a call (`dispatch` or combine), and
  // reports the slowest timed-out call of the job on process 0.
  void expectTimedOut(const RunResult& r, int skipper, bool dispatch) {
    ASSERT_EQ(r.ranks.size(), 1u);
    const RankResult& me = r.ranks[0];
    const Status& s = dispatch ? me.dispatchStatus : me.combineStatus;
    const double seconds = dispatch ? me.dispatchSeconds : me.combineSeconds;
    const double timeout = std::chrono::duration<double>(kShortTimeout).count();
    const double margin = std::chrono::duration<double>(kDeadlineMargin).count();
    if (processId() != skipper) {
      EXPECT_EQ(s.code(), StatusCode::kTimeout) << where() << ": " << s.toString();
      EXPECT_TRUE(contains(s.message(), "rank(s) " + std::to_string(skipper))) << where() << ": " << s.message();
      EXPECT_TRUE(contains(s.message(), dispatch ? "DispatchV3" : "CombineAddRmsNormV2"))
          << where() << ": " << s.message();
      // Not before the deadline (the skipper could still have come), and not long after it.
      EXPECT_GE(seconds, timeout * 0.5) << where() << ": " << s.toString();
      EXPECT_LE(seconds, timeout + margin) << where() << ": " << s.toString();
    } else {
      EXPECT_TRUE(r.ok()) << where() << " (the skipper): " << r.summary();
    }
    for (const std::string& f : r.failures) EXPECT_FALSE(contains(f, "half-written")) << where() << ": " << f;
    const double slowest = maxOverProcesses(processId() != skipper ? seconds : 0);
    if (processId() == 0)
      std::printf("[ deadline ] %d processes: slowest timed-out %s returned after %.0f ms (timeout %lld ms)\n",
                  processCount(), dispatch ? "dispatch" : "combine", slowest * 1e3,
                  static_cast<long long>(kShortTimeout.count()));
  }
};

TEST_P(MpiDeadlines, DispatchRankThatNeverArrivesIsNamed) {
  const int N = processCount();
  const Scenario sc = features::worldScenario(N, 97);
  RunOptions o = mpiOptions();
  o.timeout = kShortTimeout;
  o.skipDispatch = [N](int, int epRank) { return epRank == N - 1; };
  expectTimedOut(runHere(sc, o, GetParam()), N - 1, true);
  // The job goes on: the next run, on fresh communicators, meets no trace of the abandoned call.
  expectMatches(sc, runHere(sc, mpiOptions(), GetParam()));
}

TEST_P(MpiDeadlines, CombineRankThatNeverArrivesIsNamed) {
  const int N = processCount();
  const Scenario sc = features::worldScenario(N, 97);
  RunOptions o = mpiOptions();
  o.timeout = kShortTimeout;
  o.skipCombine = [](int, int epRank) { return epRank == 0; };
  expectTimedOut(runHere(sc, o, GetParam()), 0, false);
  expectMatches(sc, runHere(sc, mpiOptions(), GetParam()));
}

// MOEDIST_MPI_SHM: the engine's default (shared memory on one host), and point-to-point messages for every peer.
INSTANTIATE_TEST_SUITE_P(MPI, MpiDeadlines, ::testing::Values(std::nullopt, std::optional<std::string>("0")),
                         [](const ::testing::TestParamInfo<std::optional<std::string>>& info) {
                           return std::string(info.param ? "PointToPoint" : "SharedMemory");
                         });

}  // namespace
}  // namespace moedist::testing
