// Argument checks and message helpers shared by the engines, so that every engine words its errors alike.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "comm/engine.h"
#include "moedist/status.h"

namespace moedist::comm {

// "0, 1, 6, 7"
std::string joinRanks(std::span<const int> ranks);

// Milliseconds since `start`, for the messages of waits.
long long msSince(Clock::time_point start);

// "call #3 over all 8 ranks", "call #0 over ranks 0, 1, 6, 7": the seq-th call over that participant list.
std::string describeCall(uint64_t seq, std::span<const int> participants, int worldSize);

// open(): participants sorted, unique, in [0, worldSize) and including `rank`; at most kMaxRegions regions, none
// with bytes but no address. `prefix` starts every message ("in-process communicator 'x' rank 3: ").
Status checkOpen(const std::string& prefix, std::span<const int> participants, int rank, int worldSize,
                 std::span<const Region> regions);

// read(): region `region` of `peer`, which published `numRegions` regions and this one with `regionBytes` bytes;
// the range [offset, offset + bytes) must lie inside it and dst must not be null when bytes > 0.
Status checkRead(const std::string& prefix, int peer, int region, int numRegions, size_t regionBytes, size_t offset,
                 const void* dst, size_t bytes);

}  // namespace moedist::comm
