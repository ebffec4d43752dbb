// HCCL root infos whose ranks are MPI processes (the multi-process way of CANN programs): HcclGetRootInfo on one
// process, the bytes broadcast by the application (e.g. MPI_Bcast), HcclCommInitRootInfo on every member process.
// Implemented in compat/mpi/ when moedist is built with MPI (MOEDIST_WITH_MPI); no <mpi.h> here.
#pragma once

#include <cstdint>

#include "hccl/hccl_types.h"
#include "moedist/communicator.h"
#include "moedist/status.h"

namespace moedist::compat {

// Whether HcclGetRootInfo hands out MPI root infos: MPI is initialized and MPI_COMM_WORLD has several processes.
bool mpiRootInfoWanted();

// A root info naming this process (its MPI_COMM_WORLD rank) as the root that assembles the communicator.
void makeMpiRootInfo(HcclRootInfo* rootInfo);

// Whether the root info came from makeMpiRootInfo (of any process).
bool isMpiRootInfo(const HcclRootInfo& rootInfo);

// This process's rank `rank` of the communicator of `nRanks` processes named by `rootInfo`. Every member calls it;
// the root process must be a member. The root gathers each member's (rank, MPI_COMM_WORLD rank) and answers with
// the full table; then the members build their MPI communicator among themselves (MPI_Comm_create_group) and
// createMpiCommunicator on it. Waits are polled against the deadline; an error names the ranks that did not join.
Status joinMpiRootInfo(uint32_t nRanks, const HcclRootInfo& rootInfo, uint32_t rank, std::chrono::milliseconds timeout,
                       Communicator* out);

}  // namespace moedist::compat
