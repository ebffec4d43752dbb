// Small helpers of the CANN example programs: error checks and a device tensor that owns its memory.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "hccl/hccl.h"

// Evaluates a CANN call; on failure prints the call, its code and CANN's last error message, and returns 1.
#define CHECK(call)                                                                                    \
  do {                                                                                                 \
    const int checkRet = static_cast<int>(call);                                                       \
    if (checkRet != 0) {                                                                               \
      const char* checkMsg = aclGetRecentErrMsg();                                                     \
      std::fprintf(stderr, "[ERROR] %s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #call, checkRet, \
                   checkMsg != nullptr ? checkMsg : "");                                               \
      return 1;                                                                                        \
    }                                                                                                  \
  } while (0)

// A dense ND tensor in device memory, filled from host data. It frees itself.
class DeviceTensor {
 public:
  DeviceTensor() = default;
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  ~DeviceTensor() {
    if (tensor_ != nullptr) aclDestroyTensor(tensor_);
    if (data_ != nullptr) aclrtFree(data_);
  }

  // Allocates the tensor with the given shape and dtype and copies `host` (shape-sized) into it.
  template <typename T>
  int create(const std::vector<T>& host, const std::vector<int64_t>& shape, aclDataType dtype) {
    bytes_ = host.size() * sizeof(T);
    int ret = aclrtMalloc(&data_, bytes_, ACL_MEM_MALLOC_HUGE_FIRST);
    if (ret != ACL_SUCCESS) return ret;
    ret = aclrtMemcpy(data_, bytes_, host.data(), bytes_, ACL_MEMCPY_HOST_TO_DEVICE);
    if (ret != ACL_SUCCESS) return ret;
    std::vector<int64_t> strides(shape.size(), 1);
    for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i) strides[i] = shape[i + 1] * strides[i + 1];
    tensor_ = aclCreateTensor(shape.data(), shape.size(), dtype, strides.data(), 0, ACL_FORMAT_ND, shape.data(),
                              shape.size(), data_);
    return tensor_ != nullptr ? ACL_SUCCESS : ACL_ERROR_INVALID_PARAM;
  }

  // Copies the whole tensor back to the host.
  template <typename T>
  int read(std::vector<T>* host) const {
    host->resize(bytes_ / sizeof(T));
    return aclrtMemcpy(host->data(), bytes_, data_, bytes_, ACL_MEMCPY_DEVICE_TO_HOST);
  }

  aclTensor* get() const { return tensor_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  aclTensor* tensor_ = nullptr;
};

// Runs runRank(d, &line) on one thread per device (a non-zero return is a failure), then, when every device
// succeeded, prints the digest line of each device that `printed` selects (all when it is empty), in device order.
// Returns false, after naming the failed devices, when any device failed.
inline bool runDevices(int numDevices, const std::function<int(int, std::string*)>& runRank,
                       const std::function<bool(int)>& printed = {}) {
  std::vector<std::string> lines(static_cast<size_t>(numDevices));
  std::vector<int> results(static_cast<size_t>(numDevices), 1);
  std::vector<std::thread> threads;
  for (int d = 0; d < numDevices; ++d)
    threads.emplace_back([&, d] { results[static_cast<size_t>(d)] = runRank(d, &lines[static_cast<size_t>(d)]); });
  for (auto& t : threads) t.join();
  bool ok = true;
  for (int d = 0; d < numDevices; ++d) {
    if (results[static_cast<size_t>(d)] != 0) {
      std::fprintf(stderr, "[ERROR] device %d failed\n", d);
      ok = false;
    }
  }
  if (!ok) return false;
  for (int d = 0; d < numDevices; ++d)
    if (!printed || printed(d)) std::printf("%s\n", lines[static_cast<size_t>(d)].c_str());
  return true;
}
