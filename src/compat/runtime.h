// The CANN-compatible runtime, as the aclnn operator entry points see it (internal to src/compat).
//
// Devices are ranks: aclrtSetDevice / aclrtSetCurrentContext bind the calling thread to a device. "Device
// memory" is host memory. Streams are FIFO queues, each served by its own worker thread, so work enqueued by an
// operator's second phase runs on the stream, and aclrtSynchronizeStream[WithTimeout] waits for it (and reports a
// real timeout). Work of one device runs one task at a time across all of its streams. HCCL communicators are
// moedist Communicators, found by the group name the operators receive.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "moedist/communicator.h"
#include "moedist/status.h"
#include "moedist/tensor.h"

// The tensor object behind CANN's opaque aclTensor: a view (shape, element strides, offset folded into the data
// pointer) plus the storage shape and format the caller declared.
struct aclTensor {
  moedist::TensorView view;
  aclDataType dataType = ACL_DT_UNDEFINED;
  aclFormat format = ACL_FORMAT_ND;
  // Added with the runtime: the arguments of aclCreateTensor that the view does not keep.
  std::vector<int64_t> storageShape;  // storageDims as given
  int64_t offset = 0;                 // the element offset (already folded into view.data())
};

namespace moedist::compat {

// The aclnn code of a moedist status (161001, 161002, 561002, 361001, ...).
aclnnStatus toAclnnStatus(const Status& s);

// Records the message returned by aclGetRecentErrMsg() on this thread (and, for work that runs on a stream, on
// the thread that synchronizes the stream).
void setRecentError(const std::string& message);

// Enqueues `work` on `stream` (nullptr: the current context's default stream). The work's non-ok status is kept
// on the stream: aclrtSynchronizeStream returns it as its aclnn code (toAclnnStatus) and its message becomes the
// recent error.
aclError enqueue(aclrtStream stream, std::function<Status()> work);

// The communicator rank `rank` of the HCCL communicator called `group`.
Status findCommunicator(const char* group, int64_t rank, Communicator* out);

// Added with the runtime:

// True when `t` was returned by aclCreateTensor and not destroyed yet (so a stale or foreign pointer is an error,
// not a crash).
bool isLiveTensor(const aclTensor* t);

// "ACL_BF16", "ACL_FLOAT", ... ("an unknown aclDataType" for values without a name), for messages.
const char* dataTypeName(aclDataType t);

// The moedist DType of an aclDataType; false for the types without one.
bool toDType(aclDataType t, DType* out);

// True for the data types that have a moedist DType (BF16, FLOAT16, FLOAT, INT8, INT32, INT64, BOOL). A tensor of
// any other type has a view whose dtype matches none of DType's enumerators, so every dtype check rejects it.
bool hasMoedistDType(aclDataType t);

// The calling thread's current device (its rank), or -1 when no device or context is bound.
int currentDevice();

// Device ids are 0 .. kMaxDevices - 1 (as many as the ranks of two EP groups of CANN's largest epWorldSize).
inline constexpr int kMaxDevices = 1536;

}  // namespace moedist::compat
