// moedist: communicators. A communicator is a set of ranks that run the MoE operators together; a
// Communicator object is one rank's handle to it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "moedist/status.h"

namespace moedist {

struct CommOptions {
  // Name of the communicator (what CANN calls the group name). Empty: a unique name is generated. Names are
  // shorter than 128 characters and unique among the live communicators of the process.
  std::string name;
  // Deadline of every cross-rank wait. Zero: MOEDIST_TIMEOUT_MS, else HCCL_EXEC_TIMEOUT (seconds), else 300 s.
  std::chrono::milliseconds timeout{0};
  // Threads each rank's kernels may use. Zero: MOEDIST_KERNEL_THREADS, else 1 (ranks are threads already, so
  // one thread per rank is right whenever there are at least as many ranks as cores).
  int kernelThreads = 0;
  // Kernel table: "cpu" (vectorized) or "ref" (the scalar reference, a baseline). Empty: MOEDIST_KERNELS, else "cpu".
  // Both give identical bytes.
  std::string kernels;
};

// A handle is cheap to copy (copies share the rank). One thread at a time may call operators with a given rank's
// handle; different ranks' handles are used from different threads at once, which is the point.
class Communicator {
 public:
  // Creates a communicator of `worldSize` ranks that are threads of this process, and returns one handle per
  // rank (handle i is rank i). Each rank's thread then calls the operators with its own handle.
  static Status createInProcess(int worldSize, const CommOptions& options, std::vector<Communicator>* ranks);
  // Finds rank `rank` of the live communicator called `name`, when that rank is in this process (a thread of it, or
  // this process itself with the shared-memory and MPI engines).
  static Status find(std::string_view name, int rank, Communicator* out);

  Communicator() = default;  // an empty handle; valid() is false

  bool valid() const { return impl_ != nullptr; }
  int rank() const;
  int size() const;
  const std::string& name() const;
  std::chrono::milliseconds timeout() const;
  int kernelThreads() const;
  const char* kernels() const;  // the kernel table's name

  // The engine-side state of this rank (internal to moedist).
  struct Impl;
  Impl* impl() const { return impl_.get(); }
  explicit Communicator(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<Impl> impl_;
};

// Memory for the tensors this rank publishes to its peers (dispatch's x, combine's expandX), in the communicator's
// memory space: the rank's segment (createShmCommunicator) or its part of the host's shared window
// (createMpiCommunicator). The operators publish such a tensor where it is, instead of copying it there on every
// call; the space holds HCCL_BUFFSIZE MB per rank, shared with that copying. Ordinary memory for in-process
// communicators (they read any memory in place) and when the space has no room left. 64-byte aligned, and ordinary
// memory of a page (4096 bytes) or more starts on a page; null only when `bytes` is 0, `comm` is empty or memory is
// exhausted. Free it with memFree() on the same communicator; what is not freed goes with the communicator.
void* memAlloc(const Communicator& comm, size_t bytes);
void memFree(const Communicator& comm, void* ptr);

}  // namespace moedist
