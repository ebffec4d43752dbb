// The workspace ledger (oneDNN's scratchpad pattern): phase 1 books every scratch buffer an operator call needs,
// by capacity, and so learns the workspace size; phase 2 books the same buffers in the same order against the
// caller's workspace (or the rank's own arena) and binds them. Size and layout cannot drift apart because one
// function does the booking for both phases.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>

#include "util/check.h"

namespace moedist::core {

inline constexpr size_t kWorkspaceAlign = 64;

template <class T>
struct Booking {
  size_t offset = 0;
  size_t count = 0;
};

class Ledger {
 public:
  template <class T>
  Booking<T> book(size_t count) {
    Booking<T> b{bytes_, count};
    bytes_ += (count * sizeof(T) + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
    return b;
  }
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_ = 0;
};

// A bound workspace: turns bookings into typed spans.
class Workspace {
 public:
  Workspace() = default;
  explicit Workspace(std::span<std::byte> memory) : memory_(memory) {}
  template <class T>
  std::span<T> get(const Booking<T>& b) const {
    MOEDIST_CHECK(b.offset + b.count * sizeof(T) <= memory_.size());
    return {reinterpret_cast<T*>(memory_.data() + b.offset), b.count};
  }

 private:
  std::span<std::byte> memory_;
};

// Grow-only, 64-byte aligned, uninitialised memory owned by one rank (pages are touched only when used).
class Arena {
 public:
  std::span<std::byte> reserve(size_t bytes) {
    if (bytes > capacity_) {
      const size_t rounded = (bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
      memory_.reset(static_cast<std::byte*>(std::aligned_alloc(kWorkspaceAlign, rounded)));
      MOEDIST_CHECK(memory_ != nullptr);
      capacity_ = rounded;
    }
    return {memory_.get(), bytes};
  }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> memory_;
  size_t capacity_ = 0;
};

}  // namespace moedist::core
