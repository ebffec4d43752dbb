// Table-driven argument checks of aclnnMoeDistributeDispatchV3GetWorkspaceSize and
// aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize: one invalid field per case on the valid baseline of the
// CANN document's example, each with the exact code of SPEC 6 and a message naming the argument.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "aclnn_test_util.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"

namespace moedist::testing {
namespace {

const std::string kLongName(128, 'g');  // one character too many
constexpr aclnnStatus kNull = ACLNN_ERR_PARAM_NULLPTR;
constexpr aclnnStatus kInvalid = ACLNN_ERR_PARAM_INVALID;
constexpr aclnnStatus kTiling = ACLNN_ERR_INNER_TILING_ERROR;

template <class Args>
struct Case {
  std::string name;
  std::function<void(TensorPool&, Args&)> mutate;
  aclnnStatus code;
  std::string argument;  // what the message must contain, e.g. ": expandX" or ": expertIds.dim1"
};

template <class Args>
void runCases(const std::vector<Case<Args>>& cases, Args (*baseline)(TensorPool&)) {
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    TensorPool pool;
    Args a = baseline(pool);
    c.mutate(pool, a);
    uint64_t ws = 12345;
    aclOpExecutor* ex = reinterpret_cast<aclOpExecutor*>(&ws);  // must be overwritten with nullptr
    EXPECT_EQ(a.call(&ws, &ex), c.code);
    EXPECT_EQ(ex, nullptr);
    const std::string msg = recentError();
    EXPECT_NE(msg.find(c.argument), std::string::npos) << "message: " << msg;
    EXPECT_NE(msg.find("expected"), std::string::npos) << "message: " << msg;
  }
}

using D = DispatchV3Args;
using P = TensorPool;

TEST(AclnnArgs, DispatchV3BaselineIsValid) {
  TensorPool pool;
  DispatchV3Args a = dispatchBaseline(pool);
  uint64_t ws = 1;
  aclOpExecutor* ex = nullptr;
  ASSERT_EQ(a.call(&ws, &ex), ACLNN_SUCCESS) << recentError();
  EXPECT_NE(ex, nullptr);
  EXPECT_EQ(ws, 0u);  // dense inputs, no TP, no quantization: no scratch
}

TEST(AclnnArgs, DispatchV3InvalidFields) {
  const std::vector<Case<D>> cases = {
      // op_api and framework null checks (161001)
      {"x null", [](P&, D& a) { a.x = nullptr; }, kNull, ": x:"},
      {"expertIds null", [](P&, D& a) { a.expertIds = nullptr; }, kNull, ": expertIds:"},
      {"expandX null", [](P&, D& a) { a.expandX = nullptr; }, kNull, ": expandX:"},
      {"assistInfo null", [](P&, D& a) { a.assistInfoForCombine = nullptr; }, kNull, ": assistInfoForCombine:"},
      {"expertTokenNums null", [](P&, D& a) { a.expertTokenNums = nullptr; }, kNull, ": expertTokenNums:"},
      {"tpRecvCounts null", [](P&, D& a) { a.tpRecvCounts = nullptr; }, kNull, ": tpRecvCounts:"},
      {"epRecvCounts null", [](P&, D& a) { a.epRecvCounts = nullptr; }, kNull, ": epRecvCounts:"},
      {"dynamicScales null", [](P&, D& a) { a.dynamicScales = nullptr; }, kNull, ": dynamicScales:"},
      {"dynamicScales null with quantMode 2",
       [](P& p, D& a) {
         a.quantMode = 2;
         a.expandX = p.make({kA, kH}, ACL_INT8);
         a.dynamicScales = nullptr;
       },
       kNull, ": dynamicScales:"},
      {"expandScales null", [](P&, D& a) { a.expandScales = nullptr; }, kNull, ": expandScales:"},
      {"groupEp null", [](P&, D& a) { a.groupEp = nullptr; }, kNull, ": groupEp:"},
      {"groupEp empty", [](P&, D& a) { a.groupEp = ""; }, kNull, ": groupEp:"},
      {"groupEp too long", [](P&, D& a) { a.groupEp = kLongName.c_str(); }, kNull, ": groupEp:"},
      {"groupTp null", [](P&, D& a) { a.groupTp = nullptr; }, kNull, ": groupTp:"},
      {"groupTp too long", [](P&, D& a) { a.groupTp = kLongName.c_str(); }, kNull, ": groupTp:"},
      // framework dtype / format, memory safety (161002)
      {"x fp32",
       [](P& p, D& a) {
         a.x = p.make({kBs, kH}, ACL_FLOAT);
       },
       kInvalid, ": x: expected dtype"},
      {"x double",
       [](P& p, D& a) {
         a.x = p.make({kBs, kH}, ACL_DOUBLE);
       },
       kInvalid, "ACL_DOUBLE"},
      {"x FRACTAL_NZ",
       [](P& p, D& a) {
         a.x = p.make({kBs, kH}, ACL_BF16, ACL_FORMAT_FRACTAL_NZ);
       },
       kInvalid, ": x: expected format"},
      {"x NC1HWC0",
       [](P& p, D& a) {
         a.x = p.make({kBs, kH}, ACL_BF16, ACL_FORMAT_NC1HWC0);
       },
       kInvalid, "aclFormat 3"},
      {"x stale", [](P& p, D& a) { a.x = p.stale(); }, kInvalid, ": x:"},
      {"expertIds int64",
       [](P& p, D& a) {
         a.expertIds = p.make({kBs, kK}, ACL_INT64);
       },
       kInvalid, ": expertIds:"},
      {"xActiveMask int32", [](P& p, D& a) { a.xActiveMask = p.make({kBs}, ACL_INT32); }, kInvalid, ": xActiveMask:"},
      {"expertScales bf16",
       [](P& p, D& a) {
         a.expertScales = p.make({kBs, kK}, ACL_BF16);
       },
       kInvalid, ": expertScales:"},
      {"elasticInfo int64", [](P& p, D& a) { a.elasticInfo = p.make({4 + 2 * kW}, ACL_INT64); }, kInvalid,
       ": elasticInfo:"},
      {"expandX int32",
       [](P& p, D& a) {
         a.expandX = p.make({kA, kH}, ACL_INT32);
       },
       kInvalid, ": expandX:"},
      {"dynamicScales bf16", [](P& p, D& a) { a.dynamicScales = p.make({kA}, ACL_BF16); }, kInvalid,
       ": dynamicScales:"},
      {"assistInfo fp32", [](P& p, D& a) { a.assistInfoForCombine = p.make({kA * 128}, ACL_FLOAT); }, kInvalid,
       ": assistInfoForCombine:"},
      {"expertTokenNums int32", [](P& p, D& a) { a.expertTokenNums = p.make({1}, ACL_INT32); }, kInvalid,
       ": expertTokenNums:"},
      {"expertTokenNums uint64", [](P& p, D& a) { a.expertTokenNums = p.make({1}, ACL_UINT64); }, kInvalid,
       "ACL_UINT64"},
      {"epRecvCounts int64", [](P& p, D& a) { a.epRecvCounts = p.make({kW}, ACL_INT64); }, kInvalid, ": epRecvCounts:"},
      {"tpRecvCounts int64", [](P& p, D& a) { a.tpRecvCounts = p.make({1}, ACL_INT64); }, kInvalid, ": tpRecvCounts:"},
      {"expandScales int32", [](P& p, D& a) { a.expandScales = p.make({kA}, ACL_INT32); }, kInvalid, ": expandScales:"},
      {"expandX not dense",
       [](P& p, D& a) {
         a.expandX = p.strided({kA, kH}, {2 * kH, 1}, 2 * kA * kH, ACL_BF16);
       },
       kInvalid, ": expandX: expected a dense"},
      {"groupTp equal to groupEp", [](P&, D& a) { a.groupTp = a.groupEp; }, kInvalid, ": groupTp:"},
      // tiling (561002)
      {"epWorldSize 1", [](P&, D& a) { a.epWorldSize = 1; }, kTiling, ": epWorldSize:"},
      {"epWorldSize 769", [](P&, D& a) { a.epWorldSize = 769; }, kTiling, ": epWorldSize:"},
      {"tpWorldSize 3", [](P&, D& a) { a.tpWorldSize = 3; }, kTiling, ": tpWorldSize:"},
      {"epRankId W", [](P&, D& a) { a.epRankId = kW; }, kTiling, ": epRankId:"},
      {"epRankId -1", [](P&, D& a) { a.epRankId = -1; }, kTiling, ": epRankId:"},
      {"tpRankId 1 without TP", [](P&, D& a) { a.tpRankId = 1; }, kTiling, ": tpRankId:"},
      {"tpRankId 2 with TP", [](P&, D& a) { a.tpWorldSize = 2, a.tpRankId = 2; }, kTiling, ": tpRankId:"},
      {"groupTp empty with TP", [](P&, D& a) { a.tpWorldSize = 2, a.groupTp = ""; }, kTiling, ": groupTp:"},
      {"expertShardType 1", [](P&, D& a) { a.expertShardType = 1; }, kTiling, ": expertShardType:"},
      {"sharedExpertNum 5", [](P&, D& a) { a.sharedExpertNum = 5; }, kTiling, ": sharedExpertNum:"},
      {"sharedExpertRankNum W", [](P&, D& a) { a.sharedExpertRankNum = kW; }, kTiling, ": sharedExpertRankNum:"},
      {"moeExpertNum 0", [](P&, D& a) { a.moeExpertNum = 0; }, kTiling, ": moeExpertNum:"},
      {"moeExpertNum 1025", [](P&, D& a) { a.moeExpertNum = 1025; }, kTiling, ": moeExpertNum:"},
      {"quantMode 3", [](P&, D& a) { a.quantMode = 3; }, kTiling, ": quantMode:"},
      {"quantMode 1", [](P&, D& a) { a.quantMode = 1; }, kTiling, ": quantMode:"},
      {"expertTokenNumsType 2", [](P&, D& a) { a.expertTokenNumsType = 2; }, kTiling, ": expertTokenNumsType:"},
      {"zeroExpertNum -1", [](P&, D& a) { a.zeroExpertNum = -1; }, kTiling, ": zeroExpertNum:"},
      {"constExpertNum -3", [](P&, D& a) { a.constExpertNum = -3; }, kTiling, ": constExpertNum:"},
      {"commAlg unknown", [](P&, D& a) { a.commAlg = "fullmesh_v3"; }, kTiling, ": commAlg:"},
      {"scales with quantMode 0",
       [](P& p, D& a) {
         a.scales = p.make({kM, kH}, ACL_FLOAT);
       },
       kTiling, ": scales:"},
      {"x 3-D",
       [](P& p, D& a) {
         a.x = p.make({kBs, 1, kH}, ACL_BF16);
       },
       kTiling, ": x:"},
      {"expertIds 1-D", [](P& p, D& a) { a.expertIds = p.make({kBs * kK}, ACL_INT32); }, kTiling, ": expertIds:"},
      {"xActiveMask 3-D",
       [](P& p, D& a) {
         a.xActiveMask = p.make({kBs, kK, 1}, ACL_BOOL);
       },
       kTiling, ": xActiveMask:"},
      {"expandX 1-D", [](P& p, D& a) { a.expandX = p.make({kA * kH}, ACL_BF16); }, kTiling, ": expandX:"},
      {"expandX bf16 with quantMode 2", [](P&, D& a) { a.quantMode = 2; }, kTiling, ": expandX:"},
      {"sharedExpertRankNum without shared experts", [](P&, D& a) { a.sharedExpertRankNum = 2; }, kTiling,
       ": sharedExpertNum:"},
      {"sharedExpertNum 2 without shared ranks", [](P&, D& a) { a.sharedExpertNum = 2; }, kTiling,
       ": sharedExpertRankNum:"},
      {"moeExpertNum not a multiple of W", [](P&, D& a) { a.moeExpertNum = 12; }, kTiling, ": moeExpertNum:"},
      {"fullmesh_v2 with special experts", [](P&, D& a) { a.commAlg = "fullmesh_v2"; }, kTiling, ": commAlg:"},
      {"Bs 0",
       [](P& p, D& a) {
         a.x = p.make({0, kH}, ACL_BF16);
         a.expertIds = p.make({0, kK}, ACL_INT32);
       },
       kTiling, ": x.dim0 (Bs):"},
      {"globalBs not a multiple of W", [](P&, D& a) { a.globalBs = 65; }, kTiling, ": globalBs:"},
      {"globalBs > Bs*W with a mask",
       [](P& p, D& a) {
         a.globalBs = 2 * kBs * kW;
         a.xActiveMask = p.make({kBs}, ACL_BOOL);
       },
       kTiling, ": xActiveMask:"},
      {"H 1000",
       [](P& p, D& a) {
         a.x = p.make({kBs, 1000}, ACL_BF16);
       },
       kTiling, ": x.dim1 (H):"},
      {"expertIds rows",
       [](P& p, D& a) {
         a.expertIds = p.make({kBs - 1, kK}, ACL_INT32);
       },
       kTiling, ": expertIds.dim0:"},
      {"K 17",
       [](P& p, D& a) {
         a.expertIds = p.make({kBs, 17}, ACL_INT32);
       },
       kTiling, ": expertIds.dim1 (K):"},
      {"K above all experts",
       [](P& p, D& a) {
         a.zeroExpertNum = a.copyExpertNum = a.constExpertNum = 0;
         a.expertIds = p.make({kBs, kM + 1}, ACL_INT32);
       },
       kTiling, ": expertIds.dim1 (K):"},
      {"scales rows",
       [](P& p, D& a) {
         a.quantMode = 2;
         a.expandX = p.make({kA, kH}, ACL_INT8);
         a.scales = p.make({kM + 1, kH}, ACL_FLOAT);
       },
       kTiling, ": scales.dim0:"},
      {"elasticInfo length", [](P& p, D& a) { a.elasticInfo = p.make({3 + 2 * kW}, ACL_INT32); }, kTiling,
       ": elasticInfo.dim0:"},
      {"expandX rows",
       [](P& p, D& a) {
         a.expandX = p.make({kA - 1, kH}, ACL_BF16);
       },
       kTiling, ": expandX.dim0:"},
      {"expandX H",
       [](P& p, D& a) {
         a.expandX = p.make({kA, 1024}, ACL_BF16);
       },
       kTiling, ": expandX.dim1:"},
      {"assistInfo short", [](P& p, D& a) { a.assistInfoForCombine = p.make({3 * kA - 1}, ACL_INT32); }, kTiling,
       ": assistInfoForCombine.dim0:"},
      {"expertTokenNums length", [](P& p, D& a) { a.expertTokenNums = p.make({2}, ACL_INT64); }, kTiling,
       ": expertTokenNums.dim0:"},
      {"epRecvCounts short", [](P& p, D& a) { a.epRecvCounts = p.make({kW - 1}, ACL_INT32); }, kTiling,
       ": epRecvCounts.dim0:"},
      {"tpRecvCounts (0,) with tpWorldSize 1", [](P& p, D& a) { a.tpRecvCounts = p.make({0}, ACL_INT32); }, kTiling,
       ": tpRecvCounts.dim0:"},
  };
  runCases<D>(cases, &dispatchBaseline);
}

TEST(AclnnArgs, DispatchV3ValidEdgeCases) {
  const std::vector<std::pair<std::string, std::function<void(P&, D&)>>> cases = {
      {"commAlg nullptr", [](P&, D& a) { a.commAlg = nullptr; }},
      {"commAlg empty", [](P&, D& a) { a.commAlg = ""; }},
      {"commAlg fullmesh_v1", [](P&, D& a) { a.commAlg = "fullmesh_v1"; }},
      {"no TP: tpWorldSize 0, tpRecvCounts (0,), groupTp empty",
       [](P& p, D& a) {
         a.tpWorldSize = 0;
         a.groupTp = "";
         a.tpRecvCounts = p.make({0}, ACL_INT32);
       }},
      {"elasticInfo", [](P& p, D& a) { a.elasticInfo = p.make({4 + 2 * kW}, ACL_INT32); }},
      {"2-D mask",
       [](P& p, D& a) {
         a.xActiveMask = p.make({kBs, kK}, ACL_BOOL);
       }},
      {"quantMode 2 with scales",
       [](P& p, D& a) {
         a.quantMode = 2;
         a.expandX = p.make({kA, kH}, ACL_INT8);
         a.scales = p.make({kM, kH}, ACL_FLOAT);
       }},
      {"NCHW format is plain row-major",
       [](P& p, D& a) {
         a.x = p.make({kBs, kH}, ACL_BF16, ACL_FORMAT_NCHW);
       }},
      {"expertScales absent", [](P&, D& a) { a.expertScales = nullptr; }},
  };
  for (const auto& [name, mutate] : cases) {
    SCOPED_TRACE(name);
    TensorPool pool;
    D a = dispatchBaseline(pool);
    mutate(pool, a);
    uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    EXPECT_EQ(a.call(&ws, &ex), ACLNN_SUCCESS) << recentError();
    EXPECT_NE(ex, nullptr);
  }
}

TEST(AclnnArgs, NullOutParameters) {
  TensorPool pool;
  D a = dispatchBaseline(pool);
  aclOpExecutor* ex = nullptr;
  uint64_t ws = 0;
  EXPECT_EQ(a.call(nullptr, &ex), kNull);
  EXPECT_NE(recentError().find("workspaceSize"), std::string::npos);
  EXPECT_EQ(a.call(&ws, nullptr), kNull);
  EXPECT_NE(recentError().find("executor"), std::string::npos);
}

using C = CombineV2Args;

TEST(AclnnArgs, CombineAddRmsNormV2BaselineIsValid) {
  TensorPool pool;
  C a = combineBaseline(pool);
  uint64_t ws = 1;
  aclOpExecutor* ex = nullptr;
  ASSERT_EQ(a.call(&ws, &ex), ACLNN_SUCCESS) << recentError();
  EXPECT_NE(ex, nullptr);
  EXPECT_EQ(ws, 0u);
}

TEST(AclnnArgs, CombineAddRmsNormV2InvalidFields) {
  const std::vector<Case<C>> cases = {
      // op_api and framework null checks (161001)
      {"expandX null", [](P&, C& a) { a.expandX = nullptr; }, kNull, ": expandX:"},
      {"expertIds null", [](P&, C& a) { a.expertIds = nullptr; }, kNull, ": expertIds:"},
      {"assistInfo null", [](P&, C& a) { a.assistInfoForCombine = nullptr; }, kNull, ": assistInfoForCombine:"},
      {"epSendCounts null", [](P&, C& a) { a.epSendCounts = nullptr; }, kNull, ": epSendCounts:"},
      {"expertScales null", [](P&, C& a) { a.expertScales = nullptr; }, kNull, ": expertScales:"},
      {"xOut null", [](P&, C& a) { a.xOut = nullptr; }, kNull, ": xOut:"},
      {"residualX null", [](P&, C& a) { a.residualX = nullptr; }, kNull, ": residualX:"},
      {"gamma null", [](P&, C& a) { a.gamma = nullptr; }, kNull, ": gamma:"},
      {"yOut null", [](P&, C& a) { a.yOut = nullptr; }, kNull, ": yOut:"},
      {"rstdOut null", [](P&, C& a) { a.rstdOut = nullptr; }, kNull, ": rstdOut:"},
      {"groupEp null", [](P&, C& a) { a.groupEp = nullptr; }, kNull, ": groupEp:"},
      {"groupEp empty", [](P&, C& a) { a.groupEp = ""; }, kNull, ": groupEp:"},
      {"groupTp null", [](P&, C& a) { a.groupTp = nullptr; }, kNull, ": groupTp:"},
      // combine's op_api returns 161002 for names too long (SPEC 6.2)
      {"groupEp too long", [](P&, C& a) { a.groupEp = kLongName.c_str(); }, kInvalid, ": groupEp:"},
      {"groupTp too long", [](P&, C& a) { a.groupTp = kLongName.c_str(); }, kInvalid, ": groupTp:"},
      // framework dtype / format, memory safety (161002)
      {"expandX fp16",
       [](P& p, C& a) {
         a.expandX = p.make({kA, kH}, ACL_FLOAT16);
       },
       kInvalid, ": expandX:"},
      {"expandX NZ",
       [](P& p, C& a) {
         a.expandX = p.make({kA, kH}, ACL_BF16, ACL_FORMAT_FRACTAL_NZ);
       },
       kInvalid, ": expandX: expected format"},
      {"expertIds int64",
       [](P& p, C& a) {
         a.expertIds = p.make({kBs, kK}, ACL_INT64);
       },
       kInvalid, ": expertIds:"},
      {"assistInfo int64", [](P& p, C& a) { a.assistInfoForCombine = p.make({kA * 128}, ACL_INT64); }, kInvalid,
       ": assistInfoForCombine:"},
      {"epSendCounts fp32", [](P& p, C& a) { a.epSendCounts = p.make({kW}, ACL_FLOAT); }, kInvalid, ": epSendCounts:"},
      {"expertScales bf16",
       [](P& p, C& a) {
         a.expertScales = p.make({kBs, kK}, ACL_BF16);
       },
       kInvalid, ": expertScales:"},
      {"residualX fp32",
       [](P& p, C& a) {
         a.residualX = p.make({kBs, 1, kH}, ACL_FLOAT);
       },
       kInvalid, ": residualX:"},
      {"gamma fp16", [](P& p, C& a) { a.gamma = p.make({kH}, ACL_FLOAT16); }, kInvalid, ": gamma:"},
      {"tpSendCounts int64", [](P& p, C& a) { a.tpSendCounts = p.make({1}, ACL_INT64); }, kInvalid, ": tpSendCounts:"},
      {"xActiveMask int32", [](P& p, C& a) { a.xActiveMask = p.make({kBs}, ACL_INT32); }, kInvalid, ": xActiveMask:"},
      {"sharedExpertX fp16",
       [](P& p, C& a) {
         a.sharedExpertX = p.make({kBs, 1, kH}, ACL_FLOAT16);
       },
       kInvalid, ": sharedExpertX:"},
      {"elasticInfo fp32", [](P& p, C& a) { a.elasticInfo = p.make({4 + 2 * kW}, ACL_FLOAT); }, kInvalid,
       ": elasticInfo:"},
      {"oriX fp32",
       [](P& p, C& a) {
         a.oriX = p.make({kBs, kH}, ACL_FLOAT);
       },
       kInvalid, ": oriX:"},
      {"constExpertAlpha1 fp32", [](P& p, C& a) { a.constExpertAlpha1 = p.make({kQ}, ACL_FLOAT); }, kInvalid,
       ": constExpertAlpha1:"},
      {"constExpertV fp16",
       [](P& p, C& a) {
         a.constExpertV = p.make({kQ, kH}, ACL_FLOAT16);
       },
       kInvalid, ": constExpertV:"},
      {"yOut fp32",
       [](P& p, C& a) {
         a.yOut = p.make({kBs, 1, kH}, ACL_FLOAT);
       },
       kInvalid, ": yOut:"},
      {"rstdOut bf16",
       [](P& p, C& a) {
         a.rstdOut = p.make({kBs, 1, 1}, ACL_BF16);
       },
       kInvalid, ": rstdOut:"},
      {"xOut fp16",
       [](P& p, C& a) {
         a.xOut = p.make({kBs, 1, kH}, ACL_FLOAT16);
       },
       kInvalid, ": xOut:"},
      {"gamma int16", [](P& p, C& a) { a.gamma = p.make({kH}, ACL_INT16); }, kInvalid, "ACL_INT16"},
      {"yOut not dense",
       [](P& p, C& a) {
         a.yOut = p.strided({kBs, 1, kH}, {2 * kH, kH, 1}, 2 * kBs * kH, ACL_BF16);
       },
       kInvalid, ": yOut: expected a dense"},
      {"expertScales stale", [](P& p, C& a) { a.expertScales = p.stale(); }, kInvalid, ": expertScales:"},
      {"groupTp equal to groupEp", [](P&, C& a) { a.groupTp = a.groupEp; }, kInvalid, ": groupTp:"},
      // tiling (561002)
      {"zeroExpertNum -1", [](P&, C& a) { a.zeroExpertNum = -1; }, kTiling, ": zeroExpertNum:"},
      {"copyExpertNum -2", [](P&, C& a) { a.copyExpertNum = -2; }, kTiling, ": copyExpertNum:"},
      {"epWorldSize 1", [](P&, C& a) { a.epWorldSize = 1; }, kTiling, ": epWorldSize:"},
      {"tpWorldSize 3", [](P&, C& a) { a.tpWorldSize = 3; }, kTiling, ": tpWorldSize:"},
      {"epRankId W", [](P&, C& a) { a.epRankId = kW; }, kTiling, ": epRankId:"},
      {"tpRankId 1 without TP", [](P&, C& a) { a.tpRankId = 1; }, kTiling, ": tpRankId:"},
      {"groupTp empty with TP", [](P&, C& a) { a.tpWorldSize = 2, a.groupTp = ""; }, kTiling, ": groupTp:"},
      {"commQuantMode 2 with TP", [](P&, C& a) { a.tpWorldSize = 2, a.commQuantMode = 2; }, kTiling,
       ": commQuantMode:"},
      {"expertShardType 1", [](P&, C& a) { a.expertShardType = 1; }, kTiling, ": expertShardType:"},
      {"sharedExpertNum 5", [](P&, C& a) { a.sharedExpertNum = 5; }, kTiling, ": sharedExpertNum:"},
      {"sharedExpertRankNum W", [](P&, C& a) { a.sharedExpertRankNum = kW; }, kTiling, ": sharedExpertRankNum:"},
      {"moeExpertNum 0", [](P&, C& a) { a.moeExpertNum = 0; }, kTiling, ": moeExpertNum:"},
      {"commQuantMode 1", [](P&, C& a) { a.commQuantMode = 1; }, kTiling, ": commQuantMode:"},
      {"expandX 3-D",
       [](P& p, C& a) {
         a.expandX = p.make({kA, 1, kH}, ACL_BF16);
       },
       kTiling, ": expandX:"},
      {"expertIds 1-D", [](P& p, C& a) { a.expertIds = p.make({kBs * kK}, ACL_INT32); }, kTiling, ": expertIds:"},
      {"residualX 2-D",
       [](P& p, C& a) {
         a.residualX = p.make({kBs, kH}, ACL_BF16);
       },
       kTiling, ": residualX:"},
      {"gamma 2-D",
       [](P& p, C& a) {
         a.gamma = p.make({1, kH}, ACL_BF16);
       },
       kTiling, ": gamma:"},
      {"tpSendCounts null", [](P&, C& a) { a.tpSendCounts = nullptr; }, kTiling, ": tpSendCounts:"},
      {"activationScale given", [](P& p, C& a) { a.activationScale = p.make({kA}, ACL_FLOAT); }, kTiling,
       ": activationScale:"},
      {"weightScale given", [](P& p, C& a) { a.weightScale = p.make({kA}, ACL_FLOAT); }, kTiling, ": weightScale:"},
      {"groupList given", [](P& p, C& a) { a.groupList = p.make({1}, ACL_INT64); }, kTiling, ": groupList:"},
      {"sharedExpertX with shared ranks",
       [](P&, C& a) {
         a.sharedExpertNum = 1;
         a.sharedExpertRankNum = 1;
       },
       kTiling, ": sharedExpertX:"},
      {"yOut 2-D",
       [](P& p, C& a) {
         a.yOut = p.make({kBs, kH}, ACL_BF16);
       },
       kTiling, ": yOut:"},
      {"rstdOut 2-D",
       [](P& p, C& a) {
         a.rstdOut = p.make({kBs, 1}, ACL_FLOAT);
       },
       kTiling, ": rstdOut:"},
      {"xOut 2-D",
       [](P& p, C& a) {
         a.xOut = p.make({kBs, kH}, ACL_BF16);
       },
       kTiling, ": xOut:"},
      {"moeExpertNum not a multiple of W", [](P&, C& a) { a.moeExpertNum = 12; }, kTiling, ": moeExpertNum:"},
      {"Bs 0",
       [](P& p, C& a) {
         a.expertIds = p.make({0, kK}, ACL_INT32);
         a.expertScales = p.make({0, kK}, ACL_FLOAT);
       },
       kTiling, ": expertIds.dim0 (Bs):"},
      {"globalBs not a multiple of W", [](P&, C& a) { a.globalBs = 65; }, kTiling, ": globalBs:"},
      {"copy experts without oriX", [](P&, C& a) { a.oriX = nullptr; }, kTiling, ": oriX:"},
      {"const experts without alpha1", [](P&, C& a) { a.constExpertAlpha1 = nullptr; }, kTiling,
       ": constExpertAlpha1:"},
      {"K 17",
       [](P& p, C& a) {
         a.expertIds = p.make({kBs, 17}, ACL_INT32);
       },
       kTiling, ": expertIds.dim1 (K):"},
      {"elasticInfo length", [](P& p, C& a) { a.elasticInfo = p.make({3 + 2 * kW}, ACL_INT32); }, kTiling,
       ": elasticInfo.dim0:"},
      {"H 1000",
       [](P& p, C& a) {
         a.expandX = p.make({kA, 1000}, ACL_BF16);
       },
       kTiling, ": expandX.dim1 (H):"},
      {"assistInfo short", [](P& p, C& a) { a.assistInfoForCombine = p.make({128 * kA - 1}, ACL_INT32); }, kTiling,
       ": assistInfoForCombine.dim0:"},
      {"epSendCounts short", [](P& p, C& a) { a.epSendCounts = p.make({kW - 1}, ACL_INT32); }, kTiling,
       ": epSendCounts.dim0:"},
      {"tpSendCounts (2,) with tpWorldSize 1", [](P& p, C& a) { a.tpSendCounts = p.make({2}, ACL_INT32); }, kTiling,
       ": tpSendCounts.dim0:"},
      {"expertScales K", [](P& p, C& a) { a.expertScales = p.make({kBs, kK + 1}, ACL_FLOAT); }, kTiling,
       ": expertScales.dim1:"},
      {"residualX middle dim", [](P& p, C& a) { a.residualX = p.make({kBs, 2, kH}, ACL_BF16); }, kTiling,
       ": residualX.dim1:"},
      {"gamma length", [](P& p, C& a) { a.gamma = p.make({1024}, ACL_BF16); }, kTiling, ": gamma.dim0:"},
      {"xActiveMask rows", [](P& p, C& a) { a.xActiveMask = p.make({kBs - 1}, ACL_BOOL); }, kTiling,
       ": xActiveMask.dim0:"},
      {"sharedExpertX H", [](P& p, C& a) { a.sharedExpertX = p.make({kBs, 1024}, ACL_BF16); }, kTiling,
       ": sharedExpertX.dim1:"},
      {"yOut H", [](P& p, C& a) { a.yOut = p.make({kBs, 1, 1024}, ACL_BF16); }, kTiling, ": yOut.dim2:"},
      {"rstdOut last dim", [](P& p, C& a) { a.rstdOut = p.make({kBs, 1, 2}, ACL_FLOAT); }, kTiling, ": rstdOut.dim2:"},
      {"xOut rows", [](P& p, C& a) { a.xOut = p.make({kBs - 1, 1, kH}, ACL_BF16); }, kTiling, ": xOut.dim0:"},
      {"oriX H", [](P& p, C& a) { a.oriX = p.make({kBs, 1024}, ACL_BF16); }, kTiling, ": oriX.dim1:"},
      {"constExpertAlpha1 length", [](P& p, C& a) { a.constExpertAlpha1 = p.make({kQ - 1}, ACL_BF16); }, kTiling,
       ": constExpertAlpha1.dim0:"},
      {"constExpertV H", [](P& p, C& a) { a.constExpertV = p.make({kQ, 1024}, ACL_BF16); }, kTiling,
       ": constExpertV.dim1:"},
  };
  runCases<C>(cases, &combineBaseline);
}

TEST(AclnnArgs, CombineAddRmsNormV2ValidEdgeCases) {
  const std::vector<std::pair<std::string, std::function<void(P&, C&)>>> cases = {
      {"commAlg nullptr", [](P&, C& a) { a.commAlg = nullptr; }},
      {"groupListType 1", [](P&, C& a) { a.groupListType = 1; }},
      {"groupListType 0", [](P&, C& a) { a.groupListType = 0; }},
      {"tpSendCounts (1,) with tpWorldSize 1", [](P& p, C& a) { a.tpSendCounts = p.make({1}, ACL_INT32); }},
      {"no TP: tpWorldSize 0, tpSendCounts (0,), groupTp empty",
       [](P& p, C& a) {
         a.tpWorldSize = 0;
         a.groupTp = "";
         a.tpSendCounts = p.make({0}, ACL_INT32);
       }},
      {"expandScales ignored", [](P& p, C& a) { a.expandScales = p.make({kA}, ACL_FLOAT); }},
      {"elasticInfo", [](P& p, C& a) { a.elasticInfo = p.make({4 + 2 * kW}, ACL_INT32); }},
      {"sharedExpertX 2-D",
       [](P& p, C& a) {
         a.sharedExpertX = p.make({kBs, kH}, ACL_BF16);
       }},
      {"outDtype and commAlg are not checked",
       [](P&, C& a) {
         a.outDtype = 7;
         a.commAlg = "anything";
       }},
      {"commQuantMode 2 without TP", [](P&, C& a) { a.commQuantMode = 2; }},
  };
  for (const auto& [name, mutate] : cases) {
    SCOPED_TRACE(name);
    TensorPool pool;
    C a = combineBaseline(pool);
    mutate(pool, a);
    uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    EXPECT_EQ(a.call(&ws, &ex), ACLNN_SUCCESS) << recentError();
    EXPECT_NE(ex, nullptr);
  }
}

// The siblings share the checks; a smoke test of each entry point on its own valid arguments.
TEST(AclnnArgs, SiblingsAcceptTheirBaselines) {
  TensorPool p;
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  D d = dispatchBaseline(p);
  EXPECT_EQ(aclnnMoeDistributeDispatchV2GetWorkspaceSize(
                d.x, d.expertIds, nullptr, nullptr, d.expertScales, d.groupEp, kW, 0, kM, d.groupTp, 1, 0, 0, 0, 0, 0,
                kBs * kW, 1, nullptr, d.expandX, d.dynamicScales, d.assistInfoForCombine, d.expertTokenNums,
                d.epRecvCounts, d.tpRecvCounts, d.expandScales, &ws, &ex),
            ACLNN_SUCCESS)
      << recentError();
  C c = combineBaseline(p);
  EXPECT_EQ(aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize(
                c.expandX, c.expertIds, c.assistInfoForCombine, c.epSendCounts, c.expertScales, c.residualX, c.gamma,
                c.tpSendCounts, nullptr, nullptr, nullptr, nullptr, nullptr, c.sharedExpertX, c.groupEp, kW, 0, kM,
                c.groupTp, 1, 0, 0, 0, 0, kBs * kW, 0, 0, 0, nullptr, 1e-6f, c.yOut, c.rstdOut, c.xOut, &ws, &ex),
            ACLNN_SUCCESS)
      << recentError();
  aclTensor* xOut2 = p.make({kBs, kH}, ACL_BF16);
  EXPECT_EQ(aclnnMoeDistributeCombineV3GetWorkspaceSize(
                c.expandX, c.expertIds, c.assistInfoForCombine, c.epSendCounts, c.expertScales, c.tpSendCounts, nullptr,
                nullptr, nullptr, nullptr, nullptr, c.sharedExpertX, nullptr, c.oriX, c.constExpertAlpha1,
                c.constExpertAlpha2, c.constExpertV, c.groupEp, kW, 0, kM, c.groupTp, 1, 0, 0, 0, 0, kBs * kW, 0, 0, 0,
                nullptr, kZ, kC, kQ, xOut2, &ws, &ex),
            ACLNN_SUCCESS)
      << recentError();
  EXPECT_EQ(aclnnMoeDistributeCombineV2GetWorkspaceSize(
                c.expandX, c.expertIds, c.assistInfoForCombine, c.epSendCounts, c.expertScales, c.tpSendCounts, nullptr,
                nullptr, nullptr, nullptr, nullptr, c.sharedExpertX, c.groupEp, kW, 0, kM, c.groupTp, 1, 0, 0, 0, 0,
                kBs * kW, 0, 0, 0, nullptr, xOut2, &ws, &ex),
            ACLNN_SUCCESS)
      << recentError();
  // CombineV2 has no residual add: a 3-D xOut is refused as for CombineV3.
  EXPECT_EQ(aclnnMoeDistributeCombineV2GetWorkspaceSize(
                c.expandX, c.expertIds, c.assistInfoForCombine, c.epSendCounts, c.expertScales, c.tpSendCounts, nullptr,
                nullptr, nullptr, nullptr, nullptr, c.sharedExpertX, c.groupEp, kW, 0, kM, c.groupTp, 1, 0, 0, 0, 0,
                kBs * kW, 0, 0, 0, nullptr, c.xOut, &ws, &ex),
            kTiling);
  EXPECT_NE(recentError().find("CombineV2: xOut"), std::string::npos);
}

}  // namespace
}  // namespace moedist::testing
