// A host fails during a call (tests/hosts/host_fault.sh makes it fail: its link cut, or all its processes killed).
// One MPI process per rank, W = the job's processes, on test hosts (scripts/netns-hosts.sh). Every process:
//   1. creates its EP communicator (createMpiCommunicator over MPI_COMM_WORLD) and runs a checked layer;
//   2. meets the others (the last collective of the job), and process 0 writes --ready;
//   3. runs checked layers back to back until a call fails (the fault), and takes the time of the first error;
//   4. a survivor (not in --lost) then runs an elastic scale-in without the lost ranks on the same communicator,
//      checked against the reference model;
//   5. appends one line to --report and leaves without MPI_Finalize (which would wait for the lost processes):
//        <process> lost|survivor error_at=<CLOCK_REALTIME ns> awaited=<ranks> scale_in=<pass|fail|-> <message>
// (awaited: the ranks the error says the call waited for).
// The driver compares error_at with the moment it made the host fail.
#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "harness/features.h"
#include "harness/pipeline.h"
#include "moedist/mpi.h"

namespace {

using moedist::testing::RankResult;
using moedist::testing::RunOptions;
using moedist::testing::RunResult;
using moedist::testing::Scenario;

struct Flags {
  std::string ready, report;
  std::vector<int> lost;
  int timeoutMs = 2000;
  int maxSeconds = 120;  // of layers while waiting for the fault
};

std::vector<int> parseRanks(const char* text) {
  std::vector<int> ranks;
  for (const char* p = text; *p != '\0';) {
    char* end = nullptr;
    ranks.push_back(static_cast<int>(std::strtol(p, &end, 10)));
    p = *end == ',' ? end + 1 : end;
    if (end == p && *end != '\0') break;
  }
  return ranks;
}

long long realtimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// The first failed status of this rank's layer, or ok.
moedist::Status firstError(const RunResult& r) {
  for (const RankResult& rank : r.ranks) {
    if (!rank.dispatchStatus.ok()) return rank.dispatchStatus;
    if (!rank.combineStatus.ok()) return rank.combineStatus;
  }
  return moedist::okStatus();
}

// The ranks a timeout message says it waited for: the lists after "waiting for rank(s) " (engine messages name
// them so: "timed out after 2000 ms waiting for rank(s) 2, 3 to open the call").
std::vector<int> awaited(const std::string& message) {
  std::vector<int> ranks;
  const std::string lead = "waiting for rank(s) ";
  for (size_t at = message.find(lead); at != std::string::npos; at = message.find(lead, at + 1)) {
    size_t i = at + lead.size();
    while (i < message.size() && std::isdigit(static_cast<unsigned char>(message[i]))) {
      int v = 0;
      while (i < message.size() && std::isdigit(static_cast<unsigned char>(message[i])))
        v = 10 * v + (message[i++] - '0');
      ranks.push_back(v);
      if (message.compare(i, 2, ", ") == 0) i += 2;
    }
  }
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  return ranks;
}

std::string joined(const std::vector<int>& ranks) {
  std::string s;
  for (int r : ranks) s += (s.empty() ? "" : ",") + std::to_string(r);
  return s.empty() ? "-" : s;
}

void appendLine(const std::string& path, const std::string& line) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return;
  const std::string text = line + "\n";
  (void)!::write(fd, text.data(), text.size());  // one write: lines of processes never interleave
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--ready") f.ready = argv[i + 1];
    if (k == "--report") f.report = argv[i + 1];
    if (k == "--lost") f.lost = parseRanks(argv[i + 1]);
    if (k == "--timeout-ms") f.timeoutMs = std::atoi(argv[i + 1]);
    if (k == "--max-seconds") f.maxSeconds = std::atoi(argv[i + 1]);
  }
  int me = 0, n = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  const bool lost = std::find(f.lost.begin(), f.lost.end(), me) != f.lost.end();

  RunOptions o;
  o.timeout = std::chrono::milliseconds(f.timeoutMs);
  o.syncAroundEachOp = false;  // no barrier without a deadline once a host may be gone
  moedist::CommOptions co = moedist::testing::commOptionsFor(o);
  moedist::Communicator ep;
  if (moedist::Status s = moedist::createMpiCommunicator(MPI_COMM_WORLD, co, &ep); !s.ok()) {
    std::fprintf(stderr, "process %d: createMpiCommunicator: %s\n", me, s.toString().c_str());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  const Scenario sc = moedist::testing::features::worldScenario(n, 97);
  if (RunResult r = moedist::testing::runScenarioRank(sc, o, 0, me, ep, nullptr); !r.ok()) {
    std::fprintf(stderr, "process %d: the first layer failed:\n%s\n", me, r.summary().c_str());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (me == 0 && !f.ready.empty()) appendLine(f.ready, "ready");

  // Layers until one fails.
  moedist::Status error = moedist::okStatus();
  long long errorAt = 0;
  const auto giveUp = std::chrono::steady_clock::now() + std::chrono::seconds(f.maxSeconds);
  while (error.ok() && std::chrono::steady_clock::now() < giveUp) {
    const RunResult r = moedist::testing::runScenarioRank(sc, o, 0, me, ep, nullptr);
    error = firstError(r);
    if (!error.ok()) errorAt = realtimeNs();
    if (error.ok() && !r.ok()) {
      std::fprintf(stderr, "process %d: a layer gave wrong outputs:\n%s\n", me, r.summary().c_str());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  }

  std::string scaleIn = "-";
  if (!lost && !error.ok()) {
    Scenario without = sc;
    without.removedRanks = f.lost;
    // Survivors may have failed a call apart (one saw the last close of a lost rank, another did not), so they may
    // come to the scale-in up to a deadline apart: it gets three.
    RunOptions again = o;
    again.timeout = 3 * o.timeout;
    const RunResult r = moedist::testing::runScenarioRank(without, again, 0, me, ep, nullptr);
    scaleIn = r.ok() ? "pass" : "fail";
    if (!r.ok()) std::fprintf(stderr, "process %d: the scale-in failed:\n%s\n", me, r.summary().c_str());
  }
  std::string message = error.ok() ? "no call failed" : error.toString();
  std::replace(message.begin(), message.end(), '\n', ' ');
  appendLine(f.report, std::to_string(me) + (lost ? " lost" : " survivor") + " error_at=" + std::to_string(errorAt) +
                           " awaited=" + joined(awaited(message)) + " scale_in=" + scaleIn + " " + message);
  std::fflush(nullptr);
  std::_Exit(0);  // no MPI_Finalize, and no destructor that would wait for the lost processes
}
