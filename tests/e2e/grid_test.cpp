// The sampled size grid (harness/grid.h) through the C++ API, and every fourth point through the CANN C API.
#include "harness/grid.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "harness/pipeline.h"

namespace moedist::testing {
namespace {

class Grid : public ::testing::TestWithParam<GridPoint> {
 protected:
  void check(Api api) {
    Scenario sc;
    RunOptions o;
    gridCase(GetParam(), &sc, &o);
    o.api = api;
    setenv("HCCL_BUFFSIZE", "4096", 1);  // the large corners need more than CANN's default 200 MB window
    const RunResult r = runScenario(sc, o);
    EXPECT_TRUE(r.ok()) << sc.describe() << "\n" << r.summary();
  }
};

TEST_P(Grid, MatchesReference) {
  check(Api::kCpp);
}

INSTANTIATE_TEST_SUITE_P(E2E, Grid, ::testing::ValuesIn(gridPoints()),
                         [](const ::testing::TestParamInfo<GridPoint>& info) { return info.param.name(); });

// Every fourth grid point again through the CANN C API.
class GridCannApi : public Grid {};

TEST_P(GridCannApi, MatchesReference) {
  check(Api::kCann);
}

std::vector<GridPoint> everyFourth() {
  std::vector<GridPoint> out;
  const auto all = gridPoints();
  for (size_t i = 0; i < all.size(); i += 4) out.push_back(all[i]);
  return out;
}

INSTANTIATE_TEST_SUITE_P(E2E, GridCannApi, ::testing::ValuesIn(everyFourth()),
                         [](const ::testing::TestParamInfo<GridPoint>& info) { return info.param.name(); });

}  // namespace
}  // namespace moedist::testing
