// The seed example's configuration end to end, the first test a change should pass.
#include <gtest/gtest.h>

#include "harness/pipeline.h"

namespace moedist::testing {
namespace {

Scenario seedExample() {
  Scenario sc;
  sc.cfg.W = 8;
  sc.cfg.M = 8;
  sc.cfg.K = 3;
  sc.cfg.H = 7168;
  sc.cfg.Z = 7;
  sc.cfg.C = 8;
  sc.cfg.Q = 10;
  sc.bs.assign(8, 8);
  sc.specialFraction = 0.3;
  sc.oriX = true;
  sc.constTensors = true;
  sc.sharedX = SharedXShape::k3D;
  return sc;
}

TEST(Smoke, SeedExample) {
  const RunResult r = runScenario(seedExample());
  EXPECT_TRUE(r.ok()) << r.summary();
}

TEST(Smoke, SeedExampleElasticDropsRanks2To5) {
  Scenario sc = seedExample();
  sc.removedRanks = {2, 3, 4, 5};
  RunOptions o;
  o.warmupDispatch = true;
  const RunResult r = runScenario(sc, o);
  EXPECT_TRUE(r.ok()) << r.summary();
}

// The harness must be able to fail: feed combine different router weights on one rank and expect mismatches.
TEST(Smoke, HarnessDetectsWrongOutputs) {
  Scenario sc = seedExample();
  std::vector<float> otherWeights(8 * 3, 0.25f);
  RunOptions o;
  o.editCombine = [&](int, int epRank, CombineArgs& c) {
    if (epRank == 5) c.expertScales = TensorView(otherWeights.data(), DType::kFloat32, {8, 3});
  };
  const RunResult r = runScenario(sc, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.summary().find("ep rank 5 combine token"), std::string::npos) << r.summary();
  for (const RankResult& rank : r.ranks) EXPECT_GT(rank.ownRows, 0) << "rank " << rank.epRank << " received nothing";
}

}  // namespace
}  // namespace moedist::testing
