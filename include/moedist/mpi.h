// moedist over MPI: communicators whose ranks are MPI processes, on one host or on many.
//
// A separate header, so that <mpi.h> stays out of the other moedist headers. It is installed when moedist was built
// with MPI (find_package(moedist) then sets moedist_WITH_MPI); programs that include it use MPI themselves
// (mpicxx, or find_package(MPI) and MPI::MPI_C). Typical use, one process per rank:
//
//   int provided;
//   MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
//   moedist::Communicator ep;
//   moedist::Status s = moedist::createMpiCommunicator(MPI_COMM_WORLD, {}, &ep);  // collective over the MPI_Comm
//   ... moedist::dispatchV3(ep, nullptr, args); ... moedist::combineAddRmsNormV2(ep, nullptr, cargs); ...
//   ep = {};  // before MPI_Finalize
//
// EP and TP groups are sub-communicators: MPI_Comm_split the processes as the application likes and create one
// moedist communicator from each. Ranks on the same host read each other's rows from shared-memory windows (of
// HCCL_BUFFSIZE MB per rank: what a rank publishes is copied into its window once per call, unless it was allocated
// there with memAlloc()); ranks on other hosts through MPI point-to-point messages. Every wait polls nonblocking MPI
// calls against the deadline.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1  // MPI's C API is all moedist needs; not the deprecated C++ bindings
#endif
#include <mpi.h>

#include "moedist/communicator.h"

namespace moedist {

// Creates this process's rank of a communicator over the processes of `comm`: rank i of the result is rank i of
// `comm`. Collective over `comm` (every process calls it, with the same options). MPI must be initialized, with
// MPI_THREAD_MULTIPLE when other threads of the process use MPI while an operator runs (the CANN API's streams do),
// else at least the level that lets the calling thread use MPI. The communicator keeps its own duplicate of `comm`;
// destroy every handle before MPI_Finalize. options.name: empty gives "moedist_mpi_<n>", the same on every rank.
Status createMpiCommunicator(MPI_Comm comm, const CommOptions& options, Communicator* out);

}  // namespace moedist
