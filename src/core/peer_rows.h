// PeerRows: core's one way to reach peers' bytes during an open call. Dispatch's row pull, the TP gather, combine's
// index, its rows and the TP reduce all go through it, so the question "can this engine map peer memory?" is
// answered in one place, and so is every engine read.
//
// A caller names the pieces it needs, each a byte range of one participant's region, and either
//   resolve()  gets a pointer to each piece, for kernels to read in place; or
//   gather()   has each piece copied to its place in a local output.
// Where the engine maps a peer's region (peerRegion()), a pointer is the peer's memory itself and gather() copies
// from the kernel threads: one copy per row, as threads do. The other pieces are read on the calling thread (engines
// need no thread safety in read()) in as few reads as possible, since each may be a message (MPI across hosts): the
// pieces are sorted by place and neighbours are read together, also across small gaps (at most as many bytes skipped
// as kept); then the kernel threads work on the copies as if mapped. Rows of owners that push them (Inbox, below)
// are not asked for here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/context.h"
#include "core/topology.h"
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
  // The piece in place when the engine maps its peer's region, else nullptr.
  const std::byte* inPlace(const PeerPiece& p) const {
    const std::byte* base = engine().peerRegion(p.peer, p.region);
    return base == nullptr ? nullptr : base + p.offset;
  }
  // Fills order_ (the pieces by peer, region and offset) and runs_.
  void planRuns(std::span<const PeerPiece> pieces);
  Status readRun(const PeerPiece& first, const Run& run, std::byte* dst);

  comm::Engine& engine() const { return *ctx_.engine; }

  RankContext& ctx_;
  std::vector<size_t> order_;
  std::vector<Run> runs_;
  std::vector<std::byte> buffer_;  // resolve()'s copies; gather()'s one run at a time
};

// The push half of the seam. A reader that cannot map an owner (Engine::maps() false: MPI across hosts) would pay a
// request and an answer for every run of rows it reads there; but after the agreement each owner knows what each
// reader needs of it, so it writes that into the reader's inbox instead (one message per run of rows, sent while
// the readers copy what they map), and fence() makes it visible.
//
// Every participant publishes, at the end of its header, a push section (pushSection(): 1 when it maps every
// participant; else 0 and a flag per participant id, 1 for those it maps) and, when it does not map every
// participant, an inbox: a writable region large enough for what it can be pushed. In a reader's inbox each owner
// that pushes to it has a part, in the order of participant ids, 64-byte aligned, of partBytes(owner, reader), a size
// both compute from the headers. The owner writes its part; the reader takes its rows from there after the fence.
class Inbox {
 public:
  // The words of a participant's push section, after its other header words.
  using SectionOf = std::function<std::span<const int32_t>(int64_t id)>;
  using PartBytes = std::function<size_t(int64_t owner, int64_t reader)>;
  static constexpr size_t kAlign = 64;

  // This rank's push section, and whether it needs an inbox (it does not map every participant).
  static std::vector<int32_t> pushSection(const comm::Engine& engine, const Topology& topo);
  static bool needsInbox(std::span<const int32_t> section) { return section[0] == 0; }
  // How many participants a rank with this push section does not map (those that may push to it).
  static int64_t pushers(std::span<const int32_t> section);

  // After the open: `section` gives each participant's push section, `partBytes` the size of a part.
  Inbox(const Topology& topo, SectionOf section, PartBytes partBytes);
  // Whether some participant is pushed to: then every participant fences before it reads its inbox.
  bool used() const { return used_; }
  // Whether `owner` writes to `reader` (ids), rather than `reader` reading `owner`.
  bool pushes(int64_t owner, int64_t reader) const;
  // Where owner's part lies in reader's inbox (an owner's view).
  size_t partOffset(int64_t owner, int64_t reader) const;
  // Where each owner's part lies in reader's inbox, by owner id, kNoPart where it does not push to it (a reader's
  // view, in one pass).
  static constexpr size_t kNoPart = SIZE_MAX;
  std::vector<size_t> parts(int64_t reader) const;
  // This rank's inbox, region `region` of the open call, as it reads what was pushed there after the fence (where
  // the engine received it: Region).
  static const std::byte* inbox(const comm::Engine& engine, int region) {
    return engine.peerRegion(engine.rank(), region);
  }
  // After this rank's pushes (whose verdict is `status`): every participant fences when anyone pushes, also after an
  // error of its own, so that no peer waits for it. Returns the first error.
  Status fence(comm::Engine& engine, comm::Clock::time_point deadline, Status status) const;

 private:
  const Topology& topo_;
  SectionOf section_;
  PartBytes partBytes_;
  bool used_ = false;
};

// Up to `bytes`, 64-byte aligned (Inbox::kAlign).
inline size_t inboxAlign(size_t bytes) {
  return (bytes + Inbox::kAlign - 1) / Inbox::kAlign * Inbox::kAlign;
}

}  // namespace moedist::core
