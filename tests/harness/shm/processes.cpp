#include "harness/shm/processes.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>

namespace moedist::testing {

namespace {

std::string errnoText(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

void futexWait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1000000000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1000000000);
  // Not FUTEX_PRIVATE_FLAG: the word is shared between processes.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futexWakeAll(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// Writes all of `s` to `fd` (a pipe to the parent).
void writeAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

[[noreturn]] void runChild(int index, int fd, pid_t parent, const std::function<std::string(int)>& body) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);   // no orphans when the test binary is killed
  if (getppid() != parent) _exit(4);  // the parent died before prctl
  int code = 0;
  std::string out;
  try {
    out = body(index);
  } catch (const std::exception& e) {
    out = e.what();
    code = 3;
  } catch (...) {
    out = "exception not derived from std::exception";
    code = 3;
  }
  writeAll(fd, out);
  ::close(fd);
  _exit(code);
}

}  // namespace

SharedBlock::SharedBlock(size_t bytes) : bytes_(std::max<size_t>(bytes, 1)) {
  data_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (data_ == MAP_FAILED) {
    data_ = nullptr;
    throw std::runtime_error(errnoText("SharedBlock: mmap"));
  }
}

SharedBlock::~SharedBlock() {
  if (data_ != nullptr) munmap(data_, bytes_);
}

ProcessBarrier::ProcessBarrier(int parties)
    : block_(sizeof(State)), state_(new (block_.data()) State{}), parties_(parties) {}

bool ProcessBarrier::arriveAndWait(std::chrono::milliseconds timeout) {
  if (state_->broken.load(std::memory_order_acquire) != 0) return false;
  const uint32_t generation = state_->generation.load(std::memory_order_acquire);
  if (state_->arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<uint32_t>(parties_)) {
    state_->arrived.store(0, std::memory_order_relaxed);  // before the next generation can arrive
    state_->generation.fetch_add(1, std::memory_order_release);
    futexWakeAll(&state_->generation);
    return true;
  }
  const auto deadline = ProcessClock::now() + timeout;
  while (state_->generation.load(std::memory_order_acquire) == generation) {
    if (state_->broken.load(std::memory_order_acquire) != 0) return false;
    const auto left = deadline - ProcessClock::now();
    if (left <= ProcessClock::duration::zero()) {
      breakAll();
      return false;
    }
    futexWait(&state_->generation, generation,
              std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(100)));
  }
  return true;
}

void ProcessBarrier::breakAll() {
  state_->broken.store(1, std::memory_order_release);
  futexWakeAll(&state_->generation);
}

bool ProcessBarrier::broken() const {
  return state_->broken.load(std::memory_order_acquire) != 0;
}

std::string ChildExit::describe() const {
  std::string s;
  if (killed) s = "still running at the deadline, killed with SIGKILL; ";
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    return s + "exited with status " + std::to_string(code) + (code == 3 ? " (its body threw)" : "");
  }
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return s + "killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return s + "wait status " + std::to_string(status);
}

ChildProcesses::ChildProcesses(int n, const std::function<std::string(int)>& body) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = getpid();
  for (int i = 0; i < n; ++i) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
      const std::string what = errnoText("ChildProcesses: pipe2");
      killAll();  // the children made so far
      throw std::runtime_error(what);
    }
    const pid_t pid = fork();
    if (pid < 0) {
      const std::string what = errnoText("ChildProcesses: fork");
      ::close(p[0]);
      ::close(p[1]);
      killAll();
      throw std::runtime_error(what);
    }
    if (pid == 0) {
      ::close(p[0]);
      for (int fd : fds_) ::close(fd);  // the earlier children's read ends
      runChild(i, p[1], parent, body);
    }
    ::close(p[1]);
    pids_.push_back(pid);
    fds_.push_back(p[0]);
  }
}

ChildProcesses::~ChildProcesses() {
  killAll();
}

void ChildProcesses::killAll() {
  for (int& fd : fds_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  if (reaped_) return;
  for (pid_t pid : pids_) kill(pid, SIGKILL);
  for (pid_t pid : pids_) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  reaped_ = true;
}

std::vector<ChildExit> ChildProcesses::wait(ProcessClock::time_point deadline,
                                            const std::function<void(int, const ChildExit&)>& onExit) {
  const size_t n = pids_.size();
  std::vector<ChildExit> exits(n);
  for (size_t i = 0; i < n; ++i) exits[i].pid = pids_[i];
  if (reaped_) return exits;
  size_t open = 0;
  for (int fd : fds_) open += fd >= 0 ? 1 : 0;
  // A child's pipe closes when it exits (no one else holds its write end); then it is reaped at once.
  while (open > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - ProcessClock::now());
    if (left.count() <= 0) break;
    std::vector<pollfd> pfds;
    std::vector<size_t> which;
    for (size_t i = 0; i < n; ++i) {
      if (fds_[i] < 0) continue;
      pfds.push_back({fds_[i], POLLIN, 0});
      which.push_back(i);
    }
    const int ready = poll(pfds.data(), pfds.size(), static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (ready <= 0) continue;
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (pfds[k].revents == 0) continue;
      const size_t i = which[k];
      char buf[65536];
      const ssize_t got = ::read(fds_[i], buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got > 0) {
        exits[i].output.append(buf, static_cast<size_t>(got));
        continue;
      }
      ::close(fds_[i]);  // end of file: the child has exited (or is exiting)
      fds_[i] = -1;
      --open;
      exits[i].exitedAt = ProcessClock::now();
      while (waitpid(pids_[i], &exits[i].status, 0) < 0 && errno == EINTR) {
      }
      exits[i].finished = WIFEXITED(exits[i].status) && WEXITSTATUS(exits[i].status) == 0;
      if (onExit) onExit(static_cast<int>(i), exits[i]);
    }
  }
  // The deadline passed: kill the children still running, then reap them.
  for (size_t i = 0; i < n; ++i) {
    if (fds_[i] < 0) continue;
    kill(pids_[i], SIGKILL);
    exits[i].killed = true;
    while (waitpid(pids_[i], &exits[i].status, 0) < 0 && errno == EINTR) {
    }
    exits[i].exitedAt = ProcessClock::now();
    ::close(fds_[i]);
    fds_[i] = -1;
  }
  reaped_ = true;
  return exits;
}

std::vector<std::string> devShmEntries(const std::string& prefix) {
  std::vector<std::string> out;
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return out;
  while (const dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) == 0) out.push_back(name);
  }
  closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace moedist::testing
