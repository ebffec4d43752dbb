// The engine interface: how ranks of one communicator move bytes. Engines know nothing about MoE.
//
// A collective call is "open, read or write, close":
//   open()   each participant publishes a small header and a few memory regions, and waits until every
//            participant of the same call has published;
//   read     each participant reads what it needs straight from its peers' regions: through peerRegion() when
//            the engine can map peer memory (in-process: one copy, straight from the peer's buffer), else
//            through read() (pull);
//   write    or a participant that knows what a peer needs sends it unasked, into a region the peer published as
//            writable (push: one message per run of rows where every read would be a request and an answer), and
//            fence() makes every participant's writes so far visible to their receivers;
//   close()  each participant waits until every participant is done reading and writing, so regions may be reused.
// Headers and regions must stay valid and unchanged from open() until close() returns, except that writable regions
// change where peers write into them.
//
// Participants are given per call (sorted physical ranks, the caller among them): all ranks normally, the
// survivors under elastic scale-in. Calls are matched across ranks by (participant set, how many calls this
// rank has made before with that same set), so removed ranks simply do not call. Every wait has a deadline;
// a timeout names the participants not heard from.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "moedist/status.h"

namespace moedist::comm {

using Clock = std::chrono::steady_clock;

// Memory a rank lets its peers read during one call, and, when `writable`, write into: `data` then points to memory
// the caller may change (the engine casts the const away). Peers' writes are visible after this rank's next fence()
// where peerRegion(rank(), i) addresses the region (the caller's memory itself, or the copy an engine staged it
// into: the shared-memory engine's), and in the caller's memory once close() returns. Bytes no peer writes keep
// their value.
struct Region {
  const void* data = nullptr;
  size_t bytes = 0;
  bool writable = false;
};

// One piece of a write(): `bytes` bytes from `src` to `offset` in the peer's region.
struct WritePiece {
  const void* src = nullptr;
  size_t offset = 0;
  size_t bytes = 0;
};

inline constexpr int kMaxRegions = 8;

class Engine {
 public:
  virtual ~Engine() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const std::string& name() const = 0;
  // Short engine name for messages and summaries ("inproc", "mpi").
  virtual const char* kind() const = 0;

  // Publishes `header` (copied by the engine) and `regions` (at most kMaxRegions, referenced) and waits until all
  // `participants` have opened the same call. On error (timeout, bad participant list) the call is not open.
  virtual Status open(std::span<const int> participants, std::span<const std::byte> header,
                      std::span<const Region> regions, Clock::time_point deadline) = 0;

  // Between open() and close(): a participant's header, and the base address of its region `region` when this
  // engine can address peer memory directly (nullptr otherwise; then use read()). Own rank included.
  virtual std::span<const std::byte> peerHeader(int peer) const = 0;
  // Whether peerRegion() addresses every readable region of every participant of the open call. Memory peerRegion()
  // addresses may be read from any thread (kernel workers included); read() is for the calling thread only.
  virtual bool mapped() const = 0;
  // Whether this engine's calls map `peer`'s regions (when they fit its memory), known before any call: threads and
  // processes of one host, not a rank on another host (MPI). A participant that cannot map an owner gets what it
  // needs from it by the owner's write() instead of its own read(), if core knows what that is.
  virtual bool maps(int peer) const = 0;
  virtual const std::byte* peerRegion(int peer, int region) const = 0;
  virtual size_t peerRegionBytes(int peer, int region) const = 0;
  // Copies `bytes` bytes at `offset` of a participant's region into dst. Core calls it from the calling thread
  // only (never from kernel worker threads), so engines need no thread safety here.
  virtual Status read(int peer, int region, size_t offset, void* dst, size_t bytes) = 0;

  // Sends `pieces` of this rank's memory into a participant's writable region (the pieces inside it, its own rank
  // included). Returns at once: the sources must stay unchanged until this rank's next fence() or close() returns,
  // and the bytes are visible to the peer when its next fence() or close() returns, not before (see Region).
  // Calling thread only, like read().
  virtual Status write(int peer, int region, std::span<const WritePiece> pieces) = 0;

  // Waits until every participant has called fence() as often as this rank has, and every write they made before
  // it into this rank's regions has landed. Every participant of the call calls it equally often. Between writes
  // and the reads of what they wrote.
  virtual Status fence(Clock::time_point deadline) = 0;

  // Waits until every participant has closed the call. Always call it after a successful open(), also when the
  // caller gave up on the call's work, so that peers are not left waiting.
  virtual Status close(Clock::time_point deadline) = 0;

  // The engine's memory space. Memory of this rank that open() publishes in place, where it would otherwise stage a
  // copy of the caller's regions in memory its peers can reach (the shared-memory engine's segment, the MPI engine's
  // window on the host; a device engine's device memory). 64-byte aligned. nullptr when the engine has no such
  // memory (the in-process engine reads any memory in place) or none left. Any thread may call these, also while a
  // call is open; release() every allocation before the engine goes (false: `ptr` is not this engine's memory).
  virtual void* allocate(size_t /*bytes*/) { return nullptr; }
  virtual bool release(void* /*ptr*/) { return false; }
};

}  // namespace moedist::comm
