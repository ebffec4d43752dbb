// An engine's shared memory (the shared-memory engine's segment, the MPI engine's window): FirstFit, a first-fit
// allocator over a range of offsets [0, bytes), whose offsets and sizes are multiples of kAlign (the bookkeeping is
// process-local and thread-safe); and offsetWithin(), which tells a region that lies in that memory already.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <mutex>

namespace moedist::comm {

// The offset of [p, p + bytes) in [base, base + size), or -1 when it does not lie wholly inside: a region the engine
// can publish where it is.
inline int64_t offsetWithin(const std::byte* base, size_t size, const void* p, size_t bytes) {
  const auto b = reinterpret_cast<uintptr_t>(base), q = reinterpret_cast<uintptr_t>(p);
  if (base == nullptr || q < b || q - b > size || bytes > size - (q - b)) return -1;
  return static_cast<int64_t>(q - b);
}

class FirstFit {
 public:
  static constexpr size_t kAlign = 64;

  explicit FirstFit(size_t bytes = 0) { reset(bytes); }

  // Forgets every allocation: the range is [0, bytes) and all free.
  void reset(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.clear();
    used_.clear();
    bytes = bytes / kAlign * kAlign;
    if (bytes > 0) free_[0] = bytes;
  }

  // Offset of `bytes` bytes (at least one kAlign block), or -1 when no free piece is large enough.
  int64_t allocate(size_t bytes) {
    if (bytes > SIZE_MAX - kAlign) return -1;
    bytes = (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < bytes) continue;
      const size_t at = it->first, left = it->second - bytes;
      free_.erase(it);
      if (left > 0) free_[at + bytes] = left;
      used_[at] = bytes;
      return static_cast<int64_t>(at);
    }
    return -1;
  }

  // Frees the allocation at `at`; false when there is none.
  bool release(size_t at) {
    std::lock_guard<std::mutex> lock(mu_);
    auto u = used_.find(at);
    if (u == used_.end()) return false;
    size_t bytes = u->second;
    used_.erase(u);
    auto next = free_.lower_bound(at);
    if (next != free_.end() && next->first == at + bytes) {
      bytes += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == at) {
        prev->second += bytes;
        return true;
      }
    }
    free_[at] = bytes;
    return true;
  }

  size_t largestFree() {
    std::lock_guard<std::mutex> lock(mu_);
    size_t best = 0;
    for (const auto& [at, bytes] : free_) best = std::max(best, bytes);
    return best;
  }

 private:
  std::mutex mu_;
  std::map<size_t, size_t> free_, used_;  // offset -> bytes
};

}  // namespace moedist::comm
