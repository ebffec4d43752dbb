// What a public Communicator handle owns: one rank's core context.
#pragma once

#include "core/context.h"
#include "moedist/communicator.h"

namespace moedist {

struct Communicator::Impl {
  Impl(std::unique_ptr<comm::Engine> engine, std::chrono::milliseconds timeout, int kernelThreads,
       const kernels::KernelTable& kernels)
      : ctx(std::move(engine), timeout, kernelThreads, kernels) {}
  core::RankContext ctx;
};

}  // namespace moedist
