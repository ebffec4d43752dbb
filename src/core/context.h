// RankContext: what one rank of one communicator keeps between operator calls: its engine, its deadline, its
// kernel threads and kernel table, and reusable scratch memory. Owned by the public Communicator handle.
#pragma once

#include <chrono>
#include <memory>

#include "comm/engine.h"
#include "core/workspace.h"
#include "kernels/kernels.h"
#include "util/thread_pool.h"

namespace moedist::core {

struct RankContext {
  // `kernelTable` is a table registered in kernels/registry.cpp (see kernels::findKernels()).
  RankContext(std::unique_ptr<comm::Engine> e, std::chrono::milliseconds t, int kernelThreads,
              const kernels::KernelTable& kernelTable)
      : engine(std::move(e)), timeout(t), pool(kernelThreads), kernels(&kernelTable) {}

  comm::Clock::time_point deadline() const { return comm::Clock::now() + timeout; }

  std::unique_ptr<comm::Engine> engine;
  std::chrono::milliseconds timeout;
  util::ThreadPool pool;
  const kernels::KernelTable* kernels;
  Arena arena;  // backs the workspace of calls made through the C++ API
  Arena inbox;  // what peers push to this rank in a call (Inbox, core/peer_rows.h)
};

}  // namespace moedist::core
