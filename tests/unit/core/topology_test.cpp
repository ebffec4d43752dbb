// makeTopology (SPEC 1, 2.2 and 5): the identity world without scale-in, the renumbered world of an elasticInfo
// table, the routing formulas moeRank() = Srank + e/L and sharedRank() = s mod R + j*R, and every rejection of a
// malformed table. Every expected value below is worked out by hand from those formulas.
#include "core/topology.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace moedist::core {
namespace {

// Geometry with only the fields makeTopology reads, filled by hand from SPEC section 1.
Geometry geometry(int64_t W, int64_t r, int64_t M, int64_t S, int64_t Srank) {
  Geometry g;
  g.W = W;
  g.r = r;
  g.M = M;
  g.S = S;
  g.Srank = Srank;
  g.R = S > 0 ? Srank / S : 0;
  g.L = M / (W - Srank);
  g.K = 2;
  g.Bs = 1;
  g.H = 1024;
  g.sharedRank = r < Srank;
  return g;
}

// The seed example of SPEC 5 / the CANN doc: W = 8, ranks 2..5 removed, 6 and 7 renumbered to 2 and 3.
// M = 8 over 8 MoE ranks gives L = 1, and M' = 4 over the 4 survivors keeps L' = 1.
const std::vector<int32_t> kSeed = {1, 4, 0,  4,                    // flag, W', Srank', M'
                                    0, 1, -1, -1, -1, -1, 2,  3,    // table1: physical -> new
                                    0, 1, 6,  7,  -1, -1, -1, -1};  // table2: new -> physical
Geometry seedGeometry(int64_t r) {
  return geometry(8, r, 8, 0, 0);
}

Status topologyOf(const Geometry& g, const std::vector<int32_t>& e, Topology* t) {
  return makeTopology(Operator::kDispatchV3, g, e, t);
}

// Rejections: kInvalidArgument, "DispatchV3: elasticInfo: " then the detail.
void expectRejected(const Status& s, const std::string& fragment) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.toString();
  EXPECT_EQ(s.message().rfind("DispatchV3: elasticInfo: ", 0), 0u) << s.message();
  EXPECT_NE(s.message().find(fragment), std::string::npos) << "'" << s.message() << "' lacks '" << fragment << "'";
}

TEST(Topology, NoElasticInfoIsTheIdentityWorld) {
  // W = 4, no shared experts, M = 8: L = 8 / 4 = 2.
  const Geometry g = geometry(4, 2, 8, 0, 0);
  Topology t;
  ASSERT_TRUE(topologyOf(g, {}, &t).ok());
  EXPECT_FALSE(t.scaledIn);
  EXPECT_EQ(t.W, 4);
  EXPECT_EQ(t.Srank, 0);
  EXPECT_EQ(t.M, 8);
  EXPECT_EQ(t.L, 2);
  EXPECT_EQ(t.R, 0);
  EXPECT_EQ(t.self, 2);
  EXPECT_EQ(t.physical, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(t.participants, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_FALSE(t.selfShared());
  // moeRank(e) = 0 + e / 2.
  EXPECT_EQ(t.moeRank(0), 0);
  EXPECT_EQ(t.moeRank(1), 0);
  EXPECT_EQ(t.moeRank(5), 2);
  EXPECT_EQ(t.moeRank(7), 3);
  // Every rank is a MoE rank with W*L = 8 receive blocks.
  EXPECT_EQ(t.numRecvBlocks(0), 8);
  EXPECT_EQ(t.numRecvBlocks(3), 8);
}

TEST(Topology, FlagZeroIgnoresTheTables) {
  // Flag 0: the rest of the table (even the seed's scale-in) is ignored.
  std::vector<int32_t> e = kSeed;
  e[0] = 0;
  Topology t;
  ASSERT_TRUE(topologyOf(seedGeometry(6), e, &t).ok());
  EXPECT_FALSE(t.scaledIn);
  EXPECT_EQ(t.W, 8);
  EXPECT_EQ(t.M, 8);
  EXPECT_EQ(t.L, 1);
  EXPECT_EQ(t.self, 6);
  EXPECT_EQ(t.physical, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(t.participants, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));

  // Flag 0 with a table that would be rejected if it were read.
  std::vector<int32_t> junk(4 + 2 * 8, 99);
  junk[0] = 0;
  ASSERT_TRUE(topologyOf(seedGeometry(3), junk, &t).ok());
  EXPECT_EQ(t.W, 8);
  EXPECT_EQ(t.self, 3);
}

TEST(Topology, SharedExpertsWithoutScaleIn) {
  // W = 8, S = 2, Srank = 4: R = 2; M = 8 over 4 MoE ranks: L = 2.
  const Geometry g = geometry(8, 5, 8, 2, 4);
  Topology t;
  ASSERT_TRUE(topologyOf(g, {}, &t).ok());
  EXPECT_EQ(t.R, 2);
  EXPECT_EQ(t.L, 2);
  EXPECT_EQ(t.Srank, 4);
  EXPECT_EQ(t.self, 5);
  EXPECT_FALSE(t.selfShared());
  EXPECT_TRUE(t.isSharedRank(0));
  EXPECT_TRUE(t.isSharedRank(3));
  EXPECT_FALSE(t.isSharedRank(4));
  // moeRank(e) = 4 + e / 2.
  EXPECT_EQ(t.moeRank(0), 4);
  EXPECT_EQ(t.moeRank(3), 5);
  EXPECT_EQ(t.moeRank(4), 6);
  EXPECT_EQ(t.moeRank(7), 7);
  // sharedRank(s, j) = s mod 2 + 2j: shared expert 0 on ranks {0, 1}, shared expert 1 on ranks {2, 3}.
  EXPECT_EQ(t.sharedRank(0, 0), 0);
  EXPECT_EQ(t.sharedRank(0, 1), 2);
  EXPECT_EQ(t.sharedRank(5, 0), 1);
  EXPECT_EQ(t.sharedRank(5, 1), 3);
  EXPECT_EQ(t.sharedRank(6, 1), 2);
  EXPECT_EQ(t.sharedRank(7, 0), 1);
  // Shared ranks have W = 8 receive blocks, MoE ranks W*L = 16.
  EXPECT_EQ(t.numRecvBlocks(1), 8);
  EXPECT_EQ(t.numRecvBlocks(4), 16);
}

TEST(Topology, SeedExampleRenumbersTheSurvivors) {
  // Survivors 0, 1, 6, 7 with new ids 0, 1, 2, 3.
  const int64_t expectedSelf[8] = {0, 1, -1, -1, -1, -1, 2, 3};
  for (int64_t r : {0, 1, 6, 7}) {
    SCOPED_TRACE("rank " + std::to_string(r));
    Topology t;
    ASSERT_TRUE(topologyOf(seedGeometry(r), kSeed, &t).ok());
    EXPECT_TRUE(t.scaledIn);
    EXPECT_EQ(t.W, 4);
    EXPECT_EQ(t.Srank, 0);
    EXPECT_EQ(t.M, 4);
    EXPECT_EQ(t.L, 1);
    EXPECT_EQ(t.R, 0);
    EXPECT_EQ(t.self, expectedSelf[r]);
    EXPECT_EQ(t.physical, (std::vector<int>{0, 1, 6, 7}));
    EXPECT_EQ(t.participants, (std::vector<int>{0, 1, 6, 7}));
    // L = 1, Srank' = 0: MoE expert e lives on new rank e, i.e. physical rank table2[e].
    EXPECT_EQ(t.moeRank(0), 0);
    EXPECT_EQ(t.moeRank(2), 2);
    EXPECT_EQ(t.moeRank(3), 3);
    EXPECT_EQ(t.physical[static_cast<size_t>(t.moeRank(2))], 6);
    EXPECT_EQ(t.physical[static_cast<size_t>(t.moeRank(3))], 7);
    // W'*L = 4 receive blocks per rank.
    EXPECT_EQ(t.numRecvBlocks(t.self), 4);
  }
}

TEST(Topology, ParticipantsAreSortedWhenTheRenumberingIsNot) {
  // W = 4, no shared experts, M = 4, L = 1. Rank 1 removed; new ids 0 <- rank 3, 1 <- rank 0, 2 <- rank 2.
  // M' = 1 * 3 = 3.
  const std::vector<int32_t> e = {1, 3, 0, 3, /*table1*/ 1, -1, 2, 0, /*table2*/ 3, 0, 2, -1};
  Topology t;
  ASSERT_TRUE(topologyOf(geometry(4, 3, 4, 0, 0), e, &t).ok());
  EXPECT_EQ(t.self, 0);
  EXPECT_EQ(t.physical, (std::vector<int>{3, 0, 2}));
  EXPECT_EQ(t.participants, (std::vector<int>{0, 2, 3}));
}

TEST(Topology, ScaleInOfASharedRankRecomputesR) {
  // W = 6, S = 1, Srank = 2 (R = 2), M = 8 over 4 MoE ranks: L = 2.
  // Remove shared rank 1 and MoE rank 4: W' = 4, Srank' = 1 (R' = 1), M' = L * (4 - 1) = 6.
  // table1 = {0, -1, 1, 2, -1, 3}; table2 = {0, 2, 3, 5, -, -}.
  const std::vector<int32_t> e = {1, 4, 1, 6, /*table1*/ 0, -1, 1, 2, -1, 3, /*table2*/ 0, 2, 3, 5, -1, -1};
  Topology before;
  ASSERT_TRUE(topologyOf(geometry(6, 5, 8, 1, 2), {}, &before).ok());
  EXPECT_EQ(before.R, 2);

  Topology t;
  ASSERT_TRUE(topologyOf(geometry(6, 5, 8, 1, 2), e, &t).ok());
  EXPECT_TRUE(t.scaledIn);
  EXPECT_EQ(t.W, 4);
  EXPECT_EQ(t.Srank, 1);
  EXPECT_EQ(t.M, 6);
  EXPECT_EQ(t.L, 2);
  EXPECT_EQ(t.R, 1);
  EXPECT_EQ(t.self, 3);
  EXPECT_EQ(t.physical, (std::vector<int>{0, 2, 3, 5}));
  EXPECT_EQ(t.participants, (std::vector<int>{0, 2, 3, 5}));
  EXPECT_TRUE(t.isSharedRank(0));
  EXPECT_FALSE(t.isSharedRank(1));
  EXPECT_FALSE(t.selfShared());
  // moeRank(e) = 1 + e / 2: experts 0,1 -> new 1 (physical 2); 2,3 -> new 2 (physical 3); 4,5 -> new 3 (physical 5).
  EXPECT_EQ(t.moeRank(0), 1);
  EXPECT_EQ(t.moeRank(3), 2);
  EXPECT_EQ(t.moeRank(5), 3);
  EXPECT_EQ(t.physical[static_cast<size_t>(t.moeRank(5))], 5);
  // R' = 1: every source uses the single remaining shared rank, new id 0.
  for (int64_t s = 0; s < 4; ++s) EXPECT_EQ(t.sharedRank(s, 0), 0) << "source " << s;
  // Shared rank 0 has W' = 4 blocks, MoE ranks W'*L = 8.
  EXPECT_EQ(t.numRecvBlocks(0), 4);
  EXPECT_EQ(t.numRecvBlocks(3), 8);

  // Physical rank 2 became the first MoE rank, new id 1.
  Topology t2;
  ASSERT_TRUE(topologyOf(geometry(6, 2, 8, 1, 2), e, &t2).ok());
  EXPECT_EQ(t2.self, 1);
  EXPECT_FALSE(t2.selfShared());
  // Physical rank 0 stays the shared rank, new id 0.
  Topology t0;
  ASSERT_TRUE(topologyOf(geometry(6, 0, 8, 1, 2), e, &t0).ok());
  EXPECT_EQ(t0.self, 0);
  EXPECT_TRUE(t0.selfShared());
}

TEST(Topology, ScaleInKeepingTwoSharedExpertsAndTheirReplicas) {
  // W = 8, S = 2, Srank = 4 (R = 2), M = 8, L = 2. Remove shared ranks 1 and 3 and MoE rank 6:
  // W' = 5, Srank' = 2 (R' = 1), M' = 2 * 3 = 6.
  // table1 = {0, -1, 1, -1, 2, 3, -1, 4}; table2 = {0, 2, 4, 5, 7, -, -, -}.
  const std::vector<int32_t> e = {1,
                                  5,
                                  2,
                                  6,
                                  /*table1*/ 0,
                                  -1,
                                  1,
                                  -1,
                                  2,
                                  3,
                                  -1,
                                  4,
                                  /*table2*/ 0,
                                  2,
                                  4,
                                  5,
                                  7,
                                  -1,
                                  -1,
                                  -1};
  Topology t;
  ASSERT_TRUE(topologyOf(geometry(8, 7, 8, 2, 4), e, &t).ok());
  EXPECT_EQ(t.W, 5);
  EXPECT_EQ(t.Srank, 2);
  EXPECT_EQ(t.M, 6);
  EXPECT_EQ(t.R, 1);
  EXPECT_EQ(t.self, 4);
  // sharedRank(s, j) = s mod 1 + j * 1 = j: shared expert 0 on new 0 (physical 0), 1 on new 1 (physical 2).
  EXPECT_EQ(t.sharedRank(4, 0), 0);
  EXPECT_EQ(t.sharedRank(4, 1), 1);
  EXPECT_EQ(t.physical[static_cast<size_t>(t.sharedRank(4, 1))], 2);
  // moeRank(e) = 2 + e / 2: expert 5 -> new 4 -> physical 7.
  EXPECT_EQ(t.moeRank(5), 4);
  EXPECT_EQ(t.physical[4], 7);
}

TEST(Topology, ScaleInCanTurnASharedRankIntoAMoeRank) {
  // W = 6, S = 1, Srank = 2, M = 8, L = 2. Remove MoE rank 5 and keep one shared rank: W' = 5, Srank' = 1,
  // M' = 2 * (5 - 1) = 8. Physical rank 1 (a shared rank before) keeps new id 1, which is now the first MoE rank.
  const std::vector<int32_t> e = {1, 5, 1, 8, /*table1*/ 0, 1, 2, 3, 4, -1, /*table2*/ 0, 1, 2, 3, 4, -1};
  const Geometry g = geometry(6, 1, 8, 1, 2);
  ASSERT_TRUE(g.sharedRank);
  Topology t;
  ASSERT_TRUE(topologyOf(g, e, &t).ok());
  EXPECT_EQ(t.self, 1);
  EXPECT_FALSE(t.selfShared());
  EXPECT_EQ(t.R, 1);
  // moeRank(e) = 1 + e / 2: experts 0 and 1 now live on physical rank 1.
  EXPECT_EQ(t.moeRank(0), 1);
  EXPECT_EQ(t.moeRank(1), 1);
  EXPECT_EQ(t.moeRank(7), 4);
  // As a MoE rank it has W' * L = 10 receive blocks.
  EXPECT_EQ(t.numRecvBlocks(t.self), 10);
  EXPECT_EQ(t.participants, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(TopologyRejects, TablesThatAreNotInverse) {
  std::vector<int32_t> e = kSeed;
  e[4 + 8 + 2] = 5;  // table2[2] = 5, but rank 6 says its new id is 2
  Topology t;
  expectRejected(topologyOf(seedGeometry(0), e, &t), "tables are not inverse: rank 6 has new id 2");
}

TEST(TopologyRejects, TwoRanksWithTheSameNewId) {
  std::vector<int32_t> e = kSeed;
  e[4 + 7] = 2;  // ranks 6 and 7 both claim new id 2; table2[2] = 6
  Topology t;
  expectRejected(topologyOf(seedGeometry(0), e, &t), "tables are not inverse: rank 7 has new id 2");
}

TEST(TopologyRejects, WrongSurvivorCount) {
  // Only ranks 0, 1, 6 keep a new id while [1] still says 4.
  std::vector<int32_t> e = kSeed;
  e[4 + 7] = -1;
  Topology t;
  expectRejected(topologyOf(seedGeometry(0), e, &t), "3 ranks have a new id, expected [1] = 4");
}

TEST(TopologyRejects, NewIdOutOfRange) {
  std::vector<int32_t> e = kSeed;
  e[4 + 7] = 4;  // W' = 4: new ids are 0..3
  Topology t;
  expectRejected(topologyOf(seedGeometry(0), e, &t), "[11] (new id of rank 7) is 4, expected -1 or 0..3");
  e[4 + 7] = -2;
  expectRejected(topologyOf(seedGeometry(0), e, &t), "[11] (new id of rank 7) is -2, expected -1 or 0..3");
}

TEST(TopologyRejects, ScaledWorldSizeOutOfRange) {
  std::vector<int32_t> e = kSeed;
  e[1] = 9;
  Topology t;
  expectRejected(topologyOf(seedGeometry(0), e, &t), "[1] (ranks after scale-in) is 9, expected 1..8");
  e[1] = 0;
  expectRejected(topologyOf(seedGeometry(0), e, &t), "[1] (ranks after scale-in) is 0, expected 1..8");
}

TEST(TopologyRejects, MoeExpertCountThatChangesL) {
  // M' = 8 over W' - Srank' = 4 MoE ranks would be L' = 2, but L = 1: M' must be 4.
  std::vector<int32_t> e = kSeed;
  e[3] = 8;
  Topology t;
  expectRejected(topologyOf(seedGeometry(0), e, &t), "[3] (MoE experts after scale-in) is 8, expected 4");
  // Not a multiple of the MoE rank count either.
  e[3] = 3;
  expectRejected(topologyOf(seedGeometry(0), e, &t), "[3] (MoE experts after scale-in) is 3, expected 4");
}

TEST(TopologyRejects, MoeExpertCountAboveM) {
  std::vector<int32_t> e = kSeed;
  e[3] = 9;
  Topology t;
  expectRejected(topologyOf(seedGeometry(0), e, &t),
                 "[3] (MoE experts after scale-in) is 9, expected at most moeExpertNum 8");
}

TEST(TopologyRejects, SharedRankCountNotAMultipleOfS) {
  // W = 8, S = 2, Srank = 4, M = 8, L = 2. Remove shared rank 3 only: W' = 7, Srank' = 3, M' = 2 * 4 = 8.
  const std::vector<int32_t> e = {1,
                                  7,
                                  3,
                                  8,
                                  /*table1*/ 0,
                                  1,
                                  2,
                                  -1,
                                  3,
                                  4,
                                  5,
                                  6,
                                  /*table2*/ 0,
                                  1,
                                  2,
                                  4,
                                  5,
                                  6,
                                  7,
                                  -1};
  Topology t;
  expectRejected(topologyOf(geometry(8, 0, 8, 2, 4), e, &t),
                 "[2] (shared-expert ranks after scale-in) is 3, expected a positive multiple of sharedExpertNum 2");
}

TEST(TopologyRejects, SharedRanksAllRemovedWhileSharedExpertsRemain) {
  // W = 6, S = 1, Srank = 2, M = 8, L = 2. Remove both shared ranks: W' = 4, Srank' = 0, M' = 8.
  const std::vector<int32_t> e = {1, 4, 0, 8, /*table1*/ -1, -1, 0, 1, 2, 3, /*table2*/ 2, 3, 4, 5, -1, -1};
  Topology t;
  expectRejected(topologyOf(geometry(6, 2, 8, 1, 2), e, &t),
                 "[2] (shared-expert ranks after scale-in) is 0, expected a positive multiple of sharedExpertNum 1");
}

TEST(TopologyRejects, SharedRanksWithoutSharedExperts) {
  // S = 0: Srank' must stay 0. W' = 4, Srank' = 1, M' = 1 * 3 = 3 (consistent apart from Srank').
  std::vector<int32_t> e = kSeed;
  e[2] = 1;
  e[3] = 3;
  Topology t;
  expectRejected(topologyOf(seedGeometry(0), e, &t),
                 "[2] (shared-expert ranks after scale-in) is 1, expected 0 without shared experts");
}

TEST(TopologyRejects, SharedRankCountNotBelowW) {
  // W = 6, S = 1, Srank = 2: Srank' = W' = 2 would leave no MoE rank.
  const std::vector<int32_t> e = {1, 2, 2, 0, /*table1*/ 0, 1, -1, -1, -1, -1, /*table2*/ 0, 1, -1, -1, -1, -1};
  Topology t;
  expectRejected(topologyOf(geometry(6, 0, 8, 1, 2), e, &t),
                 "[2] (shared-expert ranks after scale-in) is 2, expected 0..1");
}

TEST(TopologyRejects, RemovedRankCalling) {
  for (int64_t r : {2, 3, 4, 5}) {
    SCOPED_TRACE("rank " + std::to_string(r));
    Topology t;
    expectRejected(topologyOf(seedGeometry(r), kSeed, &t),
                   "rank " + std::to_string(r) + " was removed by the scale-in (new id -1) and must not call");
  }
}

TEST(TopologyRejects, UsesTheOperatorName) {
  std::vector<int32_t> e = kSeed;
  e[3] = 9;
  Topology t;
  const Status s = makeTopology(Operator::kCombineV3, seedGeometry(0), e, &t);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("CombineV3: elasticInfo: ", 0), 0u) << s.message();
}

}  // namespace
}  // namespace moedist::core
