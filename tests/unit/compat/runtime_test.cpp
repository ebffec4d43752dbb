// The CANN runtime on moedist (src/compat/runtime.cpp): aclInit/aclFinalize, devices and contexts as the calling
// thread's binding, streams as FIFO queues with their own worker (order, one task at a time per device, the first
// failure and its message reported by synchronize, a real timeout), the recent-error message, and the status
// mappings. Each test that depends on the thread's binding runs on a fresh thread.
#include "compat/runtime.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "acl/acl.h"

namespace moedist::compat {
namespace {

using namespace std::chrono_literals;

// Runs `f` on a new thread (a thread with no device or context bound) and waits for it.
template <class F>
void onFreshThread(F f) {
  std::thread t(f);
  t.join();
}

std::string recentError() {
  const char* m = aclGetRecentErrMsg();
  return m == nullptr ? std::string() : std::string(m);
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(AclInit, InitFinalizeAndRepeats) {
  ASSERT_EQ(aclInit(nullptr), ACL_SUCCESS);
  EXPECT_EQ(aclInit(nullptr), ACL_ERROR_REPEAT_INITIALIZE);
  EXPECT_TRUE(contains(recentError(), "aclInit"));
  EXPECT_EQ(aclFinalize(), ACL_SUCCESS);
  EXPECT_EQ(aclFinalize(), ACL_ERROR_REPEAT_FINALIZE);
  EXPECT_EQ(aclInit("/nonexistent/moedist/acl.json"), ACL_ERROR_INVALID_FILE);
  EXPECT_TRUE(contains(recentError(), "/nonexistent/moedist/acl.json"));
  ASSERT_EQ(aclInit(""), ACL_SUCCESS);  // an empty path is no configuration
  EXPECT_EQ(aclFinalize(), ACL_SUCCESS);
}

TEST(RecentError, ReturnsThenClearsAndIsPerThread) {
  (void)aclGetRecentErrMsg();  // whatever an earlier test left
  EXPECT_EQ(aclGetRecentErrMsg(), nullptr);
  setRecentError("first");
  setRecentError("second");
  const char* m = aclGetRecentErrMsg();
  ASSERT_NE(m, nullptr);
  EXPECT_STREQ(m, "second");
  EXPECT_EQ(aclGetRecentErrMsg(), nullptr);  // cleared
  setRecentError("main thread only");
  onFreshThread([] { EXPECT_EQ(aclGetRecentErrMsg(), nullptr); });
  EXPECT_EQ(recentError(), "main thread only");
}

TEST(Devices, SetGetReset) {
  onFreshThread([] {
    int32_t dev = -7;
    EXPECT_EQ(aclrtGetDevice(&dev), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_EQ(currentDevice(), -1);
    EXPECT_EQ(aclrtSetDevice(-1), ACL_ERROR_RT_INVALID_DEVICEID);
    EXPECT_TRUE(contains(recentError(), "deviceId is -1"));
    EXPECT_EQ(aclrtSetDevice(kMaxDevices), ACL_ERROR_RT_INVALID_DEVICEID);
    ASSERT_EQ(aclrtSetDevice(3), ACL_SUCCESS);
    ASSERT_EQ(aclrtGetDevice(&dev), ACL_SUCCESS);
    EXPECT_EQ(dev, 3);
    EXPECT_EQ(currentDevice(), 3);
    EXPECT_EQ(aclrtGetDevice(nullptr), ACL_ERROR_INVALID_PARAM);
    ASSERT_EQ(aclrtSetDevice(4), ACL_SUCCESS);  // rebinding is fine
    EXPECT_EQ(currentDevice(), 4);
    EXPECT_EQ(aclrtResetDevice(3), ACL_SUCCESS);  // not the current one: the binding stays
    EXPECT_EQ(currentDevice(), 4);
    EXPECT_EQ(aclrtResetDevice(4), ACL_SUCCESS);
    EXPECT_EQ(currentDevice(), -1);
    EXPECT_EQ(aclrtResetDevice(-2), ACL_ERROR_RT_INVALID_DEVICEID);
  });
}

TEST(Contexts, CreateSetDestroy) {
  aclrtContext ctx = nullptr;
  onFreshThread([&] {
    EXPECT_EQ(aclrtCreateContext(nullptr, 0), ACL_ERROR_INVALID_PARAM);
    EXPECT_EQ(aclrtCreateContext(&ctx, kMaxDevices), ACL_ERROR_RT_INVALID_DEVICEID);
    ASSERT_EQ(aclrtCreateContext(&ctx, 5), ACL_SUCCESS);
    EXPECT_EQ(currentDevice(), 5);  // a new context is current on the creating thread
    aclrtContext cur = nullptr;
    ASSERT_EQ(aclrtGetCurrentContext(&cur), ACL_SUCCESS);
    EXPECT_EQ(cur, ctx);
  });
  // Another thread binds the context, as the CANN example's rank threads do.
  onFreshThread([&] {
    aclrtContext cur = nullptr;
    EXPECT_EQ(aclrtGetCurrentContext(&cur), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_EQ(aclrtGetCurrentContext(nullptr), ACL_ERROR_INVALID_PARAM);
    ASSERT_EQ(aclrtSetCurrentContext(ctx), ACL_SUCCESS);
    EXPECT_EQ(currentDevice(), 5);
    int bogus = 0;
    EXPECT_EQ(aclrtSetCurrentContext(&bogus), ACL_ERROR_RT_INVALID_HANDLE);
    EXPECT_TRUE(contains(recentError(), "not a live context"));
    EXPECT_EQ(aclrtSetCurrentContext(nullptr), ACL_ERROR_INVALID_PARAM);
    EXPECT_EQ(currentDevice(), 5);  // a failed call leaves the binding
    ASSERT_EQ(aclrtDestroyContext(ctx), ACL_SUCCESS);
    EXPECT_EQ(currentDevice(), -1);  // it was current here
    EXPECT_EQ(aclrtDestroyContext(ctx), ACL_ERROR_RT_INVALID_HANDLE);
    EXPECT_EQ(aclrtSetCurrentContext(ctx), ACL_ERROR_RT_INVALID_HANDLE);
    EXPECT_EQ(aclrtDestroyContext(nullptr), ACL_ERROR_INVALID_PARAM);
  });
}

TEST(Contexts, DefaultContextIsNotDestroyable) {
  onFreshThread([] {
    ASSERT_EQ(aclrtSetDevice(6), ACL_SUCCESS);
    aclrtContext def = nullptr;
    ASSERT_EQ(aclrtGetCurrentContext(&def), ACL_SUCCESS);
    EXPECT_EQ(aclrtDestroyContext(def), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(contains(recentError(), "aclrtResetDevice"));
    EXPECT_EQ(currentDevice(), 6);
  });
}

TEST(Streams, NeedACurrentContext) {
  onFreshThread([] {
    aclrtStream s = nullptr;
    EXPECT_EQ(aclrtCreateStream(&s), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_TRUE(contains(recentError(), "aclrtSetDevice"));
    EXPECT_EQ(aclrtSynchronizeStream(nullptr), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_EQ(enqueue(nullptr, [] { return okStatus(); }), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_EQ(aclrtCreateStream(nullptr), ACL_ERROR_INVALID_PARAM);
  });
}

TEST(Streams, WorkRunsInOrderOnTheStreamsThread) {
  onFreshThread([] {
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
    aclrtStream s = nullptr;
    ASSERT_EQ(aclrtCreateStream(&s), ACL_SUCCESS);
    std::vector<int> order;  // written by the worker only; read after synchronize
    std::vector<std::thread::id> ids;
    for (int i = 0; i < 200; ++i) {
      ASSERT_EQ(enqueue(s,
                        [&order, &ids, i] {
                          order.push_back(i);
                          ids.push_back(std::this_thread::get_id());
                          return okStatus();
                        }),
                ACL_SUCCESS);
    }
    ASSERT_EQ(aclrtSynchronizeStream(s), ACL_SUCCESS);
    ASSERT_EQ(order.size(), 200u);
    for (int i = 0; i < 200; ++i) EXPECT_EQ(order[i], i);
    for (auto id : ids) EXPECT_NE(id, std::this_thread::get_id());
    EXPECT_EQ(aclrtDestroyStream(s), ACL_SUCCESS);
  });
}

TEST(Streams, SynchronizeReportsTheFirstFailureAndItsMessageOnce) {
  onFreshThread([] {
    ASSERT_EQ(aclrtSetDevice(1), ACL_SUCCESS);
    aclrtStream s = nullptr;
    ASSERT_EQ(aclrtCreateStream(&s), ACL_SUCCESS);
    int ran = 0;
    ASSERT_EQ(enqueue(s, [&] { return ++ran, okStatus(); }), ACL_SUCCESS);
    ASSERT_EQ(enqueue(s, [&] { return ++ran, Status(StatusCode::kInvalidValue, "Op: expandX.dim0 is 3, expected 4"); }),
              ACL_SUCCESS);
    ASSERT_EQ(enqueue(s, [&] { return ++ran, Status(StatusCode::kTimeout, "second failure"); }), ACL_SUCCESS);
    ASSERT_EQ(enqueue(s, [&] { return ++ran, okStatus(); }), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(s, 10000), ACLNN_ERR_INNER_TILING_ERROR);  // kInvalidValue: 561002
    EXPECT_EQ(recentError(), "Op: expandX.dim0 is 3, expected 4");
    EXPECT_EQ(ran, 4);                                  // work after a failure still runs
    EXPECT_EQ(aclrtSynchronizeStream(s), ACL_SUCCESS);  // reported once
    ASSERT_EQ(enqueue(s, [] { return Status(StatusCode::kTimeout, "peer rank 3 not heard from"); }), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStream(s), ACLNN_ERR_RUNTIME_ERROR);  // kTimeout: 361001 (SPEC decision 3)
    EXPECT_EQ(recentError(), "peer rank 3 not heard from");
    EXPECT_EQ(aclrtDestroyStream(s), ACL_SUCCESS);
  });
}

TEST(Streams, TheFailureIsReportedOnTheSynchronizingThread) {
  aclrtStream s = nullptr;
  onFreshThread([&] {
    ASSERT_EQ(aclrtSetDevice(2), ACL_SUCCESS);
    ASSERT_EQ(aclrtCreateStream(&s), ACL_SUCCESS);
    ASSERT_EQ(enqueue(s, [] { return Status(StatusCode::kNullArgument, "x is nullptr"); }), ACL_SUCCESS);
    EXPECT_EQ(aclGetRecentErrMsg(), nullptr);  // enqueueing is no failure
  });
  onFreshThread([&] {
    EXPECT_EQ(aclrtSynchronizeStream(s), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_EQ(recentError(), "x is nullptr");
    EXPECT_EQ(aclrtDestroyStream(s), ACL_SUCCESS);
  });
}

TEST(Streams, AnExceptionInTheWorkIsAnInternalError) {
  onFreshThread([] {
    ASSERT_EQ(aclrtSetDevice(2), ACL_SUCCESS);
    aclrtStream s = nullptr;
    ASSERT_EQ(aclrtCreateStream(&s), ACL_SUCCESS);
    ASSERT_EQ(enqueue(s, []() -> Status { throw std::runtime_error("boom"); }), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStream(s), ACLNN_ERR_INNER);
    EXPECT_TRUE(contains(recentError(), "boom"));
    EXPECT_EQ(aclrtDestroyStream(s), ACL_SUCCESS);
  });
}

TEST(Streams, SynchronizeWithTimeoutTimesOutOnBlockedWorkThenSucceeds) {
  onFreshThread([] {
    ASSERT_EQ(aclrtSetDevice(7), ACL_SUCCESS);
    aclrtStream s = nullptr;
    ASSERT_EQ(aclrtCreateStream(&s), ACL_SUCCESS);
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    ASSERT_EQ(enqueue(s,
                      [released] {
                        released.wait();
                        return okStatus();
                      }),
              ACL_SUCCESS);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(s, 100), ACL_ERROR_RT_STREAM_SYNC_TIMEOUT);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
    EXPECT_TRUE(contains(recentError(), "did not finish within 100 ms"));
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(s, 0), ACL_ERROR_RT_STREAM_SYNC_TIMEOUT);  // 0: just look
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(s, -2), ACL_ERROR_INVALID_PARAM);
    release.set_value();
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(s, -1), ACL_SUCCESS);  // -1: wait forever
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(s, 0), ACL_SUCCESS);
    EXPECT_EQ(aclrtDestroyStream(s), ACL_SUCCESS);
  });
}

TEST(Streams, OneTaskAtATimePerDeviceAcrossItsStreams) {
  onFreshThread([] {
    ASSERT_EQ(aclrtSetDevice(8), ACL_SUCCESS);
    aclrtStream a = nullptr, b = nullptr;
    ASSERT_EQ(aclrtCreateStream(&a), ACL_SUCCESS);
    ASSERT_EQ(aclrtCreateStream(&b), ACL_SUCCESS);
    std::atomic<int> active{0}, maxActive{0};
    auto task = [&] {
      const int now = ++active;
      int prev = maxActive.load();
      while (now > prev && !maxActive.compare_exchange_weak(prev, now)) {
      }
      std::this_thread::sleep_for(1ms);
      --active;
      return okStatus();
    };
    for (int i = 0; i < 20; ++i) {
      ASSERT_EQ(enqueue(a, task), ACL_SUCCESS);
      ASSERT_EQ(enqueue(b, task), ACL_SUCCESS);
    }
    EXPECT_EQ(aclrtSynchronizeStream(a), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStream(b), ACL_SUCCESS);
    EXPECT_EQ(maxActive.load(), 1);
    EXPECT_EQ(aclrtDestroyStream(a), ACL_SUCCESS);
    EXPECT_EQ(aclrtDestroyStream(b), ACL_SUCCESS);
  });
}

TEST(Streams, DifferentDevicesRunAtTheSameTime) {
  // Two tasks on two devices wait for each other: this finishes only if they run concurrently.
  aclrtStream s[2] = {nullptr, nullptr};
  for (int d = 0; d < 2; ++d)
    onFreshThread([&, d] {
      ASSERT_EQ(aclrtSetDevice(10 + d), ACL_SUCCESS);
      ASSERT_EQ(aclrtCreateStream(&s[d]), ACL_SUCCESS);
    });
  std::atomic<int> arrived{0};
  auto task = [&] {
    ++arrived;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (arrived.load() < 2) {
      if (std::chrono::steady_clock::now() > deadline) return Status(StatusCode::kTimeout, "peer never arrived");
      std::this_thread::yield();
    }
    return okStatus();
  };
  ASSERT_EQ(enqueue(s[0], task), ACL_SUCCESS);
  ASSERT_EQ(enqueue(s[1], task), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeStream(s[0]), ACL_SUCCESS);
  EXPECT_EQ(aclrtSynchronizeStream(s[1]), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyStream(s[0]), ACL_SUCCESS);
  EXPECT_EQ(aclrtDestroyStream(s[1]), ACL_SUCCESS);
}

TEST(Streams, NullStreamIsTheContextsDefaultStream) {
  onFreshThread([] {
    ASSERT_EQ(aclrtSetDevice(9), ACL_SUCCESS);
    std::vector<int> order;
    for (int i = 0; i < 10; ++i)
      ASSERT_EQ(enqueue(nullptr, [&order, i] { return order.push_back(i), okStatus(); }), ACL_SUCCESS);
    ASSERT_EQ(aclrtSynchronizeStream(nullptr), ACL_SUCCESS);
    ASSERT_EQ(order.size(), 10u);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(order[i], i);
    ASSERT_EQ(enqueue(nullptr, [] { return Status(StatusCode::kInvalidArgument, "on the default stream"); }),
              ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(nullptr, 5000), ACLNN_ERR_PARAM_INVALID);
    EXPECT_EQ(recentError(), "on the default stream");
  });
}

TEST(Streams, DestroyRunsQueuedWorkAndStaleHandlesAreErrors) {
  onFreshThread([] {
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
    aclrtStream s = nullptr;
    ASSERT_EQ(aclrtCreateStream(&s), ACL_SUCCESS);
    std::atomic<int> ran{0};
    for (int i = 0; i < 5; ++i)
      ASSERT_EQ(enqueue(s,
                        [&] {
                          std::this_thread::sleep_for(2ms);
                          ++ran;
                          return okStatus();
                        }),
                ACL_SUCCESS);
    ASSERT_EQ(aclrtDestroyStream(s), ACL_SUCCESS);
    EXPECT_EQ(ran.load(), 5);
    EXPECT_EQ(aclrtDestroyStream(s), ACL_ERROR_RT_INVALID_HANDLE);
    EXPECT_EQ(aclrtSynchronizeStream(s), ACL_ERROR_RT_INVALID_HANDLE);
    EXPECT_TRUE(contains(recentError(), "not a live stream"));
    EXPECT_EQ(enqueue(s, [] { return okStatus(); }), ACL_ERROR_RT_INVALID_HANDLE);
    EXPECT_EQ(aclrtDestroyStream(nullptr), ACL_ERROR_INVALID_PARAM);
    int bogus = 0;
    EXPECT_EQ(aclrtSynchronizeStreamWithTimeout(&bogus, 10), ACL_ERROR_RT_INVALID_HANDLE);
    EXPECT_EQ(enqueue(nullptr, std::function<Status()>()), ACL_ERROR_INVALID_PARAM);
  });
}

TEST(Streams, MemcpyAsyncRunsInStreamOrder) {
  onFreshThread([] {
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
    aclrtStream s = nullptr;
    ASSERT_EQ(aclrtCreateStream(&s), ACL_SUCCESS);
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    ASSERT_EQ(enqueue(s, [released] { return released.wait(), okStatus(); }), ACL_SUCCESS);
    int src = 42, dst = 0;
    ASSERT_EQ(aclrtMemcpyAsync(&dst, sizeof dst, &src, sizeof src, ACL_MEMCPY_DEVICE_TO_HOST, s), ACL_SUCCESS);
    EXPECT_EQ(dst, 0);  // behind the blocked task
    release.set_value();
    ASSERT_EQ(aclrtSynchronizeStream(s), ACL_SUCCESS);
    EXPECT_EQ(dst, 42);
    EXPECT_EQ(aclrtMemcpyAsync(&dst, 2, &src, sizeof src, ACL_MEMCPY_DEVICE_TO_HOST, s), ACL_ERROR_INVALID_PARAM);
    EXPECT_EQ(aclrtDestroyStream(s), ACL_SUCCESS);
  });
}

TEST(StatusMapping, AclnnCodes) {
  EXPECT_EQ(toAclnnStatus(okStatus()), ACLNN_SUCCESS);
  EXPECT_EQ(toAclnnStatus(Status(StatusCode::kNullArgument, "")), 161001);
  EXPECT_EQ(toAclnnStatus(Status(StatusCode::kInvalidArgument, "")), 161002);
  EXPECT_EQ(toAclnnStatus(Status(StatusCode::kInvalidValue, "")), 561002);
  EXPECT_EQ(toAclnnStatus(Status(StatusCode::kTimeout, "")), 361001);
  EXPECT_EQ(toAclnnStatus(Status(StatusCode::kInternal, "")), 561000);
}

TEST(CannValues, EnumsAndCodes) {
  EXPECT_EQ(ACL_BF16, 27);
  EXPECT_EQ(ACL_FLOAT16, 1);
  EXPECT_EQ(ACL_INT64, 9);
  EXPECT_EQ(ACL_BOOL, 12);
  EXPECT_EQ(ACL_FORMAT_ND, 2);
  EXPECT_EQ(ACL_FORMAT_FRACTAL_NZ, 29);
  EXPECT_EQ(ACL_MEMCPY_HOST_TO_DEVICE, 1);
  EXPECT_EQ(ACL_MEMCPY_DEVICE_TO_HOST, 2);
  EXPECT_EQ(ACL_MEM_MALLOC_HUGE_FIRST, 0);
  EXPECT_EQ(ACL_ERROR_INVALID_PARAM, 100000);
  EXPECT_EQ(ACL_ERROR_RT_STREAM_SYNC_TIMEOUT, 507046);
  EXPECT_EQ(ACL_ERROR_RT_CONTEXT_NULL, 107002);
  EXPECT_EQ(ACLNN_ERR_PARAM_NULLPTR, 161001);
  EXPECT_EQ(ACLNN_ERR_PARAM_INVALID, 161002);
  EXPECT_EQ(ACLNN_ERR_RUNTIME_ERROR, 361001);
  EXPECT_EQ(ACLNN_ERR_INNER, 561000);
  EXPECT_EQ(ACLNN_ERR_INNER_TILING_ERROR, 561002);
  // The seed example names enumerators through their type, as C++ allows for these typedef'd enums.
  EXPECT_EQ(aclFormat::ACL_FORMAT_ND, ACL_FORMAT_ND);
  EXPECT_EQ(aclDataType::ACL_BF16, ACL_BF16);
}

}  // namespace
}  // namespace moedist::compat
