// What a public Communicator handle owns: one rank's core context.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <string_view>
#include <vector>

#include "core/context.h"
#include "moedist/communicator.h"

namespace moedist {

struct Communicator::Impl {
  Impl(std::unique_ptr<comm::Engine> engine, std::chrono::milliseconds timeout, int kernelThreads,
       const kernels::KernelTable& kernels)
      : ctx(std::move(engine), timeout, kernelThreads, kernels) {}
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  core::RankContext ctx;
  // memAlloc()'s memory that is not the engine's: ordinary memory and its size, freed at the latest with the rank.
  std::mutex heapMu;
  std::map<void*, size_t> heap;
};

namespace api {

// CommOptions with the environment's defaults filled in.
struct ResolvedOptions {
  std::chrono::milliseconds timeout{0};
  int kernelThreads = 1;
  const kernels::KernelTable* kernels = nullptr;
};
Status resolveOptions(std::string_view fn, const CommOptions& options, ResolvedOptions* out);
// A name that is valid and not taken by a live communicator of this process; `fn` starts the messages.
Status checkName(std::string_view fn, const std::string& name);
// "<stem>_<n>" for the next n of `counter` whose name is free in this process.
std::string uniqueName(std::string_view stem, uint64_t* counter);
// Wraps one rank's engine in a Communicator and registers it by name. The ranks of one communicator may register one
// by one (threads of this process that each create their rank): they join the entry when `identity` matches.
Status registerRank(std::string_view fn, const std::string& name, const std::string& identity,
                    std::unique_ptr<comm::Engine> engine, const ResolvedOptions& options, Communicator* out);
// Wraps each engine (this process's ranks of communicator `name`) in a Communicator and registers it by name.
Status registerRanks(std::string_view fn, const std::string& name, std::vector<std::unique_ptr<comm::Engine>> engines,
                     const ResolvedOptions& options, std::vector<Communicator>* ranks);

}  // namespace api

}  // namespace moedist
