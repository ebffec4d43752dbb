// buildRoutingPlan (SPEC 2.2-2.4, 4 and decision 2): which tokens and slots are active, which send block each
// active slot lands in (block d*L + le for destination d and local expert le, d*L for a shared destination),
// the order inside each block (ascending t*K + k), and the data-dependent rejections. The expertIds are small
// hand-made tables; every expected block and entry is worked out by hand in the comments.
#include "core/routing_plan.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/topology.h"

namespace moedist::core {
namespace {

using Entries = std::vector<std::pair<int32_t, int32_t>>;  // (t, k)

struct Shape {
  int64_t W = 2, r = 0, M = 4, S = 0, Srank = 0;
  int64_t K = 2, Bs = 3;
  int64_t Z = 0, C = 0, Q = 0;
  bool twoDimMask = false;
};

Geometry geometry(const Shape& s) {
  Geometry g;
  g.W = s.W;
  g.r = s.r;
  g.M = s.M;
  g.S = s.S;
  g.Srank = s.Srank;
  g.R = s.S > 0 ? s.Srank / s.S : 0;
  g.L = s.M / (s.W - s.Srank);
  g.Z = s.Z;
  g.C = s.C;
  g.Q = s.Q;
  g.K = s.K;
  g.Bs = s.Bs;
  g.H = 1024;
  g.globalBs = s.Bs * s.W;
  g.maxBs = s.Bs;
  g.sharedRank = s.r < s.Srank;
  g.specials = s.Z + s.C + s.Q > 0;
  g.twoDimMask = s.twoDimMask;
  return g;
}

struct Built {
  Status status;
  RoutingPlan plan;
};

Built build(const Shape& s, const std::vector<int32_t>& ids, const std::vector<uint8_t>& mask = {},
            const std::vector<int32_t>& elasticInfo = {}) {
  const Geometry g = geometry(s);
  Topology topo;
  Built b;
  b.status = makeTopology(Operator::kDispatchV3, g, elasticInfo, &topo);
  if (!b.status.ok()) return b;
  b.status = buildRoutingPlan(Operator::kDispatchV3, g, topo, ids, mask, &b.plan);
  return b;
}

Entries entriesOf(const RoutingPlan& p) {
  Entries e;
  for (const SlotRef& s : p.entries) e.emplace_back(s.t, s.k);
  return e;
}

void expectRejected(const Built& b, const std::string& fragment) {
  EXPECT_EQ(b.status.code(), StatusCode::kInvalidArgument) << b.status.toString();
  EXPECT_EQ(b.status.message().rfind("DispatchV3: ", 0), 0u) << b.status.message();
  EXPECT_NE(b.status.message().find(fragment), std::string::npos)
      << "'" << b.status.message() << "' lacks '" << fragment << "'";
}

// The seed scale-in of SPEC 5: W = 8 -> 4, survivors 0, 1, 6, 7, M = 8 -> M' = 4, L = 1.
const std::vector<int32_t> kSeed = {1, 4, 0, 4, 0, 1, -1, -1, -1, -1, 2, 3, 0, 1, 6, 7, -1, -1, -1, -1};

// ---------------------------------------------------------------------------------------------------------------
// Blocks and order.

TEST(RoutingPlan, MoeBlocksInAscendingSlotOrder) {
  // W = 2, M = 4, L = 2, no shared experts: expert e -> rank e / 2, local e % 2, block (e/2)*2 + e%2 = e.
  //   t0: {3, 0}   t1: {1, 2}   t2: {0, 3}
  // block 0 (e0): (0,1) f=1, (2,0) f=4;  block 1 (e1): (1,0);  block 2 (e2): (1,1);  block 3 (e3): (0,0), (2,1).
  const std::vector<int32_t> ids = {3, 0, 1, 2, 0, 3};
  for (int64_t r : {0, 1}) {  // without shared experts the sender does not matter
    SCOPED_TRACE("rank " + std::to_string(r));
    const Built b = build({.r = r}, ids);
    ASSERT_TRUE(b.status.ok()) << b.status.toString();
    EXPECT_EQ(b.plan.numActiveTokens, 3);
    EXPECT_EQ(b.plan.activeToken, (std::vector<uint8_t>{1, 1, 1}));
    EXPECT_EQ(b.plan.activeSlot, (std::vector<uint8_t>{1, 1, 1, 1, 1, 1}));
    EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 2, 3, 4, 6}));
    EXPECT_EQ(entriesOf(b.plan), (Entries{{0, 1}, {2, 0}, {1, 0}, {1, 1}, {0, 0}, {2, 1}}));
  }
}

TEST(RoutingPlan, OneSharedExpertGoesToReplicaSModR) {
  // W = 4, S = 1, Srank = 2 (R = 2), M = 4 over 2 MoE ranks: L = 2. 8 blocks.
  // MoE expert e -> rank 2 + e/2, local e%2, block (2 + e/2)*2 + e%2 = 4 + e.
  // Shared expert 0 for source s -> rank s mod 2, block (s mod 2)*2, slot K + 0 = 2.
  //   t0: {3, 0}   t1: {0, 2}
  // block 4 (e0): (0,1), (1,0);  block 6 (e2): (1,1);  block 7 (e3): (0,0);  shared block: (0,2), (1,2).
  const std::vector<int32_t> ids = {3, 0, 0, 2};
  const Entries moe = {{0, 1}, {1, 0}, {1, 1}, {0, 0}};
  const Entries shared = {{0, 2}, {1, 2}};
  Entries expected;

  // Source 3 (a MoE rank) and source 1 (a shared rank, also a source): replica 1, block 2.
  for (int64_t r : {3, 1}) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const Built b = build({.W = 4, .r = r, .M = 4, .S = 1, .Srank = 2, .K = 2, .Bs = 2}, ids);
    ASSERT_TRUE(b.status.ok()) << b.status.toString();
    EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 0, 0, 2, 2, 4, 4, 5, 6}));
    expected = shared;
    expected.insert(expected.end(), moe.begin(), moe.end());
    EXPECT_EQ(entriesOf(b.plan), expected);
  }
  // Source 2: replica 0, block 0.
  const Built b = build({.W = 4, .r = 2, .M = 4, .S = 1, .Srank = 2, .K = 2, .Bs = 2}, ids);
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 2, 2, 2, 2, 4, 4, 5, 6}));
  EXPECT_EQ(entriesOf(b.plan), expected);
}

TEST(RoutingPlan, TwoSharedExpertsGoToReplicaSModRPlusJR) {
  // W = 8, S = 2, Srank = 4 (R = 2), M = 8 over 4 MoE ranks: L = 2, 16 blocks. K = 1, Bs = 2.
  // Source 5: shared expert j -> rank 5 mod 2 + 2j = 1 (j = 0, block 2) and 3 (j = 1, block 6), slots K + j = 1, 2.
  // MoE: e0 -> rank 4, block 8; e7 -> rank 4 + 3 = 7, local 1, block 15.
  //   t0: {0}   t1: {7}
  const std::vector<int32_t> ids = {0, 7};
  const Shape s{.W = 8, .r = 5, .M = 8, .S = 2, .Srank = 4, .K = 1, .Bs = 2};
  const Built b = build(s, ids);
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 0, 0, 2, 2, 2, 2, 4, 4, 5, 5, 5, 5, 5, 5, 5, 6}));
  EXPECT_EQ(entriesOf(b.plan), (Entries{{0, 1}, {1, 1}, {0, 2}, {1, 2}, {0, 0}, {1, 0}}));

  // Source 4: replicas 0 (block 0) and 2 (block 4).
  Shape s4 = s;
  s4.r = 4;
  const Built b4 = build(s4, ids);
  ASSERT_TRUE(b4.status.ok()) << b4.status.toString();
  EXPECT_EQ(b4.plan.blockOffsets, (std::vector<int32_t>{0, 2, 2, 2, 2, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 6}));
  EXPECT_EQ(entriesOf(b4.plan), (Entries{{0, 1}, {1, 1}, {0, 2}, {1, 2}, {0, 0}, {1, 0}}));
}

// ---------------------------------------------------------------------------------------------------------------
// Masks (SPEC 2.3).

TEST(RoutingPlan, OneDimMaskPrefix) {
  // Same ids as MoeBlocksInAscendingSlotOrder; mask {T, T, F}: t2 is inactive, so its ids are not even checked.
  //   t0: {3, 0}   t1: {1, 2}   t2: {-7, 99} (inactive)
  // block 0: (0,1);  block 1: (1,0);  block 2: (1,1);  block 3: (0,0).
  const Built b = build({}, {3, 0, 1, 2, -7, 99}, {1, 1, 0});
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.numActiveTokens, 2);
  EXPECT_EQ(b.plan.activeToken, (std::vector<uint8_t>{1, 1, 0}));
  EXPECT_EQ(b.plan.activeSlot, (std::vector<uint8_t>{1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(entriesOf(b.plan), (Entries{{0, 1}, {1, 0}, {1, 1}, {0, 0}}));
}

TEST(RoutingPlan, OneDimMaskAllTrueIsLikeNoMask) {
  const Built b = build({}, {3, 0, 1, 2, 0, 3}, {1, 1, 1});
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.numActiveTokens, 3);
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 2, 3, 4, 6}));
  EXPECT_EQ(entriesOf(b.plan), (Entries{{0, 1}, {2, 0}, {1, 0}, {1, 1}, {0, 0}, {2, 1}}));
}

TEST(RoutingPlan, OneDimMaskAllFalseSendsNothingNotEvenToSharedExperts) {
  // W = 4, S = 1, Srank = 2, L = 2: 8 blocks, all empty.
  const Built b = build({.W = 4, .r = 3, .M = 4, .S = 1, .Srank = 2, .K = 2, .Bs = 2}, {3, 0, 0, 2}, {0, 0});
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.numActiveTokens, 0);
  EXPECT_EQ(b.plan.activeToken, (std::vector<uint8_t>{0, 0}));
  EXPECT_EQ(b.plan.activeSlot, (std::vector<uint8_t>{0, 0, 0, 0}));
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>(9, 0)));
  EXPECT_TRUE(b.plan.entries.empty());
}

TEST(RoutingPlan, OneDimMaskThatIsNotAPrefixIsRejected) {
  const std::vector<int32_t> ids = {3, 0, 1, 2, 0, 3};
  expectRejected(build({}, ids, {1, 0, 1}),
                 "xActiveMask: expected all trues before all falses, got false at index 1 with 2 trues in all");
  expectRejected(build({}, ids, {0, 1, 1}), "got false at index 0 with 2 trues in all");
  expectRejected(build({}, ids, {0, 0, 1}), "got false at index 0 with 1 trues in all");
}

TEST(RoutingPlan, TwoDimMaskSendsOnlyActiveSlots) {
  // ids t0: {3, 0}  t1: {1, 2}  t2: {0, 3};  mask t0: {T, F}  t1: {F, F}  t2: {F, T}.
  // Active slots (0,0) -> e3 and (2,1) -> e3; t1 is inactive. block 3: (0,0), (2,1).
  const Built b = build({.twoDimMask = true}, {3, 0, 1, 2, 0, 3}, {1, 0, 0, 0, 0, 1});
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.numActiveTokens, 2);
  EXPECT_EQ(b.plan.activeToken, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(b.plan.activeSlot, (std::vector<uint8_t>{1, 0, 0, 0, 0, 1}));
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 0, 0, 0, 2}));
  EXPECT_EQ(entriesOf(b.plan), (Entries{{0, 0}, {2, 1}}));
}

TEST(RoutingPlan, TwoDimMaskAllFalseRowGoesToNoSharedExpert) {
  // W = 4, S = 1, Srank = 2, L = 2, source 3 (shared block 2). MoE expert e -> block 4 + e.
  //   ids t0: {3, 0}  t1: {0, 2}  t2: {1, 2};  mask t0: {F, T}  t1: {F, F}  t2: {T, F}.
  // Active tokens t0, t2: (0,1) -> e0 block 4; (2,0) -> e1 block 5; shared block 2: (0,2), (2,2).
  const Built b = build({.W = 4, .r = 3, .M = 4, .S = 1, .Srank = 2, .K = 2, .Bs = 3, .twoDimMask = true},
                        {3, 0, 0, 2, 1, 2}, {0, 1, 0, 0, 1, 0});
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.numActiveTokens, 2);
  EXPECT_EQ(b.plan.activeToken, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 0, 0, 2, 2, 3, 4, 4, 4}));
  EXPECT_EQ(entriesOf(b.plan), (Entries{{0, 2}, {2, 2}, {0, 1}, {2, 0}}));
}

TEST(RoutingPlan, TwoDimMaskIgnoresInactiveSlotsWhenCheckingIds) {
  // ids t0: {1, 1}  t1: {2, -3}  t2: {5, 5};  mask t0: {T, F}  t1: {T, F}  t2: {F, F}.
  // The duplicate 1 of t0 and the invalid -3 and 5s sit in inactive slots. block 1: (0,0); block 2: (1,0).
  const Built b = build({.twoDimMask = true}, {1, 1, 2, -3, 5, 5}, {1, 0, 1, 0, 0, 0});
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.numActiveTokens, 2);
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 0, 1, 2, 2}));
  EXPECT_EQ(entriesOf(b.plan), (Entries{{0, 0}, {1, 0}}));
}

TEST(RoutingPlan, TwoDimMaskDuplicateAmongActiveSlotsIsRejected) {
  expectRejected(build({.twoDimMask = true}, {3, 0, 1, 1, 0, 3}, {1, 0, 1, 1, 0, 1}),
                 "expertIds[1][1] is 1, expected an id not already chosen by the token (expertIds[1][0])");
}

// ---------------------------------------------------------------------------------------------------------------
// Special experts (SPEC 4).

TEST(RoutingPlan, SpecialExpertsAreDropped) {
  // M = 4, Z = C = Q = 1: ids 4 (zero), 5 (copy), 6 (const) are never sent.
  //   t0: {4, 0}   t1: {5, 6}   t2: {1, 3}
  // block 0: (0,1);  block 1: (2,0);  block 3: (2,1). t1 stays active but sends nothing.
  const Built b = build({.Z = 1, .C = 1, .Q = 1}, {4, 0, 5, 6, 1, 3});
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.numActiveTokens, 3);
  EXPECT_EQ(b.plan.activeToken, (std::vector<uint8_t>{1, 1, 1}));
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 1, 2, 2, 3}));
  EXPECT_EQ(entriesOf(b.plan), (Entries{{0, 1}, {2, 0}, {2, 1}}));
}

TEST(RoutingPlan, TokenWithOnlySpecialSlotsStillGoesToSharedExperts) {
  // W = 4, S = 1, Srank = 2, L = 2, Z = 2 (ids 4, 5 are zero experts), source 3 (shared block 2).
  //   t0: {4, 5}   t1: {0, 4}
  // shared block 2: (0,2), (1,2);  e0 block 4: (1,0).
  const Built b = build({.W = 4, .r = 3, .M = 4, .S = 1, .Srank = 2, .K = 2, .Bs = 2, .Z = 2}, {4, 5, 0, 4});
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.numActiveTokens, 2);
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 0, 0, 2, 2, 3, 3, 3, 3}));
  EXPECT_EQ(entriesOf(b.plan), (Entries{{0, 2}, {1, 2}, {1, 0}}));
}

TEST(RoutingPlan, TwoDimMaskTokenWhoseOnlyActiveSlotIsSpecialGoesToSharedExperts) {
  // W = 4, S = 1, Srank = 2, L = 2, Z = 1 (id 4 is the zero expert), source 2 (shared block 0).
  //   ids t0: {4, 0}  t1: {1, 3};  mask t0: {T, F}  t1: {F, F}.
  // t0 is active (one true slot) although that slot is a zero expert: only its shared copy (0, 2) is sent.
  const Built b = build({.W = 4, .r = 2, .M = 4, .S = 1, .Srank = 2, .K = 2, .Bs = 2, .Z = 1, .twoDimMask = true},
                        {4, 0, 1, 3}, {1, 0, 0, 0});
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.numActiveTokens, 1);
  EXPECT_EQ(b.plan.activeToken, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 1, 1, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(entriesOf(b.plan), (Entries{{0, 2}}));
}

// ---------------------------------------------------------------------------------------------------------------
// Expert id validation (SPEC decision 2).

TEST(RoutingPlanRejects, NegativeIdWithoutSpecials) {
  expectRejected(build({}, {3, 0, 1, -1, 0, 3}), "expertIds[1][1] is -1, expected a MoE expert id in [0, 4)");
}

TEST(RoutingPlanRejects, IdAtLeastMWithoutSpecials) {
  expectRejected(build({}, {3, 0, 1, 2, 4, 3}), "expertIds[2][0] is 4, expected a MoE expert id in [0, 4)");
}

TEST(RoutingPlanRejects, NegativeIdWithSpecials) {
  expectRejected(build({.Z = 1, .C = 1, .Q = 1}, {3, 0, 1, 2, -1, 3}),
                 "expertIds[2][0] is -1, expected an id in [0, 7) (MoE, zero, copy and const experts)");
}

TEST(RoutingPlanRejects, IdBeyondTheConstExperts) {
  // M + Z + C + Q = 7: 6 is the last const expert, 7 is out of range.
  ASSERT_TRUE(build({.Z = 1, .C = 1, .Q = 1}, {3, 6, 1, 2, 0, 3}).status.ok());
  expectRejected(build({.Z = 1, .C = 1, .Q = 1}, {3, 7, 1, 2, 0, 3}),
                 "expertIds[0][1] is 7, expected an id in [0, 7) (MoE, zero, copy and const experts)");
}

TEST(RoutingPlanRejects, DuplicateIdInOneToken) {
  expectRejected(build({}, {3, 0, 2, 2, 0, 3}),
                 "expertIds[1][1] is 2, expected an id not already chosen by the token (expertIds[1][0])");
}

TEST(RoutingPlanRejects, DuplicateFarApartInOneToken) {
  // K = 3: t0 {1, 0, 1}: slot 2 repeats slot 0. W = 2, M = 4.
  expectRejected(build({.K = 3, .Bs = 1}, {1, 0, 1}),
                 "expertIds[0][2] is 1, expected an id not already chosen by the token (expertIds[0][0])");
}

// ---------------------------------------------------------------------------------------------------------------
// Elastic scale-in (SPEC 5): MoE ids in [0, M'), new destination ids, [M', M) rejected.

TEST(RoutingPlan, ScaleInRoutesToNewRankIds) {
  // Seed scale-in, caller physical 6 (new id 2). W' = 4, L = 1: 4 blocks, expert e -> new rank e, block e.
  // Z = 1: id 8 is the zero expert (keeps its original range >= M = 8) and is dropped.
  //   t0: {3, 8}   t1: {0, 2}
  // block 0: (1,0);  block 2: (1,1);  block 3: (0,0).
  const Shape s{.W = 8, .r = 6, .M = 8, .K = 2, .Bs = 2, .Z = 1};
  const Built b = build(s, {3, 8, 0, 2}, {}, kSeed);
  ASSERT_TRUE(b.status.ok()) << b.status.toString();
  EXPECT_EQ(b.plan.blockOffsets, (std::vector<int32_t>{0, 1, 1, 2, 3}));
  EXPECT_EQ(entriesOf(b.plan), (Entries{{1, 0}, {1, 1}, {0, 0}}));
}

TEST(RoutingPlanRejects, IdRemovedByScaleInWithSpecials) {
  // M = 8, M' = 4, Z = 1: ids 4..7 are neither MoE experts any more nor special experts.
  const Shape s{.W = 8, .r = 6, .M = 8, .K = 2, .Bs = 2, .Z = 1};
  expectRejected(build(s, {3, 8, 0, 5}, {}, kSeed),
                 "expertIds[1][1] is 5, expected an id outside [4, 8): after scale-in the MoE experts are [0, 4)");
  expectRejected(build(s, {4, 8, 0, 1}, {}, kSeed), "expertIds[0][0] is 4, expected an id outside [4, 8)");
  expectRejected(build(s, {7, 8, 0, 1}, {}, kSeed), "expertIds[0][0] is 7, expected an id outside [4, 8)");
}

TEST(RoutingPlanRejects, IdRemovedByScaleInWithoutSpecials) {
  const Shape s{.W = 8, .r = 0, .M = 8, .K = 2, .Bs = 2};
  ASSERT_TRUE(build(s, {3, 1, 0, 2}, {}, kSeed).status.ok());
  expectRejected(build(s, {3, 1, 0, 4}, {}, kSeed), "expertIds[1][1] is 4, expected a MoE expert id in [0, 4)");
}

TEST(RoutingPlanRejects, UsesTheOperatorName) {
  const Geometry g = geometry({});
  Topology topo;
  ASSERT_TRUE(makeTopology(Operator::kCombineV2, g, {}, &topo).ok());
  RoutingPlan plan;
  const std::vector<int32_t> ids = {3, 0, 1, 2, 0, 9};
  const Status s = buildRoutingPlan(Operator::kCombineV2, g, topo, ids, {}, &plan);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("CombineV2: expertIds[2][1] is 9", 0), 0u) << s.message();
}

}  // namespace
}  // namespace moedist::core
