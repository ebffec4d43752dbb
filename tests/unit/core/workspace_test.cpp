// The workspace ledger (workspace.h): bookings are 64-byte aligned and laid out one after the other, a bound
// Workspace turns them into spans of the caller's memory, and the Arena grows on demand and stays aligned.
#include "core/workspace.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace moedist::core {
namespace {

uintptr_t address(const void* p) {
  return reinterpret_cast<uintptr_t>(p);
}

TEST(Ledger, OffsetsAreAlignedAndCumulative) {
  Ledger l;
  EXPECT_EQ(l.bytes(), 0u);
  const auto a = l.book<float>(3);     // 12 bytes -> 64
  const auto b = l.book<int64_t>(9);   // 72 bytes -> 128
  const auto c = l.book<char>(0);      // 0 bytes
  const auto d = l.book<int32_t>(16);  // exactly 64 bytes
  const auto e = l.book<uint8_t>(1);   // 1 byte -> 64
  const auto f = l.book<double>(17);   // 136 bytes -> 192
  EXPECT_EQ(a.offset, 0u);
  EXPECT_EQ(a.count, 3u);
  EXPECT_EQ(b.offset, 64u);
  EXPECT_EQ(b.count, 9u);
  EXPECT_EQ(c.offset, 192u);
  EXPECT_EQ(c.count, 0u);
  EXPECT_EQ(d.offset, 192u);
  EXPECT_EQ(e.offset, 256u);
  EXPECT_EQ(f.offset, 320u);
  EXPECT_EQ(l.bytes(), 512u);
  for (size_t off : {a.offset, b.offset, c.offset, d.offset, e.offset, f.offset}) EXPECT_EQ(off % kWorkspaceAlign, 0u);
}

TEST(Ledger, SameBookingsGiveTheSameLayout) {
  // Phase 1 (sizing) and phase 2 (binding) book the same buffers in the same order: same offsets, same size.
  auto bookAll = [](Ledger& l) {
    std::vector<size_t> offsets;
    offsets.push_back(l.book<int32_t>(5).offset);
    offsets.push_back(l.book<float>(100).offset);
    offsets.push_back(l.book<int64_t>(1).offset);
    return offsets;
  };
  Ledger l1, l2;
  EXPECT_EQ(bookAll(l1), bookAll(l2));
  EXPECT_EQ(l1.bytes(), l2.bytes());
  // 20 -> 64, 400 -> 448, 8 -> 64.
  EXPECT_EQ(bookAll(l2), (std::vector<size_t>{576, 640, 1088}));
  EXPECT_EQ(l1.bytes(), 576u);
}

TEST(Workspace, GetGivesSpansOfTheBoundMemory) {
  Ledger l;
  const auto a = l.book<float>(3);
  const auto b = l.book<int64_t>(9);
  const auto c = l.book<uint8_t>(70);
  ASSERT_EQ(l.bytes(), 64u + 128u + 128u);
  alignas(64) std::byte memory[320];
  std::memset(memory, 0xAB, sizeof memory);
  const Workspace ws(std::span<std::byte>(memory, sizeof memory));

  const std::span<float> sa = ws.get(a);
  const std::span<int64_t> sb = ws.get(b);
  const std::span<uint8_t> sc = ws.get(c);
  EXPECT_EQ(static_cast<void*>(sa.data()), static_cast<void*>(memory));
  EXPECT_EQ(static_cast<void*>(sb.data()), static_cast<void*>(memory + 64));
  EXPECT_EQ(static_cast<void*>(sc.data()), static_cast<void*>(memory + 192));
  EXPECT_EQ(sa.size(), 3u);
  EXPECT_EQ(sb.size(), 9u);
  EXPECT_EQ(sc.size(), 70u);
  EXPECT_EQ(address(sb.data()) % kWorkspaceAlign, 0u);
  EXPECT_EQ(address(sc.data()) % kWorkspaceAlign, 0u);

  // The spans do not overlap: writing each leaves the others intact.
  for (size_t i = 0; i < sa.size(); ++i) sa[i] = 1.5f + static_cast<float>(i);
  for (size_t i = 0; i < sb.size(); ++i) sb[i] = -static_cast<int64_t>(i) - 1;
  for (size_t i = 0; i < sc.size(); ++i) sc[i] = static_cast<uint8_t>(i);
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(sa[i], 1.5f + static_cast<float>(i));
  for (size_t i = 0; i < sb.size(); ++i) EXPECT_EQ(sb[i], -static_cast<int64_t>(i) - 1);
  for (size_t i = 0; i < sc.size(); ++i) EXPECT_EQ(sc[i], static_cast<uint8_t>(i));
  // The padding between bookings is untouched.
  EXPECT_EQ(memory[12], std::byte{0xAB});
  EXPECT_EQ(memory[63], std::byte{0xAB});
  EXPECT_EQ(memory[64 + 72], std::byte{0xAB});
  EXPECT_EQ(memory[192 + 70], std::byte{0xAB});
}

TEST(Workspace, EmptyBookingFits) {
  Ledger l;
  (void)l.book<int32_t>(16);
  const auto empty = l.book<int32_t>(0);
  alignas(64) std::byte memory[64];
  const Workspace ws(std::span<std::byte>(memory, sizeof memory));
  EXPECT_TRUE(ws.get(empty).empty());
}

TEST(WorkspaceDeathTest, BookingBeyondTheMemoryIsAnInternalError) {
  Ledger l;
  (void)l.book<int32_t>(16);
  const auto b = l.book<int32_t>(16);  // bytes [64, 128)
  alignas(64) std::byte memory[100];
  const Workspace ws(std::span<std::byte>(memory, sizeof memory));
  EXPECT_DEATH((void)ws.get(b), "internal check failed");
}

TEST(Arena, GrowsAndStaysAligned) {
  Arena arena;
  const auto a = arena.reserve(100);
  ASSERT_NE(a.data(), nullptr);
  EXPECT_EQ(a.size(), 100u);
  EXPECT_EQ(address(a.data()) % kWorkspaceAlign, 0u);
  std::memset(a.data(), 0x5A, a.size());

  // Smaller and equal-to-rounded requests reuse the memory (capacity is 100 rounded up to 128).
  const auto b = arena.reserve(40);
  EXPECT_EQ(b.data(), a.data());
  EXPECT_EQ(b.size(), 40u);
  EXPECT_EQ(b[39], std::byte{0x5A});
  const auto c = arena.reserve(128);
  EXPECT_EQ(c.data(), a.data());
  EXPECT_EQ(c.size(), 128u);

  // Larger requests grow it; the new memory is aligned and fully usable.
  const auto d = arena.reserve(129);
  EXPECT_EQ(d.size(), 129u);
  EXPECT_EQ(address(d.data()) % kWorkspaceAlign, 0u);
  std::memset(d.data(), 1, d.size());
  const auto e = arena.reserve(size_t{1} << 20);
  EXPECT_EQ(e.size(), size_t{1} << 20);
  EXPECT_EQ(address(e.data()) % kWorkspaceAlign, 0u);
  std::memset(e.data(), 2, e.size());
  EXPECT_EQ(e[(size_t{1} << 20) - 1], std::byte{2});
  // And shrinking again keeps the big block.
  const auto f = arena.reserve(64);
  EXPECT_EQ(f.data(), e.data());
  EXPECT_EQ(f.size(), 64u);
}

TEST(Arena, BindsALedger) {
  Ledger l;
  const auto a = l.book<int32_t>(3);
  const auto b = l.book<double>(5);
  Arena arena;
  const Workspace ws(arena.reserve(l.bytes()));
  const auto sa = ws.get(a);
  const auto sb = ws.get(b);
  EXPECT_EQ(address(sa.data()) % kWorkspaceAlign, 0u);
  EXPECT_EQ(address(sb.data()) - address(sa.data()), 64u);
  sb[4] = 2.5;
  EXPECT_EQ(sb[4], 2.5);
}

}  // namespace
}  // namespace moedist::core
