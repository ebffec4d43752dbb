// The size grid of the end-to-end tests, sampled: W in {2,3,4,8,16,32}, Bs in {1,7,64,512}, H in {1024,1056,7168,
// 8192}, K in {1,2,3,8,16}, local experts in {1,2,4}. Every value appears; the sample is fixed (a seeded draw plus
// the corner cases) and keeps each case's memory small enough for CI. Features ride along on a rotation so that
// sizes and features are combined too. One list for the in-process grid test and the MPI one.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "harness/pipeline.h"
#include "support/scenario.h"

namespace moedist::testing {

struct GridPoint {
  int W, Bs, H, K, L;
  int feature;  // index into the rotation of features (grid.cpp)
  std::string name() const;
};

void PrintTo(const GridPoint& p, std::ostream* os);

// The sampled points, always the same.
std::vector<GridPoint> gridPoints();

// The scenario and run options of a point: its sizes, then its feature.
void gridCase(const GridPoint& p, Scenario* sc, RunOptions* o);

// Ranks the point's run has: W, or 2 * W when its feature turned on TP.
int gridRanks(const GridPoint& p);

// The sampled points whose runs have `ranks` ranks (for MPI jobs of that many processes), topped up to `atLeast`
// with points drawn for W = ranks at small sizes (Bs <= 64, H <= 1056), their features continuing the rotation.
std::vector<GridPoint> gridPointsWithRanks(int ranks, size_t atLeast = 4);

}  // namespace moedist::testing
