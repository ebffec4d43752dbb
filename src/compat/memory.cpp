// "Device" and host memory of the CANN runtime on moedist: both are host memory, 64-byte aligned. Live
// allocations are kept in a registry, so freeing a pointer twice, or one that aclrtMalloc did not return, is an
// error code rather than heap corruption. Every aclrtMemcpy kind is a host copy; the arguments are checked as
// CANN checks them (non-null pointers, count <= destMax, a known kind).
#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "compat/runtime.h"
#include "compat/runtime_internal.h"

namespace moedist::compat {

namespace {

constexpr size_t kAlignment = 64;

enum class MemKind { kDevice, kHost };

struct Allocations {
  std::mutex mu;
  std::unordered_map<const void*, MemKind> live;
};

Allocations& allocations() {
  static Allocations* a = new Allocations();  // never destroyed: frees may come late at exit
  return *a;
}

aclError allocate(void** ptr, size_t size, MemKind kind, const char* fn) {
  if (ptr == nullptr) return fail(ACL_ERROR_INVALID_PARAM, fmt::format("{}: the output pointer is nullptr", fn));
  *ptr = nullptr;
  if (size == 0) return fail(ACL_ERROR_INVALID_PARAM, fmt::format("{}: size is 0, expected > 0", fn));
  if (size > SIZE_MAX - kAlignment)
    return fail(ACL_ERROR_BAD_ALLOC, fmt::format("{}: cannot allocate {} bytes", fn, size));
  const size_t rounded = (size + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) return fail(ACL_ERROR_BAD_ALLOC, fmt::format("{}: cannot allocate {} bytes", fn, size));
  {
    Allocations& a = allocations();
    std::lock_guard<std::mutex> lock(a.mu);
    a.live[p] = kind;
  }
  *ptr = p;
  return ACL_SUCCESS;
}

aclError release(void* ptr, MemKind kind, const char* fn) {
  if (ptr == nullptr) return fail(ACL_ERROR_INVALID_PARAM, fmt::format("{}: the pointer is nullptr", fn));
  {
    Allocations& a = allocations();
    std::lock_guard<std::mutex> lock(a.mu);
    auto it = a.live.find(ptr);
    if (it == a.live.end())
      return fail(ACL_ERROR_INVALID_PARAM, fmt::format("{}: {} was not allocated by {} (or was freed already)", fn, ptr,
                                                       kind == MemKind::kDevice ? "aclrtMalloc" : "aclrtMallocHost"));
    if (it->second != kind)
      return fail(ACL_ERROR_INVALID_PARAM, fmt::format("{}: {} was allocated by {}; free it with {}", fn, ptr,
                                                       kind == MemKind::kDevice ? "aclrtMallocHost" : "aclrtMalloc",
                                                       kind == MemKind::kDevice ? "aclrtFreeHost" : "aclrtFree"));
    a.live.erase(it);
  }
  std::free(ptr);
  return ACL_SUCCESS;
}

aclError checkCopy(void* dst, size_t destMax, const void* src, size_t count, int64_t kind, const char* fn) {
  if (dst == nullptr) return fail(ACL_ERROR_INVALID_PARAM, fmt::format("{}: dst is nullptr", fn));
  if (src == nullptr) return fail(ACL_ERROR_INVALID_PARAM, fmt::format("{}: src is nullptr", fn));
  if (count > destMax)
    return fail(ACL_ERROR_INVALID_PARAM,
                fmt::format("{}: count is {} bytes, more than destMax ({} bytes)", fn, count, destMax));
  if (kind < ACL_MEMCPY_HOST_TO_HOST || kind > ACL_MEMCPY_INTER_DEVICE_TO_DEVICE)
    return fail(ACL_ERROR_INVALID_PARAM, fmt::format("{}: kind is {}, not an aclrtMemcpyKind", fn, kind));
  return ACL_SUCCESS;
}

}  // namespace

}  // namespace moedist::compat

using moedist::compat::fail;
using moedist::compat::guarded;

extern "C" {

aclError aclrtMalloc(void** devPtr, size_t size, [[maybe_unused]] aclrtMemMallocPolicy policy) {
  // Every policy gets the same (host) memory; the policy is not read.
  return guarded(
      "aclrtMalloc",
      [&] { return moedist::compat::allocate(devPtr, size, moedist::compat::MemKind::kDevice, "aclrtMalloc"); },
      ACL_ERROR_BAD_ALLOC);
}

aclError aclrtFree(void* devPtr) {
  return guarded(
      "aclrtFree", [&] { return moedist::compat::release(devPtr, moedist::compat::MemKind::kDevice, "aclrtFree"); },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtMallocHost(void** hostPtr, size_t size) {
  return guarded(
      "aclrtMallocHost",
      [&] { return moedist::compat::allocate(hostPtr, size, moedist::compat::MemKind::kHost, "aclrtMallocHost"); },
      ACL_ERROR_BAD_ALLOC);
}

aclError aclrtFreeHost(void* hostPtr) {
  return guarded(
      "aclrtFreeHost",
      [&] { return moedist::compat::release(hostPtr, moedist::compat::MemKind::kHost, "aclrtFreeHost"); },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtMemcpy(void* dst, size_t destMax, const void* src, size_t count, aclrtMemcpyKind kind) {
  return guarded(
      "aclrtMemcpy",
      [&]() -> aclError {
        if (aclError err =
                moedist::compat::checkCopy(dst, destMax, src, count, moedist::compat::rawEnum(kind), "aclrtMemcpy");
            err != ACL_SUCCESS)
          return err;
        if (count > 0) std::memmove(dst, src, count);
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtMemcpyAsync(void* dst, size_t destMax, const void* src, size_t count, aclrtMemcpyKind kind,
                          aclrtStream stream) {
  return guarded(
      "aclrtMemcpyAsync",
      [&]() -> aclError {
        if (aclError err = moedist::compat::checkCopy(dst, destMax, src, count, moedist::compat::rawEnum(kind),
                                                      "aclrtMemcpyAsync");
            err != ACL_SUCCESS)
          return err;
        return moedist::compat::enqueue(stream, [dst, src, count]() -> moedist::Status {
          if (count > 0) std::memmove(dst, src, count);
          return moedist::okStatus();
        });
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

aclError aclrtMemset(void* devPtr, size_t maxCount, int32_t value, size_t count) {
  return guarded(
      "aclrtMemset",
      [&]() -> aclError {
        if (devPtr == nullptr) return fail(ACL_ERROR_INVALID_PARAM, "aclrtMemset: devPtr is nullptr");
        if (count > maxCount)
          return fail(ACL_ERROR_INVALID_PARAM,
                      fmt::format("aclrtMemset: count is {} bytes, more than maxCount ({} bytes)", count, maxCount));
        if (count > 0) std::memset(devPtr, static_cast<int>(static_cast<unsigned char>(value)), count);
        return ACL_SUCCESS;
      },
      ACL_ERROR_RT_INTERNAL_ERROR);
}

}  // extern "C"
