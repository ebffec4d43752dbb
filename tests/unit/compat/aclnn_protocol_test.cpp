// The two-phase protocol of the aclnn entry points: misuse (null, unknown, reused or foreign executor, workspace
// too small) returns an error and never crashes; a real dispatch -> combine run over two in-process ranks goes
// through GetWorkspaceSize, execute on a stream and aclrtSynchronizeStream.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "aclnn_test_util.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "compat/aclnn_support.h"
#include "hccl/hccl.h"

namespace moedist::testing {
namespace {

using ExecuteFn = aclnnStatus (*)(void*, uint64_t, aclOpExecutor*, aclrtStream);

const std::vector<std::pair<const char*, ExecuteFn>> kExecutes = {
    {"DispatchV3", &aclnnMoeDistributeDispatchV3},
    {"DispatchV2", &aclnnMoeDistributeDispatchV2},
    {"CombineAddRmsNormV2", &aclnnMoeDistributeCombineAddRmsNormV2},
    {"CombineAddRmsNorm", &aclnnMoeDistributeCombineAddRmsNorm},
    {"CombineV3", &aclnnMoeDistributeCombineV3},
    {"CombineV2", &aclnnMoeDistributeCombineV2},
};

TEST(AclnnProtocol, NullExecutor) {
  for (const auto& [name, fn] : kExecutes) {
    SCOPED_TRACE(name);
    EXPECT_EQ(fn(nullptr, 0, nullptr, nullptr), ACLNN_ERR_PARAM_NULLPTR);
    const std::string msg = recentError();
    EXPECT_NE(msg.find(std::string(name) + ": executor"), std::string::npos) << msg;
  }
}

TEST(AclnnProtocol, BogusExecutorPointers) {
  int onStack = 0;
  std::vector<char> onHeap(64);
  const std::vector<aclOpExecutor*> bogus = {
      reinterpret_cast<aclOpExecutor*>(&onStack), reinterpret_cast<aclOpExecutor*>(onHeap.data()),
      reinterpret_cast<aclOpExecutor*>(uintptr_t{0x1234}), reinterpret_cast<aclOpExecutor*>(~uintptr_t{0})};
  for (const auto& [name, fn] : kExecutes) {
    for (aclOpExecutor* ex : bogus) {
      SCOPED_TRACE(name);
      EXPECT_EQ(fn(nullptr, 0, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
      EXPECT_NE(recentError().find("executor"), std::string::npos);
    }
  }
}

aclOpExecutor* validDispatchExecutor(TensorPool& pool, const char* groupEp, uint64_t* ws) {
  DispatchV3Args a = dispatchBaseline(pool);
  a.groupEp = groupEp;
  aclOpExecutor* ex = nullptr;
  EXPECT_EQ(a.call(ws, &ex), ACLNN_SUCCESS) << recentError();
  return ex;
}

TEST(AclnnProtocol, ExecutorOfAnotherOperatorIsRefusedAndKept) {
  TensorPool pool;
  uint64_t ws = 0;
  aclOpExecutor* ex = validDispatchExecutor(pool, "moedist_no_such_group", &ws);
  const size_t live = compat::liveExecutorCount();
  EXPECT_EQ(aclnnMoeDistributeCombineAddRmsNormV2(nullptr, 0, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
  EXPECT_NE(recentError().find("DispatchV3GetWorkspaceSize"), std::string::npos);
  EXPECT_EQ(aclnnMoeDistributeDispatchV2(nullptr, 0, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
  EXPECT_EQ(compat::liveExecutorCount(), live);  // still there
  // Its own execute consumes it, even though the EP communicator does not exist.
  EXPECT_NE(aclnnMoeDistributeDispatchV3(nullptr, 0, ex, nullptr), ACLNN_SUCCESS);
  EXPECT_NE(recentError().find("moedist_no_such_group"), std::string::npos);
  EXPECT_EQ(compat::liveExecutorCount(), live - 1);
  EXPECT_EQ(aclnnMoeDistributeDispatchV3(nullptr, 0, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
  EXPECT_NE(recentError().find("already used"), std::string::npos);
}

TEST(AclnnProtocol, WorkspaceTooSmall) {
  TensorPool pool;
  DispatchV3Args a = dispatchBaseline(pool);
  // A strided x needs a dense copy in the workspace.
  a.x = pool.strided({kBs, kH}, {2 * kH, 1}, 2 * kBs * kH, ACL_BF16);
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  ASSERT_EQ(a.call(&ws, &ex), ACLNN_SUCCESS) << recentError();
  ASSERT_GE(ws, static_cast<uint64_t>(kBs * kH * 2));
  std::vector<std::max_align_t> buffer(ws / sizeof(std::max_align_t) + 1);
  EXPECT_EQ(aclnnMoeDistributeDispatchV3(buffer.data(), ws - 1, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
  const std::string msg = recentError();
  EXPECT_NE(msg.find("DispatchV3: workspaceSize"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(ws)), std::string::npos) << msg;
  // The executor was consumed.
  EXPECT_EQ(aclnnMoeDistributeDispatchV3(buffer.data(), ws, ex, nullptr), ACLNN_ERR_PARAM_INVALID);

  ASSERT_EQ(a.call(&ws, &ex), ACLNN_SUCCESS);
  EXPECT_EQ(aclnnMoeDistributeDispatchV3(nullptr, ws, ex, nullptr), ACLNN_ERR_PARAM_NULLPTR);
  EXPECT_NE(recentError().find("DispatchV3: workspace"), std::string::npos);
}

// Two ranks on devices 0 and 1: dispatch -> identity expert -> combine through the C API.
TEST(AclnnProtocol, DispatchCombineOnTwoRanks) {
  constexpr int W = 2;
  constexpr int64_t Bs = 2, H = 1024, K = 2, M = 2, A = Bs * W * 1;
  int32_t devices[W] = {0, 1};
  HcclComm comms[W] = {};
  ASSERT_EQ(HcclCommInitAll(W, devices, comms), HCCL_SUCCESS);
  char name[128] = {};
  ASSERT_EQ(HcclGetCommName(comms[0], name), HCCL_SUCCESS);

  std::vector<std::string> failures(W);
  std::vector<std::thread> threads;
  for (int r = 0; r < W; ++r) {
    threads.emplace_back([&, r] {
      auto check = [&](bool ok, const std::string& what) {
        if (!ok && failures[r].empty()) failures[r] = what + ": " + recentError();
        return ok;
      };
      if (!check(aclrtSetDevice(r) == ACL_SUCCESS, "aclrtSetDevice")) return;
      aclrtStream stream = nullptr;
      if (!check(aclrtCreateStream(&stream) == ACL_SUCCESS, "aclrtCreateStream")) return;
      TensorPool p;
      // x = 1.0 (bf16 0x3F80), both experts per token, weights 0.5: combine returns 1.0 per element.
      std::vector<uint16_t> x(Bs * H, 0x3F80), residual(Bs * H, 0), gamma(H, 0x3F80), xOut(Bs * H, 0xFFFF),
          yOut(Bs * H), expandX(A * H);
      std::vector<int32_t> ids = {0, 1, 1, 0};
      std::vector<float> weights(Bs * K, 0.5f), rstd(Bs), dynScales(A), expandScales(A);
      std::vector<int32_t> assist(A * 128), epRecv(W), tpRecv(1);
      std::vector<int64_t> tokenNums(1);
      auto over = [](void* data, std::vector<int64_t> shape, aclDataType t) {
        return aclCreateTensor(shape.data(), shape.size(), t, nullptr, 0, ACL_FORMAT_ND, shape.data(), shape.size(),
                               data);
      };
      aclTensor* tx = over(x.data(), {Bs, H}, ACL_BF16);
      aclTensor* tids = over(ids.data(), {Bs, K}, ACL_INT32);
      aclTensor* tw = over(weights.data(), {Bs, K}, ACL_FLOAT);
      aclTensor* texp = over(expandX.data(), {A, H}, ACL_BF16);
      aclTensor* tdyn = over(dynScales.data(), {A}, ACL_FLOAT);
      aclTensor* tassist = over(assist.data(), {A * 128}, ACL_INT32);
      aclTensor* tnums = over(tokenNums.data(), {1}, ACL_INT64);
      aclTensor* tep = over(epRecv.data(), {W}, ACL_INT32);
      aclTensor* ttp = over(tpRecv.data(), {0}, ACL_INT32);
      aclTensor* tes = over(expandScales.data(), {A}, ACL_FLOAT);
      aclTensor* tres = over(residual.data(), {Bs, 1, H}, ACL_BF16);
      aclTensor* tgamma = over(gamma.data(), {H}, ACL_BF16);
      aclTensor* ty = over(yOut.data(), {Bs, 1, H}, ACL_BF16);
      aclTensor* trstd = over(rstd.data(), {Bs, 1, 1}, ACL_FLOAT);
      aclTensor* txo = over(xOut.data(), {Bs, 1, H}, ACL_BF16);

      uint64_t ws = 0;
      aclOpExecutor* ex = nullptr;
      aclnnStatus st = aclnnMoeDistributeDispatchV3GetWorkspaceSize(
          tx, tids, nullptr, nullptr, tw, nullptr, name, W, r, M, "", 0, 0, 0, 0, 0, 0, 0, 1, nullptr, 0, 0, 0, texp,
          tdyn, tassist, tnums, tep, ttp, tes, &ws, &ex);
      if (!check(st == ACLNN_SUCCESS, "dispatch GetWorkspaceSize")) return;
      if (!check(aclnnMoeDistributeDispatchV3(nullptr, ws, ex, stream) == ACLNN_SUCCESS, "dispatch")) return;
      if (!check(aclrtSynchronizeStream(stream) == ACL_SUCCESS, "dispatch sync")) return;
      // Single use.
      if (!check(aclnnMoeDistributeDispatchV3(nullptr, ws, ex, stream) == ACLNN_ERR_PARAM_INVALID, "reuse")) return;
      (void)recentError();
      check(tokenNums[0] == Bs * W * K / M, "expertTokenNums");

      st = aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
          texp, tids, tassist, tep, tw, tres, tgamma, ttp, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
          nullptr, nullptr, nullptr, nullptr, nullptr, name, W, r, M, "", 0, 0, 0, 0, 0, 0, 0, 0, 1, nullptr, 1e-6f, 0,
          0, 0, ty, trstd, txo, &ws, &ex);
      if (!check(st == ACLNN_SUCCESS, "combine GetWorkspaceSize")) return;
      if (!check(aclnnMoeDistributeCombineAddRmsNormV2(nullptr, ws, ex, stream) == ACLNN_SUCCESS, "combine")) return;
      if (!check(aclrtSynchronizeStream(stream) == ACL_SUCCESS, "combine sync")) return;
      for (uint16_t v : xOut) {
        if (!check(v == 0x3F80, "xOut == 1.0")) break;
      }
      for (aclTensor* t : {tx, tids, tw, texp, tdyn, tassist, tnums, tep, ttp, tes, tres, tgamma, ty, trstd, txo})
        aclDestroyTensor(t);
      aclrtDestroyStream(stream);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < W; ++r) EXPECT_EQ(failures[r], "") << "rank " << r;
  for (HcclComm c : comms) HcclCommDestroy(c);
}

// A failure found while the operator runs on the stream is reported by aclrtSynchronizeStream, and its message
// (naming the operator) by aclGetRecentErrMsg on the synchronizing thread.
TEST(AclnnProtocol, RunTimeErrorReachesTheStream) {
  constexpr int W = 2;
  constexpr int64_t Bs = 1, H = 1024, K = 1, M = 2, A = Bs * W;
  int32_t devices[W] = {2, 3};
  HcclComm comms[W] = {};
  ASSERT_EQ(HcclCommInitAll(W, devices, comms), HCCL_SUCCESS);
  char name[128] = {};
  ASSERT_EQ(HcclGetCommName(comms[0], name), HCCL_SUCCESS);
  std::vector<std::string> results(W);
  std::vector<std::thread> threads;
  for (int r = 0; r < W; ++r) {
    threads.emplace_back([&, r] {
      aclrtSetDevice(devices[r]);
      aclrtStream stream = nullptr;
      aclrtCreateStream(&stream);
      TensorPool p;
      std::vector<int32_t> ids = {r == 0 ? 7 : 0};  // rank 0 names an expert that does not exist
      std::vector<int64_t> shapeIds = {Bs, K};
      aclTensor* tids =
          aclCreateTensor(shapeIds.data(), 2, ACL_INT32, nullptr, 0, ACL_FORMAT_ND, shapeIds.data(), 2, ids.data());
      uint64_t ws = 0;
      aclOpExecutor* ex = nullptr;
      aclnnStatus st = aclnnMoeDistributeDispatchV3GetWorkspaceSize(
          p.make({Bs, H}, ACL_BF16), tids, nullptr, nullptr, nullptr, nullptr, name, W, r, M, "", 0, 0, 0, 0, 0, 0, 0,
          1, nullptr, 0, 0, 0, p.make({A, H}, ACL_BF16), p.make({A}, ACL_FLOAT), p.make({A * 128}, ACL_INT32),
          p.make({1}, ACL_INT64), p.make({W}, ACL_INT32), p.make({0}, ACL_INT32), p.make({A}, ACL_FLOAT), &ws, &ex);
      if (st != ACLNN_SUCCESS) {
        results[r] = "GetWorkspaceSize failed: " + recentError();
      } else if (aclnnMoeDistributeDispatchV3(nullptr, ws, ex, stream) != ACLNN_SUCCESS) {
        results[r] = "execute failed: " + recentError();
      } else {
        const aclError e = aclrtSynchronizeStream(stream);
        results[r] = e == ACL_SUCCESS ? "ok" : recentError();
      }
      aclDestroyTensor(tids);
      aclrtDestroyStream(stream);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < W; ++r) {
    EXPECT_NE(results[r].find("DispatchV3"), std::string::npos) << "rank " << r << ": " << results[r];
    EXPECT_NE(results[r].find("expertIds"), std::string::npos) << "rank " << r << ": " << results[r];
  }
  for (HcclComm c : comms) HcclCommDestroy(c);
}

}  // namespace
}  // namespace moedist::testing
