#include "core/call_common.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <optional>
#include <vector>

#include "core/exchange.h"

namespace moedist::core {

Status checkCommunicators(Operator op, const Geometry& geo, const RankContext& ep, const RankContext* tp) {
  const comm::Engine& e = *ep.engine;
  if (e.size() != geo.W || e.rank() != geo.r)
    return Status(StatusCode::kInvalidValue,
                  fmt::format("{}: epWorldSize/epRankId are {}/{}, but communicator '{}' has {} ranks and this is rank "
                              "{}",
                              toString(op), geo.W, geo.r, e.name(), e.size(), e.rank()));
  if (geo.tp == 2) {
    if (tp == nullptr)
      return Status(StatusCode::kNullArgument,
                    fmt::format("{}: tpWorldSize is 2 but no TP communicator was given", toString(op)));
    const comm::Engine& t = *tp->engine;
    if (t.size() != 2 || t.rank() != geo.tpr)
      return Status(StatusCode::kInvalidValue,
                    fmt::format("{}: tpWorldSize/tpRankId are 2/{}, but TP communicator '{}' has {} ranks and this is "
                                "rank {}",
                                toString(op), geo.tpr, t.name(), t.size(), t.rank()));
    if (&t == &e)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("{}: groupEp and groupTp are the same communicator '{}'", toString(op), e.name()));
  }
  return okStatus();
}

Status bindWorkspace(Operator op, RankContext& ctx, const Ledger& ledger, std::span<std::byte> given, Workspace* ws) {
  if (given.empty()) {
    *ws = Workspace(ctx.arena.reserve(ledger.bytes()));
    return okStatus();
  }
  if (given.size() < ledger.bytes())
    return Status(StatusCode::kInvalidArgument, fmt::format("{}: workspace has {} bytes, expected at least {}",
                                                            toString(op), given.size(), ledger.bytes()));
  if (reinterpret_cast<uintptr_t>(given.data()) % alignof(std::max_align_t) != 0)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{}: workspace: expected an address aligned to {} bytes, got {}", toString(op),
                              alignof(std::max_align_t), static_cast<const void*>(given.data())));
  *ws = Workspace(given);
  return okStatus();
}

namespace {

// See failTogether(). nullopt: this rank was removed by the scale-in and does not take part.
std::optional<std::vector<int>> participantsFromArgs(const TensorView& elasticInfo, int worldSize, int rank) {
  std::vector<int> all(static_cast<size_t>(worldSize));
  std::iota(all.begin(), all.end(), 0);
  const int64_t length = 4 + 2 * static_cast<int64_t>(worldSize);
  if (!elasticInfo.defined() || elasticInfo.dtype() != DType::kInt32 || elasticInfo.ndim() != 1 ||
      elasticInfo.dim(0) != length || elasticInfo.data() == nullptr)
    return all;
  std::vector<std::byte> scratch(denseBytes(elasticInfo));
  const auto e = denseAs<int32_t>(elasticInfo, scratch);
  if (e[0] == 0) return all;
  if (e[static_cast<size_t>(4 + rank)] == -1) return std::nullopt;
  std::vector<int> survivors;
  for (int p = 0; p < worldSize; ++p)
    if (e[static_cast<size_t>(4 + p)] != -1) survivors.push_back(p);
  return survivors;
}

Status joinWithError(Operator op, RankContext& ctx, std::span<const int> participants, const Status& error) {
  Signature sig;
  sig[SigField::kOp] = static_cast<int64_t>(op);
  Header header(sig, error);
  OpenCall call(op, *ctx.engine, ctx.timeout);
  if (Status s = call.open(participants, header.bytes(), {}); !s.ok()) return error;
  return call.close(agree(op, *ctx.engine, participants, error));
}

}  // namespace

Status failTogether(Operator op, RankContext& ep, RankContext* tp, bool tpFirst, const TensorView& elasticInfo,
                    const Status& error) {
  const auto participants = participantsFromArgs(elasticInfo, ep.engine->size(), ep.engine->rank());
  const int pair[] = {0, 1};
  const bool withTp = tp != nullptr && tp->engine->size() == 2 && tp != &ep;
  if (withTp && tpFirst) (void)joinWithError(op, *tp, pair, error);
  if (participants) (void)joinWithError(op, ep, *participants, error);
  if (withTp && !tpFirst) (void)joinWithError(op, *tp, pair, error);
  return error;
}

bool streamOutput(size_t bytes) {
  static const size_t threshold = [] {
    const long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return llc > 0 ? static_cast<size_t>(llc) / 4 : size_t{8} << 20;
  }();
  return bytes > threshold;
}

}  // namespace moedist::core
