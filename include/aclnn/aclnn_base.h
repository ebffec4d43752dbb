/* moedist: CANN-compatible aclnn base (aclnnStatus and its codes, the opaque aclTensor and aclOpExecutor,
 * aclCreateTensor and aclDestroyTensor), as in CANN's aclnn_base.h / acl_meta.h. C and C++. */
#ifndef MOEDIST_ACLNN_ACLNN_BASE_H_
#define MOEDIST_ACLNN_ACLNN_BASE_H_

#include <stdint.h>

#include "acl/acl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef ACLNN_API
#define ACLNN_API __attribute__((visibility("default")))
#endif

typedef int32_t aclnnStatus;

#define ACLNN_SUCCESS 0
#define ACLNN_ERR_PARAM_NULLPTR 161001
#define ACLNN_ERR_PARAM_INVALID 161002
#define ACLNN_ERR_RUNTIME_ERROR 361001
#define ACLNN_ERR_INNER 561000
#define ACLNN_ERR_INNER_INFERSHAPE_ERROR 561001
#define ACLNN_ERR_INNER_TILING_ERROR 561002
#define ACLNN_ERR_INNER_FIND_KERNEL_ERROR 561003
#define ACLNN_ERR_INNER_CREATE_EXECUTOR 561101
#define ACLNN_ERR_INNER_NOT_TRANS_EXECUTOR 561102
#define ACLNN_ERR_INNER_NULLPTR 561103

typedef struct aclTensor aclTensor;
typedef struct aclOpExecutor aclOpExecutor;

/* A tensor of `viewDimsNum` (at most 8) dims `viewDims` with element strides `stride` (null: row-major) whose first
 * element is element `offset` of `tensorData`. The storage shape and the format are kept as given. Returns null on
 * bad arguments (aclGetRecentErrMsg says which). Data types other than BF16, FLOAT16, FLOAT, INT8, INT32, INT64 and
 * BOOL give a tensor that the operators reject with ACLNN_ERR_PARAM_INVALID. */
ACL_FUNC_VISIBILITY aclTensor* aclCreateTensor(const int64_t* viewDims, uint64_t viewDimsNum, aclDataType dataType,
                                               const int64_t* stride, int64_t offset, aclFormat format,
                                               const int64_t* storageDims, uint64_t storageDimsNum, void* tensorData);
/* ACLNN_ERR_PARAM_NULLPTR for null, ACLNN_ERR_PARAM_INVALID for a pointer that is not a live tensor. */
ACL_FUNC_VISIBILITY aclnnStatus aclDestroyTensor(const aclTensor* tensor);

#ifdef __cplusplus
}
#endif

#endif /* MOEDIST_ACLNN_ACLNN_BASE_H_ */
