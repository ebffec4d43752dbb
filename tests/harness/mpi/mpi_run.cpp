#include "harness/mpi/mpi_run.h"

#include <mpi.h>

#include <string>

#include "moedist/mpi.h"

namespace moedist::testing {

RunResult runScenarioMpi(const Scenario& sc, const RunOptions& o) {
  int p = 0, n = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &p);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  const int W = sc.cfg.W;
  const int tpIdx = p / W, epRank = p % W;
  RunResult failed;
  if (sc.numGroups() * W != n) {  // the same on every process, so no process is left in a collective
    failed.failures.push_back("the scenario has " + std::to_string(sc.numGroups() * W) + " ranks, the job " +
                              std::to_string(n) + " processes");
    return failed;
  }
  Communicator ep, tp;
  Status epStatus, tpStatus;
  const CommOptions co = commOptionsFor(o);
  MPI_Comm epComm = MPI_COMM_NULL, tpComm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, tpIdx, epRank, &epComm);
  epStatus = createMpiCommunicator(epComm, co, &ep);
  MPI_Comm_free(&epComm);  // the communicator keeps a duplicate
  if (sc.cfg.tp >= 1) {
    MPI_Comm_split(MPI_COMM_WORLD, epRank, tpIdx, &tpComm);
    tpStatus = createMpiCommunicator(tpComm, co, &tp);
    MPI_Comm_free(&tpComm);
  }
  // createMpiCommunicator agrees on a failure within its group only: without communicators anywhere, every process
  // stops here, rather than running into a deadline that waits for the processes that stopped.
  const int mine = !epStatus.ok() || !tpStatus.ok() ? 1 : 0;
  int any = 0;
  MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any != 0) {
    if (!epStatus.ok()) failed.failures.push_back("createMpiCommunicator (EP): " + epStatus.toString());
    if (!tpStatus.ok()) failed.failures.push_back("createMpiCommunicator (TP): " + tpStatus.toString());
    if (failed.failures.empty()) failed.failures.push_back("another process could not create its communicators");
    return failed;
  }
  return runScenarioRank(sc, o, tpIdx, epRank, ep, sc.cfg.tp >= 1 ? &tp : nullptr);
}

}  // namespace moedist::testing
