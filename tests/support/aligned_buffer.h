// support/aligned_buffer.h: std::vector on 64-byte boundaries, for the tensors of the tests and the benchmarks.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace moedist::testing {

// Allocates on cache-line boundaries, as PyTorch's CPU allocator and CANN's device memory do. glibc's malloc promises
// 16 bytes only (a large block starts 16 bytes past a page), so that with a plain std::vector every 64-byte vector
// access of a kernel to a tensor may span two cache lines: a cost the operators never pay for a real caller's tensors.
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};

  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}  // rebinding: implicit, as the standard asks

  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, size_t) noexcept { ::operator delete(p, kAlignment); }

  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const noexcept {
    return true;
  }
};

// A std::vector whose data() is 64-byte aligned.
template <class T>
using AlignedBuffer = std::vector<T, CacheLineAllocator<T>>;

}  // namespace moedist::testing
