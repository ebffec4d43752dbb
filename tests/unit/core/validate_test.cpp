// Argument-only validation (SPEC section 6): valid baselines with their geometry worked out by hand from the
// SPEC section 1 formulas, then one invalid field per case, asserting the exact code and that the message names
// the argument right after the operator name ("<Operator>: <argument>: expected ..., got ...").
#include "core/validate.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "support/scoped_env.h"

namespace moedist::core {
namespace {

using moedist::testing::ScopedEnv;

// Validation never reads tensor contents: every tensor points at this buffer.
alignas(64) unsigned char gDummy[256];

constexpr DType BF = DType::kBFloat16;
constexpr DType F16 = DType::kFloat16;
constexpr DType F32 = DType::kFloat32;
constexpr DType I8 = DType::kInt8;
constexpr DType I32 = DType::kInt32;
constexpr DType I64 = DType::kInt64;
constexpr DType B = DType::kBool;

constexpr StatusCode kNull = StatusCode::kNullArgument;
constexpr StatusCode kArg = StatusCode::kInvalidArgument;
constexpr StatusCode kVal = StatusCode::kInvalidValue;

TensorView T(DType dt, std::vector<int64_t> shape) {
  return TensorView(gDummy, dt, shape);
}
TensorView Strided(DType dt, std::vector<int64_t> shape, std::vector<int64_t> strides) {
  return TensorView(gDummy, dt, shape, strides);
}
TensorView NZ(DType dt, std::vector<int64_t> shape) {
  const TensorView dense(gDummy, dt, shape);
  std::vector<int64_t> strides(dense.strides().begin(), dense.strides().end());
  return TensorView(gDummy, dt, shape, strides, Format::kFractalNZ);
}
TensorView NullData(DType dt, std::vector<int64_t> shape) {
  return TensorView(nullptr, dt, shape);
}
TensorView Misaligned(DType dt, std::vector<int64_t> shape) {
  return TensorView(gDummy + 1, dt, shape);
}

// The message names the argument right after the operator: "<Operator>: <arg>" followed by ':', '.' or ' '.
::testing::AssertionResult namesArgument(const Status& st, Operator op, const std::string& arg) {
  const std::string prefix = std::string(toString(op)) + ": " + arg;
  const std::string& m = st.message();
  if (m.rfind(prefix, 0) != 0 || m.size() <= prefix.size() ||
      (m[prefix.size()] != ':' && m[prefix.size()] != '.' && m[prefix.size()] != ' '))
    return ::testing::AssertionFailure() << "message '" << m << "' does not start with '" << prefix << "'";
  if (m.find(": expected ") == std::string::npos || m.find(", got ") == std::string::npos)
    return ::testing::AssertionFailure() << "message '" << m << "' lacks 'expected ..., got ...'";
  return ::testing::AssertionSuccess();
}

// ------------------------------------------------------------------------------------------------------------
// Dispatch baselines

struct DSetup {
  Operator op = Operator::kDispatchV3;
  RankAttrs ranks;
  DispatchArgs a;
  Status run(Geometry* g = nullptr) const {
    DispatchCall c;
    c.op = op;
    c.ranks = ranks;
    c.args = &a;
    return validateDispatch(c, g);
  }
};

// The seed document's example: W 8, Bs 8, H 7168, K 3, M 8, Z/C/Q 7/8/10, globalBs 64, no TP (tp 0).
// L = 8/8 = 1, maxBs = 8, A = 64 * min(1, 3) = 64, localExpertNum 1.
DSetup seedDispatch() {
  DSetup s;
  s.ranks = {8, 3, 0, 0};
  auto& a = s.a;
  a.moeExpertNum = 8;
  a.sharedExpertNum = 0;
  a.globalBs = 64;
  a.zeroExpertNum = 7;
  a.copyExpertNum = 8;
  a.constExpertNum = 10;
  a.x = T(BF, {8, 7168});
  a.expertIds = T(I32, {8, 3});
  a.expandX = T(BF, {64, 7168});
  a.dynamicScales = T(F32, {64});
  a.assistInfoForCombine = T(I32, {64 * 128});
  a.expertTokenNums = T(I64, {1});
  a.epRecvCounts = T(I32, {8});
  a.tpRecvCounts = T(I32, {0});
  a.expandScales = T(F32, {64});
  return s;
}

// TP pair: W 8, tp 2, tpr 1, M 8 (L 1), sharedExpertNum left at its default 1 (-> S 0), Bs 16, H 4096, K 8,
// globalBs 0 -> 128, maxBs 16, A = 128 * min(1, 8) = 128; expandX 2A rows, epRecvCounts 2*W*L, tpRecvCounts (2,).
DSetup tpDispatch() {
  DSetup s;
  s.ranks = {8, 2, 2, 1};
  auto& a = s.a;
  a.moeExpertNum = 8;
  a.x = T(BF, {16, 4096});
  a.expertIds = T(I32, {16, 8});
  a.xActiveMask = T(B, {16, 8});
  a.expandX = T(BF, {256, 4096});
  a.dynamicScales = T(F32, {256});
  a.assistInfoForCombine = T(I32, {128 * 128});
  a.expertTokenNums = T(I64, {1});
  a.epRecvCounts = T(I32, {16});
  a.tpRecvCounts = T(I32, {2});
  a.expandScales = T(F32, {128});
  return s;
}

// Shared experts: W 9, Srank 2, S 1 -> R 2, M 14 -> L 14/7 = 2, Bs 8, globalBs 0 -> 72, maxBs 8, K 4, H 2048, fp16.
// Rank 1 is a shared-expert rank: A = maxBs * ceil(W/R) = 8 * ceil(9/2) = 40, localExpertNum 1, epRecvCounts >= W.
DSetup sharedDispatch() {
  DSetup s;
  s.ranks = {9, 1, 1, 0};
  auto& a = s.a;
  a.moeExpertNum = 14;
  a.sharedExpertNum = 1;
  a.sharedExpertRankNum = 2;
  a.x = T(F16, {8, 2048});
  a.expertIds = T(I32, {8, 4});
  a.xActiveMask = T(B, {8});
  a.expandX = T(F16, {40, 2048});
  a.dynamicScales = T(F32, {40});
  a.assistInfoForCombine = T(I32, {40 * 128});
  a.expertTokenNums = T(I64, {1});
  a.epRecvCounts = T(I32, {9});
  a.tpRecvCounts = T(I32, {1});
  a.expandScales = T(F32, {40});
  return s;
}

// The same configuration seen from MoE rank 5: A = globalBs * min(L, K) = 72 * 2 = 144, localExpertNum 2,
// epRecvCounts >= W * L = 18.
DSetup sharedDispatchMoeRank() {
  DSetup s = sharedDispatch();
  s.ranks.epRankId = 5;
  auto& a = s.a;
  a.expandX = T(F16, {144, 2048});
  a.dynamicScales = T(F32, {144});
  a.assistInfoForCombine = T(I32, {144 * 128});
  a.expertTokenNums = T(I64, {2});
  a.epRecvCounts = T(I32, {18});
  a.expandScales = T(F32, {144});
  return s;
}

// Dynamic quantization: W 16, r 7, tp 1, M 32 (L 2), S 0, K 8, H 4096, Bs 32, globalBs 0 -> 512, maxBs 32,
// A = 512 * min(2, 8) = 1024; x fp16, expandX int8, smooth scales (S + M, H).
DSetup quantDispatch() {
  DSetup s;
  s.ranks = {16, 7, 1, 0};
  auto& a = s.a;
  a.moeExpertNum = 32;
  a.sharedExpertNum = 0;
  a.quantMode = 2;
  a.expertTokenNumsType = 0;
  a.x = T(F16, {32, 4096});
  a.expertIds = T(I32, {32, 8});
  a.scales = T(F32, {32, 4096});
  a.expandX = T(I8, {1024, 4096});
  a.dynamicScales = T(F32, {1024});
  a.assistInfoForCombine = T(I32, {1024 * 128});
  a.expertTokenNums = T(I64, {2});
  a.epRecvCounts = T(I32, {32});
  a.tpRecvCounts = T(I32, {1});
  a.expandScales = T(F32, {1024});
  return s;
}

// Elastic scale-in shapes on a shared rank: W 8, r 0, S 2, Srank 2 (R 1), M 12 (L 2), Bs 8 -> globalBs 64, maxBs 8,
// K 4, H 7168. A = max(maxBs*ceil(W/R), globalBs*min(L,K)) = max(8*8, 64*2) = 128; localExpertNum L = 2;
// epRecvCounts >= max(W, W*L) = 16.
DSetup elasticDispatch() {
  DSetup s;
  s.ranks = {8, 0, 0, 0};
  auto& a = s.a;
  a.moeExpertNum = 12;
  a.sharedExpertNum = 2;
  a.sharedExpertRankNum = 2;
  a.x = T(BF, {8, 7168});
  a.expertIds = T(I32, {8, 4});
  a.elasticInfo = T(I32, {20});
  a.expandX = T(BF, {128, 7168});
  a.dynamicScales = T(F32, {128});
  a.assistInfoForCombine = T(I32, {128 * 128});
  a.expertTokenNums = T(I64, {2});
  a.epRecvCounts = T(I32, {16});
  a.tpRecvCounts = T(I32, {0});
  a.expandScales = T(F32, {128});
  return s;
}

void expectGeometry(const Geometry& g, const Geometry& want) {
  EXPECT_EQ(g.W, want.W);
  EXPECT_EQ(g.r, want.r);
  EXPECT_EQ(g.M, want.M);
  EXPECT_EQ(g.S, want.S);
  EXPECT_EQ(g.Srank, want.Srank);
  EXPECT_EQ(g.R, want.R);
  EXPECT_EQ(g.L, want.L);
  EXPECT_EQ(g.Z, want.Z);
  EXPECT_EQ(g.C, want.C);
  EXPECT_EQ(g.Q, want.Q);
  EXPECT_EQ(g.K, want.K);
  EXPECT_EQ(g.H, want.H);
  EXPECT_EQ(g.Bs, want.Bs);
  EXPECT_EQ(g.globalBs, want.globalBs);
  EXPECT_EQ(g.maxBs, want.maxBs);
  EXPECT_EQ(g.tp, want.tp);
  EXPECT_EQ(g.tpr, want.tpr);
  EXPECT_EQ(g.A, want.A);
  EXPECT_EQ(g.localExpertNum, want.localExpertNum);
  EXPECT_EQ(g.sharedRank, want.sharedRank);
  EXPECT_EQ(g.specials, want.specials);
  EXPECT_EQ(g.elastic, want.elastic);
  EXPECT_EQ(g.twoDimMask, want.twoDimMask);
}

Geometry geom(int64_t W, int64_t r, int64_t M, int64_t S, int64_t Srank, int64_t R, int64_t L, int64_t K, int64_t H,
              int64_t Bs, int64_t globalBs, int64_t maxBs, int64_t tp, int64_t tpr, int64_t A, int64_t localExpertNum) {
  Geometry g;
  g.W = W, g.r = r, g.M = M, g.S = S, g.Srank = Srank, g.R = R, g.L = L, g.K = K, g.H = H, g.Bs = Bs;
  g.globalBs = globalBs, g.maxBs = maxBs, g.tp = tp, g.tpr = tpr, g.A = A, g.localExpertNum = localExpertNum;
  g.sharedRank = r < Srank;
  return g;
}

TEST(ValidateDispatch, SeedBaseline) {
  Geometry g;
  Status st = seedDispatch().run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  Geometry want = geom(8, 3, 8, 0, 0, 0, 1, 3, 7168, 8, 64, 8, 0, 0, 64, 1);
  want.Z = 7, want.C = 8, want.Q = 10, want.specials = true;
  expectGeometry(g, want);
}

TEST(ValidateDispatch, TpBaseline) {
  Geometry g;
  Status st = tpDispatch().run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  Geometry want = geom(8, 2, 8, 0, 0, 0, 1, 8, 4096, 16, 128, 16, 2, 1, 128, 1);
  want.twoDimMask = true;
  expectGeometry(g, want);
}

TEST(ValidateDispatch, SharedBaselines) {
  Geometry g;
  Status st = sharedDispatch().run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  expectGeometry(g, geom(9, 1, 14, 1, 2, 2, 2, 4, 2048, 8, 72, 8, 1, 0, 40, 1));
  st = sharedDispatchMoeRank().run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  expectGeometry(g, geom(9, 5, 14, 1, 2, 2, 2, 4, 2048, 8, 72, 8, 1, 0, 144, 2));
}

TEST(ValidateDispatch, QuantBaseline) {
  Geometry g;
  Status st = quantDispatch().run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  expectGeometry(g, geom(16, 7, 32, 0, 0, 0, 2, 8, 4096, 32, 512, 32, 1, 0, 1024, 2));
}

TEST(ValidateDispatch, ElasticUsesMaxCapacityOnEveryRank) {
  Geometry g;
  Status st = elasticDispatch().run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  Geometry want = geom(8, 0, 12, 2, 2, 1, 2, 4, 7168, 8, 64, 8, 0, 0, 128, 2);
  want.elastic = true;
  expectGeometry(g, want);
  // Without elasticInfo the same shared rank needs only A = maxBs*ceil(W/R) = 64 and localExpertNum 1.
  DSetup s = elasticDispatch();
  s.a.elasticInfo = {};
  s.a.expertTokenNums = T(I64, {1});
  st = s.run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  EXPECT_EQ(g.A, 64);
  EXPECT_EQ(g.localExpertNum, 1);
  // ... and with it, the elastic epRecvCounts minimum max(W, W*L) = 16 applies to the shared rank too.
  s = elasticDispatch();
  s.a.epRecvCounts = T(I32, {15});
  st = s.run();
  EXPECT_EQ(st.code(), kVal);
  EXPECT_TRUE(namesArgument(st, Operator::kDispatchV3, "epRecvCounts"));
}

TEST(ValidateDispatch, SharedExpertNumOneWithoutSharedRanksMeansNone) {
  DSetup s = seedDispatch();
  s.a.sharedExpertNum = 1;
  Geometry g;
  Status st = s.run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  EXPECT_EQ(g.S, 0);
  EXPECT_EQ(g.R, 0);
}

TEST(ValidateDispatch, GlobalBsZeroMeansBsTimesW) {
  DSetup s = seedDispatch();
  s.a.globalBs = 0;
  Geometry g;
  Status st = s.run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  EXPECT_EQ(g.globalBs, 64);
  EXPECT_EQ(g.maxBs, 8);
}

TEST(ValidateDispatch, GlobalBsLargerThanLocalBatchWithoutMask) {
  DSetup s = seedDispatch();  // Bs 4 on this rank, maxBs 8 elsewhere: globalBs 64 > 4*8
  s.a.x = T(BF, {4, 7168});
  s.a.expertIds = T(I32, {4, 3});
  Geometry g;
  Status st = s.run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  EXPECT_EQ(g.Bs, 4);
  EXPECT_EQ(g.maxBs, 8);
  EXPECT_EQ(g.A, 64);
}

TEST(ValidateDispatch, TpRecvCountsLengthFollowsTpWorldSize) {
  DSetup s = seedDispatch();  // tp 0: (0,), and a zero-element tensor may have no data
  s.a.tpRecvCounts = NullData(I32, {0});
  Status st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
  s.ranks.tpWorldSize = 1;  // tp 1: (1,)
  st = s.run();
  EXPECT_EQ(st.code(), kVal);
  EXPECT_TRUE(namesArgument(st, Operator::kDispatchV3, "tpRecvCounts"));
  s.a.tpRecvCounts = T(I32, {1});
  st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
}

TEST(ValidateDispatch, CapacityChecksAreVacuousWithTpZero) {
  // SPEC 6.1 step 9 / 10.11: expandX.dim0 >= tp*A, so tp 0 accepts a smaller expandX (rows are checked at run time).
  DSetup s = seedDispatch();
  s.a.expandX = T(BF, {1, 7168});
  Status st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
  s.ranks.tpWorldSize = 1;
  s.a.tpRecvCounts = T(I32, {1});
  st = s.run();
  EXPECT_EQ(st.code(), kVal);
  EXPECT_TRUE(namesArgument(st, Operator::kDispatchV3, "expandX"));
}

TEST(ValidateDispatch, StridedInputsAccepted) {
  DSetup s = tpDispatch();
  s.a.x = Strided(BF, {16, 4096}, {8192, 1});      // padded rows
  s.a.expertIds = Strided(I32, {16, 8}, {1, 16});  // column-major
  s.a.xActiveMask = Strided(B, {16, 8}, {0, 1});   // one row broadcast over the tokens
  s.a.expertTokenNums = Strided(I64, {1}, {7});    // size-1 dims: any stride is dense
  Status st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
}

TEST(ValidateDispatch, GeometryPointerOptional) {
  Status st = quantDispatch().run(nullptr);
  EXPECT_TRUE(st.ok()) << st.toString();
}

TEST(ValidateDispatch, DispatchV2WithoutElasticAndSpecials) {
  DSetup s = quantDispatch();
  s.op = Operator::kDispatchV2;
  Status st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
}

TEST(ValidateDispatch, FailureLeavesGeometryUntouched) {
  DSetup s = seedDispatch();
  s.a.moeExpertNum = 9;
  Geometry g;
  g.A = -7;
  Status st = s.run(&g);
  EXPECT_EQ(st.code(), kVal);
  EXPECT_EQ(g.A, -7);
}

TEST(ValidateDispatch, HcclBuffSize) {
  // 2*(maxBs*W*L*Align512(Align32(2H)+44) + maxBs*(K+S)*Align512(2H))
  //   = 2*(8*8*1*Align512(14336+44) + 8*3*Align512(14336)) = 2*(64*14848 + 24*14336) = 2588672 bytes -> 3 MB.
  const DSetup s = seedDispatch();
  {
    ScopedEnv env("HCCL_BUFFSIZE", "2");
    Status st = s.run();
    EXPECT_EQ(st.code(), kVal);
    EXPECT_TRUE(namesArgument(st, Operator::kDispatchV3, "HCCL_BUFFSIZE"));
    EXPECT_NE(st.message().find("2588672"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("HCCL_BUFFSIZE >= 3"), std::string::npos) << st.message();
  }
  {
    ScopedEnv env("HCCL_BUFFSIZE", "3");
    Status st = s.run();
    EXPECT_TRUE(st.ok()) << st.toString();
  }
  {
    // fullmesh_v2 packs 480 bytes per 512: 2*(64*ceil(14380/480)*512 + 24*ceil(14336/480)*512) = 2703360.
    DSetup fm = seedDispatch();
    fm.a.commAlg = "fullmesh_v2";
    fm.a.zeroExpertNum = fm.a.copyExpertNum = fm.a.constExpertNum = 0;
    ScopedEnv env("HCCL_BUFFSIZE", "2");
    Status st = fm.run();
    EXPECT_EQ(st.code(), kVal);
    EXPECT_NE(st.message().find("2703360"), std::string::npos) << st.message();
  }
  Geometry g;
  ASSERT_TRUE(s.run(&g).ok());
  EXPECT_EQ(requiredWindowBytes(g, false), 2588672);
  EXPECT_EQ(requiredWindowBytes(g, true), 2703360);
}

struct DCase {
  const char* name;
  DSetup (*base)();
  std::function<void(DSetup&)> mutate;
  StatusCode code;
  const char* arg;
};

std::ostream& operator<<(std::ostream& os, const DCase& c) {
  return os << c.name;
}

const std::vector<DCase>& dispatchCases() {
  static const std::vector<DCase> cases = {
      // op_api and framework null checks
      {"NullX", seedDispatch, [](DSetup& s) { s.a.x = {}; }, kNull, "x"},
      {"NullExpertIds", seedDispatch, [](DSetup& s) { s.a.expertIds = {}; }, kNull, "expertIds"},
      {"NullExpandX", seedDispatch, [](DSetup& s) { s.a.expandX = {}; }, kNull, "expandX"},
      {"NullAssistInfo", seedDispatch, [](DSetup& s) { s.a.assistInfoForCombine = {}; }, kNull,
       "assistInfoForCombine"},
      {"NullExpertTokenNums", seedDispatch, [](DSetup& s) { s.a.expertTokenNums = {}; }, kNull, "expertTokenNums"},
      {"NullTpRecvCountsWithoutTp", seedDispatch, [](DSetup& s) { s.a.tpRecvCounts = {}; }, kNull, "tpRecvCounts"},
      {"NullEpRecvCounts", seedDispatch, [](DSetup& s) { s.a.epRecvCounts = {}; }, kNull, "epRecvCounts"},
      {"NullDynamicScalesQuant", quantDispatch, [](DSetup& s) { s.a.dynamicScales = {}; }, kNull, "dynamicScales"},
      {"NullDynamicScalesNoQuant", seedDispatch, [](DSetup& s) { s.a.dynamicScales = {}; }, kNull, "dynamicScales"},
      {"NullExpandScales", seedDispatch, [](DSetup& s) { s.a.expandScales = {}; }, kNull, "expandScales"},
      {"NullDataX", seedDispatch, [](DSetup& s) { s.a.x = NullData(BF, {8, 7168}); }, kNull, "x"},
      {"NullDataEpRecvCounts", seedDispatch, [](DSetup& s) { s.a.epRecvCounts = NullData(I32, {8}); }, kNull,
       "epRecvCounts"},
      // framework dtypes and formats
      {"DtypeXFp32", seedDispatch, [](DSetup& s) { s.a.x = T(F32, {8, 7168}); }, kArg, "x"},
      {"DtypeExpertIdsInt64", seedDispatch, [](DSetup& s) { s.a.expertIds = T(I64, {8, 3}); }, kArg, "expertIds"},
      {"DtypeScalesFp16", quantDispatch, [](DSetup& s) { s.a.scales = T(F16, {32, 4096}); }, kArg, "scales"},
      {"DtypeMaskInt8", tpDispatch, [](DSetup& s) { s.a.xActiveMask = T(I8, {16, 8}); }, kArg, "xActiveMask"},
      {"DtypeExpertScalesBf16", seedDispatch, [](DSetup& s) { s.a.expertScales = T(BF, {8, 3}); }, kArg,
       "expertScales"},
      {"DtypeElasticInfoInt64", elasticDispatch, [](DSetup& s) { s.a.elasticInfo = T(I64, {20}); }, kArg,
       "elasticInfo"},
      {"DtypeExpandXFp32", seedDispatch, [](DSetup& s) { s.a.expandX = T(F32, {64, 7168}); }, kArg, "expandX"},
      {"DtypeExpandXOtherHalf", seedDispatch, [](DSetup& s) { s.a.expandX = T(F16, {64, 7168}); }, kArg, "expandX"},
      {"DtypeDynamicScalesBf16", seedDispatch, [](DSetup& s) { s.a.dynamicScales = T(BF, {64}); }, kArg,
       "dynamicScales"},
      {"DtypeAssistInfoInt64", seedDispatch, [](DSetup& s) { s.a.assistInfoForCombine = T(I64, {8192}); }, kArg,
       "assistInfoForCombine"},
      {"DtypeExpertTokenNumsInt32", seedDispatch, [](DSetup& s) { s.a.expertTokenNums = T(I32, {1}); }, kArg,
       "expertTokenNums"},
      {"DtypeEpRecvCountsInt64", seedDispatch, [](DSetup& s) { s.a.epRecvCounts = T(I64, {8}); }, kArg,
       "epRecvCounts"},
      {"DtypeTpRecvCountsInt64", tpDispatch, [](DSetup& s) { s.a.tpRecvCounts = T(I64, {2}); }, kArg,
       "tpRecvCounts"},
      {"DtypeExpandScalesBf16", seedDispatch, [](DSetup& s) { s.a.expandScales = T(BF, {64}); }, kArg,
       "expandScales"},
      {"FormatXNz", seedDispatch, [](DSetup& s) { s.a.x = NZ(BF, {8, 7168}); }, kArg, "x"},
      {"FormatExpandXNz", seedDispatch, [](DSetup& s) { s.a.expandX = NZ(BF, {64, 7168}); }, kArg, "expandX"},
      // moedist memory-safety rules
      {"StridedOutputExpandX", seedDispatch, [](DSetup& s) { s.a.expandX = Strided(BF, {64, 7168}, {8192, 1}); },
       kArg, "expandX"},
      {"StridedOutputEpRecvCounts", seedDispatch, [](DSetup& s) { s.a.epRecvCounts = Strided(I32, {8}, {2}); }, kArg,
       "epRecvCounts"},
      {"NegativeStrideX", seedDispatch, [](DSetup& s) { s.a.x = Strided(BF, {8, 7168}, {-7168, 1}); }, kArg, "x"},
      {"NegativeDimX", seedDispatch, [](DSetup& s) { s.a.x = T(BF, {-8, 7168}); }, kArg, "x"},
      {"AbsurdDimExpertIds", seedDispatch, [](DSetup& s) { s.a.expertIds = T(I32, {int64_t{1} << 41, 3}); }, kArg,
       "expertIds"},
      {"AbsurdExtentX", seedDispatch,
       [](DSetup& s) { s.a.x = Strided(BF, {8, 7168}, {int64_t{1} << 46, 1}); }, kArg, "x"},
      // The last element at offset INT64_MAX exactly: the extent (one more) overflows. Once accepted, then read far
      // outside the buffer (issue 12's crash).
      {"ExtentOverflowsMask", tpDispatch,
       [](DSetup& s) { s.a.xActiveMask = Strided(B, {16, 8}, {(INT64_MAX - 7) / 15, 1}); }, kArg, "xActiveMask"},
      {"MisalignedExpertTokenNums", seedDispatch, [](DSetup& s) { s.a.expertTokenNums = Misaligned(I64, {1}); },
       kArg, "expertTokenNums"},
      // tiling step 1: ranks
      {"EpWorldSize1", seedDispatch, [](DSetup& s) { s.ranks.epWorldSize = 1; }, kVal, "epWorldSize"},
      {"EpWorldSize769", seedDispatch, [](DSetup& s) { s.ranks.epWorldSize = 769; }, kVal, "epWorldSize"},
      {"TpWorldSize3", seedDispatch, [](DSetup& s) { s.ranks.tpWorldSize = 3; }, kVal, "tpWorldSize"},
      {"TpWorldSizeNegative", seedDispatch, [](DSetup& s) { s.ranks.tpWorldSize = -1; }, kVal, "tpWorldSize"},
      {"EpRankIdW", seedDispatch, [](DSetup& s) { s.ranks.epRankId = 8; }, kVal, "epRankId"},
      {"EpRankIdNegative", seedDispatch, [](DSetup& s) { s.ranks.epRankId = -1; }, kVal, "epRankId"},
      {"TpRankId2", tpDispatch, [](DSetup& s) { s.ranks.tpRankId = 2; }, kVal, "tpRankId"},
      {"TpRankIdWithoutTp", sharedDispatch, [](DSetup& s) { s.ranks.tpRankId = 1; }, kVal, "tpRankId"},
      // step 2: expert attributes
      {"ExpertShardType1", seedDispatch, [](DSetup& s) { s.a.expertShardType = 1; }, kVal, "expertShardType"},
      {"SharedExpertNum5", seedDispatch, [](DSetup& s) { s.a.sharedExpertNum = 5; }, kVal, "sharedExpertNum"},
      {"SharedExpertNumNegative", seedDispatch, [](DSetup& s) { s.a.sharedExpertNum = -1; }, kVal,
       "sharedExpertNum"},
      {"SharedExpertRankNumW", seedDispatch, [](DSetup& s) { s.a.sharedExpertRankNum = 8; }, kVal,
       "sharedExpertRankNum"},
      {"MoeExpertNum0", seedDispatch, [](DSetup& s) { s.a.moeExpertNum = 0; }, kVal, "moeExpertNum"},
      {"MoeExpertNum1025", seedDispatch, [](DSetup& s) { s.a.moeExpertNum = 1025; }, kVal, "moeExpertNum"},
      {"QuantMode3", seedDispatch, [](DSetup& s) { s.a.quantMode = 3; }, kVal, "quantMode"},
      {"QuantModeNegative", seedDispatch, [](DSetup& s) { s.a.quantMode = -1; }, kVal, "quantMode"},
      {"ExpertTokenNumsType2", seedDispatch, [](DSetup& s) { s.a.expertTokenNumsType = 2; }, kVal,
       "expertTokenNumsType"},
      // step 3: special experts, commAlg
      {"ZeroExpertNumNegative", seedDispatch, [](DSetup& s) { s.a.zeroExpertNum = -1; }, kVal, "zeroExpertNum"},
      {"CopyExpertNumNegative", seedDispatch, [](DSetup& s) { s.a.copyExpertNum = -2; }, kVal, "copyExpertNum"},
      {"ConstExpertNumNegative", seedDispatch, [](DSetup& s) { s.a.constExpertNum = -3; }, kVal, "constExpertNum"},
      {"ExpertTotalOverInt32", seedDispatch, [](DSetup& s) { s.a.constExpertNum = INT32_MAX; }, kVal,
       "moeExpertNum + zeroExpertNum"},
      {"CommAlgUnknown", seedDispatch, [](DSetup& s) { s.a.commAlg = "fullmesh_v3"; }, kVal, "commAlg"},
      // step 4: quantization
      {"QuantMode1", seedDispatch, [](DSetup& s) { s.a.quantMode = 1; }, kVal, "quantMode"},
      {"ScalesWithoutQuant", seedDispatch, [](DSetup& s) { s.a.scales = T(F32, {8, 7168}); }, kVal, "scales"},
      // step 5: ranks of tensors
      {"X3D", seedDispatch, [](DSetup& s) { s.a.x = T(BF, {8, 1, 7168}); }, kVal, "x"},
      {"ExpertIds1D", seedDispatch, [](DSetup& s) { s.a.expertIds = T(I32, {24}); }, kVal, "expertIds"},
      {"Scales1D", quantDispatch, [](DSetup& s) { s.a.scales = T(F32, {32 * 4096}); }, kVal, "scales"},
      {"Mask3D", tpDispatch, [](DSetup& s) { s.a.xActiveMask = T(B, {16, 8, 1}); }, kVal, "xActiveMask"},
      {"MaskDim0", sharedDispatch, [](DSetup& s) { s.a.xActiveMask = T(B, {7}); }, kVal, "xActiveMask"},
      {"Mask2DDim1", tpDispatch, [](DSetup& s) { s.a.xActiveMask = T(B, {16, 7}); }, kVal, "xActiveMask"},
      {"ElasticInfo2D", elasticDispatch, [](DSetup& s) { s.a.elasticInfo = T(I32, {2, 10}); }, kVal, "elasticInfo"},
      {"ExpandX1D", seedDispatch, [](DSetup& s) { s.a.expandX = T(BF, {64 * 7168}); }, kVal, "expandX"},
      {"DynamicScales2DQuant", quantDispatch, [](DSetup& s) { s.a.dynamicScales = T(F32, {1024, 1}); }, kVal,
       "dynamicScales"},
      {"AssistInfo2D", seedDispatch, [](DSetup& s) { s.a.assistInfoForCombine = T(I32, {64, 128}); }, kVal,
       "assistInfoForCombine"},
      {"ExpertTokenNums2D", seedDispatch, [](DSetup& s) { s.a.expertTokenNums = T(I64, {1, 1}); }, kVal,
       "expertTokenNums"},
      {"EpRecvCounts2D", seedDispatch, [](DSetup& s) { s.a.epRecvCounts = T(I32, {8, 1}); }, kVal, "epRecvCounts"},
      {"TpRecvCounts2D", tpDispatch, [](DSetup& s) { s.a.tpRecvCounts = T(I32, {2, 1}); }, kVal, "tpRecvCounts"},
      // step 6: expandX dtype vs quantMode
      {"ExpandXInt8WithoutQuant", seedDispatch, [](DSetup& s) { s.a.expandX = T(I8, {64, 7168}); }, kVal, "expandX"},
      {"ExpandXHalfWithQuant", quantDispatch, [](DSetup& s) { s.a.expandX = T(F16, {1024, 4096}); }, kVal,
       "expandX"},
      // step 8: attribute relations
      {"SharedRanksWithoutSharedExperts", sharedDispatch, [](DSetup& s) { s.a.sharedExpertNum = 0; }, kVal,
       "sharedExpertNum"},
      {"SharedExpertsWithoutSharedRanks", seedDispatch, [](DSetup& s) { s.a.sharedExpertNum = 2; }, kVal,
       "sharedExpertRankNum"},
      {"SharedRanksNotMultipleOfS", sharedDispatch,
       [](DSetup& s) {
         s.a.sharedExpertNum = 2;
         s.a.sharedExpertRankNum = 3;
       },
       kVal, "sharedExpertRankNum"},
      {"FullmeshWithElastic", elasticDispatch, [](DSetup& s) { s.a.commAlg = "fullmesh_v2"; }, kVal, "commAlg"},
      {"FullmeshWithSpecials", seedDispatch, [](DSetup& s) { s.a.commAlg = "fullmesh_v2"; }, kVal, "commAlg"},
      {"FullmeshWithMask", sharedDispatch, [](DSetup& s) { s.a.commAlg = "fullmesh_v2"; }, kVal, "commAlg"},
      {"FullmeshWithTp2", tpDispatch,
       [](DSetup& s) {
         s.a.xActiveMask = {};
         s.a.commAlg = "fullmesh_v2";
       },
       kVal, "commAlg"},
      {"MoeExpertsNotDivisible", seedDispatch, [](DSetup& s) { s.a.moeExpertNum = 9; }, kVal, "moeExpertNum"},
      {"Tp2WithTwoLocalExperts", tpDispatch, [](DSetup& s) { s.a.moeExpertNum = 16; }, kVal, "tpWorldSize"},
      {"Tp2WithElastic", tpDispatch, [](DSetup& s) { s.a.elasticInfo = T(I32, {20}); }, kVal, "elasticInfo"},
      {"Bs0", seedDispatch,
       [](DSetup& s) {
         s.a.x = T(BF, {0, 7168});
         s.a.expertIds = T(I32, {0, 3});
       },
       kVal, "x.dim0"},
      {"Bs513", seedDispatch,
       [](DSetup& s) {
         s.a.x = T(BF, {513, 7168});
         s.a.expertIds = T(I32, {513, 3});
         s.a.globalBs = 0;
       },
       kVal, "x.dim0"},
      {"GlobalBsBelowBsTimesW", seedDispatch, [](DSetup& s) { s.a.globalBs = 56; }, kVal, "globalBs"},
      {"GlobalBsNotMultipleOfW", seedDispatch, [](DSetup& s) { s.a.globalBs = 68; }, kVal, "globalBs"},
      {"GlobalBsNegative", seedDispatch, [](DSetup& s) { s.a.globalBs = -64; }, kVal, "globalBs"},
      {"GlobalBsLargerWithMask", tpDispatch, [](DSetup& s) { s.a.globalBs = 256; }, kVal, "xActiveMask"},
      {"GlobalBsLargerWithFullmesh", quantDispatch,
       [](DSetup& s) {
         s.a.commAlg = "fullmesh_v2";
         s.a.globalBs = 1024;
       },
       kVal, "commAlg"},
      // step 9: shapes
      {"H1023", seedDispatch, [](DSetup& s) { s.a.x = T(BF, {8, 1023}); }, kVal, "x.dim1"},
      {"H8193", seedDispatch, [](DSetup& s) { s.a.x = T(BF, {8, 8193}); }, kVal, "x.dim1"},
      {"ExpertIdsDim0", seedDispatch, [](DSetup& s) { s.a.expertIds = T(I32, {7, 3}); }, kVal, "expertIds.dim0"},
      {"K0", seedDispatch, [](DSetup& s) { s.a.expertIds = T(I32, {8, 0}); }, kVal, "expertIds.dim1"},
      {"K17", seedDispatch, [](DSetup& s) { s.a.expertIds = T(I32, {8, 17}); }, kVal, "expertIds.dim1"},
      {"KAboveExpertCount", sharedDispatch, [](DSetup& s) { s.a.expertIds = T(I32, {8, 15}); }, kVal,
       "expertIds.dim1"},
      {"ScalesRows", quantDispatch, [](DSetup& s) { s.a.scales = T(F32, {33, 4096}); }, kVal, "scales.dim0"},
      {"ScalesCols", quantDispatch, [](DSetup& s) { s.a.scales = T(F32, {32, 4095}); }, kVal, "scales.dim1"},
      {"ElasticInfoLength", elasticDispatch, [](DSetup& s) { s.a.elasticInfo = T(I32, {19}); }, kVal,
       "elasticInfo.dim0"},
      {"ExpandXRowsTp2", tpDispatch, [](DSetup& s) { s.a.expandX = T(BF, {255, 4096}); }, kVal, "expandX.dim0"},
      {"ExpandXRowsTp1", sharedDispatch, [](DSetup& s) { s.a.expandX = T(F16, {39, 2048}); }, kVal, "expandX.dim0"},
      {"ExpandXCols", seedDispatch, [](DSetup& s) { s.a.expandX = T(BF, {64, 7167}); }, kVal, "expandX.dim1"},
      {"DynamicScalesRows", quantDispatch, [](DSetup& s) { s.a.dynamicScales = T(F32, {1023}); }, kVal,
       "dynamicScales.dim0"},
      {"AssistInfoShort", seedDispatch, [](DSetup& s) { s.a.assistInfoForCombine = T(I32, {191}); }, kVal,
       "assistInfoForCombine.dim0"},
      {"ExpertTokenNumsMoeRank", sharedDispatchMoeRank, [](DSetup& s) { s.a.expertTokenNums = T(I64, {1}); }, kVal,
       "expertTokenNums.dim0"},
      {"ExpertTokenNumsSharedRank", sharedDispatch, [](DSetup& s) { s.a.expertTokenNums = T(I64, {2}); }, kVal,
       "expertTokenNums.dim0"},
      {"EpRecvCountsShort", sharedDispatchMoeRank, [](DSetup& s) { s.a.epRecvCounts = T(I32, {17}); }, kVal,
       "epRecvCounts.dim0"},
      {"EpRecvCountsShortTp2", tpDispatch, [](DSetup& s) { s.a.epRecvCounts = T(I32, {15}); }, kVal,
       "epRecvCounts.dim0"},
      {"TpRecvCountsTp0", seedDispatch, [](DSetup& s) { s.a.tpRecvCounts = T(I32, {1}); }, kVal,
       "tpRecvCounts.dim0"},
      {"TpRecvCountsTp2", tpDispatch, [](DSetup& s) { s.a.tpRecvCounts = T(I32, {1}); }, kVal, "tpRecvCounts.dim0"},
      {"HugeGlobalBsSaturates", seedDispatch, [](DSetup& s) { s.a.globalBs = int64_t{8} << 58; }, kVal,
       "assistInfoForCombine.dim0"},
      // DispatchV2 has neither elastic scale-in nor special experts
      {"V2WithElastic", elasticDispatch, [](DSetup& s) { s.op = Operator::kDispatchV2; }, kVal, "elasticInfo"},
      {"V2WithZeroExperts", seedDispatch, [](DSetup& s) { s.op = Operator::kDispatchV2; }, kVal, "zeroExpertNum"},
      {"V2WithConstExperts", quantDispatch,
       [](DSetup& s) {
         s.op = Operator::kDispatchV2;
         s.a.constExpertNum = 1;
       },
       kVal, "constExpertNum"},
  };
  return cases;
}

class DispatchInvalid : public ::testing::TestWithParam<DCase> {};

TEST_P(DispatchInvalid, Rejected) {
  const DCase& c = GetParam();
  DSetup s = c.base();
  ASSERT_TRUE(s.run().ok()) << "baseline must be valid: " << s.run().toString();
  c.mutate(s);
  Geometry g;
  g.A = -1;
  Status st = s.run(&g);
  EXPECT_EQ(st.code(), c.code) << st.toString();
  EXPECT_TRUE(namesArgument(st, s.op, c.arg));
  EXPECT_EQ(g.A, -1) << "geometry written on failure";
}

INSTANTIATE_TEST_SUITE_P(Cases, DispatchInvalid, ::testing::ValuesIn(dispatchCases()),
                         [](const ::testing::TestParamInfo<DCase>& p) { return std::string(p.param.name); });

// ------------------------------------------------------------------------------------------------------------
// Combine baselines

struct CSetup {
  Operator op = Operator::kCombineAddRmsNormV2;
  RankAttrs ranks;
  CombineArgs a;
  Status run(Geometry* g = nullptr) const {
    CombineCall c;
    c.op = op;
    c.ranks = ranks;
    c.args = &a;
    return validateCombine(c, g);
  }
};

void setNormOutputs(CombineArgs& a, int64_t Bs, int64_t H) {
  a.residualX = T(BF, {Bs, 1, H});
  a.gamma = T(BF, {H});
  a.yOut = T(BF, {Bs, 1, H});
  a.rstdOut = T(F32, {Bs, 1, 1});
  a.xOut = T(BF, {Bs, 1, H});
}

// The seed example: W 8, r 3, tp 1 (tpSendCounts (1,) as in the document), Bs 8, H 7168, K 3, M 8, Z/C/Q 7/8/10,
// globalBs 64. L 1, A = 64 * min(1, 3) = 64, epSendCounts >= W*L*tp = 8, assistInfo >= 128*A.
CSetup seedCombine() {
  CSetup s;
  s.ranks = {8, 3, 1, 0};
  auto& a = s.a;
  a.moeExpertNum = 8;
  a.sharedExpertNum = 0;
  a.globalBs = 64;
  a.zeroExpertNum = 7;
  a.copyExpertNum = 8;
  a.constExpertNum = 10;
  a.expandX = T(BF, {64, 7168});
  a.expertIds = T(I32, {8, 3});
  a.assistInfoForCombine = T(I32, {64 * 128});
  a.epSendCounts = T(I32, {8});
  a.expertScales = T(F32, {8, 3});
  a.tpSendCounts = T(I32, {1});
  a.oriX = T(BF, {8, 7168});
  a.constExpertAlpha1 = T(BF, {10});
  a.constExpertAlpha2 = T(BF, {10});
  a.constExpertV = T(BF, {10, 7168});
  setNormOutputs(a, 8, 7168);
  return s;
}

// TP pair: W 8, r 2, tp 2, tpr 0, M 8 (L 1), S 0 (default 1 adjusted), Bs 16, H 4096, K 8, globalBs 0 -> 128,
// A 128; expandX 2A rows, epSendCounts W*L*2, 2-D mask, sharedExpertX (Bs, H).
CSetup tpCombine() {
  CSetup s;
  s.ranks = {8, 2, 2, 0};
  auto& a = s.a;
  a.moeExpertNum = 8;
  a.expandX = T(BF, {256, 4096});
  a.expertIds = T(I32, {16, 8});
  a.assistInfoForCombine = T(I32, {128 * 128});
  a.epSendCounts = T(I32, {16});
  a.expertScales = T(F32, {16, 8});
  a.tpSendCounts = T(I32, {2});
  a.xActiveMask = T(B, {16, 8});
  a.sharedExpertX = T(BF, {16, 4096});
  setNormOutputs(a, 16, 4096);
  return s;
}

// Shared experts, shared rank 0: W 9, Srank 2, S 1 (R 2), M 14 (L 2), Bs 8 -> globalBs 72, maxBs 8, K 4, H 2048,
// tp 0 (tpSendCounts (0,), epSendCounts check vacuous), 1-D mask, int8 transport. A = 8 * ceil(9/2) = 40.
CSetup sharedCombine() {
  CSetup s;
  s.ranks = {9, 0, 0, 0};
  auto& a = s.a;
  a.moeExpertNum = 14;
  a.sharedExpertNum = 1;
  a.sharedExpertRankNum = 2;
  a.commQuantMode = 2;
  a.expandX = T(BF, {40, 2048});
  a.expertIds = T(I32, {8, 4});
  a.assistInfoForCombine = T(I32, {40 * 128});
  a.epSendCounts = T(I32, {9});
  a.expertScales = T(F32, {8, 4});
  a.tpSendCounts = T(I32, {0});
  a.xActiveMask = T(B, {8});
  setNormOutputs(a, 8, 2048);
  return s;
}

// Elastic shapes on MoE rank 5: W 8, S 2, Srank 2 (R 1), M 12 (L 2), Bs 8 -> 64, K 4, H 7168, tp 1.
// A = max(8*8, 64*2) = 128, epSendCounts >= max(W, W*L) * tp = 16.
CSetup elasticCombine() {
  CSetup s;
  s.ranks = {8, 5, 1, 0};
  auto& a = s.a;
  a.moeExpertNum = 12;
  a.sharedExpertNum = 2;
  a.sharedExpertRankNum = 2;
  a.expandX = T(BF, {128, 7168});
  a.expertIds = T(I32, {8, 4});
  a.assistInfoForCombine = T(I32, {128 * 128});
  a.epSendCounts = T(I32, {16});
  a.expertScales = T(F32, {8, 4});
  a.tpSendCounts = T(I32, {1});
  a.elasticInfo = T(I32, {20});
  setNormOutputs(a, 8, 7168);
  return s;
}

// CombineV3 in fp16: W 8, r 3, tp 0, M 16 (L 2), Bs 8 -> 64, H 5120, K 4, A = 64 * 2 = 128; xOut (Bs, H).
CSetup v3Combine() {
  CSetup s;
  s.op = Operator::kCombineV3;
  s.ranks = {8, 3, 0, 0};
  auto& a = s.a;
  a.moeExpertNum = 16;
  a.expandX = T(F16, {128, 5120});
  a.expertIds = T(I32, {8, 4});
  a.assistInfoForCombine = T(I32, {128 * 128});
  a.epSendCounts = T(I32, {16});
  a.expertScales = T(F32, {8, 4});
  a.tpSendCounts = T(I32, {0});
  a.xOut = T(F16, {8, 5120});
  return s;
}

TEST(ValidateCombine, SeedBaseline) {
  Geometry g;
  Status st = seedCombine().run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  Geometry want = geom(8, 3, 8, 0, 0, 0, 1, 3, 7168, 8, 64, 8, 1, 0, 64, 1);
  want.Z = 7, want.C = 8, want.Q = 10, want.specials = true;
  expectGeometry(g, want);
}

TEST(ValidateCombine, TpBaseline) {
  Geometry g;
  Status st = tpCombine().run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  Geometry want = geom(8, 2, 8, 0, 0, 0, 1, 8, 4096, 16, 128, 16, 2, 0, 128, 1);
  want.twoDimMask = true;
  expectGeometry(g, want);
}

TEST(ValidateCombine, SharedBaseline) {
  Geometry g;
  Status st = sharedCombine().run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  expectGeometry(g, geom(9, 0, 14, 1, 2, 2, 2, 4, 2048, 8, 72, 8, 0, 0, 40, 1));
}

TEST(ValidateCombine, ElasticBaseline) {
  Geometry g;
  Status st = elasticCombine().run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  Geometry want = geom(8, 5, 12, 2, 2, 1, 2, 4, 7168, 8, 64, 8, 1, 0, 128, 2);
  want.elastic = true;
  expectGeometry(g, want);
  // The same capacity on a shared rank (r 1): elastic A = max(maxBs*ceil(W/R), globalBs*min(L,K)).
  CSetup s = elasticCombine();
  s.ranks.epRankId = 1;
  st = s.run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  EXPECT_TRUE(g.sharedRank);
  EXPECT_EQ(g.A, 128);
  EXPECT_EQ(g.localExpertNum, 2);
}

TEST(ValidateCombine, V3Baseline) {
  Geometry g;
  Status st = v3Combine().run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  expectGeometry(g, geom(8, 3, 16, 0, 0, 0, 2, 4, 5120, 8, 64, 8, 0, 0, 128, 2));
  CSetup s = v3Combine();  // bf16 works too
  s.a.expandX = T(BF, {128, 5120});
  s.a.xOut = T(BF, {8, 5120});
  st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
  s.op = Operator::kCombineV2;
  st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
}

TEST(ValidateCombine, AddRmsNormV1Baseline) {
  CSetup s = tpCombine();
  s.op = Operator::kCombineAddRmsNorm;
  Status st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
}

TEST(ValidateCombine, TpSendCountsLengthFollowsTpWorldSize) {
  CSetup s = seedCombine();  // tp 1 with (1,) as in the document's example
  ASSERT_TRUE(s.run().ok());
  s.ranks.tpWorldSize = 0;  // tp 0: (0,), possibly without data
  s.a.tpSendCounts = NullData(I32, {0});
  Status st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
  s.a.tpSendCounts = T(I32, {1});
  st = s.run();
  EXPECT_EQ(st.code(), kVal);
  EXPECT_TRUE(namesArgument(st, Operator::kCombineAddRmsNormV2, "tpSendCounts"));
}

TEST(ValidateCombine, SharedExpertNumOneWithoutSharedRanksMeansNone) {
  CSetup s = seedCombine();
  s.a.sharedExpertNum = 1;
  Geometry g;
  Status st = s.run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  EXPECT_EQ(g.S, 0);
}

TEST(ValidateCombine, GlobalBsZero) {
  CSetup s = seedCombine();
  s.a.globalBs = 0;
  Geometry g;
  Status st = s.run(&g);
  ASSERT_TRUE(st.ok()) << st.toString();
  EXPECT_EQ(g.globalBs, 64);
  EXPECT_EQ(g.A, 64);
}

TEST(ValidateCombine, SharedExpertXThreeDims) {
  CSetup s = tpCombine();
  s.a.sharedExpertX = T(BF, {4, 4, 4096});  // d0*d1 == Bs
  Status st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
}

TEST(ValidateCombine, StridedInputsAccepted) {
  CSetup s = seedCombine();
  s.a.expandX = Strided(BF, {64, 7168}, {7200, 1});
  s.a.expertIds = Strided(I32, {8, 3}, {1, 8});
  s.a.expertScales = Strided(F32, {8, 3}, {4, 1});
  s.a.residualX = Strided(BF, {8, 1, 7168}, {8000, 1, 1});
  s.a.gamma = Strided(BF, {7168}, {0});              // broadcast
  s.a.rstdOut = Strided(F32, {8, 1, 1}, {1, 5, 9});  // size-1 dims: any stride is dense
  Status st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
}

TEST(ValidateCombine, CapacityChecksAreVacuousWithTpZero) {
  CSetup s = sharedCombine();  // tp 0: expandX.dim0 >= 0 and epSendCounts.dim0 >= 0 (SPEC 6.2 step 7)
  s.a.expandX = T(BF, {1, 2048});
  s.a.epSendCounts = T(I32, {1});
  Status st = s.run();
  EXPECT_TRUE(st.ok()) << st.toString();
}

TEST(ValidateCombine, HcclBuffSize) {
  // The seed example needs 2588672 bytes (see the dispatch test): HCCL_BUFFSIZE 3 fits, 2 does not.
  const CSetup s = seedCombine();
  {
    ScopedEnv env("HCCL_BUFFSIZE", "2");
    Status st = s.run();
    EXPECT_EQ(st.code(), kVal);
    EXPECT_TRUE(namesArgument(st, Operator::kCombineAddRmsNormV2, "HCCL_BUFFSIZE"));
    EXPECT_NE(st.message().find("2588672"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("HCCL_BUFFSIZE >= 3"), std::string::npos) << st.message();
  }
  {
    ScopedEnv env("HCCL_BUFFSIZE", "3");
    Status st = s.run();
    EXPECT_TRUE(st.ok()) << st.toString();
  }
  {
    // Shared rank: L = M/(W-Srank) is used on every rank, and S counts: 2*(8*9*2*4608 + 8*5*4096) = 1654784.
    ScopedEnv env("HCCL_BUFFSIZE", "1");
    Status st = sharedCombine().run();
    EXPECT_EQ(st.code(), kVal);
    EXPECT_NE(st.message().find("1654784"), std::string::npos) << st.message();
  }
}

struct CCase {
  const char* name;
  CSetup (*base)();
  std::function<void(CSetup&)> mutate;
  StatusCode code;
  const char* arg;
};

std::ostream& operator<<(std::ostream& os, const CCase& c) {
  return os << c.name;
}

const std::vector<CCase>& combineCases() {
  static const std::vector<CCase> cases = {
      // op_api null checks, then the framework's required tensors
      {"NullExpandX", seedCombine, [](CSetup& s) { s.a.expandX = {}; }, kNull, "expandX"},
      {"NullExpertIds", seedCombine, [](CSetup& s) { s.a.expertIds = {}; }, kNull, "expertIds"},
      {"NullAssistInfo", seedCombine, [](CSetup& s) { s.a.assistInfoForCombine = {}; }, kNull,
       "assistInfoForCombine"},
      {"NullEpSendCounts", seedCombine, [](CSetup& s) { s.a.epSendCounts = {}; }, kNull, "epSendCounts"},
      {"NullExpertScales", seedCombine, [](CSetup& s) { s.a.expertScales = {}; }, kNull, "expertScales"},
      {"NullXOut", seedCombine, [](CSetup& s) { s.a.xOut = {}; }, kNull, "xOut"},
      {"NullResidualX", seedCombine, [](CSetup& s) { s.a.residualX = {}; }, kNull, "residualX"},
      {"NullGamma", seedCombine, [](CSetup& s) { s.a.gamma = {}; }, kNull, "gamma"},
      {"NullYOut", seedCombine, [](CSetup& s) { s.a.yOut = {}; }, kNull, "yOut"},
      {"NullRstdOut", seedCombine, [](CSetup& s) { s.a.rstdOut = {}; }, kNull, "rstdOut"},
      {"NullDataExpertIds", seedCombine, [](CSetup& s) { s.a.expertIds = NullData(I32, {8, 3}); }, kNull,
       "expertIds"},
      {"NullDataXOut", seedCombine, [](CSetup& s) { s.a.xOut = NullData(BF, {8, 1, 7168}); }, kNull, "xOut"},
      // framework dtypes and formats
      {"DtypeExpandXFp16", seedCombine, [](CSetup& s) { s.a.expandX = T(F16, {64, 7168}); }, kArg, "expandX"},
      {"DtypeExpandXInt32", seedCombine, [](CSetup& s) { s.a.expandX = T(I32, {64, 7168}); }, kArg, "expandX"},
      {"DtypeExpertIdsInt64", seedCombine, [](CSetup& s) { s.a.expertIds = T(I64, {8, 3}); }, kArg, "expertIds"},
      {"DtypeAssistInfoFp32", seedCombine, [](CSetup& s) { s.a.assistInfoForCombine = T(F32, {8192}); }, kArg,
       "assistInfoForCombine"},
      {"DtypeEpSendCountsInt64", seedCombine, [](CSetup& s) { s.a.epSendCounts = T(I64, {8}); }, kArg,
       "epSendCounts"},
      {"DtypeExpertScalesBf16", seedCombine, [](CSetup& s) { s.a.expertScales = T(BF, {8, 3}); }, kArg,
       "expertScales"},
      {"DtypeResidualXFp16", seedCombine, [](CSetup& s) { s.a.residualX = T(F16, {8, 1, 7168}); }, kArg,
       "residualX"},
      {"DtypeGammaFp32", seedCombine, [](CSetup& s) { s.a.gamma = T(F32, {7168}); }, kArg, "gamma"},
      {"DtypeTpSendCountsInt64", seedCombine, [](CSetup& s) { s.a.tpSendCounts = T(I64, {1}); }, kArg,
       "tpSendCounts"},
      {"DtypeMaskInt32", tpCombine, [](CSetup& s) { s.a.xActiveMask = T(I32, {16, 8}); }, kArg, "xActiveMask"},
      {"DtypeSharedExpertXFp16", tpCombine, [](CSetup& s) { s.a.sharedExpertX = T(F16, {16, 4096}); }, kArg,
       "sharedExpertX"},
      {"DtypeElasticInfoInt64", elasticCombine, [](CSetup& s) { s.a.elasticInfo = T(I64, {20}); }, kArg,
       "elasticInfo"},
      {"DtypeOriXFp16", seedCombine, [](CSetup& s) { s.a.oriX = T(F16, {8, 7168}); }, kArg, "oriX"},
      {"DtypeAlpha1Fp32", seedCombine, [](CSetup& s) { s.a.constExpertAlpha1 = T(F32, {10}); }, kArg,
       "constExpertAlpha1"},
      {"DtypeAlpha2Fp32", seedCombine, [](CSetup& s) { s.a.constExpertAlpha2 = T(F32, {10}); }, kArg,
       "constExpertAlpha2"},
      {"DtypeConstExpertVFp16", seedCombine, [](CSetup& s) { s.a.constExpertV = T(F16, {10, 7168}); }, kArg,
       "constExpertV"},
      {"DtypeYOutFp32", seedCombine, [](CSetup& s) { s.a.yOut = T(F32, {8, 1, 7168}); }, kArg, "yOut"},
      {"DtypeRstdOutBf16", seedCombine, [](CSetup& s) { s.a.rstdOut = T(BF, {8, 1, 1}); }, kArg, "rstdOut"},
      {"DtypeXOutFp16", seedCombine, [](CSetup& s) { s.a.xOut = T(F16, {8, 1, 7168}); }, kArg, "xOut"},
      {"DtypeV3XOutOtherHalf", v3Combine, [](CSetup& s) { s.a.xOut = T(BF, {8, 5120}); }, kArg, "xOut"},
      {"FormatGammaNz", seedCombine, [](CSetup& s) { s.a.gamma = NZ(BF, {7168}); }, kArg, "gamma"},
      {"FormatExpandXNz", seedCombine, [](CSetup& s) { s.a.expandX = NZ(BF, {64, 7168}); }, kArg, "expandX"},
      // moedist memory-safety rules
      {"StridedOutputXOut", seedCombine, [](CSetup& s) { s.a.xOut = Strided(BF, {8, 1, 7168}, {8000, 7168, 1}); },
       kArg, "xOut"},
      {"StridedOutputYOut", seedCombine, [](CSetup& s) { s.a.yOut = Strided(BF, {8, 1, 7168}, {7168, 7168, 2}); },
       kArg, "yOut"},
      {"NegativeStrideResidualX", seedCombine,
       [](CSetup& s) { s.a.residualX = Strided(BF, {8, 1, 7168}, {7168, 7168, -1}); }, kArg, "residualX"},
      {"AbsurdDimExpandX", seedCombine, [](CSetup& s) { s.a.expandX = T(BF, {int64_t{1} << 41, 7168}); }, kArg,
       "expandX"},
      {"MisalignedExpertScales", seedCombine, [](CSetup& s) { s.a.expertScales = Misaligned(F32, {8, 3}); }, kArg,
       "expertScales"},
      // tiling step 2: attributes
      {"ZeroExpertNumMinus1", seedCombine, [](CSetup& s) { s.a.zeroExpertNum = -1; }, kVal, "zeroExpertNum"},
      {"CopyExpertNumMinus5", seedCombine, [](CSetup& s) { s.a.copyExpertNum = -5; }, kVal, "copyExpertNum"},
      {"ConstExpertNumMinus2", seedCombine, [](CSetup& s) { s.a.constExpertNum = -2; }, kVal, "constExpertNum"},
      {"ExpertTotalOverInt32", seedCombine, [](CSetup& s) { s.a.zeroExpertNum = INT32_MAX; }, kVal,
       "moeExpertNum + zeroExpertNum"},
      {"EpWorldSize1", seedCombine, [](CSetup& s) { s.ranks.epWorldSize = 1; }, kVal, "epWorldSize"},
      {"EpWorldSize769", seedCombine, [](CSetup& s) { s.ranks.epWorldSize = 769; }, kVal, "epWorldSize"},
      {"TpWorldSize3", seedCombine, [](CSetup& s) { s.ranks.tpWorldSize = 3; }, kVal, "tpWorldSize"},
      {"EpRankIdW", seedCombine, [](CSetup& s) { s.ranks.epRankId = 8; }, kVal, "epRankId"},
      {"EpRankIdNegative", seedCombine, [](CSetup& s) { s.ranks.epRankId = -1; }, kVal, "epRankId"},
      {"TpRankId2", tpCombine, [](CSetup& s) { s.ranks.tpRankId = 2; }, kVal, "tpRankId"},
      {"TpRankIdWithTp1", seedCombine, [](CSetup& s) { s.ranks.tpRankId = 1; }, kVal, "tpRankId"},
      {"CommQuantWithTp2", tpCombine, [](CSetup& s) { s.a.commQuantMode = 2; }, kVal, "commQuantMode"},
      {"ExpertShardType1", seedCombine, [](CSetup& s) { s.a.expertShardType = 1; }, kVal, "expertShardType"},
      {"SharedExpertNum5", seedCombine, [](CSetup& s) { s.a.sharedExpertNum = 5; }, kVal, "sharedExpertNum"},
      {"SharedExpertRankNumW", seedCombine, [](CSetup& s) { s.a.sharedExpertRankNum = 8; }, kVal,
       "sharedExpertRankNum"},
      {"MoeExpertNum0", seedCombine, [](CSetup& s) { s.a.moeExpertNum = 0; }, kVal, "moeExpertNum"},
      {"MoeExpertNum1025", seedCombine, [](CSetup& s) { s.a.moeExpertNum = 1025; }, kVal, "moeExpertNum"},
      {"CommQuantMode1", seedCombine, [](CSetup& s) { s.a.commQuantMode = 1; }, kVal, "commQuantMode"},
      {"CommQuantMode3", sharedCombine, [](CSetup& s) { s.a.commQuantMode = 3; }, kVal, "commQuantMode"},
      {"CommQuantFp16", v3Combine, [](CSetup& s) { s.a.commQuantMode = 2; }, kVal, "commQuantMode"},
      // step 3: ranks of tensors, reserved tensors
      {"ExpandX3D", seedCombine, [](CSetup& s) { s.a.expandX = T(BF, {64, 1, 7168}); }, kVal, "expandX"},
      {"ExpertIds1D", seedCombine, [](CSetup& s) { s.a.expertIds = T(I32, {24}); }, kVal, "expertIds"},
      {"AssistInfo2D", seedCombine, [](CSetup& s) { s.a.assistInfoForCombine = T(I32, {64, 128}); }, kVal,
       "assistInfoForCombine"},
      {"EpSendCounts2D", seedCombine, [](CSetup& s) { s.a.epSendCounts = T(I32, {8, 1}); }, kVal, "epSendCounts"},
      {"ExpertScales1D", seedCombine, [](CSetup& s) { s.a.expertScales = T(F32, {24}); }, kVal, "expertScales"},
      {"ResidualX2D", seedCombine, [](CSetup& s) { s.a.residualX = T(BF, {8, 7168}); }, kVal, "residualX"},
      {"Gamma2D", seedCombine, [](CSetup& s) { s.a.gamma = T(BF, {1, 7168}); }, kVal, "gamma"},
      {"OriX1D", seedCombine, [](CSetup& s) { s.a.oriX = T(BF, {8 * 7168}); }, kVal, "oriX"},
      {"Alpha1TwoD", seedCombine, [](CSetup& s) { s.a.constExpertAlpha1 = T(BF, {10, 1}); }, kVal,
       "constExpertAlpha1"},
      {"ConstExpertV1D", seedCombine, [](CSetup& s) { s.a.constExpertV = T(BF, {10 * 7168}); }, kVal,
       "constExpertV"},
      {"NullTpSendCounts", seedCombine, [](CSetup& s) { s.a.tpSendCounts = {}; }, kVal, "tpSendCounts"},
      {"TpSendCounts2D", tpCombine, [](CSetup& s) { s.a.tpSendCounts = T(I32, {2, 1}); }, kVal, "tpSendCounts"},
      {"Mask3D", tpCombine, [](CSetup& s) { s.a.xActiveMask = T(B, {16, 8, 1}); }, kVal, "xActiveMask"},
      {"ElasticInfo2D", elasticCombine, [](CSetup& s) { s.a.elasticInfo = T(I32, {20, 1}); }, kVal, "elasticInfo"},
      {"ActivationScaleGiven", seedCombine, [](CSetup& s) { s.a.activationScale = T(F32, {8}); }, kVal,
       "activationScale"},
      {"WeightScaleGiven", seedCombine, [](CSetup& s) { s.a.weightScale = T(F32, {8}); }, kVal, "weightScale"},
      {"GroupListGiven", seedCombine, [](CSetup& s) { s.a.groupList = T(I64, {1}); }, kVal, "groupList"},
      {"SharedExpertXWithSharedRanks", sharedCombine, [](CSetup& s) { s.a.sharedExpertX = T(BF, {8, 2048}); }, kVal,
       "sharedExpertX"},
      {"SharedExpertX1D", tpCombine, [](CSetup& s) { s.a.sharedExpertX = T(BF, {16 * 4096}); }, kVal,
       "sharedExpertX"},
      {"YOut2D", seedCombine, [](CSetup& s) { s.a.yOut = T(BF, {8, 7168}); }, kVal, "yOut"},
      {"RstdOut2D", seedCombine, [](CSetup& s) { s.a.rstdOut = T(F32, {8, 1}); }, kVal, "rstdOut"},
      {"XOut2D", seedCombine, [](CSetup& s) { s.a.xOut = T(BF, {8, 7168}); }, kVal, "xOut"},
      {"V3XOut3D", v3Combine, [](CSetup& s) { s.a.xOut = T(F16, {8, 1, 5120}); }, kVal, "xOut"},
      // step 6: attribute relations
      {"SharedRanksWithoutSharedExperts", sharedCombine, [](CSetup& s) { s.a.sharedExpertNum = 0; }, kVal,
       "sharedExpertNum"},
      {"SharedExpertsWithoutSharedRanks", seedCombine, [](CSetup& s) { s.a.sharedExpertNum = 3; }, kVal,
       "sharedExpertRankNum"},
      {"SharedRanksNotMultipleOfS", elasticCombine, [](CSetup& s) { s.a.sharedExpertRankNum = 3; }, kVal,
       "sharedExpertRankNum"},
      {"MoeExpertsNotDivisible", sharedCombine, [](CSetup& s) { s.a.moeExpertNum = 15; }, kVal, "moeExpertNum"},
      {"Tp2WithTwoLocalExperts", tpCombine, [](CSetup& s) { s.a.moeExpertNum = 16; }, kVal, "tpWorldSize"},
      {"Tp2WithElastic", tpCombine, [](CSetup& s) { s.a.elasticInfo = T(I32, {20}); }, kVal, "elasticInfo"},
      {"Bs0", seedCombine,
       [](CSetup& s) {
         s.a.expertIds = T(I32, {0, 3});
         s.a.globalBs = 0;
       },
       kVal, "expertIds.dim0"},
      {"Bs513", v3Combine, [](CSetup& s) { s.a.expertIds = T(I32, {513, 4}); }, kVal, "expertIds.dim0"},
      {"GlobalBsBelowBsTimesW", seedCombine, [](CSetup& s) { s.a.globalBs = 32; }, kVal, "globalBs"},
      {"GlobalBsNotMultipleOfW", seedCombine, [](CSetup& s) { s.a.globalBs = 65; }, kVal, "globalBs"},
      {"GlobalBsLargerWithMask", sharedCombine, [](CSetup& s) { s.a.globalBs = 81; }, kVal, "xActiveMask"},
      {"CopyExpertsWithoutOriX", seedCombine, [](CSetup& s) { s.a.oriX = {}; }, kVal, "oriX"},
      {"ConstExpertsWithoutAlpha2", seedCombine,
       [](CSetup& s) {
         s.a.copyExpertNum = 0;
         s.a.constExpertAlpha2 = {};
       },
       kVal, "constExpertAlpha2"},
      {"ConstExpertsWithoutV", seedCombine, [](CSetup& s) { s.a.constExpertV = {}; }, kVal, "constExpertV"},
      // step 7: shapes
      {"K0", seedCombine,
       [](CSetup& s) {
         s.a.expertIds = T(I32, {8, 0});
         s.a.expertScales = T(F32, {8, 0});
       },
       kVal, "expertIds.dim1"},
      {"K17", seedCombine, [](CSetup& s) { s.a.expertIds = T(I32, {8, 17}); }, kVal, "expertIds.dim1"},
      {"KAboveExpertCount", tpCombine,
       [](CSetup& s) {
         s.a.expertIds = T(I32, {16, 9});
         s.a.xActiveMask = {};
       },
       kVal, "expertIds.dim1"},
      {"ElasticInfoLength", elasticCombine, [](CSetup& s) { s.a.elasticInfo = T(I32, {21}); }, kVal,
       "elasticInfo.dim0"},
      {"ExpandXRowsTp1", seedCombine, [](CSetup& s) { s.a.expandX = T(BF, {63, 7168}); }, kVal, "expandX.dim0"},
      {"ExpandXRowsTp2", tpCombine, [](CSetup& s) { s.a.expandX = T(BF, {255, 4096}); }, kVal, "expandX.dim0"},
      {"ElasticExpandXRows", elasticCombine, [](CSetup& s) { s.a.expandX = T(BF, {127, 7168}); }, kVal,
       "expandX.dim0"},
      {"H1023", seedCombine, [](CSetup& s) { s.a.expandX = T(BF, {64, 1023}); }, kVal, "expandX.dim1"},
      {"H8200", v3Combine, [](CSetup& s) { s.a.expandX = T(F16, {128, 8200}); }, kVal, "expandX.dim1"},
      {"AssistInfoShort", seedCombine, [](CSetup& s) { s.a.assistInfoForCombine = T(I32, {64 * 128 - 1}); }, kVal,
       "assistInfoForCombine.dim0"},
      {"EpSendCountsShortTp2", tpCombine, [](CSetup& s) { s.a.epSendCounts = T(I32, {15}); }, kVal,
       "epSendCounts.dim0"},
      {"EpSendCountsShortElastic", elasticCombine, [](CSetup& s) { s.a.epSendCounts = T(I32, {15}); }, kVal,
       "epSendCounts.dim0"},
      {"TpSendCountsLength", seedCombine, [](CSetup& s) { s.a.tpSendCounts = T(I32, {2}); }, kVal,
       "tpSendCounts.dim0"},
      {"ExpertScalesRows", seedCombine, [](CSetup& s) { s.a.expertScales = T(F32, {7, 3}); }, kVal,
       "expertScales.dim0"},
      {"ExpertScalesCols", seedCombine, [](CSetup& s) { s.a.expertScales = T(F32, {8, 4}); }, kVal,
       "expertScales.dim1"},
      {"ResidualXMiddle", seedCombine, [](CSetup& s) { s.a.residualX = T(BF, {8, 2, 7168}); }, kVal,
       "residualX.dim1"},
      {"GammaLength", seedCombine, [](CSetup& s) { s.a.gamma = T(BF, {7169}); }, kVal, "gamma.dim0"},
      {"MaskDim0", sharedCombine, [](CSetup& s) { s.a.xActiveMask = T(B, {9}); }, kVal, "xActiveMask.dim0"},
      {"MaskDim1", tpCombine, [](CSetup& s) { s.a.xActiveMask = T(B, {16, 9}); }, kVal, "xActiveMask.dim1"},
      {"SharedExpertXRows", tpCombine, [](CSetup& s) { s.a.sharedExpertX = T(BF, {15, 4096}); }, kVal,
       "sharedExpertX.dim0"},
      {"SharedExpertX3DProduct", tpCombine, [](CSetup& s) { s.a.sharedExpertX = T(BF, {3, 5, 4096}); }, kVal,
       "sharedExpertX"},
      {"SharedExpertX3DHidden", tpCombine, [](CSetup& s) { s.a.sharedExpertX = T(BF, {4, 4, 4095}); }, kVal,
       "sharedExpertX.dim2"},
      {"YOutShape", seedCombine, [](CSetup& s) { s.a.yOut = T(BF, {8, 1, 7167}); }, kVal, "yOut.dim2"},
      {"RstdOutShape", seedCombine, [](CSetup& s) { s.a.rstdOut = T(F32, {8, 1, 2}); }, kVal, "rstdOut.dim2"},
      {"XOutShape", seedCombine, [](CSetup& s) { s.a.xOut = T(BF, {9, 1, 7168}); }, kVal, "xOut.dim0"},
      {"V3XOutShape", v3Combine, [](CSetup& s) { s.a.xOut = T(F16, {8, 5121}); }, kVal, "xOut.dim1"},
      {"OriXShape", seedCombine, [](CSetup& s) { s.a.oriX = T(BF, {8, 7000}); }, kVal, "oriX.dim1"},
      {"Alpha1Length", seedCombine, [](CSetup& s) { s.a.constExpertAlpha1 = T(BF, {11}); }, kVal,
       "constExpertAlpha1.dim0"},
      {"ConstExpertVShape", seedCombine, [](CSetup& s) { s.a.constExpertV = T(BF, {10, 7169}); }, kVal,
       "constExpertV.dim1"},
      // variants
      {"V1WithElastic", elasticCombine, [](CSetup& s) { s.op = Operator::kCombineAddRmsNorm; }, kVal, "elasticInfo"},
      {"V1WithCopyExperts", tpCombine,
       [](CSetup& s) {
         s.op = Operator::kCombineAddRmsNorm;
         s.a.copyExpertNum = 2;
       },
       kVal, "copyExpertNum"},
      {"V2WithOriX", v3Combine,
       [](CSetup& s) {
         s.op = Operator::kCombineV2;
         s.a.oriX = T(F16, {8, 5120});
       },
       kVal, "oriX"},
      {"V3WithResidualX", v3Combine, [](CSetup& s) { s.a.residualX = T(F16, {8, 1, 5120}); }, kVal, "residualX"},
      {"V3WithRstdOut", v3Combine, [](CSetup& s) { s.a.rstdOut = T(F32, {8, 1, 1}); }, kVal, "rstdOut"},
  };
  return cases;
}

class CombineInvalid : public ::testing::TestWithParam<CCase> {};

TEST_P(CombineInvalid, Rejected) {
  const CCase& c = GetParam();
  CSetup s = c.base();
  ASSERT_TRUE(s.run().ok()) << "baseline must be valid: " << s.run().toString();
  c.mutate(s);
  Geometry g;
  g.A = -1;
  Status st = s.run(&g);
  EXPECT_EQ(st.code(), c.code) << st.toString();
  EXPECT_TRUE(namesArgument(st, s.op, c.arg));
  EXPECT_EQ(g.A, -1) << "geometry written on failure";
}

INSTANTIATE_TEST_SUITE_P(Cases, CombineInvalid, ::testing::ValuesIn(combineCases()),
                         [](const ::testing::TestParamInfo<CCase>& p) { return std::string(p.param.name); });

TEST(ValidateCases, AtLeastFortyPerOperator) {
  EXPECT_GE(dispatchCases().size(), 40u);
  EXPECT_GE(combineCases().size(), 40u);
}

TEST(ValidateOp, WrongOperatorFamilyIsInternal) {
  DSetup d = seedDispatch();
  d.op = Operator::kCombineV3;
  EXPECT_EQ(d.run().code(), StatusCode::kInternal);
  CSetup c = seedCombine();
  c.op = Operator::kDispatchV3;
  EXPECT_EQ(c.run().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace moedist::core
