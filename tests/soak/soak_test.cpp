// Soak: many layers in a row on the same communicators, with no barrier between calls, in several feature mixes.
// Label `soak`. CI runs the bounded default; set MOEDIST_SOAK_LAYERS for a longer run (for example 100000).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "harness/pipeline.h"

namespace moedist::testing {
namespace {

int soakLayers() {
  const char* v = std::getenv("MOEDIST_SOAK_LAYERS");
  return v != nullptr && std::atoi(v) > 0 ? std::atoi(v) : 300;
}

Scenario base(int W) {
  Scenario sc;
  sc.cfg.W = W;
  sc.cfg.M = 2 * W;
  sc.cfg.K = 4;
  sc.cfg.H = 1024;
  sc.bs.assign(static_cast<size_t>(W), 16);
  sc.seed = 2026;
  return sc;
}

void soak(const Scenario& sc) {
  RunOptions o;
  o.layers = soakLayers();
  o.syncAroundEachOp = false;
  o.kernelThreads = 2;
  const RunResult r = runScenario(sc, o);
  EXPECT_TRUE(r.ok()) << sc.describe() << "\n" << r.summary();
}

TEST(Soak, SpecialsMaskQuantSixteenRanks) {
  Scenario sc = base(16);
  sc.cfg.Z = 2, sc.cfg.C = 2, sc.cfg.Q = 2, sc.specialFraction = 0.2, sc.oriX = true, sc.constTensors = true;
  sc.cfg.maskDims = 2, sc.cfg.quantMode = 2, sc.smoothScales = true;
  soak(sc);
}

TEST(Soak, SharedExpertsAfterScaleIn) {
  Scenario sc = base(8);
  sc.cfg.sharedExpertNum = 1, sc.cfg.sharedExpertRankNum = 2, sc.cfg.M = 12;
  sc.removedRanks = {1, 5};
  soak(sc);
}

TEST(Soak, TpPairsCommQuantOff) {
  Scenario sc = base(4);
  sc.cfg.M = 4, sc.cfg.tp = 2, sc.cfg.maskDims = 1;
  soak(sc);
}

}  // namespace
}  // namespace moedist::testing
