// Tests of the reference dispatch against hand-derived layouts (SPEC 2.2-2.6, 4, 5).
#include <gtest/gtest.h>
#include <moedist_ref/reference.h>

#include <vector>

#include "test_util.h"

namespace moedist::ref {
namespace {

using test::bfRow;
using test::rankInput;
using test::row16;
using test::row8;
using test::smallConfig;
using test::taggedRows;
using test::triples;
using test::xRow;

using I32 = std::vector<int32_t>;
using I64 = std::vector<int64_t>;

// W = 2, M = 4 (L = 2: experts 0,1 on rank 0, experts 2,3 on rank 1), K = 2, Bs = 3, H = 2.
//   rank 0 ids: t0 [3, 0], t1 [1, 2], t2 [0, 1]
//   rank 1 ids: t0 [2, 3], t1 [0, 3], t2 [1, 0]
// Rank 0 blocks (le*W + s): (e0,s0) = (0,0,1),(0,2,0); (e0,s1) = (1,1,0),(1,2,1); (e1,s0) = (0,1,0),(0,2,1);
// (e1,s1) = (1,2,0) -> counts [2,2,2,1], prefix [2,4,6,7], per expert [4,3].
// Rank 1 blocks: (e2,s0) = (0,1,1); (e2,s1) = (1,0,0); (e3,s0) = (0,0,0); (e3,s1) = (1,0,1),(1,1,1)
// -> counts [1,1,1,2], prefix [1,2,3,5], per expert [2,3].
class DispatchL2 : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg = smallConfig(2, 4, 2, 2);
    in = {
        {rankInput(3, taggedRows(0, 3, 2), {3, 0, 1, 2, 0, 1}), rankInput(3, taggedRows(1, 3, 2), {2, 3, 0, 3, 1, 0})}};
  }
  Config cfg;
  DispatchInputs in;
};

TEST_F(DispatchL2, OrderTriplesAndCounts) {
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  ASSERT_EQ(out.size(), 1u);
  const DispatchOutput& r0 = out[0][0];
  const DispatchOutput& r1 = out[0][1];
  EXPECT_TRUE(r0.participates);
  EXPECT_EQ(r0.numOwnRows, 7);
  EXPECT_EQ(r0.numRows, 7);
  EXPECT_EQ(r0.assistInfo, triples({{0, 0, 1}, {0, 2, 0}, {1, 1, 0}, {1, 2, 1}, {0, 1, 0}, {0, 2, 1}, {1, 2, 0}}));
  EXPECT_EQ(r0.epRecvCounts, (I32{2, 4, 6, 7}));
  EXPECT_EQ(r0.expertTokenNums, (I64{4, 3}));
  EXPECT_TRUE(r0.dynamicScales.empty());
  EXPECT_TRUE(r0.tpRecvCounts.empty());
  ASSERT_EQ(r0.expandX.size(), 7u * 2 * 2);
  const int src[7][2] = {{0, 0}, {0, 2}, {1, 1}, {1, 2}, {0, 1}, {0, 2}, {1, 2}};
  for (int i = 0; i < 7; ++i) EXPECT_EQ(row16(r0, i, 2), xRow(in[0][src[i][0]], src[i][1], 2)) << "row " << i;

  EXPECT_EQ(r1.numOwnRows, 5);
  EXPECT_EQ(r1.assistInfo, triples({{0, 1, 1}, {1, 0, 0}, {0, 0, 0}, {1, 0, 1}, {1, 1, 1}}));
  EXPECT_EQ(r1.epRecvCounts, (I32{1, 2, 3, 5}));
  EXPECT_EQ(r1.expertTokenNums, (I64{2, 3}));
  const int src1[5][2] = {{0, 1}, {1, 0}, {0, 0}, {1, 0}, {1, 1}};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(row16(r1, i, 2), xRow(in[0][src1[i][0]], src1[i][1], 2)) << "row " << i;
}

TEST_F(DispatchL2, ExpertTokenNumsType0IsCumulative) {
  cfg.expertTokenNumsType = 0;
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(out[0][0].expertTokenNums, (I64{4, 7}));
  EXPECT_EQ(out[0][1].expertTokenNums, (I64{2, 5}));
}

TEST_F(DispatchL2, Fp16RowsAreBitCopies) {
  cfg.fp16 = true;
  for (auto& r : in[0])
    for (auto& v : r.x) v = floatToFp16(bf16ToFloat(v));  // any bits: rows are copied, not converted
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(row16(out[0][0], 0, 2), xRow(in[0][0], 0, 2));
  EXPECT_EQ(row16(out[0][1], 4, 2), xRow(in[0][1], 1, 2));
}

TEST_F(DispatchL2, DuplicateIdIsAnError) {
  in[0][1].expertIds = {2, 3, 0, 0, 1, 0};  // token 1 selects expert 0 twice
  DispatchOutputs out;
  auto err = dispatch(cfg, in, &out);
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("twice"), std::string::npos) << *err;
  EXPECT_NE(err->find("rank 1"), std::string::npos) << *err;
}

TEST_F(DispatchL2, OutOfRangeIdsAreErrors) {
  DispatchOutputs out;
  in[0][0].expertIds[3] = 4;  // >= M without special experts
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
  in[0][0].expertIds[3] = -1;
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
}

TEST_F(DispatchL2, BadAttributesAreErrors) {
  DispatchOutputs out;
  Config c = cfg;
  c.M = 5;  // not a multiple of W - Srank
  EXPECT_TRUE(dispatch(c, in, &out).has_value());
  c = cfg;
  c.tp = 2;  // TP with L > 1
  EXPECT_TRUE(dispatch(c, {in[0], in[0]}, &out).has_value());
  c = cfg;
  c.sharedExpertNum = 2;  // S > 0 without shared ranks
  EXPECT_TRUE(dispatch(c, in, &out).has_value());
  c = cfg;
  in[0][0].scales.assign(4 * 2, 1.0f);  // scales with quantMode 0
  EXPECT_TRUE(dispatch(c, in, &out).has_value());
}

// sharedExpertNum = 1 with sharedExpertRankNum = 0 is the default and means S = 0 (SPEC 1).
TEST_F(DispatchL2, DefaultSharedExpertNumOneMeansNone) {
  cfg.sharedExpertNum = 1;
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(out[0][0].numOwnRows, 7);
  EXPECT_EQ(out[0][0].epRecvCounts.size(), 4u);
}

// W = 6, S = 2, Srank = 4 (R = 2: shared expert 0 on ranks 0,1, shared expert 1 on ranks 2,3), M = 2 (L = 1,
// expert 0 on rank 4, expert 1 on rank 5), K = 1, one token per rank with id r % 2.
// Source s uses replica (s mod 2) + 2j: rank 0 gets sources 0,2,4 with slot K+0 = 1, rank 1 sources 1,3,5 slot 1,
// rank 2 sources 0,2,4 slot 2, rank 3 sources 1,3,5 slot 2. Expert 0 (rank 4) gets sources 0,2,4, expert 1 1,3,5.
TEST(RefDispatch, SharedExpertReplicas) {
  Config cfg = smallConfig(6, 2, 1, 2);
  cfg.sharedExpertNum = 2;
  cfg.sharedExpertRankNum = 4;
  DispatchInputs in(1);
  for (int r = 0; r < 6; ++r) in[0].push_back(rankInput(1, taggedRows(r, 1, 2), {r % 2}));
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(out[0][0].assistInfo, triples({{0, 0, 1}, {2, 0, 1}, {4, 0, 1}}));
  EXPECT_EQ(out[0][1].assistInfo, triples({{1, 0, 1}, {3, 0, 1}, {5, 0, 1}}));
  EXPECT_EQ(out[0][2].assistInfo, triples({{0, 0, 2}, {2, 0, 2}, {4, 0, 2}}));
  EXPECT_EQ(out[0][3].assistInfo, triples({{1, 0, 2}, {3, 0, 2}, {5, 0, 2}}));
  EXPECT_EQ(out[0][4].assistInfo, triples({{0, 0, 0}, {2, 0, 0}, {4, 0, 0}}));
  EXPECT_EQ(out[0][5].assistInfo, triples({{1, 0, 0}, {3, 0, 0}, {5, 0, 0}}));
  // Shared ranks: W blocks (one per source); MoE ranks with L = 1: also W blocks.
  EXPECT_EQ(out[0][0].epRecvCounts, (I32{1, 1, 2, 2, 3, 3}));
  EXPECT_EQ(out[0][1].epRecvCounts, (I32{0, 1, 1, 2, 2, 3}));
  EXPECT_EQ(out[0][3].epRecvCounts, (I32{0, 1, 1, 2, 2, 3}));
  EXPECT_EQ(out[0][4].epRecvCounts, (I32{1, 1, 2, 2, 3, 3}));
  for (int r = 0; r < 6; ++r) {
    EXPECT_EQ(out[0][r].expertTokenNums, (I64{3})) << r;
    EXPECT_EQ(out[0][r].numOwnRows, 3);
  }
  EXPECT_EQ(row16(out[0][2], 1, 2), xRow(in[0][2], 0, 2));
}

// 1-D mask: rank 0 [1,1,0] with ids [1],[1],[1]; rank 1 [1,0,0] with ids [0],[1],[1]. W = 2, M = 2, K = 1.
// Rank 1 (expert 1) receives rank 0's tokens 0 and 1; rank 0 (expert 0) receives rank 1's token 0.
TEST(RefDispatch, Mask1DPrefix) {
  Config cfg = smallConfig(2, 2, 1, 2);
  cfg.maskDims = 1;
  DispatchInputs in = {{rankInput(3, taggedRows(0, 3, 2), {1, 1, 1}, {1, 1, 0}),
                        rankInput(3, taggedRows(1, 3, 2), {0, 1, 1}, {1, 0, 0})}};
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(out[0][0].assistInfo, triples({{1, 0, 0}}));
  EXPECT_EQ(out[0][0].epRecvCounts, (I32{0, 1}));
  EXPECT_EQ(out[0][1].assistInfo, triples({{0, 0, 0}, {0, 1, 0}}));
  EXPECT_EQ(out[0][1].epRecvCounts, (I32{2, 2}));
  EXPECT_EQ(out[0][1].expertTokenNums, (I64{2}));

  // Ids of inactive tokens are never read: garbage there is fine.
  in[0][1].expertIds = {0, -7, 99};
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);

  // Not "all trues before all falses": error (SPEC decision 2).
  in[0][0].mask = {1, 0, 1};
  auto err = dispatch(cfg, in, &out);
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("xActiveMask"), std::string::npos) << *err;

  // All false: the rank sends nothing and still succeeds.
  in[0][0].mask = {0, 0, 0};
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(out[0][1].numOwnRows, 0);
  EXPECT_EQ(out[0][1].epRecvCounts, (I32{0, 0}));
  EXPECT_EQ(out[0][1].expertTokenNums, (I64{0}));
}

// 2-D mask with a shared expert: W = 3, S = 1, Srank = 1 (rank 0 shared), M = 2 (expert 0 on rank 1, expert 1 on
// rank 2), K = 2, Bs = 3. Source rank 1: ids [0,1],[1,1],[0,1], mask [1,0],[0,0],[0,1]: token 0 -> expert 0 (slot 0),
// token 1 inactive (its duplicate ids are in inactive slots: fine), token 2 -> expert 1 (slot 1). Ranks 0 and 2
// have all-false masks and send nothing.
TEST(RefDispatch, Mask2DWithSharedExpert) {
  Config cfg = smallConfig(3, 2, 2, 2);
  cfg.sharedExpertNum = 1;
  cfg.sharedExpertRankNum = 1;
  cfg.maskDims = 2;
  DispatchInputs in = {{rankInput(3, taggedRows(0, 3, 2), {0, 1, 0, 1, 0, 1}, {0, 0, 0, 0, 0, 0}),
                        rankInput(3, taggedRows(1, 3, 2), {0, 1, 1, 1, 0, 1}, {1, 0, 0, 0, 0, 1}),
                        rankInput(3, taggedRows(2, 3, 2), {0, 1, 0, 1, 0, 1}, {0, 0, 0, 0, 0, 0})}};
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(out[0][0].assistInfo, triples({{1, 0, 2}, {1, 2, 2}}));  // shared: slot K + 0 = 2
  EXPECT_EQ(out[0][0].epRecvCounts, (I32{0, 2, 2}));
  EXPECT_EQ(out[0][0].expertTokenNums, (I64{2}));
  EXPECT_EQ(out[0][1].assistInfo, triples({{1, 0, 0}}));
  EXPECT_EQ(out[0][1].epRecvCounts, (I32{0, 1, 1}));
  EXPECT_EQ(out[0][2].assistInfo, triples({{1, 2, 1}}));
  EXPECT_EQ(out[0][2].epRecvCounts, (I32{0, 1, 1}));
  EXPECT_EQ(row16(out[0][0], 1, 2), xRow(in[0][1], 2, 2));

  // A duplicate among active slots is an error.
  in[0][1].mask = {1, 0, 1, 1, 0, 1};
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
}

// Special experts (SPEC 4): M = 2, Z = C = Q = 1 (ids 2 zero, 3 copy, 4 const), K = 2, W = 2.
// Rank 0: t0 [0, 2] -> only (0,0,0) to expert 0; t1 [3, 4] -> nothing. Rank 1: t0 [4, 1] -> (1,0,1) to expert 1.
TEST(RefDispatch, SpecialExpertsAreDropped) {
  Config cfg = smallConfig(2, 2, 2, 2);
  cfg.Z = cfg.C = cfg.Q = 1;
  DispatchInputs in = {{rankInput(2, taggedRows(0, 2, 2), {0, 2, 3, 4}), rankInput(1, taggedRows(1, 1, 2), {4, 1})}};
  cfg.globalBs = 4;  // maxBs 2: rank 1 has a smaller batch
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(out[0][0].assistInfo, triples({{0, 0, 0}}));
  EXPECT_EQ(out[0][0].epRecvCounts, (I32{1, 1}));
  EXPECT_EQ(out[0][1].assistInfo, triples({{1, 0, 1}}));
  EXPECT_EQ(out[0][1].epRecvCounts, (I32{0, 1}));

  in[0][1].expertIds = {5, 1};  // >= M+Z+C+Q
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
  in[0][1].expertIds = {3, 3};  // the same special id twice
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
}

// A token whose slots are all special still goes to the shared expert.
// W = 3, S = 1, Srank = 1, M = 2, Z = 2 (ids 2, 3), K = 2; rank 1's token [2, 3].
TEST(RefDispatch, AllSpecialTokenStillReachesSharedExpert) {
  Config cfg = smallConfig(3, 2, 2, 2);
  cfg.sharedExpertNum = 1;
  cfg.sharedExpertRankNum = 1;
  cfg.Z = 2;
  DispatchInputs in = {{rankInput(1, taggedRows(0, 1, 2), {0, 2}), rankInput(1, taggedRows(1, 1, 2), {2, 3}),
                        rankInput(1, taggedRows(2, 1, 2), {3, 1})}};
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(out[0][0].assistInfo, triples({{0, 0, 2}, {1, 0, 2}, {2, 0, 2}}));
  EXPECT_EQ(out[0][1].assistInfo, triples({{0, 0, 0}}));
  EXPECT_EQ(out[0][2].assistInfo, triples({{2, 0, 1}}));
}

// Bs differing per rank needs globalBs = maxBs * W; globalBs = 0 with different Bs is an error, so is a rank
// above maxBs, and a mask with Bs < maxBs.
TEST(RefDispatch, BatchSizeRules) {
  Config cfg = smallConfig(2, 2, 1, 2);
  DispatchInputs in = {{rankInput(2, taggedRows(0, 2, 2), {0, 1}), rankInput(1, taggedRows(1, 1, 2), {0})}};
  DispatchOutputs out;
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
  cfg.globalBs = 4;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(out[0][0].assistInfo, triples({{0, 0, 0}, {1, 0, 0}}));
  cfg.globalBs = 2;
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
  cfg.globalBs = 4;
  cfg.maskDims = 1;
  in[0][0].mask = {1, 1};
  in[0][1].mask = {1};
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
}

// TP (SPEC 2.6): W = 2, M = 2, K = 1, tp = 2, Bs = 2 per rank.
//   group 0: rank 0 ids [0],[1]; rank 1 ids [0],[0]   group 1: rank 0 ids [1],[1]; rank 1 ids [1],[0]
// Own results: g0 r0 = (0,0),(1,0),(1,1) prefix [1,3]; g0 r1 = (0,1) prefix [1,1];
//              g1 r0 = (1,1) prefix [0,1];             g1 r1 = (0,0),(0,1),(1,0) prefix [2,3].
TEST(RefDispatch, TpLayout) {
  Config cfg = smallConfig(2, 2, 1, 2);
  cfg.tp = 2;
  DispatchInputs in = {{rankInput(2, taggedRows(0, 2, 2), {0, 1}), rankInput(2, taggedRows(1, 2, 2), {0, 0})},
                       {rankInput(2, taggedRows(2, 2, 2), {1, 1}), rankInput(2, taggedRows(3, 2, 2), {1, 0})}};
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  ASSERT_EQ(out.size(), 2u);
  const DispatchOutput& a = out[0][0];
  EXPECT_EQ(a.numOwnRows, 3);
  EXPECT_EQ(a.numRows, 4);
  EXPECT_EQ(a.assistInfo, triples({{0, 0, 0}, {1, 0, 0}, {1, 1, 0}}));
  EXPECT_EQ(a.epRecvCounts, (I32{1, 3, 0, 1}));
  EXPECT_EQ(a.tpRecvCounts, (I32{3, 1}));
  EXPECT_EQ(a.expertTokenNums, (I64{4}));
  EXPECT_EQ(row16(a, 0, 2), xRow(in[0][0], 0, 2));
  EXPECT_EQ(row16(a, 2, 2), xRow(in[0][1], 1, 2));
  EXPECT_EQ(row16(a, 3, 2), xRow(in[1][1], 1, 2));  // the peer's own row, appended

  const DispatchOutput& b = out[1][0];  // own block first on both TP ranks
  EXPECT_EQ(b.numOwnRows, 1);
  EXPECT_EQ(b.numRows, 4);
  EXPECT_EQ(b.assistInfo, triples({{1, 1, 0}}));
  EXPECT_EQ(b.epRecvCounts, (I32{0, 1, 1, 3}));
  EXPECT_EQ(b.tpRecvCounts, (I32{3, 1}));  // indexed by tp rank id: [1] = own 1, [0] = peer 3
  EXPECT_EQ(row16(b, 0, 2), xRow(in[1][1], 1, 2));
  EXPECT_EQ(row16(b, 1, 2), xRow(in[0][0], 0, 2));

  EXPECT_EQ(out[0][1].epRecvCounts, (I32{1, 1, 2, 3}));
  EXPECT_EQ(out[0][1].tpRecvCounts, (I32{1, 3}));
  EXPECT_EQ(out[1][1].epRecvCounts, (I32{2, 3, 1, 1}));
  EXPECT_EQ(out[1][1].tpRecvCounts, (I32{1, 3}));
  EXPECT_EQ(out[1][1].expertTokenNums, (I64{4}));

  // Quantized: scales follow the rows, own first.
  cfg.quantMode = 2;
  in[0][0].x = bfRow({1, -2, 127, 2.5});  // tokens [1, -2] and [127, 2.5]
  in[1][1].x = bfRow({0.5, 0.25, 4, 1});  // tokens [0.5, 0.25] and [4, 1]
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  ASSERT_EQ(out[0][0].dynamicScales.size(), 4u);
  // Row 0 = g0 r0 t0 = [1, -2]: d = 63.5, q = [64 (63.5 tie -> even), -127], scale fl(1/63.5) = fl(2/127)
  // = 2^-6 (1 + 2^-7 + 2^-14 + 2^-21) = 0x3C810204.
  EXPECT_EQ(row8(out[0][0], 0, 2), (std::vector<int8_t>{64, -127}));
  EXPECT_EQ(floatBits(out[0][0].dynamicScales[0]), 0x3C810204u);
  // Row 3 = g1 r1 t1 = [4, 1]: d = 31.75, q = [127, 32 (31.75)], scale 0x3D010204 (see RefDynamicQuant).
  EXPECT_EQ(row8(out[0][0], 3, 2), (std::vector<int8_t>{127, 32}));
  EXPECT_EQ(floatBits(out[0][0].dynamicScales[3]), 0x3D010204u);
  EXPECT_EQ(floatBits(out[1][0].dynamicScales[0]), 0x3D010204u);  // own row first on the other TP rank
  EXPECT_EQ(floatBits(out[1][0].dynamicScales[1]), 0x3C810204u);
}

// Quantization per copy with smooth scales (SPEC 2.5): W = 2, M = 2, K = 2, H = 4, x = [1,1,1,1] on rank 0 token 0
// with ids [0, 1]. Scale row S+0 = [2, 0.5, 1, -4]: v = [2, 0.5, 1, -4], d = 31.75, v*d = [63.5, 15.875, 31.75, -127]
// -> [64, 16, 32, -127], scale 0x3D010204. Row S+1 = [1,1,1,1]: d = 127 -> [127 x4], scale fl(1/127) = 0x3C010204.
TEST(RefDispatch, QuantPerCopyWithSmoothScales) {
  Config cfg = smallConfig(2, 2, 2, 4);
  cfg.quantMode = 2;
  DispatchInputs in = {{rankInput(1, bfRow({1, 1, 1, 1}), {0, 1}), rankInput(1, bfRow({0, 0, 0, 0}), {1, 0})}};
  const std::vector<float> scales = {2, 0.5f, 1, -4, 1, 1, 1, 1};
  in[0][0].scales = scales;
  in[0][1].scales = scales;
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  // Rank 0 (expert 0): rank 0 t0 (k 0), then rank 1 t0 (k 1).
  EXPECT_EQ(row8(out[0][0], 0, 4), (std::vector<int8_t>{64, 16, 32, -127}));
  EXPECT_EQ(floatBits(out[0][0].dynamicScales[0]), 0x3D010204u);
  // Rank 1's row is all zero: q = 0 and scale 0 (SPEC 10.3), also after smoothing.
  EXPECT_EQ(row8(out[0][0], 1, 4), (std::vector<int8_t>{0, 0, 0, 0}));
  EXPECT_EQ(out[0][0].dynamicScales[1], 0.0f);
  EXPECT_EQ(row8(out[0][1], 0, 4), (std::vector<int8_t>{127, 127, 127, 127}));
  EXPECT_EQ(floatBits(out[0][1].dynamicScales[0]), 0x3C010204u);
  EXPECT_EQ(out[0][1].expandX.size(), 2u * 4);

  // fp16 x, no smooth scales: [1, -2, 0.5, 4] -> [32, -64, 16, 127], scale 0x3D010204.
  cfg.fp16 = true;
  in[0][0].x = {floatToFp16(1), floatToFp16(-2), floatToFp16(0.5f), floatToFp16(4)};
  in[0][0].scales.clear();
  in[0][1].scales.clear();
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(row8(out[0][0], 0, 4), (std::vector<int8_t>{32, -64, 16, 127}));
  EXPECT_EQ(floatBits(out[0][0].dynamicScales[0]), 0x3D010204u);

  in[0][0].scales = {1.0f};  // wrong size
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
}

// Smooth-scale rows with a shared expert (SPEC 2.5): row j for shared expert j, row S + e for MoE expert e.
// W = 3, S = 1, Srank = 1, M = 2, K = 1, H = 2; scales rows: 0 (shared) [1, 0.5], 1 (expert 0) [2, 1],
// 2 (expert 1) [1, 4]; every x = [1, 1].
//   shared copy: v = [1, 0.5], d = 127 -> [127, 64 (63.5, tie -> even)], scale fl(1/127) = 0x3C010204
//   expert 0:    v = [2, 1], d = 63.5 -> [127, 64 (63.5)], scale fl(2/127) = 0x3C810204
//   expert 1:    v = [1, 4], d = 31.75 -> [32 (31.75), 127], scale fl(4/127) = 0x3D010204
TEST(RefDispatch, SmoothScaleRowsWithSharedExpert) {
  Config cfg = smallConfig(3, 2, 1, 2);
  cfg.sharedExpertNum = 1;
  cfg.sharedExpertRankNum = 1;
  cfg.quantMode = 2;
  DispatchInputs in = {
      {rankInput(1, bfRow({1, 1}), {0}), rankInput(1, bfRow({1, 1}), {1}), rankInput(1, bfRow({1, 1}), {0})}};
  for (auto& r : in[0]) r.scales = {1, 0.5f, 2, 1, 1, 4};
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  ASSERT_EQ(out[0][0].numOwnRows, 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(row8(out[0][0], i, 2), (std::vector<int8_t>{127, 64}));
    EXPECT_EQ(floatBits(out[0][0].dynamicScales[static_cast<size_t>(i)]), 0x3C010204u);
  }
  ASSERT_EQ(out[0][1].numOwnRows, 2);
  EXPECT_EQ(row8(out[0][1], 1, 2), (std::vector<int8_t>{127, 64}));
  EXPECT_EQ(floatBits(out[0][1].dynamicScales[1]), 0x3C810204u);
  ASSERT_EQ(out[0][2].numOwnRows, 1);
  EXPECT_EQ(row8(out[0][2], 0, 2), (std::vector<int8_t>{32, 127}));
  EXPECT_EQ(floatBits(out[0][2].dynamicScales[0]), 0x3D010204u);
}

// The seed document's elastic example: W = 8, M = 8 (L = 1), ranks 2..5 removed,
// elasticInfo {1, 4, 0, 4, 0,1,-1,-1,-1,-1,2,3, 0,1,6,7,-1,-1,-1,-1}: survivors 0,1,6,7 -> new 0,1,2,3, M' = 4.
// MoE expert e -> new rank e -> physical table2[e] = 0, 1, 6, 7. K = 2, one token per survivor:
//   phys 0 (new 0) [0, 3]; phys 1 (new 1) [1, 2]; phys 6 (new 2) [3, 0]; phys 7 (new 3) [2, 1].
// phys 0 (expert 0): (0,0,0), (2,0,1)   prefix over W' = 4 new sources: [1,1,2,2]
// phys 1 (expert 1): (1,0,0), (3,0,1)   [0,1,1,2]
// phys 6 (expert 2): (1,0,1), (3,0,0)   [0,1,1,2]
// phys 7 (expert 3): (0,0,1), (2,0,0)   [1,1,2,2]
class ElasticSeed : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg = smallConfig(8, 8, 2, 2);
    cfg.elasticInfo = {1, 4, 0, 4, 0, 1, -1, -1, -1, -1, 2, 3, 0, 1, 6, 7, -1, -1, -1, -1};
    in.resize(1);
    const std::vector<std::vector<int32_t>> ids = {{0, 3}, {1, 2}, {99, 99}, {99, 99}, {-5, 0}, {7, 7}, {3, 0}, {2, 1}};
    for (int r = 0; r < 8; ++r) in[0].push_back(rankInput(1, taggedRows(r, 1, 2), ids[static_cast<size_t>(r)]));
  }
  Config cfg;
  DispatchInputs in;
};

TEST_F(ElasticSeed, RoutingUsesNewIds) {
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  for (int r = 2; r <= 5; ++r) {
    EXPECT_FALSE(out[0][r].participates) << r;
    EXPECT_TRUE(out[0][r].expandX.empty());
    EXPECT_TRUE(out[0][r].epRecvCounts.empty());
  }
  EXPECT_EQ(out[0][0].assistInfo, triples({{0, 0, 0}, {2, 0, 1}}));
  EXPECT_EQ(out[0][0].epRecvCounts, (I32{1, 1, 2, 2}));
  EXPECT_EQ(out[0][1].assistInfo, triples({{1, 0, 0}, {3, 0, 1}}));
  EXPECT_EQ(out[0][1].epRecvCounts, (I32{0, 1, 1, 2}));
  EXPECT_EQ(out[0][6].assistInfo, triples({{1, 0, 1}, {3, 0, 0}}));
  EXPECT_EQ(out[0][6].epRecvCounts, (I32{0, 1, 1, 2}));
  EXPECT_EQ(out[0][7].assistInfo, triples({{0, 0, 1}, {2, 0, 0}}));
  EXPECT_EQ(out[0][7].epRecvCounts, (I32{1, 1, 2, 2}));
  EXPECT_EQ(out[0][7].expertTokenNums, (I64{2}));
  EXPECT_EQ(row16(out[0][0], 1, 2), xRow(in[0][6], 0, 2));  // the row of physical rank 6
}

TEST_F(ElasticSeed, FlagZeroIgnoresTheRest) {
  cfg.elasticInfo[0] = 0;
  for (int r = 2; r <= 5; ++r) in[0][static_cast<size_t>(r)].expertIds = {4, 5};
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  for (int r = 0; r < 8; ++r) EXPECT_TRUE(out[0][r].participates);
  EXPECT_EQ(out[0][4].epRecvCounts.size(), 8u);
  // Expert 4 is on rank 4 again: sources 2..5 select it (slot 0).
  EXPECT_EQ(out[0][4].assistInfo, triples({{2, 0, 0}, {3, 0, 0}, {4, 0, 0}, {5, 0, 0}}));
}

TEST_F(ElasticSeed, IdsBetweenMPrimeAndMAreErrors) {
  in[0][0].expertIds = {0, 5};
  DispatchOutputs out;
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
  cfg.Z = 2;  // even with special experts: [M', M) is neither MoE nor special
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
  in[0][0].expertIds = {0, 8};  // a real special id (zero expert 8)
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_EQ(out[0][7].assistInfo, triples({{2, 0, 0}}));
}

TEST_F(ElasticSeed, BadTablesAreErrors) {
  DispatchOutputs out;
  Config c = cfg;
  c.elasticInfo[4 + 8 + 2] = 5;  // table2[2] = 5, but table1[6] = 2
  EXPECT_TRUE(dispatch(c, in, &out).has_value());
  c = cfg;
  c.elasticInfo[3] = 8;  // M' = 8 with W' = 4: L' = 2 != L
  EXPECT_TRUE(dispatch(c, in, &out).has_value());
  c = cfg;
  c.elasticInfo[1] = 3;  // W' disagrees with the survivor count
  EXPECT_TRUE(dispatch(c, in, &out).has_value());
  c = cfg;
  c.elasticInfo.pop_back();
  EXPECT_TRUE(dispatch(c, in, &out).has_value());
  c = cfg;
  c.tp = 2;
  EXPECT_TRUE(dispatch(c, {in[0], in[0]}, &out).has_value());
}

// Elastic with a shared expert: W = 6, S = 1, Srank = 2 (R = 2), M = 4 (L = 1, MoE ranks 2..5). Ranks 1 (shared)
// and 3 (MoE) removed: survivors 0,2,4,5 -> new 0,1,2,3; Srank' = 1 (R' = 1), M' = 3.
// Roles: phys 0 shared; phys 2 expert 0; phys 4 expert 1; phys 5 expert 2. Every source uses replica
// (s' mod 1) + 0 = new 0 = phys 0. K = 1: phys0 [2], phys2 [0], phys4 [1], phys5 [0].
TEST(RefDispatch, ElasticWithSharedExpert) {
  Config cfg = smallConfig(6, 4, 1, 2);
  cfg.sharedExpertNum = 1;
  cfg.sharedExpertRankNum = 2;
  cfg.elasticInfo = {1, 4, 1, 3, 0, -1, 1, -1, 2, 3, 0, 2, 4, 5, -1, -1};
  cfg.expertTokenNumsType = 0;
  DispatchInputs in(1);
  const std::vector<std::vector<int32_t>> ids = {{2}, {0}, {0}, {0}, {1}, {0}};
  for (int r = 0; r < 6; ++r) in[0].push_back(rankInput(1, taggedRows(r, 1, 2), ids[static_cast<size_t>(r)]));
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_FALSE(out[0][1].participates);
  EXPECT_FALSE(out[0][3].participates);
  EXPECT_EQ(out[0][0].assistInfo, triples({{0, 0, 1}, {1, 0, 1}, {2, 0, 1}, {3, 0, 1}}));
  EXPECT_EQ(out[0][0].epRecvCounts, (I32{1, 2, 3, 4}));
  EXPECT_EQ(out[0][0].expertTokenNums, (I64{4}));
  EXPECT_EQ(out[0][2].assistInfo, triples({{1, 0, 0}, {3, 0, 0}}));
  EXPECT_EQ(out[0][2].epRecvCounts, (I32{0, 1, 1, 2}));
  EXPECT_EQ(out[0][4].assistInfo, triples({{2, 0, 0}}));
  EXPECT_EQ(out[0][4].epRecvCounts, (I32{0, 0, 1, 1}));
  EXPECT_EQ(out[0][5].assistInfo, triples({{0, 0, 0}}));
  EXPECT_EQ(out[0][5].epRecvCounts, (I32{1, 1, 1, 1}));

  // Srank' must be a positive multiple of S.
  cfg.elasticInfo[2] = 0;
  cfg.elasticInfo[3] = 4;
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
}

// Role change (SPEC 5): W = 3, S = 1, Srank = 1, M = 2 (rank 0 shared, rank 1 expert 0, rank 2 expert 1).
// Rank 0 removed with Srank' = 1: phys 1 -> new 0 (now the shared rank), phys 2 -> new 1 (expert 0); M' = 1.
// elasticInfo {1, 2, 1, 1, table1 [-1, 0, 1], table2 [1, 2, -1]}. Both survivors send token 0 with id 0.
TEST(RefDispatch, ElasticRoleChange) {
  Config cfg = smallConfig(3, 2, 1, 2);
  cfg.sharedExpertNum = 1;
  cfg.sharedExpertRankNum = 1;
  cfg.elasticInfo = {1, 2, 1, 1, -1, 0, 1, 1, 2, -1};
  DispatchInputs in = {{rankInput(1, taggedRows(0, 1, 2), {1}), rankInput(1, taggedRows(1, 1, 2), {0}),
                        rankInput(1, taggedRows(2, 1, 2), {0})}};
  DispatchOutputs out;
  ASSERT_EQ(dispatch(cfg, in, &out), std::nullopt);
  EXPECT_FALSE(out[0][0].participates);
  EXPECT_EQ(out[0][1].assistInfo, triples({{0, 0, 1}, {1, 0, 1}}));
  EXPECT_EQ(out[0][1].epRecvCounts, (I32{1, 2}));
  EXPECT_EQ(out[0][1].expertTokenNums, (I64{2}));
  EXPECT_EQ(out[0][2].assistInfo, triples({{0, 0, 0}, {1, 0, 0}}));
  EXPECT_EQ(out[0][2].epRecvCounts, (I32{1, 2}));
  EXPECT_EQ(row16(out[0][1], 1, 2), xRow(in[0][2], 0, 2));

  in[0][1].expertIds = {1};  // 1 is in [M', M) = [1, 2): an error
  EXPECT_TRUE(dispatch(cfg, in, &out).has_value());
}

}  // namespace
}  // namespace moedist::ref
