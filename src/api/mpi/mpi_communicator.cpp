// createMpiCommunicator (moedist/mpi.h): one rank of a communicator whose ranks are MPI processes.
//
// Creation is collective over the given MPI_Comm, so every step that can fail on one process alone (options, the
// name) is agreed on first: either every process creates its rank or every process returns an error.
#include <fmt/format.h>

#include <atomic>

#include "api/guard.h"
#include "api/impl.h"
#include "comm/mpi/mpi_engine.h"
#include "moedist/mpi.h"
#include "util/env.h"

namespace moedist {

namespace {

constexpr std::string_view kFn = "createMpiCommunicator";

// The first failure of any process, on every process (collective over comm).
Status agreeOnStatus(MPI_Comm comm, Status local) {
  const int mine = local.ok() ? 0 : 1;
  int any = 0;
  if (int rc = MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, comm); rc != MPI_SUCCESS)
    return Status(StatusCode::kInternal, fmt::format("{}: MPI_Allreduce failed with code {}", kFn, rc));
  if (!local.ok() || any == 0) return local;
  return Status(StatusCode::kInvalidArgument,
                fmt::format("{}: another process of the MPI communicator refused to create its rank", kFn));
}

}  // namespace

Status createMpiCommunicator(MPI_Comm comm, const CommOptions& options, Communicator* out) {
  return api::guard(kFn, [&]() -> Status {
    if (out == nullptr) return Status(StatusCode::kNullArgument, fmt::format("{}: out is null", kFn));
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("{}: MPI is not initialized (call MPI_Init_thread)", kFn));
    if (comm == MPI_COMM_NULL)
      return Status(StatusCode::kInvalidArgument, fmt::format("{}: comm is MPI_COMM_NULL", kFn));

    api::ResolvedOptions resolved;
    Status local = api::resolveOptions(kFn, options, &resolved);
    // A generated name is the same on every process: the largest next number of any of them.
    static std::atomic<uint64_t> nextId{0};
    unsigned long long mine = nextId.load(), agreed = 0;
    if (int rc = MPI_Allreduce(&mine, &agreed, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm); rc != MPI_SUCCESS)
      return Status(StatusCode::kInternal, fmt::format("{}: MPI_Allreduce failed with code {}", kFn, rc));
    for (uint64_t seen = nextId.load(); seen <= agreed && !nextId.compare_exchange_weak(seen, agreed + 1);) {
    }
    const std::string name = options.name.empty() ? fmt::format("moedist_mpi_{}", agreed) : options.name;
    if (local.ok()) local = api::checkName(kFn, name);
    MOEDIST_RETURN_IF_ERROR(agreeOnStatus(comm, std::move(local)));

    std::unique_ptr<comm::Engine> engine;
    const size_t windowBytes = static_cast<size_t>(util::envHcclBuffSizeMb()) << 20;
    MOEDIST_RETURN_IF_ERROR(comm::mpi::createEngine(comm, name, util::envMpiSharedMemory(), windowBytes, &engine));
    std::vector<std::unique_ptr<comm::Engine>> engines;
    engines.push_back(std::move(engine));
    std::vector<Communicator> ranks;
    MOEDIST_RETURN_IF_ERROR(api::registerRanks(kFn, name, std::move(engines), resolved, &ranks));
    *out = std::move(ranks.front());
    return okStatus();
  });
}

}  // namespace moedist
