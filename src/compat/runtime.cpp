// The CANN runtime on moedist: aclInit/aclFinalize, the recent-error message, devices, contexts and streams.
//
// A device is a rank: the calling thread is bound to one through its current context (aclrtSetDevice binds the
// device's default context, aclrtCreateContext / aclrtSetCurrentContext a context of the caller's choice). A stream
// is a FIFO queue served by its own worker thread; work of one device runs one task at a time across all of its
// streams (each device has an execution mutex that a worker holds while it runs a task). A stream keeps the first
// failure of its work until a synchronize reports it: the synchronize returns the failure as an ACL runtime code,
// and the failure's message becomes the recent error of the synchronizing thread. Handles (contexts, streams) are
// looked up in registries, so a stale or foreign handle is an error code, never a crash.
#include "compat/runtime.h"

#include <fmt/format.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include "compat/runtime_internal.h"

namespace moedist::compat {

namespace {

// ---- the recent-error message (thread-local, as CANN's default err_msg_mode) -------------------------------------

struct RecentError {
  std::string pending;  // what the next aclGetRecentErrMsg returns
  bool has = false;
  std::string returned;  // what the last aclGetRecentErrMsg returned (its pointer stays valid until the next call)
};

RecentError& recentError() {
  thread_local RecentError e;
  return e;
}

// ---- devices, contexts, streams ------------------------------------------------------------------------------------

struct Device {
  explicit Device(int deviceId) : id(deviceId) {}
  const int id;
  std::mutex execMu;  // held by a stream worker while it runs a task: one task at a time per device
};

class Stream {
 public:
  explicit Stream(Device* device) : device_(device), worker_([this] { run(); }) {}
  ~Stream() { stop(); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  Device* device() const { return device_; }

  void push(std::function<Status()> work) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(work));
      ++enqueued_;
    }
    workCv_.notify_one();
  }

  // Waits until the work enqueued before the call has run (timeoutMs < 0: forever). False on timeout. On success,
  // *failure receives the first failure not reported yet (ok when there is none), which is then cleared.
  bool waitDone(int64_t timeoutMs, Status* failure) {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t target = enqueued_;
    auto done = [&] { return completed_ >= target; };
    if (timeoutMs < 0) {
      doneCv_.wait(lock, done);
    } else if (!doneCv_.wait_for(lock, std::chrono::milliseconds(timeoutMs), done)) {
      return false;
    }
    *failure = std::move(firstFailure_);
    firstFailure_ = Status();
    return true;
  }

  // Runs the queued work, then stops the worker.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    workCv_.notify_all();
    if (worker_.joinable()) {
      if (worker_.get_id() == std::this_thread::get_id())
        worker_.detach();  // a task destroyed its own stream; the worker leaves after that task
      else
        worker_.join();
    }
  }

 private:
  void run() {
    for (;;) {
      std::function<Status()> work;
      {
        std::unique_lock<std::mutex> lock(mu_);
        workCv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        work = std::move(queue_.front());
        queue_.pop_front();
      }
      Status st;
      {
        std::lock_guard<std::mutex> exec(device_->execMu);
        st = runGuarded(work);
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!st.ok() && firstFailure_.ok()) firstFailure_ = std::move(st);
        ++completed_;
      }
      doneCv_.notify_all();
    }
  }

  static Status runGuarded(const std::function<Status()>& work) {
    try {
      return work();
    } catch (const std::exception& e) {
      return Status(StatusCode::kInternal, fmt::format("work on a stream threw an exception: {}", e.what()));
    } catch (...) {
      return Status(StatusCode::kInternal, "work on a stream threw an exception");
    }
  }

  Device* const device_;
  std::mutex mu_;
  std::condition_variable workCv_, doneCv_;
  std::deque<std::function<Status()>> queue_;
  uint64_t enqueued_ = 0, completed_ = 0;
  Status firstFailure_;
  bool stopping_ = false;
  std::thread worker_;  // last: starts after the other members exist
};

struct Context {
  Context(Device* dev, bool isDefault) : device(dev), isDefaultContext(isDefault) {}
  Device* const device;
  const bool isDefaultContext;  // a device's default context (aclrtSetDevice) cannot be destroyed by the user
  std::mutex mu;
  std::shared_ptr<Stream> defaultStream;  // created on first use
};

struct Runtime {
  std::mutex mu;
  bool initialized = false;
  std::unordered_map<int, std::unique_ptr<Device>> devices;            // never destroyed
  std::unordered_map<int, std::shared_ptr<Context>> defaultContexts;   // by device id
  std::unordered_map<const void*, std::shared_ptr<Context>> contexts;  // every live context, by handle
  std::unordered_map<const void*, std::shared_ptr<Stream>> streams;    // user streams, by handle
};

// Never destroyed, so that worker threads and other threads' calls at exit never see a dead runtime.
Runtime& runtime() {
  static Runtime* rt = new Runtime();
  return *rt;
}

thread_local const void* tlsContext = nullptr;  // the calling thread's current context (a handle)

bool validDeviceId(int32_t deviceId) {
  return deviceId >= 0 && deviceId < kMaxDevices;
}

// Requires rt.mu.
Device* deviceLocked(Runtime& rt, int deviceId) {
  auto& slot = rt.devices[deviceId];
  if (slot == nullptr) slot = std::make_unique<Device>(deviceId);
  return slot.get();
}

// Requires rt.mu.
std::shared_ptr<Context> defaultContextLocked(Runtime& rt, int deviceId) {
  auto& ctx = rt.defaultContexts[deviceId];
  if (ctx == nullptr) {
    ctx = std::make_shared<Context>(deviceLocked(rt, deviceId), true);
    rt.contexts[ctx.get()] = ctx;
  }
  return ctx;
}

std::shared_ptr<Context> currentContext() {
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mu);
  auto it = rt.contexts.find(tlsContext);
  return it == rt.contexts.end() ? nullptr : it->second;
}

// The stream a handle names: a user stream, or (nullptr) the current context's default stream.
aclError resolveStream(aclrtStream handle, const char* fn, std::shared_ptr<Stream>* out) {
  if (handle == nullptr) {
    std::shared_ptr<Context> ctx = currentContext();
    if (ctx == nullptr)
      return fail(ACL_ERROR_RT_CONTEXT_NULL,
                  fmt::format("{}: the default stream (stream nullptr) needs a current device or context; call "
                              "aclrtSetDevice or aclrtSetCurrentContext first",
                              fn));
    std::lock_guard<std::mutex> lock(ctx->mu);
    if (ctx->defaultStream == nullptr) ctx->defaultStream = std::make_shared<Stream>(ctx->device);
    *out = ctx->defaultStream;
    return ACL_SUCCESS;
  }
  Runtime& rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mu);
  auto it = rt.streams.find(handle);
  if (it == rt.streams.end())
    return fail(ACL_ERROR_RT_INVALID_HANDLE,
                fmt::format("{}: stream {} is not a live stream (never created, or destroyed)", fn, handle));
  *out = it->second;
  return ACL_SUCCESS;
}

aclError synchronize(aclrtStream handle, int64_t timeoutMs, const char* fn) {
  std::shared_ptr<Stream> stream;
  if (aclError err = resolveStream(handle, fn, &stream); err != ACL_SUCCESS) return err;
  Status failure;
  if (!stream->waitDone(timeoutMs, &failure))
    return fail(ACL_ERROR_RT_STREAM_SYNC_TIMEOUT,
                fmt::format("{}: the work on stream {} of device {} did not finish within {} ms", fn, handle,
                            stream->device()->id, timeoutMs));
  // The work on a stream is aclnn operators: a failure comes back as the operator's aclnn code (SPEC decisions 2 and
  // 3: 161002 for bad data found while running, 361001 for a peer not heard from).
  if (!failure.ok()) return fail(toAclnnStatus(failure), failure.message());
  return ACL_SUCCESS;
}

}  // namespace

// ---- internal interface
// ----------------------------------------------------------------------------------------------

aclnnStatus toAclnnStatus(const Status& s) {
  return static_cast<aclnnStatus>(aclnnCode(s.code()));
}

void setRecentError(const std::string& message) {
  RecentError& e = recentError();
  e.pending = message;
  e.has = true;
}

aclError enqueue(aclrtStream stream, std::function<Status()> work) {
  return guarded(
      "enqueue",
      [&]() -> aclError {
        if (!work) return fail(ACL_ERROR_INVALID_PARAM, "enqueue: the work is empty");
        std::shared_ptr<Stream> s;
        if (aclError err = resolveStream(stream, "enqueue", &s); err != ACL_SUCCESS) return err;
        s->push(std::move(work));
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

int currentDevice() {
  std::shared_ptr<Context> ctx = currentContext();
  return ctx == nullptr ? -1 : ctx->device->id;
}

aclError fail(aclError code, const std::string& message) {
  setRecentError(message);
  return code;
}

}  // namespace moedist::compat

// ---- the C entry points
// -----------------------------------------------------------------------------------------------

using moedist::compat::fail;
using moedist::compat::guarded;

extern "C" {

aclError aclInit(const char* configPath) {
  return guarded(
      "aclInit",
      [&]() -> aclError {
        if (configPath != nullptr && configPath[0] != '\0') {
          std::FILE* f = std::fopen(configPath, "rb");
          if (f == nullptr)
            return fail(ACL_ERROR_INVALID_FILE,
                        fmt::format("aclInit: cannot open the configuration file '{}'", configPath));
          std::fclose(f);
        }
        auto& rt = moedist::compat::runtime();
        std::lock_guard<std::mutex> lock(rt.mu);
        if (rt.initialized)
          return fail(ACL_ERROR_REPEAT_INITIALIZE, "aclInit: acl is initialized already (aclInit was called twice)");
        rt.initialized = true;
        return ACL_SUCCESS;
      },
      ACL_ERROR_INTERNAL_ERROR);
}

aclError aclFinalize(void) {
  return guarded(
      "aclFinalize",
      [&]() -> aclError {
        auto& rt = moedist::compat::runtime();
        std::lock_guard<std::mutex> lock(rt.mu);
        if (!rt.initialized)
          return fail(ACL_ERROR_REPEAT_FINALIZE, "aclFinalize: acl is not initialized (no aclInit before)");
        rt.initialized = false;
        return ACL_SUCCESS;
      },
      ACL_ERROR_INTERNAL_ERROR);
}

const char* aclGetRecentErrMsg(void) {
  try {
    auto& e = moedist::compat::recentError();
    if (!e.has) return nullptr;
    e.returned = std::move(e.pending);
    e.pending.clear();
    e.has = false;
    return e.returned.c_str();
  } catch (...) {
    return nullptr;
  }
}

aclError aclrtSetDevice(int32_t deviceId) {
  return guarded(
      "aclrtSetDevice",
      [&]() -> aclError {
        if (!moedist::compat::validDeviceId(deviceId))
          return fail(ACL_ERROR_RT_INVALID_DEVICEID, fmt::format("aclrtSetDevice: deviceId is {}, expected 0..{}",
                                                                 deviceId, moedist::compat::kMaxDevices - 1));
        auto& rt = moedist::compat::runtime();
        std::lock_guard<std::mutex> lock(rt.mu);
        moedist::compat::tlsContext = moedist::compat::defaultContextLocked(rt, deviceId).get();
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtResetDevice(int32_t deviceId) {
  return guarded(
      "aclrtResetDevice",
      [&]() -> aclError {
        if (!moedist::compat::validDeviceId(deviceId))
          return fail(ACL_ERROR_RT_INVALID_DEVICEID, fmt::format("aclrtResetDevice: deviceId is {}, expected 0..{}",
                                                                 deviceId, moedist::compat::kMaxDevices - 1));
        // The device's resources stay (other threads may still use them); the calling thread is unbound from it.
        auto ctx = moedist::compat::currentContext();
        if (ctx != nullptr && ctx->device->id == deviceId) moedist::compat::tlsContext = nullptr;
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtGetDevice(int32_t* deviceId) {
  return guarded(
      "aclrtGetDevice",
      [&]() -> aclError {
        if (deviceId == nullptr) return fail(ACL_ERROR_INVALID_PARAM, "aclrtGetDevice: deviceId is nullptr");
        int dev = moedist::compat::currentDevice();
        if (dev < 0)
          return fail(ACL_ERROR_RT_CONTEXT_NULL, "aclrtGetDevice: the calling thread has no current device or context");
        *deviceId = dev;
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtCreateContext(aclrtContext* context, int32_t deviceId) {
  return guarded(
      "aclrtCreateContext",
      [&]() -> aclError {
        if (context == nullptr) return fail(ACL_ERROR_INVALID_PARAM, "aclrtCreateContext: context is nullptr");
        if (!moedist::compat::validDeviceId(deviceId))
          return fail(ACL_ERROR_RT_INVALID_DEVICEID, fmt::format("aclrtCreateContext: deviceId is {}, expected 0..{}",
                                                                 deviceId, moedist::compat::kMaxDevices - 1));
        auto& rt = moedist::compat::runtime();
        std::lock_guard<std::mutex> lock(rt.mu);
        auto ctx = std::make_shared<moedist::compat::Context>(moedist::compat::deviceLocked(rt, deviceId), false);
        rt.contexts[ctx.get()] = ctx;
        moedist::compat::tlsContext = ctx.get();
        *context = ctx.get();
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtDestroyContext(aclrtContext context) {
  return guarded(
      "aclrtDestroyContext",
      [&]() -> aclError {
        if (context == nullptr) return fail(ACL_ERROR_INVALID_PARAM, "aclrtDestroyContext: context is nullptr");
        std::shared_ptr<moedist::compat::Context> ctx;  // released after the lock: its default stream drains then
        {
          auto& rt = moedist::compat::runtime();
          std::lock_guard<std::mutex> lock(rt.mu);
          auto it = rt.contexts.find(context);
          if (it == rt.contexts.end())
            return fail(ACL_ERROR_RT_INVALID_HANDLE,
                        fmt::format("aclrtDestroyContext: context {} is not a live context", context));
          if (it->second->isDefaultContext)
            return fail(ACL_ERROR_INVALID_PARAM,
                        fmt::format("aclrtDestroyContext: context {} is the default context of device {}, which "
                                    "aclrtResetDevice releases",
                                    context, it->second->device->id));
          ctx = std::move(it->second);
          rt.contexts.erase(it);
        }
        if (moedist::compat::tlsContext == context) moedist::compat::tlsContext = nullptr;
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtSetCurrentContext(aclrtContext context) {
  return guarded(
      "aclrtSetCurrentContext",
      [&]() -> aclError {
        if (context == nullptr) return fail(ACL_ERROR_INVALID_PARAM, "aclrtSetCurrentContext: context is nullptr");
        auto& rt = moedist::compat::runtime();
        std::lock_guard<std::mutex> lock(rt.mu);
        if (rt.contexts.find(context) == rt.contexts.end())
          return fail(ACL_ERROR_RT_INVALID_HANDLE,
                      fmt::format("aclrtSetCurrentContext: context {} is not a live context", context));
        moedist::compat::tlsContext = context;
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtGetCurrentContext(aclrtContext* context) {
  return guarded(
      "aclrtGetCurrentContext",
      [&]() -> aclError {
        if (context == nullptr) return fail(ACL_ERROR_INVALID_PARAM, "aclrtGetCurrentContext: context is nullptr");
        auto ctx = moedist::compat::currentContext();
        if (ctx == nullptr)
          return fail(ACL_ERROR_RT_CONTEXT_NULL, "aclrtGetCurrentContext: the calling thread has no current context");
        *context = ctx.get();
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtCreateStream(aclrtStream* stream) {
  return guarded(
      "aclrtCreateStream",
      [&]() -> aclError {
        if (stream == nullptr) return fail(ACL_ERROR_INVALID_PARAM, "aclrtCreateStream: stream is nullptr");
        auto ctx = moedist::compat::currentContext();
        if (ctx == nullptr)
          return fail(ACL_ERROR_RT_CONTEXT_NULL,
                      "aclrtCreateStream: the calling thread has no current device or context; call aclrtSetDevice "
                      "or aclrtSetCurrentContext first");
        auto s = std::make_shared<moedist::compat::Stream>(ctx->device);
        auto& rt = moedist::compat::runtime();
        std::lock_guard<std::mutex> lock(rt.mu);
        rt.streams[s.get()] = s;
        *stream = s.get();
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtDestroyStream(aclrtStream stream) {
  return guarded(
      "aclrtDestroyStream",
      [&]() -> aclError {
        if (stream == nullptr) return fail(ACL_ERROR_INVALID_PARAM, "aclrtDestroyStream: stream is nullptr");
        std::shared_ptr<moedist::compat::Stream> s;
        {
          auto& rt = moedist::compat::runtime();
          std::lock_guard<std::mutex> lock(rt.mu);
          auto it = rt.streams.find(stream);
          if (it == rt.streams.end())
            return fail(ACL_ERROR_RT_INVALID_HANDLE,
                        fmt::format("aclrtDestroyStream: stream {} is not a live stream", stream));
          s = std::move(it->second);
          rt.streams.erase(it);
        }
        s->stop();  // runs the work still queued, then ends the worker
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtSynchronizeStream(aclrtStream stream) {
  return guarded(
      "aclrtSynchronizeStream",
      [&]() -> aclError { return moedist::compat::synchronize(stream, -1, "aclrtSynchronizeStream"); },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtSynchronizeStreamWithTimeout(aclrtStream stream, int32_t timeout) {
  return guarded(
      "aclrtSynchronizeStreamWithTimeout",
      [&]() -> aclError {
        if (timeout < -1)
          return fail(ACL_ERROR_INVALID_PARAM,
                      fmt::format("aclrtSynchronizeStreamWithTimeout: timeout is {}, expected -1 (wait forever) or a "
                                  "number of milliseconds >= 0",
                                  timeout));
        return moedist::compat::synchronize(stream, timeout, "aclrtSynchronizeStreamWithTimeout");
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

}  // extern "C"
