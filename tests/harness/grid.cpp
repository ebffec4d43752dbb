#include "harness/grid.h"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <random>

namespace moedist::testing {

namespace {

// Rough bytes a case holds: per rank, expandX capacity (A rows) for dispatch output, FFN output and the
// reference's copies.
double bytesOf(const GridPoint& p) {
  const double A = static_cast<double>(p.W) * p.Bs * std::min(p.L, p.K);
  return 4.0 * p.W * A * p.H * 2;
}

constexpr int kNumFeatures = 8;

void applyFeature(int f, Scenario& sc, RunOptions& o) {
  switch (f) {
    case 0:
      break;
    case 1:
      sc.cfg.fp16 = true, sc.cfg.maskDims = 1;
      break;
    case 2:
      sc.cfg.quantMode = 2, sc.smoothScales = true;
      break;
    case 3:
      sc.cfg.maskDims = 2, sc.cfg.expertTokenNumsType = 0;
      break;
    case 4:
      sc.cfg.commQuantMode = 2, o.kernelThreads = 2;
      break;
    case 5:
      sc.sharedX = SharedXShape::k2D, o.stridedInputs = true;
      break;
    case 6:  // one rank removed (MoE ids renumbered by the scenario)
      if (sc.cfg.W > 2) sc.removedRanks = {sc.cfg.W - 1};
      break;
    case 7:  // TP needs one expert per MoE rank
      if (sc.cfg.M == sc.cfg.W)
        sc.cfg.tp = 2;
      else
        sc.cfg.Z += 2, sc.cfg.C = 1, sc.oriX = true, sc.specialFraction = std::max(sc.specialFraction, 0.2);
      break;
  }
}

}  // namespace

std::string GridPoint::name() const {
  // fmt rather than a chain of "..." + std::string, on which GCC 12 -O3 warns falsely (-Wrestrict).
  return fmt::format("W{}_Bs{}_H{}_K{}_L{}_f{}", W, Bs, H, K, L, feature);
}

void PrintTo(const GridPoint& p, std::ostream* os) {
  *os << p.name();
}

std::vector<GridPoint> gridPoints() {
  const int Ws[] = {2, 3, 4, 8, 16, 32}, Bss[] = {1, 7, 64, 512}, Hs[] = {1024, 1056, 7168, 8192},
            Ks[] = {1, 2, 3, 8, 16}, Ls[] = {1, 2, 4};
  std::vector<GridPoint> out = {
      // Corners: smallest and largest of each axis.
      {2, 1, 1024, 1, 1, 0},   {2, 512, 8192, 16, 4, 2}, {32, 1, 8192, 16, 1, 3}, {32, 7, 1024, 8, 4, 1},
      {3, 512, 1056, 3, 2, 4}, {16, 64, 1024, 16, 2, 5}, {8, 512, 7168, 8, 1, 6}, {4, 64, 7168, 2, 4, 7},
  };
  std::mt19937 rng(2026);
  auto pick = [&](const auto& values) { return values[rng() % std::size(values)]; };
  while (out.size() < 40) {
    GridPoint p{pick(Ws), pick(Bss), pick(Hs), pick(Ks), pick(Ls), static_cast<int>(out.size() % kNumFeatures)};
    if (bytesOf(p) > 6e8) continue;
    out.push_back(p);
  }
  return out;
}

void gridCase(const GridPoint& p, Scenario* sc, RunOptions* o) {
  sc->cfg.W = p.W;
  sc->cfg.M = p.L * p.W;
  sc->cfg.K = p.K;
  sc->cfg.H = p.H;
  sc->bs.assign(static_cast<size_t>(p.W), p.Bs);
  sc->seed = static_cast<uint64_t>(p.W * 1000003 + p.Bs * 101 + p.H + p.K * 7 + p.L);
  if (p.K > p.L * (p.W - 1)) {  // not enough MoE experts for K distinct ids (also after a scale-in): add zero experts
    sc->cfg.Z = p.K;
    sc->specialFraction = 0.05;
  }
  applyFeature(p.feature, *sc, *o);
}

int gridRanks(const GridPoint& p) {
  Scenario sc;
  RunOptions o;
  gridCase(p, &sc, &o);
  return sc.numGroups() * sc.cfg.W;
}

std::vector<GridPoint> gridPointsWithRanks(int ranks, size_t atLeast) {
  std::vector<GridPoint> out;
  for (const GridPoint& p : gridPoints())
    if (gridRanks(p) == ranks) out.push_back(p);
  if (ranks < 2) return out;  // no EP world of one rank
  const int Bss[] = {1, 7, 64}, Hs[] = {1024, 1056}, Ks[] = {1, 2, 3, 8, 16}, Ls[] = {1, 2, 4};
  std::mt19937 rng(static_cast<unsigned>(7000 + ranks));
  auto pick = [&](const auto& values) { return values[rng() % std::size(values)]; };
  while (out.size() < atLeast) {
    GridPoint p{ranks, pick(Bss), pick(Hs), pick(Ks), pick(Ls), static_cast<int>(out.size() % kNumFeatures)};
    if (gridRanks(p) != ranks) continue;  // TP (feature 7 with one expert per rank) would double the ranks
    out.push_back(p);
  }
  return out;
}

}  // namespace moedist::testing
