// The feature cases of the end-to-end tests: every feature of DispatchV3 + CombineAddRmsNormV2, alone and
// combined, each a change to a small base scenario. One list for the in-process feature tests (both APIs) and the
// MPI ones.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "harness/pipeline.h"
#include "support/scenario.h"

namespace moedist::testing::features {

struct Case {
  std::string name;
  std::function<void(Scenario&, RunOptions&)> setup;
};

void PrintTo(const Case& c, std::ostream* os);

// W=4, Bs=7, H=1056 (not a multiple of 64: the ReduceSum tail), K=3, two experts per rank.
Scenario base();

// Zero, copy and const experts, with the oriX and const tensors they need.
void specials(Scenario& sc);
// S shared experts on the first Srank of Srank + 4 ranks.
void sharedExperts(Scenario& sc, int S, int Srank);
// A TP pair per EP rank, with the one expert per MoE rank that TP needs.
void tp2(Scenario& sc);

// W ranks for the process tests (MPI, shared memory): two experts per rank, some special experts and a 2-D mask, so
// that most paths of both operators carry data; K distinct MoE ids also after one rank is removed. `seed` + W seeds it.
Scenario worldScenario(int W, uint64_t seed);

// Every case: base(), then its setup.
const std::vector<Case>& cases();

}  // namespace moedist::testing::features
