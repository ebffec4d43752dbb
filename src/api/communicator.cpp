// The public Communicator: one rank's handle to an in-process communicator, and the registry of live
// communicators by name (CANN programs find their communicator by the group name they pass to the operators).
#include "moedist/communicator.h"

#include <fmt/format.h>
#include <sys/mman.h>

#include <atomic>
#include <map>
#include <mutex>
#include <new>

#include "api/guard.h"
#include "api/impl.h"
#include "comm/registry.h"
#include "kernels/kernels.h"
#include "util/env.h"

namespace moedist {

namespace {

constexpr size_t kMaxNameLength = 127;
constexpr int kMaxWorldSize = 1536;  // two EP groups of CANN's largest epWorldSize (768)
constexpr std::chrono::milliseconds kDefaultTimeout = std::chrono::seconds(300);
// memAlloc()'s ordinary memory. A block of a page or more is a mapping of its own: it starts on a page, so that a
// caller's rows fall where they fall in the engines' shared memory (README, "Memory for published tensors"), and
// memFree() gives it back to the system at once (malloc would keep it, and raise its threshold for mapping). A
// smaller block is 64-byte aligned heap memory.
constexpr size_t kPage = 4096;
constexpr std::align_val_t kSmallAlign{64};

void* heapAllocate(size_t bytes) {
  if (bytes < kPage) return ::operator new(bytes, kSmallAlign, std::nothrow);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void heapRelease(void* p, size_t bytes) {
  if (bytes < kPage)
    ::operator delete(p, kSmallAlign);
  else
    ::munmap(p, bytes);
}

// Live communicators by name: one entry per rank (ranks of other processes stay empty), and what identifies the
// communicator (its shared-memory id), so that ranks of one communicator created separately by threads of this
// process can join the same entry.
struct Entry {
  std::string identity;
  std::vector<std::weak_ptr<Communicator::Impl>> ranks;
};

struct NameRegistry {
  std::mutex mu;
  std::map<std::string, Entry, std::less<>> live;
};

NameRegistry& registry() {
  static NameRegistry r;
  return r;
}

bool anyAlive(const Entry& entry) {
  for (const auto& w : entry.ranks)
    if (!w.expired()) return true;
  return false;
}

}  // namespace

namespace api {

Status resolveOptions(std::string_view fn, const CommOptions& options, ResolvedOptions* out) {
  if (options.kernelThreads < 0 || options.kernelThreads > 1024)
    return Status(StatusCode::kInvalidValue,
                  fmt::format("{}: kernelThreads is {}, expected 0..1024", fn, options.kernelThreads));
  out->timeout = options.timeout.count() > 0 ? options.timeout : util::envTimeout().value_or(kDefaultTimeout);
  out->kernelThreads = options.kernelThreads > 0 ? options.kernelThreads : util::envKernelThreads().value_or(1);
  out->kernels = options.kernels.empty() ? &kernels::defaultKernels() : kernels::findKernels(options.kernels);
  if (out->kernels == nullptr)
    return Status(StatusCode::kInvalidValue,
                  fmt::format("{}: kernels is '{}', expected \"cpu\" or \"ref\"", fn, options.kernels));
  return okStatus();
}

Status checkName(std::string_view fn, const std::string& name) {
  if (name.empty()) return Status(StatusCode::kInvalidValue, fmt::format("{}: the communicator name is empty", fn));
  if (name.size() > kMaxNameLength)
    return Status(StatusCode::kInvalidValue, fmt::format("{}: name '{}' has {} characters, expected at most {}", fn,
                                                         name, name.size(), kMaxNameLength));
  NameRegistry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mu);
  if (auto it = reg.live.find(name); it != reg.live.end() && anyAlive(it->second))
    return Status(StatusCode::kInvalidArgument, fmt::format("{}: a communicator called '{}' already exists", fn, name));
  return okStatus();
}

Status registerRank(std::string_view fn, const std::string& name, const std::string& identity,
                    std::unique_ptr<comm::Engine> engine, const ResolvedOptions& options, Communicator* out) {
  NameRegistry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mu);
  const int rank = engine->rank();
  const auto size = static_cast<size_t>(engine->size());
  Entry& entry = reg.live[name];
  if (anyAlive(entry)) {
    if (entry.identity != identity || entry.ranks.size() != size)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("{}: a communicator called '{}' already exists", fn, name));
    if (!entry.ranks[static_cast<size_t>(rank)].expired())
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("{}: rank {} of communicator '{}' exists in this process already", fn, rank, name));
  } else {
    entry.identity = identity;
    entry.ranks.assign(size, {});
  }
  auto impl =
      std::make_shared<Communicator::Impl>(std::move(engine), options.timeout, options.kernelThreads, *options.kernels);
  entry.ranks[static_cast<size_t>(rank)] = impl;
  *out = Communicator(std::move(impl));
  return okStatus();
}

std::string uniqueName(std::string_view stem, uint64_t* counter) {
  NameRegistry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mu);
  std::string name;
  do {
    name = fmt::format("{}_{}", stem, (*counter)++);
  } while (reg.live.count(name) != 0 && anyAlive(reg.live[name]));
  return name;
}

Status registerRanks(std::string_view fn, const std::string& name, std::vector<std::unique_ptr<comm::Engine>> engines,
                     const ResolvedOptions& options, std::vector<Communicator>* ranks) {
  NameRegistry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mu);
  if (auto it = reg.live.find(name); it != reg.live.end() && anyAlive(it->second))
    return Status(StatusCode::kInvalidArgument, fmt::format("{}: a communicator called '{}' already exists", fn, name));
  auto& entry = reg.live[name].ranks;
  reg.live[name].identity.clear();
  entry.assign(static_cast<size_t>(engines.front()->size()), {});
  ranks->clear();
  for (auto& engine : engines) {
    const int rank = engine->rank();
    auto impl = std::make_shared<Communicator::Impl>(std::move(engine), options.timeout, options.kernelThreads,
                                                     *options.kernels);
    entry[static_cast<size_t>(rank)] = impl;
    ranks->emplace_back(std::move(impl));
  }
  return okStatus();
}

}  // namespace api

Status Communicator::createInProcess(int worldSize, const CommOptions& options, std::vector<Communicator>* ranks) {
  constexpr std::string_view kFn = "createInProcess";
  return api::guard(kFn, [&]() -> Status {
    if (ranks == nullptr) return Status(StatusCode::kNullArgument, fmt::format("{}: ranks is null", kFn));
    if (worldSize < 1 || worldSize > kMaxWorldSize)
      return Status(StatusCode::kInvalidValue,
                    fmt::format("{}: worldSize is {}, expected 1..{}", kFn, worldSize, kMaxWorldSize));
    api::ResolvedOptions resolved;
    MOEDIST_RETURN_IF_ERROR(api::resolveOptions(kFn, options, &resolved));
    static uint64_t nextId = 0;  // guarded by uniqueName's lock
    const std::string name = options.name.empty() ? api::uniqueName("moedist_inproc", &nextId) : options.name;
    MOEDIST_RETURN_IF_ERROR(api::checkName(kFn, name));
    std::vector<std::unique_ptr<comm::Engine>> engines;
    MOEDIST_RETURN_IF_ERROR(comm::createInprocEngines(name, worldSize, &engines));
    return api::registerRanks(kFn, name, std::move(engines), resolved, ranks);
  });
}

Status Communicator::find(std::string_view name, int rank, Communicator* out) {
  return api::guard("find", [&]() -> Status {
    if (out == nullptr) return Status(StatusCode::kNullArgument, "find: out is null");
    NameRegistry& reg = registry();
    std::lock_guard<std::mutex> lock(reg.mu);
    auto it = reg.live.find(name);
    if (it == reg.live.end() || !anyAlive(it->second))
      return Status(StatusCode::kInvalidArgument, fmt::format("no communicator called '{}' exists", name));
    const auto& entryRanks = it->second.ranks;
    if (rank < 0 || rank >= static_cast<int>(entryRanks.size()))
      return Status(StatusCode::kInvalidValue, fmt::format("communicator '{}' has {} ranks, rank {} does not exist",
                                                           name, entryRanks.size(), rank));
    auto impl = entryRanks[static_cast<size_t>(rank)].lock();
    if (impl == nullptr)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("rank {} of communicator '{}' is not in this process (destroyed, or a rank of another "
                                "process)",
                                rank, name));
    *out = Communicator(std::move(impl));
    return okStatus();
  });
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

Communicator::Impl::~Impl() {
  for (const auto& [p, bytes] : heap) heapRelease(p, bytes);
}

void* memAlloc(const Communicator& comm, size_t bytes) {
  return api::guardOr<void*>(nullptr, [&]() -> void* {
    if (!comm.valid() || bytes == 0) return nullptr;
    Communicator::Impl& impl = *comm.impl();
    if (void* p = impl.ctx.engine->allocate(bytes)) return p;
    void* p = heapAllocate(bytes);
    if (p == nullptr) return nullptr;
    std::lock_guard<std::mutex> lock(impl.heapMu);
    impl.heap.emplace(p, bytes);
    return p;
  });
}

void memFree(const Communicator& comm, void* ptr) {
  (void)api::guardOr(false, [&] {
    if (!comm.valid() || ptr == nullptr) return false;
    Communicator::Impl& impl = *comm.impl();
    if (impl.ctx.engine->release(ptr)) return true;
    std::lock_guard<std::mutex> lock(impl.heapMu);
    const auto it = impl.heap.find(ptr);
    if (it == impl.heap.end()) return false;
    heapRelease(ptr, it->second);
    impl.heap.erase(it);
    return true;
  });
}

}  // namespace moedist
