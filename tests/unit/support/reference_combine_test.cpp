// Tests of the reference combine (SPEC 3, 4, 5) with hand-computed results. The expert FFN is the identity
// (combine's expandX = dispatch's bf16 rows) unless a test builds expandX itself.
#include <gtest/gtest.h>
#include <moedist_ref/reference.h>

#include <cmath>
#include <vector>

#include "test_util.h"

namespace moedist::ref {
namespace {

using test::bfRow;
using test::identityCombineInputs;
using test::rankInput;
using test::smallConfig;
using test::xOutRow;

using F = std::vector<float>;
using W3 = std::vector<std::vector<std::vector<float>>>;

struct Outs {
  DispatchOutputs dout;
  CombineOutputs cout;
};

// W = 2, M = 2, K = 2, H = 2, one token per rank.
// rank 0: ids [0, 1], x [1, 2], w [0.5, 0.25] -> 0.5x + 0.25x = [0.75, 1.5]
// rank 1: ids [1, 0], x [4, -8], w [1, 0.125] -> [4.5, -9]
TEST(RefCombine, WeightedSum) {
  const Config cfg = smallConfig(2, 2, 2, 2);
  const DispatchInputs din = {{rankInput(1, bfRow({1, 2}), {0, 1}), rankInput(1, bfRow({4, -8}), {1, 0})}};
  Outs r;
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  const CombineInputs cin = identityCombineInputs(cfg, r.dout, W3{{{0.5f, 0.25f}, {1.0f, 0.125f}}});
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  EXPECT_EQ(r.cout[0][0].written, (std::vector<uint8_t>{1}));
  EXPECT_EQ(xOutRow(r.cout[0][0], 0, 2), (F{0.75f, 1.5f}));
  EXPECT_EQ(xOutRow(r.cout[0][1], 0, 2), (F{4.5f, -9.0f}));
  EXPECT_EQ(r.cout[0][0].yOut.size(), 2u);
  EXPECT_EQ(r.cout[0][0].rstdOut.size(), 1u);
}

// Strict slot order with fp32 rounding after every add: w = [2^24, 1, 1, -2^24] on a row of ones:
// 0 + 2^24 = 2^24; + 1 -> 2^24 (tie, even); + 1 -> 2^24; - 2^24 = 0. Any other order of the small terms first
// would give 2. x = 0, so rstd = fl(1/sqrt(fl(1e-6))) and y = 0.
TEST(RefCombine, SlotOrderAndFp32Rounding) {
  const Config cfg = smallConfig(2, 4, 4, 2);  // L = 2
  const DispatchInputs din = {{rankInput(1, bfRow({1, 1}), {0, 1, 2, 3}), rankInput(1, bfRow({1, 1}), {3, 2, 1, 0})}};
  Outs r;
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  const CombineInputs cin =
      identityCombineInputs(cfg, r.dout, W3{{{16777216.0f, 1.0f, 1.0f, -16777216.0f}, {1.0f, 1.0f, 1.0f, 1.0f}}});
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  EXPECT_EQ(xOutRow(r.cout[0][0], 0, 2), (F{0.0f, 0.0f}));
  EXPECT_EQ(r.cout[0][0].yOut, (std::vector<uint16_t>{0, 0}));
  EXPECT_EQ(xOutRow(r.cout[0][1], 0, 2), (F{4.0f, 4.0f}));
}

// Special experts (SPEC 3.3, 4): M = 2, Z = C = Q = 1 -> id 2 zero, 3 copy, 4 const (c = 0); K = 4.
// oriX = [2, 4], alpha1 = 0.5, alpha2 = 2, V = [1, -1]: const term tmp = oriX*0.5 + V*2 = [3, 0].
// rank 0: ids [0, 2, 3, 4], x [1, 1], w [1, 0.5, 0.25, 0.125]: [1,1] + 0 + 0.25[2,4] + 0.125[3,0] = [1.875, 2]
// rank 1: ids [4, 3, 2, 1], w [1, 1, 1, 1]: [3,0] + [2,4] + 0 + [1,1] = [6, 5]
TEST(RefCombine, SpecialExperts) {
  Config cfg = smallConfig(2, 2, 4, 2);
  cfg.Z = cfg.C = cfg.Q = 1;
  const DispatchInputs din = {{rankInput(1, bfRow({1, 1}), {0, 2, 3, 4}), rankInput(1, bfRow({1, 1}), {4, 3, 2, 1})}};
  Outs r;
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  CombineInputs cin = identityCombineInputs(cfg, r.dout, W3{{{1, 0.5f, 0.25f, 0.125f}, {1, 1, 1, 1}}});
  for (auto& c : cin[0]) {
    c.oriX = bfRow({2, 4});
    c.alpha1 = bfRow({0.5f});
    c.alpha2 = bfRow({2});
    c.constV = bfRow({1, -1});
  }
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  EXPECT_EQ(xOutRow(r.cout[0][0], 0, 2), (F{1.875f, 2.0f}));
  EXPECT_EQ(xOutRow(r.cout[0][1], 0, 2), (F{6.0f, 5.0f}));

  CombineInputs bad = cin;
  bad[0][1].oriX.clear();
  EXPECT_TRUE(combine(cfg, din, bad, &r.cout).has_value());
  bad = cin;
  bad[0][0].constV.clear();
  EXPECT_TRUE(combine(cfg, din, bad, &r.cout).has_value());
}

// Shared experts are added unweighted after the K slots (SPEC 3.3).
// W = 3, S = 1, Srank = 1 (rank 0 shared), M = 2 (expert 0 on rank 1, expert 1 on rank 2), K = 1.
// rank 0: id 1, x [2, 2], w 0.5, residual [1, -1]: 0.5[2,2] + [2,2] + [1,-1] = [4, 2]
// rank 1: id 0, x [1, 3], w 0.25: 1.25[1,3] = [1.25, 3.75];   rank 2: id 1, x [-4, 8], w 1: [-8, 16]
TEST(RefCombine, SharedExpertUnweighted) {
  Config cfg = smallConfig(3, 2, 1, 2);
  cfg.sharedExpertNum = 1;
  cfg.sharedExpertRankNum = 1;
  const DispatchInputs din = {
      {rankInput(1, bfRow({2, 2}), {1}), rankInput(1, bfRow({1, 3}), {0}), rankInput(1, bfRow({-4, 8}), {1})}};
  Outs r;
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  CombineInputs cin = identityCombineInputs(cfg, r.dout, W3{{{0.5f}, {0.25f}, {1.0f}}});
  cin[0][0].residualX = bfRow({1, -1});
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  EXPECT_EQ(xOutRow(r.cout[0][0], 0, 2), (F{4.0f, 2.0f}));
  EXPECT_EQ(xOutRow(r.cout[0][1], 0, 2), (F{1.25f, 3.75f}));
  EXPECT_EQ(xOutRow(r.cout[0][2], 0, 2), (F{-8.0f, 16.0f}));

  cin[0][1].sharedExpertX = bfRow({1, 1});  // only allowed with Srank == 0
  EXPECT_TRUE(combine(cfg, din, cin, &r.cout).has_value());
}

// sharedExpertX is added once, unweighted. W = 2, M = 2, K = 1.
// rank 0: x [1, 1], w 0.5, sharedX [0.25, -1] -> [0.75, -0.5];  rank 1: x [2, 2], w 1, sharedX [1, 1] -> [3, 3]
TEST(RefCombine, SharedExpertX) {
  const Config cfg = smallConfig(2, 2, 1, 2);
  const DispatchInputs din = {{rankInput(1, bfRow({1, 1}), {0}), rankInput(1, bfRow({2, 2}), {1})}};
  Outs r;
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  CombineInputs cin = identityCombineInputs(cfg, r.dout, W3{{{0.5f}, {1.0f}}});
  cin[0][0].sharedExpertX = bfRow({0.25f, -1});
  cin[0][1].sharedExpertX = bfRow({1, 1});
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  EXPECT_EQ(xOutRow(r.cout[0][0], 0, 2), (F{0.75f, -0.5f}));
  EXPECT_EQ(xOutRow(r.cout[0][1], 0, 2), (F{3.0f, 3.0f}));
}

// Inactive tokens are not written (SPEC 3.6); masked slots contribute nothing and their weight is not read.
TEST(RefCombine, MasksAndUnwrittenTokens) {
  Config cfg = smallConfig(2, 2, 1, 2);
  cfg.maskDims = 1;
  DispatchInputs din = {
      {rankInput(2, bfRow({1, 1, 5, 5}), {0, 1}, {1, 0}), rankInput(2, bfRow({2, 2, 5, 5}), {1, 0}, {1, 0})}};
  Outs r;
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  CombineInputs cin = identityCombineInputs(cfg, r.dout, W3{{{0.5f, 1.0f}, {0.25f, 1.0f}}});
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  EXPECT_EQ(r.cout[0][0].written, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(r.cout[0][1].written, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(xOutRow(r.cout[0][0], 0, 2), (F{0.5f, 0.5f}));
  EXPECT_EQ(xOutRow(r.cout[0][1], 0, 2), (F{0.5f, 0.5f}));

  // 2-D: rank 0 token 0 ids [0, 1] mask [1, 0] weights [0.5, NaN] -> 0.5x; token 1 all false -> not written.
  cfg = smallConfig(2, 2, 2, 2);
  cfg.maskDims = 2;
  din = {{rankInput(2, bfRow({1, 2, 5, 5}), {0, 1, 1, 0}, {1, 0, 0, 0}),
          rankInput(2, bfRow({1, 1, 3, 3}), {0, 1, 1, 0}, {1, 1, 1, 1})}};
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  cin = identityCombineInputs(cfg, r.dout, W3{{{0.5f, NAN, 7, 7}, {1, 1, 1, 0.5f}}});
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  EXPECT_EQ(r.cout[0][0].written, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(xOutRow(r.cout[0][0], 0, 2), (F{0.5f, 1.0f}));
  EXPECT_EQ(r.cout[0][1].written, (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(xOutRow(r.cout[0][1], 0, 2), (F{2.0f, 2.0f}));
  EXPECT_EQ(xOutRow(r.cout[0][1], 1, 2), (F{4.5f, 4.5f}));
}

// TP reduce (SPEC 3.2): W = 2, M = 2, K = 1, tp = 2, one token per rank, all ids 0. Rank [g][0] holds 2 own rows
// (sources 0, 1) and the peer's 2; [g][1] holds nothing. Hand-made expert outputs:
//   E[0][0] = [1], [2], [0.5], [0.25]        E[1][0] = [3], [4], [2^-8], [2^-7]      (each row [v, v])
// red[0][0] row 0 = bf16(1 + E[1][0][2 + 0]) = bf16(1 + 2^-8) = 1 (tie, even) -> group 0 source 0
// red[0][0] row 1 = bf16(2 + 2^-7) = 2 (tie, even)                          -> group 0 source 1
// red[1][0] row 0 = bf16(3 + 0.5) = 3.5 -> group 1 source 0;  row 1 = 4 + 0.25 = 4.25 -> group 1 source 1
TEST(RefCombine, TpReduce) {
  Config cfg = smallConfig(2, 2, 1, 2);
  cfg.tp = 2;
  const DispatchInputs din = {{rankInput(1, bfRow({9, 9}), {0}), rankInput(1, bfRow({9, 9}), {0})},
                              {rankInput(1, bfRow({9, 9}), {0}), rankInput(1, bfRow({9, 9}), {0})}};
  Outs r;
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  ASSERT_EQ(r.dout[0][0].numRows, 4);
  ASSERT_EQ(r.dout[0][1].numRows, 0);
  CombineInputs cin = identityCombineInputs(cfg, r.dout, W3{{{1.0f}, {1.0f}}, {{1.0f}, {1.0f}}});
  cin[0][0].expandX = bfRow({1, 1, 2, 2, 0.5f, 0.5f, 0.25f, 0.25f});
  cin[1][0].expandX = bfRow({3, 3, 4, 4, 0x1p-8f, 0x1p-8f, 0x1p-7f, 0x1p-7f});
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  EXPECT_EQ(xOutRow(r.cout[0][0], 0, 2), (F{1.0f, 1.0f}));
  EXPECT_EQ(xOutRow(r.cout[0][1], 0, 2), (F{2.0f, 2.0f}));
  EXPECT_EQ(xOutRow(r.cout[1][0], 0, 2), (F{3.5f, 3.5f}));
  EXPECT_EQ(xOutRow(r.cout[1][1], 0, 2), (F{4.25f, 4.25f}));

  Config bad = cfg;
  bad.commQuantMode = 2;  // int8 transport needs tp <= 1
  EXPECT_TRUE(combine(bad, din, cin, &r.cout).has_value());
}

// commQuantMode 2 (SPEC 3.7), H = 16: the values of RefCommQuant.HandComputedGroups come back through combine
// with w = 1 and residual 0 (xOut = bf16 of the dequantized row, exact). Rank 1's all-zero row stays zero.
TEST(RefCombine, CommQuant) {
  Config cfg = smallConfig(2, 2, 1, 16);
  cfg.commQuantMode = 2;
  std::vector<uint16_t> x = bfRow({127, 63.5f, -1, 0, 2.5f, 0, 100.5f, -101.5f, 3, 1, 2, -1.5f, 0.5f, 0.25f, 0, 0});
  x[5] = 0x3E9A;  // 0.30078125
  const DispatchInputs din = {{rankInput(1, x, {0}), rankInput(1, std::vector<uint16_t>(16, 0), {0})}};
  Outs r;
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  const CombineInputs cin = identityCombineInputs(cfg, r.dout, W3{{{1.0f}, {1.0f}}});
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  EXPECT_EQ(xOutRow(r.cout[0][0], 0, 16), (F{127, 64, -1, 0, 2, 0, 100, -102, 3.0f, 0.99609375f, 2.015625f, -1.515625f,
                                             0.498046875f, 0.259765625f, 0, 0}));
  EXPECT_EQ(xOutRow(r.cout[0][1], 0, 16), F(16, 0.0f));
}

// RmsNorm through combine (SPEC 3.4). Every slot is the zero expert (M = 2, Z = 1, id 2), so x = residual.
// rank 0: residual 3 x 1.5, 5 x 0.5, 56 x 1 (sum of squares 64, ms = 1), gamma 1 + 2^-7 on the 1.5 entries:
//   rstd = 1 - 2^-21 (see RefRmsNorm), y = 1.515625 / 0.5 / 1.0 (double rounding), xOut = residual.
// rank 1: residual all 1, gamma all 1: rstd = 1/sqrt(1 + eps) = 1 - 2^-21, y = 1.
TEST(RefCombine, RmsNorm) {
  Config cfg = smallConfig(2, 2, 1, 64);
  cfg.Z = 1;
  const DispatchInputs din = {
      {rankInput(1, std::vector<uint16_t>(64, 0), {2}), rankInput(1, std::vector<uint16_t>(64, 0), {2})}};
  Outs r;
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  EXPECT_EQ(r.dout[0][0].numOwnRows, 0);
  CombineInputs cin = identityCombineInputs(cfg, r.dout, W3{{{0.5f}, {0.5f}}});
  cin[0][0].residualX.assign(64, floatToBf16(1.0f));
  cin[0][1].residualX.assign(64, floatToBf16(1.0f));
  for (int h = 0; h < 3; ++h) {
    cin[0][0].residualX[static_cast<size_t>(h)] = floatToBf16(1.5f);
    cin[0][0].gamma[static_cast<size_t>(h)] = 0x3F81;
  }
  for (int h = 3; h < 8; ++h) cin[0][0].residualX[static_cast<size_t>(h)] = floatToBf16(0.5f);
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  const CombineOutput& a = r.cout[0][0];
  EXPECT_EQ(a.rstdOut[0], 1.0f - 0x1p-21f);
  EXPECT_EQ(a.xOut, cin[0][0].residualX);
  for (int h = 0; h < 3; ++h) EXPECT_EQ(a.yOut[static_cast<size_t>(h)], 0x3FC2) << h;
  for (int h = 3; h < 8; ++h) EXPECT_EQ(a.yOut[static_cast<size_t>(h)], 0x3F00) << h;
  for (int h = 8; h < 64; ++h) EXPECT_EQ(a.yOut[static_cast<size_t>(h)], 0x3F80) << h;
  const CombineOutput& b = r.cout[0][1];
  EXPECT_EQ(b.rstdOut[0], 1.0f - 0x1p-21f);
  EXPECT_EQ(b.yOut, std::vector<uint16_t>(64, 0x3F80));
}

// Elastic (SPEC 3.8) with the seed example: survivors 0, 1, 6, 7; K = 2, x = [1, 2], w = [0.5, 0.25] -> [0.75, 1.5]
// on every survivor; rows return to physical ranks through table 2. Special ids keep the ORIGINAL M = 8: with
// C = 1, id 8 is the copy expert (dispatch drops it since 8 >= M' = 4; combine adds w * oriX).
TEST(RefCombine, ElasticSeed) {
  Config cfg = smallConfig(8, 8, 2, 2);
  cfg.elasticInfo = {1, 4, 0, 4, 0, 1, -1, -1, -1, -1, 2, 3, 0, 1, 6, 7, -1, -1, -1, -1};
  DispatchInputs din(1);
  const std::vector<std::vector<int32_t>> ids = {{0, 3}, {1, 2}, {9, 9}, {9, 9}, {9, 9}, {9, 9}, {3, 0}, {2, 1}};
  for (int r = 0; r < 8; ++r) din[0].push_back(rankInput(1, bfRow({1, 2}), ids[static_cast<size_t>(r)]));
  Outs r;
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  W3 w(1, std::vector<std::vector<float>>(8, std::vector<float>{0.5f, 0.25f}));
  CombineInputs cin = identityCombineInputs(cfg, r.dout, w);
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  for (int p : {0, 1, 6, 7}) EXPECT_EQ(xOutRow(r.cout[0][p], 0, 2), (F{0.75f, 1.5f})) << p;
  for (int p : {2, 3, 4, 5}) EXPECT_FALSE(r.cout[0][p].participates) << p;

  cfg.C = 1;
  din[0][7].expertIds = {8, 1};  // copy expert, then expert 1
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  cin = identityCombineInputs(cfg, r.dout, w);
  for (auto& c : cin[0]) c.oriX = bfRow({4, 4});
  ASSERT_EQ(combine(cfg, din, cin, &r.cout), std::nullopt);
  EXPECT_EQ(xOutRow(r.cout[0][7], 0, 2), (F{2.25f, 2.5f}));  // 0.5*[4,4] + 0.25*[1,2]
}

// Combine inputs inconsistent with expertIds / masks are errors instead of hangs or stale rows.
TEST(RefCombine, InconsistentExpertSide) {
  const Config cfg = smallConfig(2, 2, 2, 2);
  const DispatchInputs din = {{rankInput(1, bfRow({1, 2}), {0, 1}), rankInput(1, bfRow({4, -8}), {1, 0})}};
  Outs r;
  ASSERT_EQ(dispatch(cfg, din, &r.dout), std::nullopt);
  const CombineInputs good = identityCombineInputs(cfg, r.dout, W3{{{0.5f, 0.25f}, {1.0f, 0.125f}}});

  CombineInputs bad = good;
  bad[0][0].epSendCounts.back() -= 1;  // rank 0 returns one row less: a slot never arrives
  auto err = combine(cfg, din, bad, &r.cout);
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("never received"), std::string::npos) << *err;

  bad = good;
  bad[0][0].assistInfo[2] = 1;  // row 0 is (0, 0, 0): claim slot 1 instead, which rank 1 returns too
  EXPECT_TRUE(combine(cfg, din, bad, &r.cout).has_value());

  bad = good;
  bad[0][0].assistInfo[0] = 2;  // no such source rank
  EXPECT_TRUE(combine(cfg, din, bad, &r.cout).has_value());

  bad = good;
  bad[0][1].expandX.resize(1);  // fewer rows than Nown
  EXPECT_TRUE(combine(cfg, din, bad, &r.cout).has_value());

  bad = good;
  bad[0][0].gamma.clear();
  EXPECT_TRUE(combine(cfg, din, bad, &r.cout).has_value());

  DispatchInputs dbad = din;
  dbad[0][0].expertIds = {1, 1};  // the same data checks as dispatch
  EXPECT_TRUE(combine(cfg, dbad, good, &r.cout).has_value());
}

}  // namespace
}  // namespace moedist::ref
