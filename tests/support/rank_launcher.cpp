#include "rank_launcher.h"

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace moedist::testing {

std::vector<std::string> runRanks(int numRanks, const std::function<void(int rank)>& body,
                                  std::chrono::milliseconds watchdog) {
  if (numRanks < 1)
    throw std::invalid_argument("runRanks: numRanks is " + std::to_string(numRanks) + ", expected >= 1");

  std::mutex mu;
  std::condition_variable allDone;
  std::vector<std::string> errors(static_cast<size_t>(numRanks));
  std::vector<bool> finished(static_cast<size_t>(numRanks), false);
  int numFinished = 0;

  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(numRanks));
  for (int rank = 0; rank < numRanks; ++rank) {
    threads.emplace_back([&, rank] {
      std::string error;
      try {
        body(rank);
      } catch (const std::exception& e) {
        error = e.what();
        if (error.empty()) error = "exception with an empty message";
      } catch (...) {
        error = "exception not derived from std::exception";
      }
      std::lock_guard<std::mutex> lock(mu);
      errors[static_cast<size_t>(rank)] = std::move(error);
      finished[static_cast<size_t>(rank)] = true;
      if (++numFinished == numRanks) allDone.notify_all();
    });
  }

  {
    std::unique_lock<std::mutex> lock(mu);
    if (!allDone.wait_for(lock, watchdog, [&] { return numFinished == numRanks; })) {
      std::string running;
      for (int rank = 0; rank < numRanks; ++rank) {
        if (!finished[static_cast<size_t>(rank)]) running += (running.empty() ? "" : ", ") + std::to_string(rank);
      }
      std::fprintf(stderr, "runRanks: watchdog of %lld ms expired with rank(s) %s of %d still running; aborting\n",
                   static_cast<long long>(watchdog.count()), running.c_str(), numRanks);
      std::fflush(stderr);
      std::abort();
    }
  }
  for (std::thread& t : threads) t.join();
  return errors;
}

}  // namespace moedist::testing
