/* moedist: CANN-compatible acl API (aclInit, aclFinalize, aclGetRecentErrMsg and the runtime of acl_rt.h).
 * C and C++. */
#ifndef MOEDIST_ACL_ACL_H_
#define MOEDIST_ACL_ACL_H_

#include "acl/acl_base.h"
#include "acl/acl_rt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* configPath may be null (no configuration). A second aclInit without aclFinalize returns
 * ACL_ERROR_REPEAT_INITIALIZE; aclFinalize without aclInit returns ACL_ERROR_REPEAT_FINALIZE. */
ACL_FUNC_VISIBILITY aclError aclInit(const char* configPath);
ACL_FUNC_VISIBILITY aclError aclFinalize(void);

/* The message of the calling thread's most recent failure (of an acl, aclnn or hccl call, or of stream work
 * reported by aclrtSynchronizeStream), then clears it. Returns null when there is none. The pointer is valid until
 * the thread's next call of aclGetRecentErrMsg. */
ACL_FUNC_VISIBILITY const char* aclGetRecentErrMsg(void);

#ifdef __cplusplus
}
#endif

#endif /* MOEDIST_ACL_ACL_H_ */
