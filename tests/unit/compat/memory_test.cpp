// Memory of the CANN runtime on moedist (src/compat/memory.cpp): aclrtMalloc/aclrtFree (64-byte aligned host
// memory, a registry that turns double or foreign frees into error codes), aclrtMallocHost/aclrtFreeHost, every
// aclrtMemcpy kind, aclrtMemset, and their argument checks.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "acl/acl.h"

// From c_headers_check.c: aclrtMemcpy called from C with any int as the kind.
extern "C" aclError moedistCMemcpyWithKind(void* dst, size_t destMax, const void* src, size_t count, int kind);

namespace {

std::string recentError() {
  const char* m = aclGetRecentErrMsg();
  return m == nullptr ? std::string() : std::string(m);
}

TEST(Memory, MallocIsAlignedWritableAndFreedOnce) {
  for (size_t size : {size_t{1}, size_t{63}, size_t{64}, size_t{1000}, size_t{1} << 20}) {
    void* p = nullptr;
    ASSERT_EQ(aclrtMalloc(&p, size, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    std::memset(p, 0x5A, size);
    EXPECT_EQ(aclrtFree(p), ACL_SUCCESS);
    EXPECT_EQ(aclrtFree(p), ACL_ERROR_INVALID_PARAM);  // twice
    EXPECT_NE(recentError().find("freed already"), std::string::npos);
  }
  void* p = nullptr;
  ASSERT_EQ(aclrtMalloc(&p, 128, static_cast<aclrtMemMallocPolicy>(ACL_MEM_MALLOC_NORMAL_ONLY | 0x1000)), ACL_SUCCESS);
  EXPECT_EQ(aclrtFree(p), ACL_SUCCESS);
}

TEST(Memory, MallocArgumentErrors) {
  void* p = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(aclrtMalloc(nullptr, 64, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtMalloc(&p, 0, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(p, nullptr);
  EXPECT_NE(recentError().find("size is 0"), std::string::npos);
  EXPECT_EQ(aclrtMalloc(&p, SIZE_MAX, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_BAD_ALLOC);
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(aclrtFree(nullptr), ACL_ERROR_INVALID_PARAM);
  int local = 0;
  EXPECT_EQ(aclrtFree(&local), ACL_ERROR_INVALID_PARAM);  // not from aclrtMalloc
}

TEST(Memory, HostMemoryIsKeptApartFromDeviceMemory) {
  void* h = nullptr;
  void* d = nullptr;
  ASSERT_EQ(aclrtMallocHost(&h, 256), ACL_SUCCESS);
  ASSERT_EQ(aclrtMalloc(&d, 256, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(h) % 64, 0u);
  EXPECT_EQ(aclrtFree(h), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(recentError().find("aclrtFreeHost"), std::string::npos);
  EXPECT_EQ(aclrtFreeHost(d), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtFreeHost(h), ACL_SUCCESS);
  EXPECT_EQ(aclrtFree(d), ACL_SUCCESS);
  EXPECT_EQ(aclrtMallocHost(nullptr, 8), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtFreeHost(nullptr), ACL_ERROR_INVALID_PARAM);
}

TEST(Memory, EveryMemcpyKindCopies) {
  const aclrtMemcpyKind kinds[] = {ACL_MEMCPY_HOST_TO_HOST,
                                   ACL_MEMCPY_HOST_TO_DEVICE,
                                   ACL_MEMCPY_DEVICE_TO_HOST,
                                   ACL_MEMCPY_DEVICE_TO_DEVICE,
                                   ACL_MEMCPY_DEFAULT,
                                   ACL_MEMCPY_HOST_TO_BUF_TO_DEVICE,
                                   ACL_MEMCPY_INNER_DEVICE_TO_DEVICE,
                                   ACL_MEMCPY_INTER_DEVICE_TO_DEVICE};
  void* d = nullptr;
  ASSERT_EQ(aclrtMalloc(&d, 64, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  for (aclrtMemcpyKind kind : kinds) {
    std::vector<uint8_t> src(40), back(40, 0);
    for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7 + static_cast<int>(kind));
    ASSERT_EQ(aclrtMemcpy(d, 64, src.data(), src.size(), kind), ACL_SUCCESS);
    ASSERT_EQ(aclrtMemcpy(back.data(), back.size(), d, back.size(), kind), ACL_SUCCESS);
    EXPECT_EQ(back, src) << "kind " << static_cast<int>(kind);
  }
  EXPECT_EQ(aclrtFree(d), ACL_SUCCESS);
}

TEST(Memory, MemcpyArgumentErrorsLeaveTheDestination) {
  uint8_t src[16], dst[16];
  std::memset(src, 1, sizeof src);
  std::memset(dst, 0, sizeof dst);
  EXPECT_EQ(aclrtMemcpy(dst, 8, src, 16, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(recentError().find("count is 16 bytes, more than destMax (8 bytes)"), std::string::npos);
  EXPECT_EQ(dst[0], 0);
  EXPECT_EQ(aclrtMemcpy(nullptr, 16, src, 16, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtMemcpy(dst, 16, nullptr, 16, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(moedistCMemcpyWithKind(dst, 16, src, 16, 8), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(recentError().find("kind is 8"), std::string::npos);
  EXPECT_EQ(moedistCMemcpyWithKind(dst, 16, src, 16, -1), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(moedistCMemcpyWithKind(dst, 16, src, 16, 1), ACL_SUCCESS);
  dst[0] = 0;
  EXPECT_EQ(dst[0], 0);
  EXPECT_EQ(aclrtMemcpy(dst, 16, src, 0, ACL_MEMCPY_HOST_TO_DEVICE), ACL_SUCCESS);  // nothing to copy
  EXPECT_EQ(aclrtMemcpy(dst, 16, src, 16, ACL_MEMCPY_HOST_TO_DEVICE), ACL_SUCCESS);
  EXPECT_EQ(dst[15], 1);
}

TEST(Memory, Memset) {
  void* d = nullptr;
  ASSERT_EQ(aclrtMalloc(&d, 32, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
  std::memset(d, 0, 32);
  ASSERT_EQ(aclrtMemset(d, 32, 0x1AB, 20), ACL_SUCCESS);  // the low byte of value, as memset
  const auto* b = static_cast<const uint8_t*>(d);
  EXPECT_EQ(b[0], 0xAB);
  EXPECT_EQ(b[19], 0xAB);
  EXPECT_EQ(b[20], 0);
  EXPECT_EQ(aclrtMemset(d, 16, 0, 20), ACL_ERROR_INVALID_PARAM);
  EXPECT_NE(recentError().find("more than maxCount"), std::string::npos);
  EXPECT_EQ(b[0], 0xAB);
  EXPECT_EQ(aclrtMemset(nullptr, 16, 0, 16), ACL_ERROR_INVALID_PARAM);
  EXPECT_EQ(aclrtMemset(d, 32, 0, 0), ACL_SUCCESS);
  EXPECT_EQ(aclrtFree(d), ACL_SUCCESS);
}

}  // namespace
