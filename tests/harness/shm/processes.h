// Processes for the shared-memory harness and its tests: children made with fork() (no exec: the harness is a static
// library inside test binaries and the tool) whose results come back to the parent over a pipe, collected against a
// deadline; a barrier for processes that never waits forever; and anonymous shared memory made before fork.
//
//   ProcessBarrier barrier(4);
//   ChildProcesses children(4, [&](int i) { ...; barrier.arriveAndWait(10s); ...; return std::string("done"); });
//   for (const ChildExit& c : children.wait(Clock::now() + 60s)) ... c.finished, c.output, c.describe() ...
//
// A child runs its body and leaves with _exit(): no atexit handlers, no static destructors, no gtest teardown, no
// flush of the stdio buffers it inherited. It dies with its parent (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace moedist::testing {

using ProcessClock = std::chrono::steady_clock;  // CLOCK_MONOTONIC: the same clock in every process of the host

// Zeroed anonymous MAP_SHARED memory: made before fork, parent and children see the same bytes.
class SharedBlock {
 public:
  explicit SharedBlock(size_t bytes);
  ~SharedBlock();
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;
  void* data() const { return data_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// A barrier of `parties` processes (or threads) over a futex in a SharedBlock of its own: make it before fork. A wait
// never lasts longer than its timeout; a wait that times out breaks the barrier, and so does breakAll() (the parent
// calls it when a child dies): every waiter and every later arrival then fails at once.
class ProcessBarrier {
 public:
  explicit ProcessBarrier(int parties);
  // True when every party arrived; false when `timeout` passed first or the barrier is broken.
  bool arriveAndWait(std::chrono::milliseconds timeout);
  void breakAll();
  bool broken() const;

 private:
  struct State {
    std::atomic<uint32_t> arrived;
    std::atomic<uint32_t> generation;  // the futex word
    std::atomic<uint32_t> broken;
  };
  SharedBlock block_;
  State* state_;
  int parties_;
};

// What became of one child.
struct ChildExit {
  pid_t pid = -1;
  std::string output;                   // what its body returned (or, when it threw, the exception's text)
  bool finished = false;                // the body returned and the child exited with status 0
  bool killed = false;                  // still running at the deadline: killed with SIGKILL by wait()
  int status = 0;                       // waitpid's status
  ProcessClock::time_point exitedAt{};  // when the parent saw it exit (its pipe closed)
  // "exited with status 0", "exited with status 3 (its body threw)", "killed by signal 9 (Killed)", ...
  std::string describe() const;
};

// One child process per index 0..n-1, forked at construction (stdout and stderr are flushed first). Child i runs
// body(i); what the body returns goes back to the parent, then the child _exit(0)s. A body that throws sends the
// exception's text and _exit(3)s.
class ChildProcesses {
 public:
  ChildProcesses(int n, const std::function<std::string(int index)>& body);
  ~ChildProcesses();  // kills (SIGKILL) and reaps the children wait() has not reaped
  ChildProcesses(const ChildProcesses&) = delete;
  ChildProcesses& operator=(const ChildProcesses&) = delete;

  int size() const { return static_cast<int>(pids_.size()); }
  pid_t pid(int index) const { return pids_[static_cast<size_t>(index)]; }

  // Reads every child's output and reaps every child, waiting at most until `deadline`; children still running then
  // are killed with SIGKILL (ChildExit::killed). `onExit(index, exit)` is called in the parent as each child is
  // reaped before the deadline (the harness breaks its barrier when one did not finish). Call it once.
  std::vector<ChildExit> wait(ProcessClock::time_point deadline,
                              const std::function<void(int index, const ChildExit& exit)>& onExit = {});

 private:
  void killAll();

  std::vector<pid_t> pids_;
  std::vector<int> fds_;  // read ends of the children's pipes (-1: closed)
  bool reaped_ = false;
};

// The entries of /dev/shm whose names start with `prefix` ("moedist" by default), sorted.
std::vector<std::string> devShmEntries(const std::string& prefix = "moedist");

}  // namespace moedist::testing
