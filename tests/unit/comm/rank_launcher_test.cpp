// Tests of the test rank launcher itself.
#include "support/rank_launcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace {

using moedist::testing::runRanks;
using namespace std::chrono_literals;

TEST(RankLauncher, RunsEveryRankOnItsOwnThreadAtOnce) {
  constexpr int N = 6;
  std::atomic<int> arrived{0};
  std::atomic<int> ranSum{0};
  auto errors = runRanks(N, [&](int rank) {
    ranSum += rank;
    // Every rank waits for all others, which only ends if they all run at the same time.
    ++arrived;
    while (arrived.load() < N) std::this_thread::sleep_for(1ms);
  });
  ASSERT_EQ(errors.size(), static_cast<size_t>(N));
  for (const auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(ranSum.load(), N * (N - 1) / 2);
}

TEST(RankLauncher, CollectsEachRanksException) {
  auto errors = runRanks(4, [](int rank) {
    if (rank == 1) throw std::runtime_error("rank one failed");
    if (rank == 2) throw 42;
    if (rank == 3) throw std::runtime_error("");
  });
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "rank one failed");
  EXPECT_NE(errors[2], "");
  EXPECT_NE(errors[3], "");
}

TEST(RankLauncher, RejectsZeroRanks) {
  EXPECT_THROW(runRanks(0, [](int) {}), std::invalid_argument);
}

TEST(RankLauncherDeathTest, WatchdogAbortsAndNamesTheHungRanks) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(runRanks(
                   3,
                   [](int rank) {
                     if (rank == 1) std::this_thread::sleep_for(60s);
                   },
                   100ms),
               "rank\\(s\\) 1 of 3 still running");
}

}  // namespace
