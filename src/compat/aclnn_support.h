// What the aclnn operator entry points (aclnn_ops.cpp) share: turning aclTensor* into moedist views, the op_api
// checks on group names, and the executors that carry one call from GetWorkspaceSize to the execute function.
//
// Executors. GetWorkspaceSize returns a handle to a heap object holding a copy of the call (the argument
// struct with its tensor views, the rank attributes and the group names). The handle is a token, not the
// object's address: tokens are never reused, so a stale or made-up handle is recognised by a registry look-up
// and never dereferenced. The execute function takes the executor out of the registry (single use), whether the
// call then succeeds or not; a handle of another operator is refused and left in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "compat/runtime.h"
#include "moedist/args.h"
#include "moedist/ops.h"
#include "moedist/status.h"
#include "moedist/tensor.h"

namespace moedist::compat {

// One operator call, as GetWorkspaceSize checked it.
struct AclnnCall {
  Operator op = Operator::kDispatchV3;
  RankAttrs ranks;
  std::string groupEp;
  std::string groupTp;
  std::variant<DispatchArgs, CombineArgs> args;  // DispatchArgs for the dispatch ops, CombineArgs for the others
  uint64_t workspaceBytes = 0;                   // what GetWorkspaceSize reported
};

// Registers `call` and returns its handle.
aclOpExecutor* registerExecutor(std::unique_ptr<AclnnCall> call);

// Takes the executor `handle` out of the registry for an execute call of operator `op`:
//   null handle                     -> kNullArgument (161001)
//   unknown, used, or another op's  -> kInvalidArgument (161002); another op's executor stays registered
Status takeExecutor(aclOpExecutor* handle, Operator op, std::unique_ptr<AclnnCall>* out);

// Number of live executors (for tests).
size_t liveExecutorCount();

// Turns the aclTensor arguments of one call into views. A dtype or format moedist has no counterpart for is
// replaced by one that core's framework check refuses for that argument, and fix() puts the caller's real
// dtype or format back into that message. A pointer that is not a live aclTensor is read as absent and
// recorded: dead() is the first such failure (kInvalidArgument), to be reported before core runs.
class TensorReader {
 public:
  explicit TensorReader(Operator op) : op_(toString(op)) {}
  TensorView operator()(const aclTensor* t, const char* name);
  Status fix(Status s) const;
  const Status& dead() const { return dead_; }

 private:
  const char* op_;
  Status dead_;
  struct Substitute {
    std::string name;
    std::string what;  // "dtype" or "format"
    std::string used;  // how core names the substitute ("int64", "FRACTAL_NZ")
    std::string real;  // how the message should name the caller's value
  };
  std::vector<Substitute> substitutes_;
};

// A failure of argument `arg` of operator `op`, in core's message format.
Status argError(StatusCode code, Operator op, const std::string& arg, const std::string& expected,
                const std::string& got);

// The op_api checks on required tensors: each null entry fails with kNullArgument, in order.
Status checkRequired(Operator op, std::initializer_list<std::pair<const char*, const aclTensor*>> tensors);

// The op_api checks on the group names (SPEC 6.1 / 6.2), one step at a time so that the callers can interleave
// them with the other op_api checks in CANN's order:
//   groupEp null or empty                          -> kNullArgument
//   groupEp of 128 characters or more              -> kNullArgument (dispatch) / kInvalidArgument (combine)
//   groupTp null                                   -> kNullArgument
//   groupTp of 128 characters or more              -> kNullArgument (dispatch) / kInvalidArgument (combine)
Status checkGroupEpPresent(Operator op, const char* groupEp);
Status checkGroupNameLengths(Operator op, const char* groupEp, const char* groupTp);

// The tiling's groupTp rule (561002: tpWorldSize 2 needs a non-empty groupTp), placed where the tiling checks it:
// right after the rank attributes (and, for combine, the special-expert counts). `coreStatus` is what core's
// validation returned for the call; the result is the first failure in CANN's order.
Status applyGroupTpRule(Operator op, const RankAttrs& ranks, const MoeAttrs& attrs, const char* groupTp,
                        Status coreStatus);

// SPEC decision 2: groupTp naming the EP communicator itself is refused (kInvalidArgument), after every other check.
Status checkDistinctGroups(Operator op, const char* groupEp, const char* groupTp);

// Records the failure for aclGetRecentErrMsg() and returns its aclnn code.
aclnnStatus fail(const Status& s);

}  // namespace moedist::compat
