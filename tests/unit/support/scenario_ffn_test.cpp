// Tests of the scenario generator and the stand-in expert FFN.
#include <gtest/gtest.h>
#include <moedist_ref/numeric.h>
#include <moedist_ref/reference.h>

#include <algorithm>
#include <set>
#include <vector>

#include "support/ffn.h"
#include "support/scenario.h"

namespace moedist::testing {
namespace {

using I32 = std::vector<int32_t>;

Scenario small(int W, int M, int K, int H, int bs, uint64_t seed) {
  Scenario sc;
  sc.cfg.W = W;
  sc.cfg.M = M;
  sc.cfg.K = K;
  sc.cfg.H = H;
  sc.bs.assign(static_cast<size_t>(W), bs);
  sc.seed = seed;
  return sc;
}

// ---------------------------------------------------------------------------------------------------------------
// FFN

TEST(Ffn, Coefficients) {
  FfnRank r;
  EXPECT_EQ(ffnCoefficient(r, 0), 1.0f);
  EXPECT_EQ(ffnCoefficient(r, 1), 1.125f);
  EXPECT_EQ(ffnCoefficient(r, 7), 1.875f);
  EXPECT_EQ(ffnCoefficient(r, 9), 1.125f);  // le mod 8
  r.sharedRank = true;
  EXPECT_EQ(ffnCoefficient(r, 0), 0.5f);
  r = FfnRank{};
  r.tp2 = true;
  EXPECT_EQ(ffnCoefficient(r, 0), 0.75f);
  r.tpIdx = 1;
  EXPECT_EQ(ffnCoefficient(r, 0), 0.25f);
}

// Rows by local expert from epRecvCounts: L = 2, W_eff = 2, prefix [1, 1, 3, 4] -> row 0 is expert 0 (c = 1),
// rows 1..3 expert 1 (c = 1.125). Input 1.0078125 (0x3F81): expert 0 -> 0x3F81; expert 1 -> 1.0078125 * 1.125 =
// 1.1337890625 = 145.125/128 -> 145/128 = 1.1328125 (0x3F91).
TEST(Ffn, Bf16RowsByLocalExpert) {
  FfnRank r;
  r.H = 2;
  r.numLocalExperts = 2;
  r.numSourceRanks = 2;
  const std::vector<uint16_t> x(8, 0x3F81);
  const I32 prefix = {1, 1, 3, 4};
  const auto out = expertFfn(r, x.data(), nullptr, 4, prefix.data());
  EXPECT_EQ(out, (std::vector<uint16_t>{0x3F81, 0x3F81, 0x3F91, 0x3F91, 0x3F91, 0x3F91, 0x3F91, 0x3F91}));
  // Expert 0 empty: every row belongs to expert 1.
  const I32 prefix2 = {0, 0, 2, 4};
  const auto out2 = expertFfn(r, x.data(), nullptr, 4, prefix2.data());
  EXPECT_EQ(out2, std::vector<uint16_t>(8, 0x3F91));
}

// int8 rows: v = q * scale: q = [3, -1], scale 0.5 -> [1.5, -0.5]; c = 1 -> 0x3FC0, 0xBF00.
// fp16 rows: 0x3C00 = 1.0 on a shared rank (c = 0.5) -> 0x3F00; TP rank 1 (c = 0.25): 1.0 -> 0x3E80.
TEST(Ffn, Int8AndFp16Rows) {
  FfnRank r;
  r.H = 2;
  r.int8 = true;
  const int8_t q[2] = {3, -1};
  const float scale = 0.5f;
  EXPECT_EQ(expertFfn(r, q, &scale, 1, nullptr), (std::vector<uint16_t>{0x3FC0, 0xBF00}));
  FfnRank s;
  s.H = 1;
  s.fp16 = true;
  s.sharedRank = true;
  const uint16_t one = 0x3C00;
  EXPECT_EQ(expertFfn(s, &one, nullptr, 1, nullptr), (std::vector<uint16_t>{0x3F00}));
  FfnRank t;
  t.H = 1;
  t.fp16 = true;
  t.tp2 = true;
  t.tpIdx = 1;
  EXPECT_EQ(expertFfn(t, &one, nullptr, 1, nullptr), (std::vector<uint16_t>{0x3E80}));
}

TEST(Ffn, RankRolesUnderElastic) {
  ref::Config cfg;
  cfg.W = 6;
  cfg.M = 4;
  cfg.sharedExpertNum = 1;
  cfg.sharedExpertRankNum = 2;
  cfg.H = 8;
  FfnRank r = ffnRankFor(cfg, 1, 0);
  EXPECT_TRUE(r.sharedRank);
  EXPECT_EQ(r.numSourceRanks, 6);
  r = ffnRankFor(cfg, 3, 0);
  EXPECT_FALSE(r.sharedRank);
  EXPECT_EQ(r.numLocalExperts, 1);
  cfg.elasticInfo = {1, 4, 1, 3, 0, -1, 1, -1, 2, 3, 0, 2, 4, 5, -1, -1};
  r = ffnRankFor(cfg, 2, 0);  // new rank 1 >= Srank' = 1: MoE
  EXPECT_FALSE(r.sharedRank);
  EXPECT_EQ(r.numSourceRanks, 4);
  EXPECT_TRUE(ffnRankFor(cfg, 0, 0).sharedRank);
  EXPECT_THROW(ffnRankFor(cfg, 1, 0), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------------------------
// Scenario

TEST(Scenario, ElasticInfoOfTheSeedExample) {
  Scenario sc = small(8, 8, 2, 64, 2, 1);
  sc.removedRanks = {2, 3, 4, 5};
  EXPECT_EQ(sc.elasticInfo(), (I32{1, 4, 0, 4, 0, 1, -1, -1, -1, -1, 2, 3, 0, 1, 6, 7, -1, -1, -1, -1}));
  EXPECT_FALSE(sc.participates(3));
  EXPECT_TRUE(sc.participates(6));
  EXPECT_EQ(sc.config().elasticInfo, sc.elasticInfo());
}

TEST(Scenario, ElasticInfoWithSharedRanks) {
  Scenario sc = small(6, 4, 1, 64, 2, 1);
  sc.cfg.sharedExpertNum = 1;
  sc.cfg.sharedExpertRankNum = 2;
  sc.removedRanks = {1, 3};
  EXPECT_EQ(sc.elasticInfo(), (I32{1, 4, 1, 3, 0, -1, 1, -1, 2, 3, 0, 2, 4, 5, -1, -1}));
  sc.removedRanks.clear();
  sc.elasticInfoGiven = true;  // passed but switched off
  EXPECT_EQ(sc.elasticInfo(), (I32{0, 6, 2, 4, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}));
  sc.elasticInfoGiven = false;
  EXPECT_TRUE(sc.elasticInfo().empty());
}

TEST(Scenario, DifferentBatchSizesSetGlobalBs) {
  Scenario sc = small(4, 8, 2, 64, 3, 5);
  sc.bs = {3, 1, 4, 2};
  EXPECT_EQ(sc.config().globalBs, 16);
  sc.bs = {3, 3, 3, 3};
  EXPECT_EQ(sc.config().globalBs, 0);
}

TEST(Scenario, DeterministicFromSeed) {
  Scenario sc = small(4, 8, 3, 128, 5, 42);
  sc.cfg.maskDims = 2;
  const auto a = sc.makeDispatchInputs();
  const auto b = sc.makeDispatchInputs();
  for (int p = 0; p < 4; ++p) {
    EXPECT_EQ(a[0][p].x, b[0][p].x);
    EXPECT_EQ(a[0][p].expertIds, b[0][p].expertIds);
    EXPECT_EQ(a[0][p].mask, b[0][p].mask);
  }
  sc.seed = 43;
  const auto c = sc.makeDispatchInputs();
  EXPECT_NE(a[0][0].x, c[0][0].x);
  EXPECT_FALSE(sc.describe().empty());
  EXPECT_NE(sc.describe().find("seed=43"), std::string::npos);
}

// Ids valid and distinct per token; under elastic all MoE ids < M'; special fraction honoured roughly.
TEST(Scenario, IdsRespectTheContract) {
  Scenario sc = small(8, 16, 4, 64, 32, 9);
  sc.removedRanks = {1, 6};  // W' = 6, M' = 2 * 6 = 12
  sc.cfg.Z = 2;
  sc.cfg.C = 1;
  sc.cfg.Q = 1;
  sc.specialFraction = 0.25;
  const auto in = sc.makeDispatchInputs();
  int special = 0, total = 0;
  for (int p = 0; p < 8; ++p) {
    const auto& ids = in[0][p].expertIds;
    for (int b = 0; b < 32; ++b) {
      std::set<int> seen;
      for (int k = 0; k < 4; ++k) {
        const int e = ids[static_cast<size_t>(b * 4 + k)];
        EXPECT_TRUE((e >= 0 && e < 12) || (e >= 16 && e < 20)) << e;
        EXPECT_TRUE(seen.insert(e).second);
        special += e >= 16 ? 1 : 0;
        ++total;
      }
    }
  }
  EXPECT_GT(special, total / 8);
  EXPECT_LT(special, total / 2);
  ref::DispatchOutputs out;
  EXPECT_EQ(ref::dispatch(sc.config(), in, &out), std::nullopt);
}

TEST(Scenario, OneExpertAndStarvedRank) {
  Scenario sc = small(4, 8, 3, 64, 6, 3);
  sc.routing = Routing::kOneExpert;
  sc.hotExpert = 5;  // rank 2, local expert 1
  auto in = sc.makeDispatchInputs();
  ref::DispatchOutputs out;
  ASSERT_EQ(ref::dispatch(sc.config(), in, &out), std::nullopt);
  EXPECT_EQ(out[0][2].expertTokenNums[1], 4 * 6);  // every token of every rank
  for (int p = 0; p < 4; ++p)
    for (int b = 0; b < 6; ++b) {
      const auto* t = &in[0][p].expertIds[static_cast<size_t>(b * 3)];
      EXPECT_TRUE(std::find(t, t + 3, 5) != t + 3);
    }

  sc.routing = Routing::kStarveRank;
  sc.starvedRank = 1;
  in = sc.makeDispatchInputs();
  ASSERT_EQ(ref::dispatch(sc.config(), in, &out), std::nullopt);
  EXPECT_EQ(out[0][1].numOwnRows, 0);
  EXPECT_EQ(out[0][1].epRecvCounts, I32(8, 0));
  EXPECT_GT(out[0][0].numOwnRows, 0);

  sc.cfg.K = 7;  // only 6 MoE ids left besides the starved rank's
  EXPECT_THROW(sc.makeDispatchInputs(), std::invalid_argument);
}

TEST(Scenario, MaskPatterns) {
  Scenario sc = small(2, 2, 2, 64, 40, 11);
  sc.cfg.maskDims = 1;
  sc.activeTokens = 7;
  auto in = sc.makeDispatchInputs();
  for (int p = 0; p < 2; ++p) {
    const auto& m = in[0][p].mask;
    ASSERT_EQ(m.size(), 40u);
    EXPECT_EQ(std::count(m.begin(), m.end(), 1), 7);
    EXPECT_TRUE(std::is_sorted(m.rbegin(), m.rend()));  // trues first
  }
  sc.cfg.maskDims = 2;
  in = sc.makeDispatchInputs();
  int allFalse = 0;
  for (int b = 0; b < 40; ++b) {
    const int n = in[0][0].mask[static_cast<size_t>(2 * b)] + in[0][0].mask[static_cast<size_t>(2 * b + 1)];
    allFalse += n == 0 ? 1 : 0;
  }
  EXPECT_GT(allFalse, 0);
  EXPECT_LT(allFalse, 40);
}

// The closed form of the whole chain in the simplest setting: L = 1, K = 1, no TP, bf16 x, so the FFN is the
// identity (c = 1) and xOut = bf16(fl(fl(x * w) + residual)) per element.
TEST(Scenario, EndToEndClosedForm) {
  Scenario sc = small(4, 4, 1, 64, 3, 21);
  const ref::Config cfg = sc.config();
  const auto din = sc.makeDispatchInputs();
  ref::DispatchOutputs dout;
  ASSERT_EQ(ref::dispatch(cfg, din, &dout), std::nullopt);
  const auto cin = sc.makeCombineInputs(dout);
  ref::CombineOutputs cout;
  ASSERT_EQ(ref::combine(cfg, din, cin, &cout), std::nullopt);
  for (int p = 0; p < 4; ++p)
    for (int b = 0; b < 3; ++b) {
      const float w = cin[0][p].expertScales[static_cast<size_t>(b)];
      for (int h = 0; h < 64; ++h) {
        const size_t i = static_cast<size_t>(b * 64 + h);
        const float term = ref::bf16ToFloat(din[0][p].x[i]) * w;
        const float acc = 0.0f + term;
        const float x = acc + ref::bf16ToFloat(cin[0][p].residualX[i]);
        EXPECT_EQ(cout[0][p].xOut[i], ref::floatToBf16(x)) << p << " " << b << " " << h;
      }
    }
}

// A grid of scenarios through reference dispatch -> FFN -> combine: no errors, written flags = active tokens.
TEST(Scenario, GridRunsThroughTheReference) {
  std::vector<Scenario> grid;
  {
    Scenario s = small(4, 8, 3, 128, 6, 1);
    grid.push_back(s);
    s.cfg.quantMode = 2;
    s.smoothScales = true;
    s.zeroRow = true;
    s.cfg.expertTokenNumsType = 0;
    grid.push_back(s);
    s.cfg.fp16 = true;
    s.cfg.maskDims = 2;
    grid.push_back(s);
  }
  {
    Scenario s = small(6, 8, 2, 64, 5, 2);
    s.cfg.sharedExpertNum = 2;
    s.cfg.sharedExpertRankNum = 2;
    s.cfg.maskDims = 1;
    s.cfg.commQuantMode = 2;
    grid.push_back(s);
  }
  {
    Scenario s = small(4, 4, 2, 64, 4, 3);
    s.cfg.tp = 2;
    s.cfg.quantMode = 2;
    grid.push_back(s);
    s.cfg.quantMode = 0;
    s.cfg.fp16 = true;
    s.bs = {4, 2, 3, 4};
    grid.push_back(s);
  }
  {
    Scenario s = small(8, 16, 4, 64, 8, 4);
    s.cfg.Z = 1;
    s.cfg.C = 2;
    s.cfg.Q = 2;
    s.specialFraction = 0.3;
    s.oriX = true;
    s.constTensors = true;
    s.sharedX = SharedXShape::k3D;
    s.removedRanks = {0, 5};
    s.cfg.maskDims = 2;
    grid.push_back(s);
  }
  {
    Scenario s = small(6, 8, 3, 64, 5, 5);
    s.cfg.sharedExpertNum = 1;
    s.cfg.sharedExpertRankNum = 2;
    s.removedRanks = {1, 4};
    s.bs = {5, 5, 2, 5, 5, 3};
    s.routing = Routing::kStarveRank;
    s.starvedRank = 3;
    grid.push_back(s);
  }
  {
    // Role change under scale-in: the shared rank 0 is removed and Srank' stays 1, so physical rank 1 (new id 0,
    // a MoE rank before) becomes the shared-expert rank; M' = 1 * (5 - 1) = 4.
    Scenario s = small(6, 5, 2, 64, 4, 6);
    s.cfg.sharedExpertNum = 1;
    s.cfg.sharedExpertRankNum = 1;
    s.removedRanks = {0};
    s.sharedRanksAfter = 1;
    s.cfg.quantMode = 2;
    grid.push_back(s);
  }
  for (const Scenario& sc : grid) {
    SCOPED_TRACE(sc.describe());
    const ref::Config cfg = sc.config();
    const auto din = sc.makeDispatchInputs();
    ref::DispatchOutputs dout;
    ASSERT_EQ(ref::dispatch(cfg, din, &dout), std::nullopt);
    const auto cin = sc.makeCombineInputs(dout);
    ref::CombineOutputs cout;
    ASSERT_EQ(ref::combine(cfg, din, cin, &cout), std::nullopt);
    for (int g = 0; g < sc.numGroups(); ++g)
      for (int p = 0; p < cfg.W; ++p) {
        if (!sc.participates(p)) {
          EXPECT_FALSE(cout[g][p].participates);
          continue;
        }
        const auto& d = din[g][p];
        for (int b = 0; b < d.Bs; ++b) {
          bool active = true;
          if (cfg.maskDims == 1) active = d.mask[static_cast<size_t>(b)] != 0;
          if (cfg.maskDims == 2)
            active = std::any_of(d.mask.begin() + b * cfg.K, d.mask.begin() + (b + 1) * cfg.K,
                                 [](uint8_t m) { return m != 0; });
          EXPECT_EQ(cout[g][p].written[static_cast<size_t>(b)], active ? 1 : 0);
        }
      }
  }
}

}  // namespace
}  // namespace moedist::testing
