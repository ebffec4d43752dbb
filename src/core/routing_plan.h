// The routing plan (DeepEP's "layout" step): from expertIds, the active mask and the topology, which slots of
// this rank's tokens take part and where each goes (SPEC 2.2-2.4, 3.5, 4). Dispatch and combine both build it
// from their own inputs, so combine needs no hidden state from dispatch.
//
// Data-dependent checks of SPEC decision 2 live here: expert ids outside every valid range, ids repeated in
// one token's active slots, MoE ids the scale-in removed, and 1-D masks that are not "all trues first".
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/problem.h"
#include "core/topology.h"
#include "moedist/status.h"

namespace moedist::core {

struct SlotRef {
  int32_t t;  // token index in the source's x
  int32_t k;  // slot: 0..K-1 for MoE experts, K + j for shared expert j
};

struct RoutingPlan {
  std::vector<uint8_t> activeToken;  // [Bs]
  std::vector<uint8_t> activeSlot;   // [Bs*K]
  int64_t numActiveTokens = 0;
  // Send blocks, block d*L + le for destination id d and local expert le (le = 0 for shared destinations);
  // blockOffsets is the exclusive prefix sum of the block sizes into entries (ascending t*K+k in each block).
  std::vector<int32_t> blockOffsets;  // [W*L + 1]
  std::vector<SlotRef> entries;
};

// ids: dense (Bs, K); mask: dense (Bs,) or (Bs, K) bytes, or empty.
Status buildRoutingPlan(Operator op, const Geometry& geo, const Topology& topo, std::span<const int32_t> ids,
                        std::span<const uint8_t> mask, RoutingPlan* plan);

}  // namespace moedist::core
