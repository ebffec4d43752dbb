#include "core/routing_plan.h"

#include <fmt/format.h>

#include <algorithm>

namespace moedist::core {

namespace {

Status badIds(Operator op, int64_t t, int64_t k, int64_t id, const std::string& expected) {
  return Status(StatusCode::kInvalidArgument,
                fmt::format("{}: expertIds[{}][{}] is {}, expected {}", toString(op), t, k, id, expected));
}

// SPEC 2.3 / 3.6: which tokens and slots are active.
Status markActive(Operator op, const Geometry& geo, std::span<const uint8_t> mask, RoutingPlan* plan) {
  const int64_t Bs = geo.Bs, K = geo.K;
  plan->activeToken.assign(static_cast<size_t>(Bs), 1);
  plan->activeSlot.assign(static_cast<size_t>(Bs * K), 1);
  plan->numActiveTokens = Bs;
  if (mask.empty()) return okStatus();
  if (!geo.twoDimMask) {
    // The operator treats the count of trues as a prefix length; moedist insists the mask is that prefix.
    int64_t n = 0;
    for (int64_t t = 0; t < Bs; ++t) n += mask[static_cast<size_t>(t)] != 0;
    for (int64_t t = 0; t < Bs; ++t) {
      const bool on = mask[static_cast<size_t>(t)] != 0;
      if (on != (t < n))
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("{}: xActiveMask: expected all trues before all falses, got {} at index {} with {} "
                                  "trues in all",
                                  toString(op), on ? "true" : "false", t, n));
      plan->activeToken[static_cast<size_t>(t)] = on;
      std::fill_n(plan->activeSlot.begin() + t * K, K, static_cast<uint8_t>(on));
    }
    plan->numActiveTokens = n;
    return okStatus();
  }
  plan->numActiveTokens = 0;
  for (int64_t t = 0; t < Bs; ++t) {
    uint8_t any = 0;
    for (int64_t k = 0; k < K; ++k) {
      const uint8_t on = mask[static_cast<size_t>(t * K + k)] != 0;
      plan->activeSlot[static_cast<size_t>(t * K + k)] = on;
      any |= on;
    }
    plan->activeToken[static_cast<size_t>(t)] = any;
    plan->numActiveTokens += any;
  }
  return okStatus();
}

// SPEC decision 2: every active slot's id must be valid, and no id may repeat within one token.
Status checkIds(Operator op, const Geometry& geo, const Topology& topo, std::span<const int32_t> ids,
                const RoutingPlan& plan) {
  const int64_t K = geo.K;
  const int64_t idEnd = geo.M + geo.Z + geo.C + geo.Q;
  for (int64_t t = 0; t < geo.Bs; ++t) {
    if (!plan.activeToken[static_cast<size_t>(t)]) continue;
    for (int64_t k = 0; k < K; ++k) {
      if (!plan.activeSlot[static_cast<size_t>(t * K + k)]) continue;
      const int64_t id = ids[static_cast<size_t>(t * K + k)];
      if (!geo.specials && (id < 0 || id >= topo.M))
        return badIds(op, t, k, id, fmt::format("a MoE expert id in [0, {})", topo.M));
      if (id < 0 || id >= idEnd)
        return badIds(op, t, k, id, fmt::format("an id in [0, {}) (MoE, zero, copy and const experts)", idEnd));
      if (topo.scaledIn && id >= topo.M && id < geo.M)
        return badIds(
            op, t, k, id,
            fmt::format("an id outside [{}, {}): after scale-in the MoE experts are [0, {})", topo.M, geo.M, topo.M));
      for (int64_t k2 = 0; k2 < k; ++k2) {
        if (plan.activeSlot[static_cast<size_t>(t * K + k2)] && ids[static_cast<size_t>(t * K + k2)] == id)
          return badIds(op, t, k, id, fmt::format("an id not already chosen by the token (expertIds[{}][{}])", t, k2));
      }
    }
  }
  return okStatus();
}

}  // namespace

Status buildRoutingPlan(Operator op, const Geometry& geo, const Topology& topo, std::span<const int32_t> ids,
                        std::span<const uint8_t> mask, RoutingPlan* plan) {
  if (Status s = markActive(op, geo, mask, plan); !s.ok()) return s;
  if (Status s = checkIds(op, geo, topo, ids, *plan); !s.ok()) return s;

  const int64_t K = geo.K, L = topo.L, S = geo.S;
  const int64_t numBlocks = topo.W * L;
  auto& offsets = plan->blockOffsets;
  offsets.assign(static_cast<size_t>(numBlocks + 1), 0);
  // Count, then fill in ascending (t, k) order: SPEC 2.4's order inside each block.
  auto forEachSend = [&](auto&& visit) {
    for (int64_t t = 0; t < geo.Bs; ++t) {
      if (!plan->activeToken[static_cast<size_t>(t)]) continue;
      for (int64_t k = 0; k < K; ++k) {
        if (!plan->activeSlot[static_cast<size_t>(t * K + k)]) continue;
        const int64_t e = ids[static_cast<size_t>(t * K + k)];
        if (e >= topo.M) continue;  // a special expert: never sent (SPEC 4)
        visit(topo.moeRank(e) * L + e % L, t, k);
      }
      for (int64_t j = 0; j < S; ++j) visit(topo.sharedRank(topo.self, j) * L, t, K + j);
    }
  };
  forEachSend([&](int64_t block, int64_t, int64_t) { ++offsets[static_cast<size_t>(block + 1)]; });
  for (int64_t b = 0; b < numBlocks; ++b) offsets[static_cast<size_t>(b + 1)] += offsets[static_cast<size_t>(b)];
  plan->entries.resize(static_cast<size_t>(offsets.back()));
  std::vector<int32_t> cursor(offsets.begin(), offsets.end() - 1);
  forEachSend([&](int64_t block, int64_t t, int64_t k) {
    plan->entries[static_cast<size_t>(cursor[static_cast<size_t>(block)]++)] =
        SlotRef{static_cast<int32_t>(t), static_cast<int32_t>(k)};
  });
  return okStatus();
}

}  // namespace moedist::core
