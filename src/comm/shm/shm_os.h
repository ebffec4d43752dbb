// The operating-system pieces of the shared-memory engine: named segments, futex waits, process liveness, and what
// identifies "this host" to a unique id.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "moedist/status.h"

namespace moedist::comm::shm {

// What a process must share with the creator of a unique id to use it: the same kernel (boot id), the same /dev/shm
// and the same IPC and PID namespaces (so that segment names and process ids mean the same thing).
struct HostIdentity {
  std::string bootId;
  uint64_t shmDev = 0, shmIno = 0;
  uint64_t ipcNs = 0, pidNs = 0;
};
Status hostIdentity(HostIdentity* out);
// Empty when `a` (this process) can use an id created under `b`; else why not, for the message.
std::string identityMismatch(const HostIdentity& self, const HostIdentity& creator);

// A process as the engine knows it: its pid and its start time (so that a recycled pid is not taken for it).
struct ProcessId {
  int32_t pid = 0;
  uint64_t startTime = 0;  // /proc/<pid>/stat field 22, clock ticks since boot
};
ProcessId selfProcess();
// False when the process has exited (or is a zombie, or the pid now belongs to another process); `why` says so.
bool processAlive(const ProcessId& p, std::string* why);

// A POSIX shared-memory object mapped read-write. Unmapped (and closed) on destruction; never unlinked by it.
class Mapping {
 public:
  Mapping() = default;
  ~Mapping();
  Mapping(Mapping&& o) noexcept { *this = std::move(o); }
  Mapping& operator=(Mapping&& o) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  // Creates `name` exclusively with mode 0600 and size `bytes` (sparse: pages are used when written).
  static Status create(const std::string& name, size_t bytes, Mapping* out);
  // Opens an existing `name` and maps all of it; kNotFound-like errors come back as kInvalidArgument with `errnoOut`
  // set (ENOENT: not created yet or already unlinked; EACCES: another user's).
  static Status open(const std::string& name, Mapping* out, int* errnoOut);

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  explicit operator bool() const { return data_ != nullptr; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// shm_unlink, ignoring a name that is gone already.
void unlinkName(const std::string& name);

// FUTEX_WAIT on a 32-bit word shared between processes, until it differs from `expected`, a wake, or `timeout`.
void futexWait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout);
// FUTEX_WAKE of every waiter.
void futexWakeAll(std::atomic<uint32_t>* word);

// Random bytes from the kernel, as lowercase hex (2 characters a byte).
Status randomHex(size_t bytes, std::string* out);

}  // namespace moedist::comm::shm
