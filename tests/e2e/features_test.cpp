// Every feature of DispatchV3 + CombineAddRmsNormV2 end to end, alone and combined (the cases of
// harness/features.h), checked bit-exactly against the reference model (outputs, and the bytes the operators must
// leave untouched). One test per case, so CTest runs them in parallel and a failure names its case.
#include "harness/features.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "harness/pipeline.h"

namespace moedist::testing {
namespace {

using features::base;
using features::Case;
using features::cases;
using features::sharedExperts;
using features::specials;
using features::tp2;

class Features : public ::testing::TestWithParam<Case> {};

TEST_P(Features, MatchesReference) {
  Scenario sc = base();
  RunOptions options;
  GetParam().setup(sc, options);
  const RunResult r = runScenario(sc, options);
  EXPECT_TRUE(r.ok()) << sc.describe() << "\n" << r.summary();
}

INSTANTIATE_TEST_SUITE_P(E2E, Features, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// The same cases through the CANN C API: aclnn two-phase calls on streams, HCCL communicators, devices as ranks.
class FeaturesCannApi : public ::testing::TestWithParam<Case> {};

TEST_P(FeaturesCannApi, MatchesReference) {
  Scenario sc = base();
  RunOptions options;
  GetParam().setup(sc, options);
  options.api = Api::kCann;
  const RunResult r = runScenario(sc, options);
  EXPECT_TRUE(r.ok()) << sc.describe() << "\n" << r.summary();
}

INSTANTIATE_TEST_SUITE_P(E2E, FeaturesCannApi, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// Skewed routing really is skewed: one rank's MoE experts get nothing.
TEST(Routing, StarvedRankReceivesNoRows) {
  Scenario sc = base();
  sc.routing = Routing::kStarveRank;
  sc.starvedRank = 1;
  const RunResult r = runScenario(sc);
  ASSERT_TRUE(r.ok()) << r.summary();
  for (const RankResult& rank : r.ranks) {
    if (rank.epRank == 1) {
      EXPECT_EQ(rank.ownRows, 0);
    } else {
      EXPECT_GT(rank.ownRows, 0);
    }
  }
}

}  // namespace
}  // namespace moedist::testing

namespace moedist::testing {
namespace {

using features::base;
using features::sharedExperts;
using features::specials;
using features::tp2;

// The sibling operators of SPEC decision 5 through every API: DispatchV2 and CombineAddRmsNorm / CombineV2 without
// scale-in and special experts, DispatchV3 with CombineV3 (no residual and no RmsNorm: xOut = bf16(acc)) with
// everything. MatchesReference: the CANN C API; MatchesReferenceCppApi: the named C++ operators (moedist::dispatchV2,
// combineAddRmsNorm, combineV3, combineV2); MatchesReferenceGeneralForm: moedist::dispatch / combine with RankAttrs
// and a workspace of workspaceBytes() bytes.
struct SiblingCase {
  std::string name;
  Ops ops;
  std::function<void(Scenario&)> setup;
};

void PrintTo(const SiblingCase& c, std::ostream* os) {
  *os << c.name;
}

class Siblings : public ::testing::TestWithParam<SiblingCase> {};

void runSibling(const SiblingCase& c, Api api) {
  Scenario sc = base();
  c.setup(sc);
  RunOptions o;
  o.api = api;
  o.ops = c.ops;
  const RunResult r = runScenario(sc, o);
  EXPECT_TRUE(r.ok()) << sc.describe() << "\n" << r.summary();
}

TEST_P(Siblings, MatchesReference) {
  runSibling(GetParam(), Api::kCann);
}

TEST_P(Siblings, MatchesReferenceCppApi) {
  runSibling(GetParam(), Api::kCpp);
}

TEST_P(Siblings, MatchesReferenceGeneralForm) {
  runSibling(GetParam(), Api::kCppGeneral);
}

const std::vector<SiblingCase>& siblingCases() {
  static const std::vector<SiblingCase> all = {
      {"DispatchV2CombineAddRmsNorm", Ops::kDispatchV2CombineAddRmsNorm,
       [](Scenario& s) { s.cfg.maskDims = 2, s.sharedX = SharedXShape::k2D; }},
      {"DispatchV2CombineAddRmsNormQuantTp", Ops::kDispatchV2CombineAddRmsNorm,
       [](Scenario& s) { tp2(s), s.cfg.quantMode = 2; }},
      {"DispatchV2CombineV2", Ops::kDispatchV2CombineV2, [](Scenario& s) { s.cfg.commQuantMode = 2; }},
      {"DispatchV2CombineV2SharedExperts", Ops::kDispatchV2CombineV2, [](Scenario& s) { sharedExperts(s, 1, 2); }},
      {"DispatchV3CombineV3", Ops::kDispatchV3CombineV3, [](Scenario& s) { specials(s), s.cfg.maskDims = 1; }},
      {"DispatchV3CombineV3Elastic", Ops::kDispatchV3CombineV3,
       [](Scenario& s) { specials(s), s.removedRanks = {1}, s.sharedX = SharedXShape::k3D; }},
      {"DispatchV3CombineV3Tp", Ops::kDispatchV3CombineV3, [](Scenario& s) { tp2(s), s.cfg.maskDims = 2; }},
      // fp16 x: CombineV2/V3 take and return fp16 rows (SPEC 9); the TP reduce adds in fp16 (SPEC 10.12).
      {"DispatchV3CombineV3Fp16", Ops::kDispatchV3CombineV3,
       [](Scenario& s) { s.cfg.fp16 = true, specials(s), s.sharedX = SharedXShape::k2D, s.cfg.maskDims = 1; }},
      {"DispatchV3CombineV3Fp16Tp", Ops::kDispatchV3CombineV3, [](Scenario& s) { s.cfg.fp16 = true, tp2(s); }},
      {"DispatchV2CombineV2Fp16Quant", Ops::kDispatchV2CombineV2,
       [](Scenario& s) { s.cfg.fp16 = true, s.cfg.quantMode = 2, sharedExperts(s, 1, 2); }},
  };
  return all;
}

INSTANTIATE_TEST_SUITE_P(E2E, Siblings, ::testing::ValuesIn(siblingCases()),
                         [](const ::testing::TestParamInfo<SiblingCase>& info) { return info.param.name; });

}  // namespace
}  // namespace moedist::testing
