// The public Communicator: one rank's handle to an in-process communicator, and the registry of live
// communicators by name (CANN programs find their communicator by the group name they pass to the operators).
#include "moedist/communicator.h"

#include <fmt/format.h>

#include <atomic>
#include <map>
#include <mutex>

#include "api/impl.h"
#include "comm/registry.h"
#include "kernels/kernels.h"
#include "util/env.h"

namespace moedist {

namespace {

constexpr size_t kMaxNameLength = 127;
constexpr int kMaxWorldSize = 1536;  // two EP groups of CANN's largest epWorldSize (768)
constexpr std::chrono::milliseconds kDefaultTimeout = std::chrono::seconds(300);

struct NameRegistry {
  std::mutex mu;
  std::map<std::string, std::vector<std::weak_ptr<Communicator::Impl>>, std::less<>> live;
  uint64_t nextId = 0;
};

NameRegistry& registry() {
  static NameRegistry r;
  return r;
}

bool anyAlive(const std::vector<std::weak_ptr<Communicator::Impl>>& ranks) {
  for (const auto& w : ranks)
    if (!w.expired()) return true;
  return false;
}

}  // namespace

Status Communicator::createInProcess(int worldSize, const CommOptions& options, std::vector<Communicator>* ranks) {
  if (worldSize < 1 || worldSize > kMaxWorldSize)
    return Status(StatusCode::kInvalidValue,
                  fmt::format("createInProcess: worldSize is {}, expected 1..{}", worldSize, kMaxWorldSize));
  if (options.kernelThreads < 0 || options.kernelThreads > 1024)
    return Status(StatusCode::kInvalidValue,
                  fmt::format("createInProcess: kernelThreads is {}, expected 0..1024", options.kernelThreads));
  const auto timeout = options.timeout.count() > 0 ? options.timeout : util::envTimeout().value_or(kDefaultTimeout);
  const int threads = options.kernelThreads > 0 ? options.kernelThreads : util::envKernelThreads().value_or(1);
  const kernels::KernelTable* table =
      options.kernels.empty() ? &kernels::defaultKernels() : kernels::findKernels(options.kernels);
  if (table == nullptr)
    return Status(StatusCode::kInvalidValue,
                  fmt::format("createInProcess: kernels is '{}', expected \"cpu\" or \"ref\"", options.kernels));

  NameRegistry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mu);
  std::string name = options.name;
  if (name.empty()) {
    do {
      name = fmt::format("moedist_inproc_{}", reg.nextId++);
    } while (reg.live.count(name) != 0 && anyAlive(reg.live[name]));
  }
  if (name.size() > kMaxNameLength)
    return Status(StatusCode::kInvalidValue, fmt::format("createInProcess: name '{}' has {} characters, expected at "
                                                         "most {}",
                                                         name, name.size(), kMaxNameLength));
  if (auto it = reg.live.find(name); it != reg.live.end() && anyAlive(it->second))
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("createInProcess: a communicator called '{}' already exists", name));

  std::vector<std::unique_ptr<comm::Engine>> engines;
  MOEDIST_RETURN_IF_ERROR(comm::createInprocEngines(name, worldSize, &engines));
  ranks->clear();
  auto& entry = reg.live[name];
  entry.clear();
  for (auto& engine : engines) {
    auto impl = std::make_shared<Impl>(std::move(engine), timeout, threads, *table);
    entry.push_back(impl);
    ranks->emplace_back(std::move(impl));
  }
  return okStatus();
}

Status Communicator::find(std::string_view name, int rank, Communicator* out) {
  NameRegistry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mu);
  auto it = reg.live.find(name);
  if (it == reg.live.end() || !anyAlive(it->second))
    return Status(StatusCode::kInvalidArgument, fmt::format("no communicator called '{}' exists", name));
  if (rank < 0 || rank >= static_cast<int>(it->second.size()))
    return Status(StatusCode::kInvalidValue,
                  fmt::format("communicator '{}' has {} ranks, rank {} does not exist", name, it->second.size(), rank));
  auto impl = it->second[static_cast<size_t>(rank)].lock();
  if (impl == nullptr)
    return Status(StatusCode::kInvalidArgument, fmt::format("rank {} of communicator '{}' was destroyed", rank, name));
  *out = Communicator(std::move(impl));
  return okStatus();
}

int Communicator::rank() const {
  return impl_->ctx.engine->rank();
}
int Communicator::size() const {
  return impl_->ctx.engine->size();
}
const std::string& Communicator::name() const {
  return impl_->ctx.engine->name();
}
std::chrono::milliseconds Communicator::timeout() const {
  return impl_->ctx.timeout;
}
const char* Communicator::kernels() const {
  return impl_->ctx.kernels->name;
}

int Communicator::kernelThreads() const {
  return impl_->ctx.pool.threads();
}

}  // namespace moedist
