#include "copy_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "support/aligned_buffer.h"

namespace moedist::tool {

double copyBandwidthGBs(double bytes, int threads, int repeats) {
  threads = std::max(threads, 1);
  const size_t each = static_cast<size_t>(bytes / threads);
  // Aligned as the operators' tensors are in `moedist run` and `moedist bench`.
  std::vector<testing::AlignedBuffer<char>> src(static_cast<size_t>(threads)), dst(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    src[static_cast<size_t>(t)].assign(each, static_cast<char>(t + 1));
    dst[static_cast<size_t>(t)].assign(each, 0);
  }
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] { std::memcpy(dst[size_t(t)].data(), src[size_t(t)].data(), each); });
    for (auto& th : pool) th.join();
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(each) * threads / sec / 1e9);
  }
  return best;
}

}  // namespace moedist::tool
