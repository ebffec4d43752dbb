/* The CANN-compatible C headers compile as C (C11, -Wall -Wextra -Wpedantic -Werror) and declare what the seed
 * example uses with CANN's signatures: each function is assigned to a pointer of its CANN type. Also two calls
 * made from C, which the compat tests run: C may pass enum values that no enumerator names, which C++ test code
 * cannot do without undefined behaviour. Built by the test suite (target moedist_c_headers_check). */
#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "hccl/hccl.h"

_Static_assert(ACL_BF16 == 27, "ACL_BF16");
_Static_assert(ACL_FLOAT == 0 && ACL_FLOAT16 == 1 && ACL_INT8 == 2 && ACL_INT32 == 3 && ACL_INT64 == 9, "types");
_Static_assert(ACL_FORMAT_ND == 2 && ACL_FORMAT_FRACTAL_NZ == 29, "formats");
_Static_assert(ACL_MEMCPY_HOST_TO_DEVICE == 1 && ACL_MEMCPY_DEVICE_TO_HOST == 2, "memcpy kinds");
_Static_assert(ACLNN_ERR_PARAM_NULLPTR == 161001 && ACLNN_ERR_INNER_TILING_ERROR == 561002, "aclnn codes");
_Static_assert(HCCL_E_PARA == 1 && sizeof(HcclRootInfo) == HCCL_ROOT_INFO_BYTES, "hccl");
_Static_assert(sizeof(aclnnStatus) == 4, "aclnnStatus is int32_t");

void moedistCHeadersCheck(void);
aclError moedistCMemcpyWithKind(void* dst, size_t destMax, const void* src, size_t count, int kind);
aclTensor* moedistCCreateTensor(const int64_t* dims, uint64_t numDims, int dataType, int format, void* data);

aclError moedistCMemcpyWithKind(void* dst, size_t destMax, const void* src, size_t count, int kind) {
  return aclrtMemcpy(dst, destMax, src, count, (aclrtMemcpyKind)kind);
}

aclTensor* moedistCCreateTensor(const int64_t* dims, uint64_t numDims, int dataType, int format, void* data) {
  return aclCreateTensor(dims, numDims, (aclDataType)dataType, 0, 0, (aclFormat)format, dims, numDims, data);
}

void moedistCHeadersCheck(void) {
  aclError (*init)(const char*) = aclInit;
  aclError (*finalize)(void) = aclFinalize;
  const char* (*recent)(void) = aclGetRecentErrMsg;
  aclError (*setDevice)(int32_t) = aclrtSetDevice;
  aclError (*resetDevice)(int32_t) = aclrtResetDevice;
  aclError (*createContext)(aclrtContext*, int32_t) = aclrtCreateContext;
  aclError (*destroyContext)(aclrtContext) = aclrtDestroyContext;
  aclError (*setContext)(aclrtContext) = aclrtSetCurrentContext;
  aclError (*createStream)(aclrtStream*) = aclrtCreateStream;
  aclError (*destroyStream)(aclrtStream) = aclrtDestroyStream;
  aclError (*sync)(aclrtStream) = aclrtSynchronizeStream;
  aclError (*syncTimeout)(aclrtStream, int32_t) = aclrtSynchronizeStreamWithTimeout;
  aclError (*mallocFn)(void**, size_t, aclrtMemMallocPolicy) = aclrtMalloc;
  aclError (*freeFn)(void*) = aclrtFree;
  aclError (*memcpyFn)(void*, size_t, const void*, size_t, aclrtMemcpyKind) = aclrtMemcpy;
  aclError (*memsetFn)(void*, size_t, int32_t, size_t) = aclrtMemset;
  aclTensor* (*createTensor)(const int64_t*, uint64_t, aclDataType, const int64_t*, int64_t, aclFormat, const int64_t*,
                             uint64_t, void*) = aclCreateTensor;
  aclnnStatus (*destroyTensor)(const aclTensor*) = aclDestroyTensor;
  HcclResult (*initAll)(uint32_t, int32_t*, HcclComm*) = HcclCommInitAll;
  HcclResult (*getName)(HcclComm, char*) = HcclGetCommName;
  HcclResult (*destroyComm)(HcclComm) = HcclCommDestroy;
  HcclResult (*rankSize)(HcclComm, uint32_t*) = HcclGetRankSize;
  HcclResult (*rankId)(HcclComm, uint32_t*) = HcclGetRankId;
  aclOpExecutor* executor = 0;
  HcclRootInfo root;
  aclError ok = ACL_SUCCESS;
  (void)init, (void)finalize, (void)recent, (void)setDevice, (void)resetDevice, (void)createContext;
  (void)destroyContext, (void)setContext, (void)createStream, (void)destroyStream, (void)sync, (void)syncTimeout;
  (void)mallocFn, (void)freeFn, (void)memcpyFn, (void)memsetFn, (void)createTensor, (void)destroyTensor;
  (void)initAll, (void)getName, (void)destroyComm, (void)rankSize, (void)rankId, (void)executor, (void)root, (void)ok;
}
