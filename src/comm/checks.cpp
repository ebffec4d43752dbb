#include "comm/checks.h"

#include <algorithm>

#include "util/check.h"

namespace moedist::comm {

namespace {

Status invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

}  // namespace

std::string joinRanks(std::span<const int> ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(ranks[i]);
  }
  return s;
}

long long msSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

std::string describeCall(uint64_t seq, std::span<const int> participants, int worldSize) {
  std::string s = "call #" + std::to_string(seq) + " over ";
  if (static_cast<int>(participants.size()) == worldSize) return s + "all " + std::to_string(worldSize) + " ranks";
  return s + (participants.size() == 1 ? "rank " : "ranks ") + joinRanks(participants);
}

Status checkOpen(const std::string& prefix, std::span<const int> participants, int rank, int worldSize,
                 std::span<const Region> regions) {
  if (participants.empty()) return invalid(prefix + "open() got an empty participant list");
  for (size_t i = 0; i < participants.size(); ++i) {
    const int p = participants[i];
    if (p < 0 || p >= worldSize) {
      return invalid(prefix + "participant " + std::to_string(p) + " (index " + std::to_string(i) +
                     ") is outside [0, " + std::to_string(worldSize) + ")");
    }
    if (i > 0 && p <= participants[i - 1]) {
      return invalid(prefix + "participants must be sorted and unique, got " + std::to_string(participants[i - 1]) +
                     " then " + std::to_string(p) + " at index " + std::to_string(i));
    }
  }
  if (!std::binary_search(participants.begin(), participants.end(), rank))
    return invalid(prefix + "participants (" + joinRanks(participants) + ") do not include this rank");
  if (regions.size() > static_cast<size_t>(kMaxRegions)) {
    return invalid(prefix + "open() got " + std::to_string(regions.size()) + " regions, at most " +
                   std::to_string(kMaxRegions) + " are allowed");
  }
  for (size_t i = 0; i < regions.size(); ++i) {
    if (regions[i].data == nullptr && regions[i].bytes > 0) {
      return invalid(prefix + "region " + std::to_string(i) + " has " + std::to_string(regions[i].bytes) +
                     " bytes but a null address");
    }
  }
  return okStatus();
}

Status checkRead(const std::string& prefix, int peer, int region, int numRegions, size_t regionBytes, size_t offset,
                 const void* dst, size_t bytes) {
  if (region < 0 || region >= numRegions) {
    return invalid(prefix + "read() of region " + std::to_string(region) + " of rank " + std::to_string(peer) +
                   ", which published " + std::to_string(numRegions) + " region(s)");
  }
  if (offset > regionBytes || bytes > regionBytes - offset) {
    return invalid(prefix + "read() of bytes [" + std::to_string(offset) + ", " + std::to_string(offset) + " + " +
                   std::to_string(bytes) + ") of region " + std::to_string(region) + " of rank " +
                   std::to_string(peer) + ", which has " + std::to_string(regionBytes) + " bytes");
  }
  if (bytes > 0 && dst == nullptr)
    return invalid(prefix + "read() got a null destination for " + std::to_string(bytes) + " bytes");
  return okStatus();
}

}  // namespace moedist::comm
