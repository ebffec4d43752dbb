// The shared-memory engine: the ranks of a communicator are processes on one host (or threads of one process, which
// works the same way) that share POSIX shared memory. Any launcher: no MPI.
//
// Bootstrap (createEngine, every member): a unique id names the communicator (a random token, plus the creator's
// boot id, /dev/shm and PID namespace, so that a member elsewhere is refused at once). Each member creates its own
// segment "/moedist-<token>-<rank>" (O_EXCL, mode 0600, sized by HCCL_BUFFSIZE and never touched beyond what is used)
// and registers in a rendezvous segment "/moedist-<token>" (created by whichever member comes first); when every
// member has registered, each maps every peer's segment, and when every member has mapped, each unlinks its own
// segment and the next rank's (ranks 0 and 1 the rendezvous): from then on nothing of the communicator has a name in
// /dev/shm, even if a member is killed right then. A member that fails or times out in the bootstrap tells the others
// (they fail at once) and unlinks every name of the communicator.
//
// A segment holds this rank's control block (its pid and process start time, for liveness), one event ring per
// sender (the protocol's kOpen/kClose/kAbandon events, with the header bytes inline or in the sender's segment), a
// doorbell word that senders bump and the owner sleeps on with a futex, and a data area: memory handed out by
// allocate() and the staging of calls' regions. Peers read regions in place from the sender's data area.
//
// Waits spin briefly, then sleep on the doorbell with FUTEX_WAIT (bounded by the deadline and by the liveness
// interval, a few milliseconds): a peer whose process has exited (or is a zombie) fails the call at once, naming it.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "comm/engine.h"
#include "moedist/status.h"

namespace moedist::comm::shm {

// A fresh unique id as text (at most 255 characters, printable).
Status newUniqueId(std::string* id);
// Whether `id` parses as a unique id of this engine.
bool isUniqueId(const std::string& id);

struct Options {
  std::string name;                         // communicator name (messages; equal on every member)
  size_t segmentBytes = size_t{200} << 20;  // data area of this rank's segment
  std::chrono::milliseconds connectTimeout{120000};
};

// This process's (or thread's) rank `rank` of the communicator of `nRanks` members named by `id`. Every member calls
// it; it returns when every member has attached, or with an error naming the ranks that did not.
Status createEngine(const std::string& id, int nRanks, int rank, const Options& options, std::unique_ptr<Engine>* out);

}  // namespace moedist::comm::shm
