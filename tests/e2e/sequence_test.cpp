// Back-to-back use of one communicator (SPEC 7.3): dispatch, dispatch, combine as the seed example's warm-up
// does; many layers in a row with no barrier between calls, so that ranks run ahead into the next call while
// their peers still finish the previous one; EP and TP communicators used by the same threads; and identical bytes
// whatever the kernel thread count.
#include <gtest/gtest.h>

#include "harness/pipeline.h"

namespace moedist::testing {
namespace {

Scenario small(int W) {
  Scenario sc;
  sc.cfg.W = W;
  sc.cfg.M = 2 * W;
  sc.cfg.K = 3;
  sc.cfg.H = 1024;
  sc.bs.assign(static_cast<size_t>(W), 6);
  sc.seed = 99;
  return sc;
}

TEST(Sequence, DispatchDispatchCombine) {
  RunOptions o;
  o.warmupDispatch = true;
  const RunResult r = runScenario(small(8), o);
  EXPECT_TRUE(r.ok()) << r.summary();
}

TEST(Sequence, HundredLayersWithoutBarriers) {
  Scenario sc = small(8);
  sc.cfg.maskDims = 2;
  RunOptions o;
  o.layers = 100;
  o.syncAroundEachOp = false;
  const RunResult r = runScenario(sc, o);
  EXPECT_TRUE(r.ok()) << r.summary();
}

TEST(Sequence, HundredLayersTpPairsWithoutBarriers) {
  Scenario sc = small(4);
  sc.cfg.M = 4;
  sc.cfg.tp = 2;
  sc.cfg.quantMode = 2;
  RunOptions o;
  o.layers = 100;
  o.syncAroundEachOp = false;
  const RunResult r = runScenario(sc, o);
  EXPECT_TRUE(r.ok()) << r.summary();
}

TEST(Sequence, LayersAfterScaleInWithWarmup) {
  Scenario sc = small(8);
  sc.removedRanks = {2, 3, 4, 5};
  RunOptions o;
  o.warmupDispatch = true;
  o.layers = 20;
  o.syncAroundEachOp = false;
  const RunResult r = runScenario(sc, o);
  EXPECT_TRUE(r.ok()) << r.summary();
}

// The seed example's shape of use through the CANN C API: all ranks dispatch, the survivors dispatch and combine
// with elasticInfo, then keep going for more layers.
TEST(Sequence, CannApiLayersAfterScaleInWithWarmup) {
  Scenario sc = small(8);
  sc.removedRanks = {2, 3, 4, 5};
  sc.cfg.Z = 2, sc.cfg.C = 1, sc.oriX = true, sc.specialFraction = 0.2;
  RunOptions o;
  o.api = Api::kCann;
  o.warmupDispatch = true;
  o.layers = 20;
  o.syncAroundEachOp = false;
  const RunResult r = runScenario(sc, o);
  EXPECT_TRUE(r.ok()) << r.summary();
}

TEST(Sequence, CannApiHundredLayersTpPairs) {
  Scenario sc = small(4);
  sc.cfg.M = 4;
  sc.cfg.tp = 2;
  RunOptions o;
  o.api = Api::kCann;
  o.layers = 100;
  o.syncAroundEachOp = false;
  const RunResult r = runScenario(sc, o);
  EXPECT_TRUE(r.ok()) << r.summary();
}

// Matching the reference bit for bit with 1, 2 and 4 kernel threads means identical bytes for all three.
TEST(Determinism, IdenticalBytesWhateverTheThreadCount) {
  Scenario sc = small(4);
  sc.cfg.H = 7168;
  sc.bs.assign(4, 64);
  sc.cfg.Z = 2, sc.cfg.C = 1, sc.cfg.Q = 1, sc.specialFraction = 0.2, sc.oriX = true, sc.constTensors = true;
  sc.sharedX = SharedXShape::k2D;
  for (int threads : {1, 2, 4}) {
    RunOptions o;
    o.kernelThreads = threads;
    const RunResult r = runScenario(sc, o);
    EXPECT_TRUE(r.ok()) << threads << " kernel threads\n" << r.summary();
  }
}

}  // namespace
}  // namespace moedist::testing
