// The harness with one MPI process per rank (built with MPI only): process p is EP rank p % W of TP group p / W, as
// runScenario numbers its threads. Used by the MPI end-to-end tests and by `moedist run --engine mpi`.
#pragma once

#include "harness/pipeline.h"

namespace moedist::testing {

// This process's rank of `sc`, run with `o` on fresh communicators: MPI_COMM_WORLD is split into the EP groups (and
// the TP pairs), each gets a communicator from createMpiCommunicator (collective over MPI_COMM_WORLD), the rank runs
// through runScenarioRank, and the communicators are destroyed. When the job does not have one process per rank, or
// any process could not create its communicators, every process returns a failure without running.
RunResult runScenarioMpi(const Scenario& sc, const RunOptions& o);

}  // namespace moedist::testing
