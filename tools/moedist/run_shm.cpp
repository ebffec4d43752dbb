// `moedist run --engine shm`: every rank a process of this host over the shared-memory engine (moedist/shm.h), with
// no launcher: this process forks one child per rank (runScenarioShm: process p is EP rank p % W of TP group p / W),
// each child checks its rank's outputs against the reference model, and this process merges their results. Then the
// same scenario runs on the in-process engine, and the two are printed side by side.
//
// The MPI engine joins them when moedist was built with MPI and runs under mpirun with one process per rank
// (`mpirun -np N moedist run --engine shm ...`): every process first runs its rank on the MPI engine, then process 0
// runs the shared-memory and in-process engines while the others wait asleep, and prints the three side by side.
// Started without mpirun, the MPI engine is skipped, and the header says how to get it.
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "harness/shm/shm_run.h"
#include "run.h"

#if MOEDIST_TOOL_MPI
#include <mpi.h>

#include <chrono>
#include <thread>

#include "mpi_job.h"
#endif

namespace moedist::tool {

namespace {

using testing::RunOptions;
using testing::RunResult;
using testing::Scenario;

std::string ranksFlags(const RunFlags& f, const Scenario& sc) {
  return fmt::format("-w {}{}", f.worldSize, sc.numGroups() > 1 ? " --tp 2" : "");
}

void printHeader(const RunFlags& f, const Scenario& sc, const std::string& mpiLine) {
  const int ranks = f.worldSize * sc.numGroups();
  fmt::print("moedist run\n  {}\n", sc.describe());
  fmt::print(
      "  engine: shared memory, {} ranks as processes forked by this one, {} kernel thread(s) per rank, kernels {}; "
      "x and expert rows {}\n",
      ranks, f.kernelThreads, kernelsName(), publishedTensors(f, "segment"));
  if (!f.engineOnly) fmt::print("  compared with: the in-process engine, {} ranks as threads\n", ranks);
  fmt::print("  {}\n", mpiLine);
  if (!f.noBaseline) fmt::print("  baseline: the same runs with the scalar reference kernels (\"ref\")\n");
  std::fflush(stdout);
}

// The shared-memory engine (with the rows table) and then, unless --engine-only, the in-process engine, appended to
// *engines; 0 when they passed.
int runShmAndInProcess(const RunFlags& f, const Scenario& sc, std::vector<EngineRuns>* engines) {
  const RunOptions o = runOptionsFrom(f, sc);
  const auto onProcesses = [&sc](const RunOptions& ro) { return testing::runScenarioShm(sc, ro); };
  engines->push_back({"shm", {}, {}});
  int rc = runEngine(f, sc, o, "shared-memory engine", onProcesses, true, /*printRows=*/true, &engines->back());
  if (rc != 0 || f.engineOnly) return rc;
  std::fflush(stdout);
  const auto onThreads = [&sc](const RunOptions& ro) { return testing::runScenario(sc, ro); };
  engines->push_back({"inproc", {}, {}});
  return runEngine(f, sc, o, "in-process engine", onThreads, true, /*printRows=*/false, &engines->back());
}

#if MOEDIST_TOOL_MPI

// Whether a launcher started this process as one of several (Open MPI's mpirun, or a PMI launcher: MPICH, Slurm).
int launcherProcesses() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    if (const char* v = std::getenv(name)) return std::atoi(v);
  }
  return std::getenv("PMIX_RANK") != nullptr ? 2 : 0;
}

int runUnderMpirun(const RunFlags& f) {
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
  const bool root = processId() == 0;
  const Scenario sc = scenarioFrom(f);
  const int ranks = f.worldSize * sc.numGroups();
  int rc = 0;
  if (provided < MPI_THREAD_MULTIPLE) {  // the harness runs each rank's calls on a thread of their own
    if (root)
      fmt::print(stderr, "moedist run --engine shm: MPI_Init_thread did not provide MPI_THREAD_MULTIPLE (got {})\n",
                 provided);
    rc = 2;
  } else if (processCount() != ranks) {
    if (root)
      fmt::print(stderr,
                 "moedist run --engine shm: under mpirun, the MPI engine needs one process per rank: {} means {} "
                 "ranks, but the job has {} process(es); run it as mpirun -np {} moedist run --engine shm ..., or "
                 "without mpirun for the shared-memory and in-process engines only\n",
                 ranksFlags(f, sc), ranks, processCount(), ranks);
    rc = 2;
  }
  if (rc != 0) {
    MPI_Finalize();
    return rc;
  }
  if (root)
    printHeader(f, sc,
                fmt::format("and with: the MPI engine, {} ranks as the MPI processes of this job (run first)", ranks));
  RunOptions o = runOptionsFrom(f, sc);
  o.rankBarrier = [timeout = o.timeout] { meetingBarrier(timeout); };
  EngineRuns mpi{"mpi", {}, {}};
  const auto onMpi = [&sc](const RunOptions& ro) { return runJob(sc, ro); };
  rc = runEngine(f, sc, o, "MPI engine", onMpi, root, /*printRows=*/false, &mpi);
  if (root) {  // the same verdict on every process
    std::vector<EngineRuns> engines;
    if (rc == 0) rc = runShmAndInProcess(f, sc, &engines);
    engines.push_back(mpi);
    rc = writeJson(f, engines, rc == 0 ? printSummary(f, runOptionsFrom(f, sc), engines) : 0, rc);
    std::fflush(stdout);
  }
  sleepingBarrier();
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  return rc;
}

#endif

}  // namespace

int runShm(const RunFlags& f) {
#if MOEDIST_TOOL_MPI
  if (launcherProcesses() > 1) return runUnderMpirun(f);
#endif
  const Scenario sc = scenarioFrom(f);
  const int ranks = f.worldSize * sc.numGroups();
#if MOEDIST_TOOL_MPI
  const std::string mpiLine = fmt::format(
      "MPI engine: skipped (not started under mpirun); run `mpirun -np {0} moedist run --engine shm {1} ...` for all "
      "three engines side by side, or `mpirun -np {0} moedist run --engine mpi {1} ...` for the MPI engine",
      ranks, ranksFlags(f, sc));
#else
  const std::string mpiLine = "MPI engine: not built (CMake found no MPI, so MOEDIST_WITH_MPI is OFF)";
#endif
  printHeader(f, sc, mpiLine);
  std::vector<EngineRuns> engines;
  const int rc = runShmAndInProcess(f, sc, &engines);
  return writeJson(f, engines, rc == 0 ? printSummary(f, runOptionsFrom(f, sc), engines) : 0, rc);
}

}  // namespace moedist::tool
