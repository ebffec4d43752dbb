// The MoE pipeline in the CANN API with one process per device, started by fork() and without MPI, the way CANN
// programs run under a launcher of their own:
//
//   moedist_example_cann_fork_pipeline [--tp 1|2] [--processes N]
//
// The parent forks N processes (4 by default) and only watches them. N = W * tp: W EP ranks, and tp = 1 (the
// default: no TP) or 2 TP ranks. Process p uses device p and is EP rank p / tp and TP rank p % tp, as in
// mpi_pipeline.cpp: the EP group of TP index t is the W processes with p % tp == t, and the TP group of EP rank e is
// the processes {e*tp, ..., e*tp + tp - 1} (the process alone without TP).
//
// Each group's HCCL communicator is made as in CANN: the group's rank 0 calls HcclGetRootInfo and passes the
// HcclRootInfo bytes to the other members through a pipe (one pipe per member and group, made by the parent before
// forking; a file, an environment variable or a socket would do as well), and every member calls
// HcclCommInitRootInfo with the group size and its rank in the group. Outside mpirun, moedist's root infos name a
// shared-memory communicator: its members are processes of this host, and HcclCommInitRootInfo waits for all of
// them for at most HCCL_CONNECT_TIMEOUT seconds. HcclGetCommName gives the group names that the operators receive
// as groupEp / groupTp.
//
// Then every process runs the pipeline of examples/cann/pipeline.h on its own 16 tokens (mpiPipelineConfig in
// examples/cann/common.h: H 1024, top-4, 2 MoE experts per EP rank without TP and 1 with TP, 2 zero, 2 copy and 2
// const experts): dispatch (aclnnMoeDistributeDispatchV3) -> the identity as expert FFN -> combine
// (aclnnMoeDistributeCombineAddRmsNormV2), and sends its digest line to the parent through a pipe. When every
// process has succeeded, the parent prints the lines in device order and "example ok"; the test suite compares them
// with the lines of the reference model. A process that fails makes the parent stop the others at once (they would
// wait for it until their deadline).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "acl_util.h"
#include "common.h"
#include "pipeline.h"

using namespace moedist_examples;

namespace {

constexpr int32_t kTimeoutMs = 10000;
constexpr int kMaxProcesses = 64;

// A pipe: fds[0] is read, fds[1] written.
struct Pipe {
  int fds[2] = {-1, -1};
};

// The pipes made by the parent before forking.
struct Pipes {
  std::vector<Pipe> epRoot;  // per process: its EP group's root info, written by the group's rank 0
  std::vector<Pipe> tpRoot;  // per process: its TP group's root info, written by the group's rank 0
  Pipe lines;                // every process's digest line to the parent (one write of < PIPE_BUF bytes each)
};

// Writes / reads exactly `bytes` bytes; false on an error or an early end of the pipe.
bool writeAll(int fd, const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    bytes -= static_cast<size_t>(n);
  }
  return true;
}

bool readAll(int fd, void* data, size_t bytes) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::read(fd, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    bytes -= static_cast<size_t>(n);
  }
  return true;
}

// This process's rank of the HCCL communicator of group `members` (process ids, in group rank order): the group's
// rank 0 gets the root info and writes it into the pipe of every other member, which reads it from its own pipe;
// then every member joins with its rank in the group.
int initGroupComm(int process, const std::vector<int>& members, std::vector<Pipe>& rootPipes, HcclComm* comm) {
  uint32_t rank = 0;
  while (members[rank] != process) ++rank;
  HcclRootInfo rootInfo;
  std::memset(&rootInfo, 0, sizeof rootInfo);
  if (rank == 0) {
    CHECK(HcclGetRootInfo(&rootInfo));
    for (size_t m = 1; m < members.size(); ++m) {
      if (!writeAll(rootPipes[static_cast<size_t>(members[m])].fds[1], &rootInfo, sizeof rootInfo)) {
        std::fprintf(stderr, "[ERROR] process %d: writing the root info for process %d failed\n", process, members[m]);
        return 1;
      }
    }
  } else if (!readAll(rootPipes[static_cast<size_t>(process)].fds[0], &rootInfo, sizeof rootInfo)) {
    std::fprintf(stderr, "[ERROR] process %d: reading the root info failed\n", process);
    return 1;
  }
  CHECK(HcclCommInitRootInfo(static_cast<uint32_t>(members.size()), &rootInfo, rank, comm));
  return 0;
}

// The body of process `process` of `numProcesses` (W * tp). Returns its exit status.
int runProcess(int process, int numProcesses, int tp, Pipes& pipes) {
  const int W = numProcesses / tp;
  PipelineRank r{};
  r.device = process;
  r.epRank = process / tp;
  r.tpRank = process % tp;
  std::vector<int> epMembers, tpMembers;
  for (int e = 0; e < W; ++e) epMembers.push_back(e * tp + r.tpRank);
  for (int t = 0; t < tp; ++t) tpMembers.push_back(r.epRank * tp + t);

  CHECK(aclInit(nullptr));
  CHECK(aclrtSetDevice(r.device));
  CHECK(aclrtCreateStream(&r.dispatchStream));
  CHECK(aclrtCreateStream(&r.combineStream));
  if (initGroupComm(process, epMembers, pipes.epRoot, &r.epComm) != 0) return 1;
  if (initGroupComm(process, tpMembers, pipes.tpRoot, &r.tpComm) != 0) return 1;

  std::string line;
  if (runPipelineRank(mpiPipelineConfig(W, tp), r, &line, kTimeoutMs) != 0) return 1;
  line += '\n';
  if (!writeAll(pipes.lines.fds[1], line.data(), line.size())) return 1;

  CHECK(HcclCommDestroy(r.epComm));
  CHECK(HcclCommDestroy(r.tpComm));
  CHECK(aclrtDestroyStream(r.dispatchStream));
  CHECK(aclrtDestroyStream(r.combineStream));
  CHECK(aclrtResetDevice(r.device));
  CHECK(aclFinalize());
  return 0;
}

// The command line: "--tp 1|2" and "--processes N", each optional. False when it is not understood.
bool parseArgs(int argc, char** argv, int* tp, int* numProcesses) {
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) return false;
    const int value = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--tp") == 0 && (value == 1 || value == 2)) {
      *tp = value;
    } else if (std::strcmp(argv[i], "--processes") == 0 && value > 0 && value <= kMaxProcesses) {
      *numProcesses = value;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int tp = 1, numProcesses = 4;
  if (!parseArgs(argc, argv, &tp, &numProcesses)) {
    std::fprintf(stderr, "usage: fork_pipeline [--tp 1|2] [--processes N]\n");
    return 1;
  }
  if (numProcesses % tp != 0 || numProcesses / tp < 2) {
    std::fprintf(stderr, "[ERROR] the number of processes must be W * tp, with W >= 2 EP ranks\n");
    return 1;
  }

  Pipes pipes;
  pipes.epRoot.resize(static_cast<size_t>(numProcesses));
  pipes.tpRoot.resize(static_cast<size_t>(numProcesses));
  for (int p = 0; p < numProcesses; ++p) {
    if (::pipe(pipes.epRoot[static_cast<size_t>(p)].fds) != 0 ||
        ::pipe(pipes.tpRoot[static_cast<size_t>(p)].fds) != 0) {
      std::perror("pipe");
      return 1;
    }
  }
  if (::pipe(pipes.lines.fds) != 0) {
    std::perror("pipe");
    return 1;
  }

  // One process per device. Nothing of CANN has been touched yet in the parent, so each child starts afresh.
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> children;
  for (int p = 0; p < numProcesses; ++p) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("fork");
      for (pid_t c : children) ::kill(c, SIGKILL);
      for (pid_t c : children) ::waitpid(c, nullptr, 0);
      return 1;
    }
    if (pid == 0) {
      ::close(pipes.lines.fds[0]);
      const int status = runProcess(p, numProcesses, tp, pipes);
      if (status != 0) std::fprintf(stderr, "[ERROR] process %d (device %d) failed\n", p, p);
      std::fflush(stderr);
      std::exit(status);
    }
    children.push_back(pid);
  }
  for (int p = 0; p < numProcesses; ++p) {
    for (int end = 0; end < 2; ++end) {
      ::close(pipes.epRoot[static_cast<size_t>(p)].fds[end]);
      ::close(pipes.tpRoot[static_cast<size_t>(p)].fds[end]);
    }
  }
  ::close(pipes.lines.fds[1]);

  // Wait for every process; the first one that fails stops the others.
  bool ok = true;
  for (size_t running = children.size(); running > 0; --running) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      std::perror("waitpid");
      return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      if (ok) {
        for (pid_t c : children)
          if (c != pid) ::kill(c, SIGKILL);
      }
      ok = false;
    }
  }

  // The digest lines, in device order.
  std::string all;
  char buf[4096];
  for (ssize_t n; (n = ::read(pipes.lines.fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    all.append(buf, static_cast<size_t>(n));
  }
  ::close(pipes.lines.fds[0]);
  if (!ok) {
    std::fprintf(stderr, "[ERROR] a process failed\n");
    return 1;
  }
  std::vector<std::string> lines(static_cast<size_t>(numProcesses));
  for (size_t start = 0; start < all.size();) {
    size_t end = all.find('\n', start);
    if (end == std::string::npos) end = all.size();
    const std::string line = all.substr(start, end - start);
    start = end + 1;
    int device = -1;
    if (std::sscanf(line.c_str(), "rank %d:", &device) != 1 || device < 0 || device >= numProcesses) {
      std::fprintf(stderr, "[ERROR] unexpected line from a process: %s\n", line.c_str());
      return 1;
    }
    lines[static_cast<size_t>(device)] = line;
  }
  for (int d = 0; d < numProcesses; ++d) {
    if (lines[static_cast<size_t>(d)].empty()) {
      std::fprintf(stderr, "[ERROR] process %d sent no digest line\n", d);
      return 1;
    }
  }
  for (const std::string& line : lines) std::printf("%s\n", line.c_str());
  std::printf("example ok\n");
  return 0;
}
