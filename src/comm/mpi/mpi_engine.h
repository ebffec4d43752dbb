// The MPI engine: each rank is one MPI process, on one host or on many. Built only when CMake finds MPI.
//
// Creation (collective over the given MPI_Comm, once): the engine duplicates the communicator, so its messages
// never meet the application's, splits off the processes that share this host, and allocates this rank's
// shared-memory window of HCCL_BUFFSIZE MB with MPI_Win_allocate_shared (pages are touched only when used). After
// that nothing is collective: calls involve their participants only, so survivors of an elastic scale-in work
// without the removed ranks.
//
// A call (engine.h) is matched by (participant list, sequence number of calls with that list) like the in-process
// engine's, and runs as point-to-point messages among its participants:
//   open()   copies the regions into this rank's shared window when a participant shares the host (staging), then
//            sends every other participant a header message (the caller's header, the regions' sizes and where
//            they were staged) and polls until it has every participant's header;
//   read     a participant on this host is read straight from its window: peerRegion() returns the staged address
//            and core reads rows in place (a row crosses memory once more, per direction, than in one process: the
//            staging copy of the source's tensor); a participant elsewhere (or with MOEDIST_MPI_SHM=0, or whose
//            regions did not fit its window) through read(): a request message, answered by the peer with the
//            bytes;
//   close()  sends every participant a close message and polls until it has all of them.
// Every wait polls nonblocking MPI calls (MPI_Improbe, MPI_Imrecv, MPI_Isend, MPI_Test) against the deadline and,
// while it waits, answers peers' read requests for the open call: a rank answers requests only from inside the
// engine, which is enough because every participant ends in close(), which waits for every other participant's
// close (sent after its last read).
//
// Failure: a rank that gives up on open() (deadline) sends every participant a close message marked abandoned, so
// those that opened fail at once in close() rather than at their own deadlines, with a message naming the ranks
// that never arrived. Messages of abandoned calls are recognized by their (participant list, sequence) and dropped.
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
