// The rank launcher of the tests: runs one function per rank, each on its own thread, and collects what went
// wrong on each rank (the Gloo way of testing a transport). A watchdog turns a hang into a failure: if the ranks
// have not all returned in time, it prints which ones are still running and aborts the process.
//
//   auto errors = moedist::testing::runRanks(8, [&](int rank) { ... engines[rank] ... });
//   for (int r = 0; r < 8; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
//
// gtest assertions may be used inside `body` (EXPECT_* from any thread; ASSERT_* returns from body only).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace moedist::testing {

// Runs body(rank) for rank = 0 .. numRanks-1 on numRanks threads at once and waits for all of them. Returns one
// entry per rank: "" when body returned normally, else the text of the exception it threw. If some rank is still
// running after `watchdog`, prints the running ranks to stderr and calls std::abort(). numRanks must be >= 1
// (else std::invalid_argument).
std::vector<std::string> runRanks(int numRanks, const std::function<void(int rank)>& body,
                                  std::chrono::milliseconds watchdog = std::chrono::minutes(2));

}  // namespace moedist::testing
