// The CANN-compatible runtime, as the aclnn operator entry points see it (internal to src/compat).
//
// Devices are ranks: aclrtSetDevice / aclrtSetCurrentContext bind the calling thread to a device. "Device
// memory" is host memory. Streams are FIFO queues, each served by its own worker thread, so work enqueued by an
// operator's second phase runs on the stream, and aclrtSynchronizeStream[WithTimeout] waits for it (and reports a
// real timeout). Work of one device runs one task at a time across all of its streams. HCCL communicators are
// moedist Communicators, found by the group name the operators receive.
#pragma once

#include <functional>
#include <string>

#include "acl/acl.h"
#include "moedist/communicator.h"
#include "moedist/status.h"
#include "moedist/tensor.h"

// The tensor object behind CANN's opaque aclTensor: a view (shape, element strides, offset folded into the data
// pointer) plus the storage shape and format the caller declared.
struct aclTensor {
  moedist::TensorView view;
  aclDataType dataType = ACL_DT_UNDEFINED;
  aclFormat format = ACL_FORMAT_ND;
};

namespace moedist::compat {

// The aclnn code of a moedist status (161001, 161002, 561002, 361001, ...).
aclnnStatus toAclnnStatus(const Status& s);

// Records the message returned by aclGetRecentErrMsg() on this thread (and, for work that runs on a stream, on
// the thread that synchronizes the stream).
void setRecentError(const std::string& message);

// Enqueues `work` on `stream` (nullptr: the current context's default stream). The work's non-ok status is kept
// on the stream: aclrtSynchronizeStream reports it (as ACL_ERROR_RT_*) and its message becomes the recent error.
aclError enqueue(aclrtStream stream, std::function<Status()> work);

// The communicator rank `rank` of the HCCL communicator called `group`.
Status findCommunicator(const char* group, int64_t rank, Communicator* out);

}  // namespace moedist::compat
