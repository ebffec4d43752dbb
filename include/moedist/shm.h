// moedist over shared memory: communicators whose ranks are processes on one host, started by any launcher
// (torch.multiprocessing, torchrun, fork, a shell loop), without MPI.
//
// One process creates a unique id (an opaque byte string, like ncclUniqueId) and passes it to the others over any
// channel (a pipe, a file, an environment variable, torch.distributed's store); every member then creates its rank
// with (id, number of ranks, rank). Typical use, one process per rank:
//
//   moedist::ShmUniqueId id;
//   if (rank == 0) moedist::getShmUniqueId(&id);
//   ... send id.internal (sizeof(id.internal) bytes) from rank 0 to the others ...
//   moedist::Communicator ep;
//   moedist::Status s = moedist::createShmCommunicator(id, worldSize, rank, {}, &ep);  // every member
//   ... moedist::dispatchV3(ep, nullptr, args); ... moedist::combineAddRmsNormV2(ep, nullptr, cargs); ...
//
// Each rank owns a POSIX shared-memory segment of HCCL_BUFFSIZE MB (pages are used on demand), created mode 0600
// under an unguessable name and unlinked as soon as every member has attached: nothing is left in /dev/shm, whatever
// happens to the processes afterwards. What a rank publishes in a call is staged into its segment once, and peers
// read it in place; tensors allocated with memAlloc() (moedist/communicator.h) already lie in the segment and are
// published without that copy. A member that dies makes every other member's call fail within milliseconds, naming
// it; the survivors stay usable (an elastic scale-in that excludes it runs on the same communicator).
//
// The engine is for one host: a member on another host, or in another container (another /dev/shm or PID
// namespace), gets an error saying so at once. Across hosts use moedist/mpi.h.
#pragma once

#include <cstddef>

#include "moedist/communicator.h"
#include "moedist/status.h"

namespace moedist {

// An opaque, printable (NUL-terminated) byte string naming one communicator being created. Copy all of `internal`.
struct ShmUniqueId {
  char internal[256];
};

// A new unique id: random, so nobody else can guess the names of the communicator's segments.
Status getShmUniqueId(ShmUniqueId* id);

// Whether `id` came from getShmUniqueId (of any process): lets a program tell a shared-memory id from other bytes.
bool isShmUniqueId(const ShmUniqueId& id);

// Creates this process's rank `rank` of the communicator of `nRanks` processes named by `id`. Every member calls it
// once, each with its own rank, and waits for the others: at most HCCL_CONNECT_TIMEOUT seconds (120 by default),
// sooner with an error naming the ranks that never joined, or that died while joining. options.name: empty gives
// "moedist_shm_<first 8 characters of the id's token>", the same in every process.
Status createShmCommunicator(const ShmUniqueId& id, int nRanks, int rank, const CommOptions& options,
                             Communicator* out);

}  // namespace moedist
