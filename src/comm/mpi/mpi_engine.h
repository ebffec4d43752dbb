// The MPI engine: each rank is one MPI process, on one host or on many. Built only when CMake finds MPI.
//
// Creation (collective over the given MPI_Comm, once): the engine duplicates the communicator, so its messages
// never meet the application's, splits off the processes that share this host, and allocates this rank's
// shared-memory window of HCCL_BUFFSIZE MB with MPI_Win_allocate_shared (pages are touched only when used). After
// that nothing is collective: calls involve their participants only, so survivors of an elastic scale-in work
// without the removed ranks.
//
// The engine is ProtocolEngine (comm/protocol.h: call matching, arrival and close, abandonment, deadlines and their
// messages) over MpiTransport, which runs each call as point-to-point messages among its participants:
//   post     kOpen: copies the caller's regions into this rank's shared window when a participant shares the host
//            (staging), then sends every other participant an event message (the caller's header, the regions' sizes
//            and where they were staged); kClose and kAbandon (with its note): the same message without regions;
//   map      a participant on this host is read straight from its window: the staged address, checked against the
//            size of that window, and core reads rows in place (a row crosses memory once more, per direction, than
//            in one process: the staging copy of the source's tensor);
//   read     a participant elsewhere (or with MOEDIST_MPI_SHM=0, or whose regions did not fit its window): a request
//            message, answered by the peer with the bytes (no bytes when it has left the call: the read fails);
//   busy     while replies that read this rank's regions are being sent (close() waits for them).
// Every wait polls nonblocking MPI calls (MPI_Improbe, MPI_Imrecv, MPI_Isend, MPI_Test) against the deadline and,
// while it waits, answers peers' read requests for the open call: a rank answers requests only from inside the
// engine, which is enough because every participant ends in close(), which waits for every other participant's
// close (sent after its last read). A read that waits for its answer keeps the events that arrive meanwhile for the
// protocol, and fails at once when a participant abandons the call.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "comm/engine.h"
#include "moedist/status.h"

namespace moedist::comm::mpi {

// Creates this process's engine of a communicator over `comm` named `name`. Collective over `comm`.
// sharedMemory false: no window, every peer is read through messages (MOEDIST_MPI_SHM=0; how hosts talk).
// windowBytes: the size of this rank's shared window.
Status createEngine(MPI_Comm comm, const std::string& name, bool sharedMemory, size_t windowBytes,
                    std::unique_ptr<Engine>* out);

}  // namespace moedist::comm::mpi
