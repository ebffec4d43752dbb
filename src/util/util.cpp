#include <cstdio>
#include <cstdlib>
#include <string>

#include "moedist/status.h"
#include "moedist/tensor.h"
#include "util/check.h"
#include "util/env.h"

namespace moedist {

const char* toString(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kNullArgument:
      return "null argument";
    case StatusCode::kInvalidArgument:
      return "invalid argument";
    case StatusCode::kInvalidValue:
      return "invalid value";
    case StatusCode::kTimeout:
      return "timeout";
    case StatusCode::kInternal:
      return "internal error";
  }
  return "unknown";
}

int32_t aclnnCode(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 0;
    case StatusCode::kNullArgument:
      return 161001;  // ACLNN_ERR_PARAM_NULLPTR
    case StatusCode::kInvalidArgument:
      return 161002;  // ACLNN_ERR_PARAM_INVALID
    case StatusCode::kInvalidValue:
      return 561002;  // ACLNN_ERR_INNER_TILING_ERROR
    case StatusCode::kTimeout:
      return 361001;  // ACLNN_ERR_RUNTIME_ERROR
    case StatusCode::kInternal:
      return 561000;  // ACLNN_ERR_INNER
  }
  return 561000;
}

std::string Status::toString() const {
  if (ok()) return "ok";
  return std::string(moedist::toString(code_)) + ": " + message_;
}

const char* toString(DType t) {
  switch (t) {
    case DType::kBFloat16:
      return "bf16";
    case DType::kFloat16:
      return "fp16";
    case DType::kFloat32:
      return "fp32";
    case DType::kInt8:
      return "int8";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kBool:
      return "bool";
  }
  return "?";
}

namespace util {

void checkFailed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "moedist: internal check failed: %s at %s:%d\n", expr, file, line);
  std::abort();
}

namespace {
std::optional<long> envLong(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || x < 0) return std::nullopt;
  return x;
}
}  // namespace

std::optional<std::chrono::milliseconds> envTimeout() {
  if (auto ms = envLong("MOEDIST_TIMEOUT_MS"); ms && *ms > 0) return std::chrono::milliseconds(*ms);
  if (auto s = envLong("HCCL_EXEC_TIMEOUT"); s && *s > 0) return std::chrono::seconds(*s);
  return std::nullopt;
}

std::optional<int> envKernelThreads() {
  if (auto n = envLong("MOEDIST_KERNEL_THREADS"); n && *n > 0 && *n <= 1024) return static_cast<int>(*n);
  return std::nullopt;
}

std::chrono::milliseconds envConnectTimeout() {
  if (auto s = envLong("HCCL_CONNECT_TIMEOUT"); s && *s > 0) return std::chrono::seconds(*s);
  return std::chrono::seconds(120);
}

long envHcclBuffSizeMb() {
  return envLong("HCCL_BUFFSIZE").value_or(200);
}

bool envInprocCopy() {
  return envLong("MOEDIST_INPROC_COPY").value_or(0) == 1;
}

bool envMpiSharedMemory() {
  return envLong("MOEDIST_MPI_SHM").value_or(1) != 0;
}

bool envPush() {
  return envLong("MOEDIST_PUSH").value_or(1) != 0;
}

std::string envKernelTable() {
  const char* v = std::getenv("MOEDIST_KERNELS");
  return v == nullptr ? std::string() : std::string(v);
}

}  // namespace util
}  // namespace moedist
