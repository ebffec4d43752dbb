// PeerRows: core's one way to reach peers' bytes during an open call. Dispatch's row pull, the TP gather, combine's
// index, its rows and the TP reduce all go through it, so the question "can this engine map peer memory?" is
// answered in one place, and so is every engine read.
//
// A caller names the pieces it needs, each a byte range of one participant's region, and either
//   resolve()  gets a pointer to each piece, for kernels to read in place; or
//   gather()   has each piece copied to its place in a local output.
// When the engine maps peer memory (mapped()), a pointer is the peer's memory itself and gather() copies from the
// kernel threads: one copy per row, as threads do. Otherwise the pieces are read on the calling thread (engines need
// no thread safety in read()) in as few reads as possible, since each may be a message (MPI across hosts): the
// pieces are sorted by place and neighbours are read together, also across small gaps (at most as many bytes skipped
// as kept); then the kernel threads work on the copies as if mapped.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "core/context.h"
#include "moedist/status.h"

namespace moedist::core {

// Bytes [offset, offset + bytes) of region `region` of participant `peer` (a physical rank).
struct PeerPiece {
  int peer = 0;
  int region = 0;
  size_t offset = 0;
  size_t bytes = 0;
};

class PeerRows {
 public:
  // Pieces of the call open on ctx's engine; ctx's kernel threads copy.
  explicit PeerRows(RankContext& ctx) : ctx_(ctx) {}

  // out[i] = the bytes of pieces[i] (nullptr for an empty piece), readable from any thread until the next resolve()
  // or gather() on this object, or its end. A piece outside its region fails the call (kInternal: peers' plans
  // index their own regions).
  Status resolve(std::span<const PeerPiece> pieces, std::span<const std::byte*> out);

  // Copies pieces[i] to dst + i * stride (stride at least every piece's size; empty pieces copy nothing), with the
  // kernel table's streaming stores when `stream` (core's streamOutput()).
  Status gather(std::span<const PeerPiece> pieces, std::byte* dst, size_t stride, bool stream);

 private:
  // Pieces read together: order_[first, last) from `offset`, `bytes` long.
  struct Run {
    size_t first = 0, last = 0;
    size_t offset = 0, bytes = 0;
  };
  Status checkBounds(std::span<const PeerPiece> pieces) const;
  // Fills order_ (the pieces by peer, region and offset) and runs_.
  void planRuns(std::span<const PeerPiece> pieces);
  Status readRun(const PeerPiece& first, const Run& run, std::byte* dst);

  comm::Engine& engine() const { return *ctx_.engine; }

  RankContext& ctx_;
  std::vector<size_t> order_;
  std::vector<Run> runs_;
  std::vector<std::byte> buffer_;  // resolve()'s copies; gather()'s one run at a time
};

}  // namespace moedist::core
