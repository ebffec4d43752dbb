// The public API's own rules: communicator creation and lookup, deadlines from the environment, and the EP and TP
// communicators of one call being different.
#include <gtest/gtest.h>

#include <cstdlib>
#include <thread>
#include <vector>

#include "moedist/moedist.h"

namespace moedist {
namespace {

TEST(Communicator, CreateFindAndNames) {
  std::vector<Communicator> ranks;
  CommOptions o;
  o.name = "api_test_group";
  ASSERT_TRUE(Communicator::createInProcess(3, o, &ranks).ok());
  ASSERT_EQ(ranks.size(), 3u);
  EXPECT_EQ(ranks[2].rank(), 2);
  EXPECT_EQ(ranks[2].size(), 3);
  EXPECT_EQ(ranks[0].name(), "api_test_group");
  Communicator found;
  ASSERT_TRUE(Communicator::find("api_test_group", 1, &found).ok());
  EXPECT_EQ(found.rank(), 1);
  std::vector<Communicator> again;
  const Status dup = Communicator::createInProcess(2, o, &again);
  EXPECT_EQ(dup.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dup.message().find("already exists"), std::string::npos) << dup.message();
  EXPECT_EQ(Communicator::find("api_test_group", 3, &found).code(), StatusCode::kInvalidValue);
  EXPECT_EQ(Communicator::find("no_such_group", 0, &found).code(), StatusCode::kInvalidArgument);
  // Generated names are unique.
  std::vector<Communicator> a, b;
  ASSERT_TRUE(Communicator::createInProcess(1, {}, &a).ok());
  ASSERT_TRUE(Communicator::createInProcess(1, {}, &b).ok());
  EXPECT_NE(a[0].name(), b[0].name());
  EXPECT_LT(a[0].name().size(), 128u);
}

TEST(Communicator, RejectsBadOptions) {
  std::vector<Communicator> ranks;
  EXPECT_EQ(Communicator::createInProcess(0, {}, &ranks).code(), StatusCode::kInvalidValue);
  CommOptions o;
  o.kernels = "gpu";
  const Status s = Communicator::createInProcess(2, o, &ranks);
  EXPECT_EQ(s.code(), StatusCode::kInvalidValue);
  EXPECT_NE(s.message().find("kernels is 'gpu'"), std::string::npos) << s.message();
  o.kernels = "ref";
  ASSERT_TRUE(Communicator::createInProcess(2, o, &ranks).ok());
  EXPECT_STREQ(ranks[0].kernels(), "ref");
}

// SPEC decision 3: HCCL_EXEC_TIMEOUT (seconds) is honoured; MOEDIST_TIMEOUT_MS overrides it; CommOptions wins.
TEST(Communicator, DeadlineFromEnvironment) {
  std::vector<Communicator> ranks;
  setenv("HCCL_EXEC_TIMEOUT", "7", 1);
  unsetenv("MOEDIST_TIMEOUT_MS");
  ASSERT_TRUE(Communicator::createInProcess(1, {}, &ranks).ok());
  EXPECT_EQ(ranks[0].timeout(), std::chrono::seconds(7));
  setenv("MOEDIST_TIMEOUT_MS", "1500", 1);
  ASSERT_TRUE(Communicator::createInProcess(1, {}, &ranks).ok());
  EXPECT_EQ(ranks[0].timeout(), std::chrono::milliseconds(1500));
  CommOptions o;
  o.timeout = std::chrono::milliseconds(250);
  ASSERT_TRUE(Communicator::createInProcess(1, o, &ranks).ok());
  EXPECT_EQ(ranks[0].timeout(), std::chrono::milliseconds(250));
  unsetenv("MOEDIST_TIMEOUT_MS");
  unsetenv("HCCL_EXEC_TIMEOUT");
  ASSERT_TRUE(Communicator::createInProcess(1, {}, &ranks).ok());
  EXPECT_EQ(ranks[0].timeout(), std::chrono::seconds(300));
}

// SPEC decision 2: groupEp equal to groupTp is an error, on every rank.
TEST(Communicator, SameCommunicatorForEpAndTpIsRejected) {
  constexpr int W = 2;
  constexpr int64_t Bs = 1, H = 1024, K = 1, A = Bs * W;  // one expert per rank: L = 1, as TP needs
  std::vector<Communicator> ranks;
  CommOptions o;
  o.timeout = std::chrono::seconds(20);
  ASSERT_TRUE(Communicator::createInProcess(W, o, &ranks).ok());
  std::vector<Status> results(W);
  std::vector<std::thread> threads;
  for (int r = 0; r < W; ++r) {
    threads.emplace_back([&, r] {
      std::vector<uint16_t> x(Bs * H, 0x3F80), expandX(2 * A * H);
      std::vector<int32_t> ids(Bs * K, r), assist(A * 128), epRecv(2 * W), tpRecv(2);
      std::vector<float> dyn(2 * A), expandScales(A);
      std::vector<int64_t> tokenNums(1);
      DispatchArgs d;
      d.moeExpertNum = W;
      d.x = TensorView(x.data(), DType::kBFloat16, {Bs, H});
      d.expertIds = TensorView(ids.data(), DType::kInt32, {Bs, K});
      d.expandX = TensorView(expandX.data(), DType::kBFloat16, {2 * A, H});
      d.dynamicScales = TensorView(dyn.data(), DType::kFloat32, {2 * A});
      d.assistInfoForCombine = TensorView(assist.data(), DType::kInt32, {A * 128});
      d.expertTokenNums = TensorView(tokenNums.data(), DType::kInt64, {1});
      d.epRecvCounts = TensorView(epRecv.data(), DType::kInt32, {2 * W});
      d.tpRecvCounts = TensorView(tpRecv.data(), DType::kInt32, {2});
      d.expandScales = TensorView(expandScales.data(), DType::kFloat32, {A});
      results[static_cast<size_t>(r)] = dispatchV3(ranks[static_cast<size_t>(r)], &ranks[static_cast<size_t>(r)], d);
    });
  }
  for (auto& t : threads) t.join();
  for (const Status& s : results) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.toString();
    EXPECT_NE(s.message().find("groupEp and groupTp are the same communicator"), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace moedist
