// The end-to-end tests of the shared-memory engine: every rank a process forked by the test (runScenarioShm: process p
// is EP rank p % W of TP group p / W), with communicators from createShmCommunicator, each process checking its own
// outputs bit for bit against the reference model, untouched bytes included. The cases are the in-process ones
// (harness/grid.h, harness/features.h): every feature case (scale-in and TP pairs among them), and the points of the
// size grid that are cheap enough for processes (see kMaxGridWork), plus scale-in with a removed rank that calls
// anyway, back-to-back layers without barriers, and the harness's own checks (wrong rows are caught in other
// processes; a rank that crashes is reported, and does not hold the others until their deadline). The deadline and
// fault cases are in shm_fault_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ostream>
#include <string>
#include <vector>

#include "harness/features.h"
#include "harness/grid.h"
#include "harness/pipeline.h"
#include "harness/shm/shm_run.h"
#include "support/scoped_env.h"

namespace moedist::testing {
namespace {

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

// A deadline short enough that an engine which loses an event reports a timeout well before the ctest timeout.
RunOptions shmOptions() {
  RunOptions o;
  o.timeout = std::chrono::seconds(60);
  return o;
}

void expectMatches(const Scenario& sc, const RunResult& r) {
  EXPECT_TRUE(r.ok()) << sc.describe() << "\n" << r.summary();
  EXPECT_EQ(r.ranks.size(), static_cast<size_t>(sc.cfg.W * sc.numGroups())) << sc.describe();
}

// --- The size grid. Every process computes the reference model of the whole run (as under MPI), so a point costs
// about (rows of the run) x H x (processes); the points above kMaxGridWork (the largest Bs = 512 ones, and a few
// wide ones) are left to the in-process grid test. What is left still spans W 2..32, every H, K and L, Bs up to 64,
// every feature of the rotation (TP pairs and scale-in included).

constexpr double kMaxGridWork = 1.0e7;

double gridWork(const GridPoint& p) {
  return static_cast<double>(p.W) * p.Bs * std::min(p.L, p.K) * p.H * gridRanks(p);
}

std::vector<GridPoint> shmGridPoints() {
  std::vector<GridPoint> out;
  for (const GridPoint& p : gridPoints())
    if (p.Bs <= 64 && gridWork(p) <= kMaxGridWork) out.push_back(p);
  return out;
}

class ShmGrid : public ::testing::TestWithParam<GridPoint> {};

TEST_P(ShmGrid, MatchesReference) {
  Scenario sc;
  RunOptions o = shmOptions();
  gridCase(GetParam(), &sc, &o);
  o.tensorsInCommMemory = true;  // the grid publishes from memAlloc'd memory; the feature cases stage
  expectMatches(sc, runScenarioShm(sc, o));
}

INSTANTIATE_TEST_SUITE_P(Shm, ShmGrid, ::testing::ValuesIn(shmGridPoints()),
                         [](const ::testing::TestParamInfo<GridPoint>& info) { return info.param.name(); });

// --- Every feature case.

class ShmFeatures : public ::testing::TestWithParam<features::Case> {};

TEST_P(ShmFeatures, MatchesReference) {
  Scenario sc = features::base();
  RunOptions o = shmOptions();
  GetParam().setup(sc, o);
  expectMatches(sc, runScenarioShm(sc, o));
}

INSTANTIATE_TEST_SUITE_P(Shm, ShmFeatures, ::testing::ValuesIn(features::cases()),
                         [](const ::testing::TestParamInfo<features::Case>& info) { return info.param.name; });

// --- Elastic scale-in: the removed processes stay alive and never call; a removed rank that calls anyway fails
// there alone.

TEST(ShmElastic, RemovedRanksStayAliveAndDoNotCall) {
  Scenario sc = features::worldScenario(5, 197);
  sc.removedRanks = {1, 3};
  RunOptions o = shmOptions();
  o.warmupDispatch = true;  // the full world first, then the survivors, on the same communicators
  const RunResult r = runScenarioShm(sc, o);
  expectMatches(sc, r);
  ASSERT_EQ(r.ranks.size(), 5u);
  for (int e = 0; e < 5; ++e) EXPECT_EQ(r.ranks[static_cast<size_t>(e)].participates, e != 1 && e != 3) << e;
}

TEST(ShmElastic, RemovedSharedRankAndRankThatCallsAnyway) {
  Scenario sc = features::worldScenario(4, 197);
  sc.cfg.sharedExpertNum = 1, sc.cfg.sharedExpertRankNum = 1, sc.cfg.M = 6, sc.cfg.K = 3;
  sc.removedRanks = {3};
  RunOptions o = shmOptions();
  o.removedRanksCall = true;
  const RunResult r = runScenarioShm(sc, o);
  ASSERT_EQ(r.ranks.size(), 4u) << r.summary();
  const RankResult& removed = r.ranks[3];
  EXPECT_EQ(removed.dispatchStatus.code(), StatusCode::kInvalidArgument) << removed.dispatchStatus.toString();
  EXPECT_TRUE(contains(removed.dispatchStatus.message(), "was removed by the scale-in"))
      << removed.dispatchStatus.message();
  for (int e = 0; e < 3; ++e)
    EXPECT_TRUE(r.ranks[static_cast<size_t>(e)].dispatchStatus.ok())
        << r.ranks[static_cast<size_t>(e)].dispatchStatus.toString();
  for (const std::string& f : r.failures) EXPECT_TRUE(contains(f, "tp 0 ep rank 3")) << f;  // only the removed rank
}

// --- Layers back to back on the same communicators, with and without the barrier before each operator.

struct LayersCase {
  std::string name;
  bool tp;
  bool sync;
};

void PrintTo(const LayersCase& c, std::ostream* os) {
  *os << c.name;
}

class ShmLayers : public ::testing::TestWithParam<LayersCase> {};

TEST_P(ShmLayers, ThreeLayersMatchReference) {
  const LayersCase& c = GetParam();
  Scenario sc = features::worldScenario(4, 197);
  sc.cfg.quantMode = 2, sc.smoothScales = true;
  if (c.tp)  // one expert per MoE rank; commQuantMode 2 needs tp <= 1
    sc.cfg.tp = 2, sc.cfg.M = sc.cfg.W, sc.cfg.K = 3;
  else
    sc.cfg.commQuantMode = 2;
  RunOptions o = shmOptions();
  o.layers = 3;
  o.syncAroundEachOp = c.sync;
  o.kernelThreads = 2;
  expectMatches(sc, runScenarioShm(sc, o));
}

INSTANTIATE_TEST_SUITE_P(Shm, ShmLayers,
                         ::testing::Values(LayersCase{"Barriers", false, true}, LayersCase{"NoBarriers", false, false},
                                           LayersCase{"TpBarriers", true, true},
                                           LayersCase{"TpNoBarriers", true, false}),
                         [](const ::testing::TestParamInfo<LayersCase>& info) { return info.param.name; });

// --- The harness itself.

// Rank 0 dispatches other tokens than the scenario's; the processes that receive its rows find them wrong: the bytes
// that crossed the engine are what each process checks.
TEST(ShmHarness, ReceiversDetectWrongRows) {
  const Scenario sc = features::worldScenario(4, 197);
  const int64_t Bs = sc.bs[0], H = sc.cfg.H;
  std::vector<uint16_t> otherX(static_cast<size_t>(Bs * H), 0x3F80);  // bf16 1.0 everywhere
  RunOptions o = shmOptions();
  o.editDispatch = [&](int, int epRank, DispatchArgs& d) {
    if (epRank == 0) d.x = TensorView(otherX.data(), DType::kBFloat16, {Bs, H});
  };
  const RunResult r = runScenarioShm(sc, o);
  ASSERT_EQ(r.ranks.size(), 4u) << r.summary();
  for (const RankResult& k : r.ranks) EXPECT_TRUE(k.dispatchStatus.ok()) << k.dispatchStatus.toString();
  bool caught = false;
  for (const std::string& f : r.failures)
    caught = caught || (contains(f, "dispatch expandX") && !contains(f, "ep rank 0 "));
  EXPECT_TRUE(caught) << "no process other than rank 0's noticed its wrong rows:\n" << r.summary();
}

// A rank whose process dies (abort) right before its dispatch: the run reports it, and the others do not wait for
// their deadline (the engine sees the process gone).
TEST(ShmHarness, CrashedRankIsReportedPromptly) {
  const Scenario sc = features::worldScenario(4, 197);
  RunOptions o = shmOptions();
  o.timeout = std::chrono::seconds(30);
  o.editDispatch = [](int, int epRank, DispatchArgs&) {
    if (epRank == 2) {
      std::signal(SIGABRT, SIG_DFL);
      std::abort();
    }
  };
  const auto t0 = std::chrono::steady_clock::now();
  const RunResult r = runScenarioShm(sc, o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(r.ok());
  bool named = false;
  for (const std::string& f : r.failures) named = named || contains(f, "tp 0 ep rank 2 (process");
  EXPECT_TRUE(named) << r.summary();
  EXPECT_TRUE(contains(r.summary(), "Abort")) << r.summary();
  EXPECT_LT(seconds, 15.0) << "the survivors waited for their deadline:\n" << r.summary();
  std::printf("[ crash    ] run with a crashed rank ended after %.0f ms:\n%s", seconds * 1e3, r.summary().c_str());
}

}  // namespace
}  // namespace moedist::testing
