#include "core/call_common.h"

#include <fmt/format.h>

namespace moedist::core {

Status checkCommunicators(Op op, const Geometry& geo, const RankContext& ep, const RankContext* tp) {
  const comm::Engine& e = *ep.engine;
  if (e.size() != geo.W || e.rank() != geo.r)
    return Status(StatusCode::kInvalidValue,
                  fmt::format("{}: epWorldSize/epRankId are {}/{}, but communicator '{}' has {} ranks and this is rank "
                              "{}",
                              opName(op), geo.W, geo.r, e.name(), e.size(), e.rank()));
  if (geo.tp == 2) {
    if (tp == nullptr)
      return Status(StatusCode::kNullArgument,
                    fmt::format("{}: tpWorldSize is 2 but no TP communicator was given", opName(op)));
    const comm::Engine& t = *tp->engine;
    if (t.size() != 2 || t.rank() != geo.tpr)
      return Status(StatusCode::kInvalidValue,
                    fmt::format("{}: tpWorldSize/tpRankId are 2/{}, but TP communicator '{}' has {} ranks and this is "
                                "rank {}",
                                opName(op), geo.tpr, t.name(), t.size(), t.rank()));
    if (&t == &e)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("{}: groupEp and groupTp are the same communicator '{}'", opName(op), e.name()));
  }
  return okStatus();
}

Status bindWorkspace(Op op, RankContext& ctx, const Ledger& ledger, std::span<std::byte> given, Workspace* ws) {
  if (given.empty()) {
    *ws = Workspace(ctx.arena.reserve(ledger.bytes()));
    return okStatus();
  }
  if (given.size() < ledger.bytes())
    return Status(StatusCode::kInvalidArgument, fmt::format("{}: workspace has {} bytes, expected at least {}",
                                                            opName(op), given.size(), ledger.bytes()));
  *ws = Workspace(given);
  return okStatus();
}

}  // namespace moedist::core
