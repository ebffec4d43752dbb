// support/aligned_buffer.h: every buffer starts on a cache line, whatever its element type, size and history.
#include "support/aligned_buffer.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace moedist::testing {
namespace {

template <class T>
bool onCacheLine(const AlignedBuffer<T>& b) {
  return reinterpret_cast<uintptr_t>(b.data()) % 64 == 0;
}

TEST(AlignedBuffer, StartsOnACacheLineAtEverySize) {
  // Small blocks come from malloc's bins (16-byte aligned), large ones from mmap (16 bytes past a page): both kinds.
  for (size_t n : {size_t{1}, size_t{3}, size_t{17}, size_t{1000}, size_t{1} << 20, (size_t{1} << 23) + 5}) {
    AlignedBuffer<uint16_t> a(n);
    AlignedBuffer<float> b(n);
    AlignedBuffer<std::byte> c(n);
    EXPECT_TRUE(onCacheLine(a)) << n;
    EXPECT_TRUE(onCacheLine(b)) << n;
    EXPECT_TRUE(onCacheLine(c)) << n;
  }
}

TEST(AlignedBuffer, StaysOnACacheLineWhenItGrowsAndKeepsItsValues) {
  AlignedBuffer<int32_t> v;
  for (int32_t i = 0; i < 100000; ++i) {
    v.push_back(i);
    ASSERT_TRUE(onCacheLine(v)) << i;
  }
  for (int32_t i = 0; i < 100000; ++i) ASSERT_EQ(v[static_cast<size_t>(i)], i);
  AlignedBuffer<int32_t> copy = v;
  EXPECT_TRUE(onCacheLine(copy));
  EXPECT_EQ(copy, v);
}

TEST(AlignedBuffer, HoldsWhatAPlainVectorHolds) {
  const std::vector<uint16_t> plain = {1, 2, 3, 65535};
  AlignedBuffer<uint16_t> b(plain.begin(), plain.end());
  EXPECT_TRUE(onCacheLine(b));
  ASSERT_EQ(b.size(), plain.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_EQ(b[i], plain[i]);
}

}  // namespace
}  // namespace moedist::testing
