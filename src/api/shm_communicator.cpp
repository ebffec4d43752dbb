// The shared-memory communicators of moedist/shm.h: ranks that are processes (or threads) of one host, joined by a
// unique id that the application passes around.
#include <fmt/format.h>

#include <cstring>

#include "api/guard.h"
#include "api/impl.h"
#include "comm/registry.h"
#include "moedist/shm.h"
#include "util/env.h"

namespace moedist {

namespace {

constexpr std::string_view kFn = "createShmCommunicator";

std::string idText(const ShmUniqueId& id) {
  return std::string(id.internal, strnlen(id.internal, sizeof(id.internal)));
}

}  // namespace

Status getShmUniqueId(ShmUniqueId* id) {
  return api::guard("getShmUniqueId", [&]() -> Status {
    if (id == nullptr) return Status(StatusCode::kNullArgument, "getShmUniqueId: id is null");
    std::string text;
    MOEDIST_RETURN_IF_ERROR(comm::shm::newUniqueId(&text));
    if (text.size() >= sizeof(id->internal))
      return Status(StatusCode::kInternal,
                    fmt::format("getShmUniqueId: the id has {} characters, more than fit", text.size()));
    std::memset(id->internal, 0, sizeof(id->internal));
    std::memcpy(id->internal, text.data(), text.size());
    return okStatus();
  });
}

bool isShmUniqueId(const ShmUniqueId& id) {
  return api::guardOr(false, [&] { return comm::shm::isUniqueId(idText(id)); });
}

Status createShmCommunicator(const ShmUniqueId& id, int nRanks, int rank, const CommOptions& options,
                             Communicator* out) {
  return api::guard(kFn, [&]() -> Status {
    if (out == nullptr) return Status(StatusCode::kNullArgument, fmt::format("{}: out is null", kFn));
    const std::string text = idText(id);
    api::ResolvedOptions resolved;
    MOEDIST_RETURN_IF_ERROR(api::resolveOptions(kFn, options, &resolved));
    comm::shm::Options engineOptions;
    // The token (the id's second field) names the communicator the same way in every member.
    const size_t token = text.find(';');
    engineOptions.name = !options.name.empty()
                             ? options.name
                             : fmt::format("moedist_shm_{}", token == std::string::npos ? std::string("invalid")
                                                                                        : text.substr(token + 1, 8));
    if (engineOptions.name.size() > 127)
      return Status(StatusCode::kInvalidValue, fmt::format("{}: name '{}' has {} characters, expected at most 127", kFn,
                                                           engineOptions.name, engineOptions.name.size()));
    engineOptions.segmentBytes = static_cast<size_t>(std::max(util::envHcclBuffSizeMb(), 1L)) << 20;
    engineOptions.connectTimeout = util::envConnectTimeout();
    std::unique_ptr<comm::Engine> engine;
    MOEDIST_RETURN_IF_ERROR(comm::shm::createEngine(text, nRanks, rank, engineOptions, &engine));
    return api::registerRank(kFn, engineOptions.name, text, std::move(engine), resolved, out);
  });
}

}  // namespace moedist
