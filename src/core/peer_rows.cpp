#include "core/peer_rows.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

#include "core/call_common.h"
#include "util/check.h"

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
    if (pieces[i].bytes > 0) order_.push_back(i);
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
  if (engine().mapped()) {
    for (size_t i = 0; i < pieces.size(); ++i)
      out[i] =
          pieces[i].bytes == 0 ? nullptr : engine().peerRegion(pieces[i].peer, pieces[i].region) + pieces[i].offset;
    return okStatus();
  }
  std::fill(out.begin(), out.end(), nullptr);
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
  if (engine().mapped()) {
    ctx_.pool.parallelFor(n, 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const PeerPiece& p = pieces[static_cast<size_t>(i)];
        if (p.bytes == 0) continue;
        copyRows(k, stream, dst + i * stride, engine().peerRegion(p.peer, p.region) + p.offset, p.bytes);
      }
    });
    return okStatus();
  }
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

}  // namespace moedist::core
