#include "core/peer_rows.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

#include "core/call_common.h"
#include "util/check.h"
#include "util/env.h"

namespace moedist::core {

Status PeerRows::checkBounds(std::span<const PeerPiece> pieces) const {
  for (const PeerPiece& p : pieces) {
    if (p.bytes == 0) continue;
    const size_t size = engine().peerRegionBytes(p.peer, p.region);
    if (p.offset > size || p.bytes > size - p.offset)
      return Status(StatusCode::kInternal,
                    fmt::format("rank {}'s region {} has {} bytes, but bytes [{}, {}) of it were asked for", p.peer,
                                p.region, size, p.offset, p.offset + p.bytes));
  }
  return okStatus();
}

void PeerRows::planRuns(std::span<const PeerPiece> pieces) {
  order_.clear();
  for (size_t i = 0; i < pieces.size(); ++i)
    if (pieces[i].bytes > 0 && inPlace(pieces[i]) == nullptr) order_.push_back(i);
  std::sort(order_.begin(), order_.end(), [&](size_t a, size_t b) {
    const PeerPiece &x = pieces[a], &y = pieces[b];
    return std::tie(x.peer, x.region, x.offset) < std::tie(y.peer, y.region, y.offset);
  });
  runs_.clear();
  for (size_t i = 0; i < order_.size(); ++i) {
    const PeerPiece& p = pieces[order_[i]];
    if (!runs_.empty()) {
      Run& run = runs_.back();
      const PeerPiece& head = pieces[order_[run.first]];
      const size_t end = run.offset + run.bytes;
      // The same region, and the gap to this piece no larger than what the run keeps: read them together.
      if (head.peer == p.peer && head.region == p.region && p.offset <= end + run.bytes) {
        run.bytes = std::max(end, p.offset + p.bytes) - run.offset;
        run.last = i + 1;
        continue;
      }
    }
    runs_.push_back(Run{i, i + 1, p.offset, p.bytes});
  }
}

Status PeerRows::readRun(const PeerPiece& first, const Run& run, std::byte* dst) {
  return engine().read(first.peer, first.region, run.offset, dst, run.bytes);
}

Status PeerRows::resolve(std::span<const PeerPiece> pieces, std::span<const std::byte*> out) {
  MOEDIST_CHECK(out.size() == pieces.size());
  MOEDIST_RETURN_IF_ERROR(checkBounds(pieces));
  for (size_t i = 0; i < pieces.size(); ++i) out[i] = pieces[i].bytes == 0 ? nullptr : inPlace(pieces[i]);
  if (engine().mapped()) return okStatus();
  planRuns(pieces);
  size_t total = 0;
  for (const Run& run : runs_) total += run.bytes;
  buffer_.resize(total);
  size_t at = 0;
  for (const Run& run : runs_) {
    MOEDIST_RETURN_IF_ERROR(readRun(pieces[order_[run.first]], run, buffer_.data() + at));
    for (size_t i = run.first; i < run.last; ++i)
      out[order_[i]] = buffer_.data() + at + (pieces[order_[i]].offset - run.offset);
    at += run.bytes;
  }
  return okStatus();
}

Status PeerRows::gather(std::span<const PeerPiece> pieces, std::byte* dst, size_t stride, bool stream) {
  MOEDIST_RETURN_IF_ERROR(checkBounds(pieces));
  const kernels::KernelTable& k = *ctx_.kernels;
  const auto n = static_cast<int64_t>(pieces.size());
  // The pieces this rank maps, copied by the kernel threads; with every peer mapped, that is all of them.
  ctx_.pool.parallelFor(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const PeerPiece& p = pieces[static_cast<size_t>(i)];
      if (p.bytes == 0) continue;
      if (const std::byte* src = inPlace(p)) copyRows(k, stream, dst + i * stride, src, p.bytes);
    }
  });
  if (engine().mapped()) return okStatus();
  planRuns(pieces);
  for (const Run& run : runs_) {
    const PeerPiece& head = pieces[order_[run.first]];
    // Pieces that follow each other both in the region and in dst (a TP gather): read straight into place.
    bool inPlace = true;
    for (size_t i = run.first; i < run.last && inPlace; ++i) {
      const PeerPiece& p = pieces[order_[i]];
      inPlace = p.bytes == stride && order_[i] == order_[run.first] + (i - run.first) &&
                p.offset == run.offset + (i - run.first) * stride;
    }
    if (inPlace) {
      MOEDIST_RETURN_IF_ERROR(readRun(head, run, dst + order_[run.first] * stride));
      continue;
    }
    buffer_.resize(run.bytes);
    MOEDIST_RETURN_IF_ERROR(readRun(head, run, buffer_.data()));
    const auto first = static_cast<int64_t>(run.first);
    ctx_.pool.parallelFor(static_cast<int64_t>(run.last) - first, 16, [&](int64_t b, int64_t e) {
      for (int64_t j = first + b; j < first + e; ++j) {
        const size_t i = order_[static_cast<size_t>(j)];
        copyRows(k, stream, dst + i * stride, buffer_.data() + (pieces[i].offset - run.offset), pieces[i].bytes);
      }
    });
  }
  return okStatus();
}

std::vector<int32_t> Inbox::pushSection(const comm::Engine& engine, const Topology& topo) {
  if (!util::envPush()) return {1};  // as if it mapped everyone: it reads what it cannot map
  std::vector<int32_t> flags(static_cast<size_t>(topo.W) + 1);
  bool all = true;
  for (int64_t id = 0; id < topo.W; ++id) {
    const bool maps = engine.maps(topo.physical[static_cast<size_t>(id)]);
    flags[static_cast<size_t>(id) + 1] = maps ? 1 : 0;
    all = all && maps;
  }
  if (all) return {1};
  flags[0] = 0;
  return flags;
}

int64_t Inbox::pushers(std::span<const int32_t> section) {
  return static_cast<int64_t>(std::count(section.begin() + 1, section.end(), 0));
}

Status Inbox::fence(comm::Engine& engine, comm::Clock::time_point deadline, Status status) const {
  if (!used_) return status;
  const Status fenced = engine.fence(deadline);
  return status.ok() ? fenced : status;
}

Inbox::Inbox(const Topology& topo, SectionOf section, PartBytes partBytes)
    : topo_(topo), section_(std::move(section)), partBytes_(std::move(partBytes)) {
  for (int64_t id = 0; id < topo_.W && !used_; ++id) used_ = section_(id)[0] == 0;
}

bool Inbox::pushes(int64_t owner, int64_t reader) const {
  if (owner == reader) return false;
  const auto s = section_(reader);
  MOEDIST_CHECK(s[0] != 0 || s.size() == static_cast<size_t>(topo_.W) + 1);
  return s[0] == 0 && s[static_cast<size_t>(owner) + 1] == 0;
}

size_t Inbox::partOffset(int64_t owner, int64_t reader) const {
  size_t at = 0;
  for (int64_t o = 0; o < owner; ++o)
    if (pushes(o, reader)) at += inboxAlign(partBytes_(o, reader));
  return at;
}

std::vector<size_t> Inbox::parts(int64_t reader) const {
  std::vector<size_t> at(static_cast<size_t>(topo_.W), kNoPart);
  size_t next = 0;
  for (int64_t o = 0; o < topo_.W; ++o) {
    if (!pushes(o, reader)) continue;
    at[static_cast<size_t>(o)] = next;
    next += inboxAlign(partBytes_(o, reader));
  }
  return at;
}

}  // namespace moedist::core
