// The pieces of `moedist run` that run a scenario over the MPI processes of a job (tools/moedist/run_mpi.cpp), shared
// by --engine mpi and by --engine shm under mpirun. MPI builds only (MOEDIST_TOOL_MPI).
#pragma once

#include <chrono>

#include "harness/pipeline.h"

namespace moedist::tool {

// This process's number in MPI_COMM_WORLD, and the number of processes.
int processId();
int processCount();

// Waits for every process without keeping a core busy (MPI_Barrier polls, and would take the cores from process 0's
// in-process run).
void sleepingBarrier();

// Where the processes meet before each operator (RunOptions::rankBarrier): MPI_Barrier's busy wait, for timing, but
// bounded by `timeout` (the operators' deadline): a process that is not there by then (gone, or its host cut off)
// ends the job with a message instead of leaving the others waiting for ever.
void meetingBarrier(std::chrono::milliseconds timeout);

// This process's rank of `sc`, run with `o` on fresh MPI communicators, merged over the job (collective). On process
// 0: every rank's RankResult, the job's failures and the totals, as runScenario gives them for threads. On the others:
// a result that failed when any process failed, so that every process takes the same path.
testing::RunResult runJob(const testing::Scenario& sc, const testing::RunOptions& o);

}  // namespace moedist::tool
