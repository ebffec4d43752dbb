// The aclnn entry points of the six MoE distribute operators, over the general two-phase forms of the C++ API
// (moedist/ops.h: workspaceBytes, dispatch, combine).
//
// GetWorkspaceSize runs the checks of SPEC 6 in CANN's order: the op_api checks (required tensors, group names;
// done here, since the C++ API does not see group names), then everything else through workspaceBytes() (core's
// phase 1), with the tiling's groupTp rule slotted in at its place. On success it reports the ledger size as the
// workspace size and returns a single-use executor holding a copy of the call.
//
// Workspace size: the ledger size, i.e. the scratch bytes moedist really uses (dense copies of strided inputs, TP
// reduce rows, int8 transport rows), usually 0 for dense inputs without TP or commQuantMode. CANN reports a fixed
// 16 MiB + ... (SPEC 7.1) for its per-core count exchange, which moedist does not have. A CANN program allocates
// what it is told (the document's example skips the allocation when the size is 0), so nothing is wasted.
//
// Execute: checks the executor and the workspace, finds the communicators by group name (EP always; TP when
// tpWorldSize is 2, and when it is 1 if groupTp names a communicator), and enqueues the operator on the stream.
// The work runs on the stream's worker thread; the execute function returns once it is enqueued, and
// aclrtSynchronizeStream reports the operator's own failure (and its message through aclGetRecentErrMsg).
#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <variant>

#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "compat/aclnn_support.h"
#include "compat/runtime.h"
#include "moedist/ops.h"

namespace moedist::compat {
namespace {

// The arguments of every dispatch variant (DispatchV2 leaves elasticInfo and the special experts out).
struct DispatchIn {
  const aclTensor* x = nullptr;
  const aclTensor* expertIds = nullptr;
  const aclTensor* scales = nullptr;
  const aclTensor* xActiveMask = nullptr;
  const aclTensor* expertScales = nullptr;
  const aclTensor* elasticInfo = nullptr;
  const char* groupEp = nullptr;
  int64_t epWorldSize = 0;
  int64_t epRankId = 0;
  int64_t moeExpertNum = 0;
  const char* groupTp = nullptr;
  int64_t tpWorldSize = 0;
  int64_t tpRankId = 0;
  int64_t expertShardType = 0;
  int64_t sharedExpertNum = 0;
  int64_t sharedExpertRankNum = 0;
  int64_t quantMode = 0;
  int64_t globalBs = 0;
  int64_t expertTokenNumsType = 0;
  const char* commAlg = nullptr;
  int64_t zeroExpertNum = 0;
  int64_t copyExpertNum = 0;
  int64_t constExpertNum = 0;
  const aclTensor* expandX = nullptr;
  const aclTensor* dynamicScales = nullptr;
  const aclTensor* assistInfoForCombine = nullptr;
  const aclTensor* expertTokenNums = nullptr;
  const aclTensor* epRecvCounts = nullptr;
  const aclTensor* tpRecvCounts = nullptr;
  const aclTensor* expandScales = nullptr;
};

// The arguments of every combine variant (absent ones stay null or 0).
struct CombineIn {
  const aclTensor* expandX = nullptr;
  const aclTensor* expertIds = nullptr;
  const aclTensor* assistInfoForCombine = nullptr;
  const aclTensor* epSendCounts = nullptr;
  const aclTensor* expertScales = nullptr;
  const aclTensor* residualX = nullptr;
  const aclTensor* gamma = nullptr;
  const aclTensor* tpSendCounts = nullptr;
  const aclTensor* xActiveMask = nullptr;
  const aclTensor* activationScale = nullptr;
  const aclTensor* weightScale = nullptr;
  const aclTensor* groupList = nullptr;
  const aclTensor* expandScales = nullptr;
  const aclTensor* sharedExpertX = nullptr;
  const aclTensor* elasticInfo = nullptr;
  const aclTensor* oriX = nullptr;
  const aclTensor* constExpertAlpha1 = nullptr;
  const aclTensor* constExpertAlpha2 = nullptr;
  const aclTensor* constExpertV = nullptr;
  const char* groupEp = nullptr;
  int64_t epWorldSize = 0;
  int64_t epRankId = 0;
  int64_t moeExpertNum = 0;
  const char* groupTp = nullptr;
  int64_t tpWorldSize = 0;
  int64_t tpRankId = 0;
  int64_t expertShardType = 0;
  int64_t sharedExpertNum = 0;
  int64_t sharedExpertRankNum = 0;
  int64_t globalBs = 0;
  int64_t outDtype = 0;
  int64_t commQuantMode = 0;
  int64_t groupListType = 0;
  const char* commAlg = nullptr;
  float normEps = 1e-6f;
  int64_t zeroExpertNum = 0;
  int64_t copyExpertNum = 0;
  int64_t constExpertNum = 0;
  const aclTensor* yOut = nullptr;
  const aclTensor* rstdOut = nullptr;
  const aclTensor* xOut = nullptr;
};

Status checkOutParams(Operator op, uint64_t* workspaceSize, aclOpExecutor** executor) {
  if (workspaceSize == nullptr)
    return argError(StatusCode::kNullArgument, op, "workspaceSize", "a pointer to a uint64_t", "null");
  if (executor == nullptr)
    return argError(StatusCode::kNullArgument, op, "executor", "a pointer to an aclOpExecutor*", "null");
  return okStatus();
}

// Fills the attributes dispatch and combine share.
template <class In>
void readAttrs(const In& in, MoeAttrs* a) {
  a->moeExpertNum = in.moeExpertNum;
  a->expertShardType = in.expertShardType;
  a->sharedExpertNum = in.sharedExpertNum;
  a->sharedExpertRankNum = in.sharedExpertRankNum;
  a->globalBs = in.globalBs;
  a->zeroExpertNum = in.zeroExpertNum;
  a->copyExpertNum = in.copyExpertNum;
  a->constExpertNum = in.constExpertNum;
  a->commAlg = in.commAlg == nullptr ? "" : in.commAlg;  // nullptr is CANN's default, ""
}

template <class In>
std::unique_ptr<AclnnCall> newCall(Operator op, const In& in) {
  auto call = std::make_unique<AclnnCall>();
  call->op = op;
  call->ranks = RankAttrs{in.epWorldSize, in.epRankId, in.tpWorldSize, in.tpRankId};
  call->groupEp = in.groupEp;
  call->groupTp = in.groupTp;
  return call;
}

aclnnStatus finish(std::unique_ptr<AclnnCall> call, size_t bytes, uint64_t* workspaceSize, aclOpExecutor** executor) {
  call->workspaceBytes = bytes;
  *workspaceSize = bytes;
  *executor = registerExecutor(std::move(call));
  return ACLNN_SUCCESS;
}

aclnnStatus dispatchWorkspace(Operator op, const DispatchIn& in, uint64_t* workspaceSize, aclOpExecutor** executor) {
  if (executor != nullptr) *executor = nullptr;
  Status s = checkOutParams(op, workspaceSize, executor);
  if (!s.ok()) return fail(s);
  *workspaceSize = 0;

  // op_api (SPEC 6.1): required tensors, groupEp, dynamicScales with quantMode 2, name lengths.
  s = checkRequired(op, {{"x", in.x},
                         {"expertIds", in.expertIds},
                         {"expandX", in.expandX},
                         {"assistInfoForCombine", in.assistInfoForCombine},
                         {"expertTokenNums", in.expertTokenNums},
                         {"tpRecvCounts", in.tpRecvCounts},
                         {"epRecvCounts", in.epRecvCounts}});
  if (s.ok()) s = checkGroupEpPresent(op, in.groupEp);
  if (s.ok() && in.quantMode == 2 && in.dynamicScales == nullptr)
    s = argError(StatusCode::kNullArgument, op, "dynamicScales", "a tensor with quantMode 2", "null");
  if (s.ok()) s = checkGroupNameLengths(op, in.groupEp, in.groupTp);
  if (!s.ok()) return fail(s);

  auto call = newCall(op, in);
  DispatchArgs& a = call->args.emplace<DispatchArgs>();
  readAttrs(in, &a);
  a.quantMode = in.quantMode;
  a.expertTokenNumsType = in.expertTokenNumsType;
  TensorReader read(op);
  a.x = read(in.x, "x");
  a.expertIds = read(in.expertIds, "expertIds");
  a.scales = read(in.scales, "scales");
  a.xActiveMask = read(in.xActiveMask, "xActiveMask");
  a.expertScales = read(in.expertScales, "expertScales");
  a.elasticInfo = read(in.elasticInfo, "elasticInfo");
  a.expandX = read(in.expandX, "expandX");
  a.dynamicScales = read(in.dynamicScales, "dynamicScales");
  a.assistInfoForCombine = read(in.assistInfoForCombine, "assistInfoForCombine");
  a.expertTokenNums = read(in.expertTokenNums, "expertTokenNums");
  a.epRecvCounts = read(in.epRecvCounts, "epRecvCounts");
  a.tpRecvCounts = read(in.tpRecvCounts, "tpRecvCounts");
  a.expandScales = read(in.expandScales, "expandScales");
  if (!read.dead().ok()) return fail(read.dead());

  size_t bytes = 0;
  s = read.fix(moedist::workspaceBytes(op, call->ranks, a, &bytes));
  s = applyGroupTpRule(op, call->ranks, a, in.groupTp, s);
  if (s.ok()) s = checkDistinctGroups(op, in.groupEp, in.groupTp);
  if (!s.ok()) return fail(s);
  return finish(std::move(call), bytes, workspaceSize, executor);
}

aclnnStatus combineWorkspace(Operator op, const CombineIn& in, uint64_t* workspaceSize, aclOpExecutor** executor) {
  if (executor != nullptr) *executor = nullptr;
  Status s = checkOutParams(op, workspaceSize, executor);
  if (!s.ok()) return fail(s);
  *workspaceSize = 0;

  // op_api (SPEC 6.2): required tensors, groupEp, name lengths.
  s = checkRequired(op, {{"expandX", in.expandX},
                         {"expertIds", in.expertIds},
                         {"assistInfoForCombine", in.assistInfoForCombine},
                         {"epSendCounts", in.epSendCounts},
                         {"expertScales", in.expertScales},
                         {"xOut", in.xOut}});
  if (s.ok()) s = checkGroupEpPresent(op, in.groupEp);
  if (s.ok()) s = checkGroupNameLengths(op, in.groupEp, in.groupTp);
  if (!s.ok()) return fail(s);

  auto call = newCall(op, in);
  CombineArgs& a = call->args.emplace<CombineArgs>();
  readAttrs(in, &a);
  a.outDtype = in.outDtype;
  a.commQuantMode = in.commQuantMode;
  a.groupListType = in.groupListType;
  a.normEps = in.normEps;
  TensorReader read(op);
  a.expandX = read(in.expandX, "expandX");
  a.expertIds = read(in.expertIds, "expertIds");
  a.assistInfoForCombine = read(in.assistInfoForCombine, "assistInfoForCombine");
  a.epSendCounts = read(in.epSendCounts, "epSendCounts");
  a.expertScales = read(in.expertScales, "expertScales");
  a.residualX = read(in.residualX, "residualX");
  a.gamma = read(in.gamma, "gamma");
  a.tpSendCounts = read(in.tpSendCounts, "tpSendCounts");
  a.xActiveMask = read(in.xActiveMask, "xActiveMask");
  a.activationScale = read(in.activationScale, "activationScale");
  a.weightScale = read(in.weightScale, "weightScale");
  a.groupList = read(in.groupList, "groupList");
  a.expandScales = read(in.expandScales, "expandScales");
  a.sharedExpertX = read(in.sharedExpertX, "sharedExpertX");
  a.elasticInfo = read(in.elasticInfo, "elasticInfo");
  a.oriX = read(in.oriX, "oriX");
  a.constExpertAlpha1 = read(in.constExpertAlpha1, "constExpertAlpha1");
  a.constExpertAlpha2 = read(in.constExpertAlpha2, "constExpertAlpha2");
  a.constExpertV = read(in.constExpertV, "constExpertV");
  a.yOut = read(in.yOut, "yOut");
  a.rstdOut = read(in.rstdOut, "rstdOut");
  a.xOut = read(in.xOut, "xOut");
  if (!read.dead().ok()) return fail(read.dead());

  size_t bytes = 0;
  s = read.fix(moedist::workspaceBytes(op, call->ranks, a, &bytes));
  s = applyGroupTpRule(op, call->ranks, a, in.groupTp, s);
  if (s.ok()) s = checkDistinctGroups(op, in.groupEp, in.groupTp);
  if (!s.ok()) return fail(s);
  return finish(std::move(call), bytes, workspaceSize, executor);
}

// The second phase of every operator.
aclnnStatus execute(Operator op, void* workspace, uint64_t workspaceSize, aclOpExecutor* executor, aclrtStream stream) {
  std::unique_ptr<AclnnCall> owned;
  Status s = takeExecutor(executor, op, &owned);
  if (!s.ok()) return fail(s);
  // From here on the executor is consumed, whatever happens.
  const uint64_t need = owned->workspaceBytes;
  if (workspaceSize < need)
    return fail(argError(StatusCode::kInvalidArgument, op, "workspaceSize",
                         fmt::format("at least {} bytes (what GetWorkspaceSize returned)", need),
                         fmt::format("{} bytes", workspaceSize)));
  if (need > 0 && workspace == nullptr)
    return fail(
        argError(StatusCode::kNullArgument, op, "workspace", fmt::format("a buffer of {} bytes", need), "null"));
  if (need > 0 && reinterpret_cast<uintptr_t>(workspace) % alignof(std::max_align_t) != 0)
    return fail(argError(StatusCode::kInvalidArgument, op, "workspace",
                         fmt::format("an address aligned to {} bytes", alignof(std::max_align_t)),
                         fmt::format("{}", workspace)));

  Communicator ep;
  s = findCommunicator(owned->groupEp.c_str(), owned->ranks.epRankId, &ep);
  if (!s.ok())
    return fail(Status(s.code(), fmt::format("{}: groupEp \"{}\", epRankId {}: {}", toString(op), owned->groupEp,
                                             owned->ranks.epRankId, s.message())));
  Communicator tp;
  if (owned->ranks.tpWorldSize == 2) {
    s = findCommunicator(owned->groupTp.c_str(), owned->ranks.tpRankId, &tp);
    if (!s.ok())
      return fail(Status(s.code(), fmt::format("{}: groupTp \"{}\", tpRankId {}: {}", toString(op), owned->groupTp,
                                               owned->ranks.tpRankId, s.message())));
  } else if (owned->ranks.tpWorldSize == 1 && !owned->groupTp.empty()) {
    // A TP group of one rank changes nothing; pass it when it exists, as CANN programs create it (the document's
    // example does), and do without it otherwise.
    if (!findCommunicator(owned->groupTp.c_str(), owned->ranks.tpRankId, &tp).ok()) tp = Communicator();
  }

  // Workspace: the caller's when GetWorkspaceSize asked for one; else the rank's own (empty) arena.
  std::span<std::byte> ws;
  if (need > 0) ws = std::span<std::byte>(static_cast<std::byte*>(workspace), static_cast<size_t>(workspaceSize));

  std::shared_ptr<const AclnnCall> call(std::move(owned));
  const aclError e = enqueue(stream, [call, ep, tp, ws]() -> Status {
    const Communicator* tpComm = tp.valid() ? &tp : nullptr;
    if (const auto* d = std::get_if<DispatchArgs>(&call->args))
      return moedist::dispatch(call->op, ep, tpComm, call->ranks, *d, ws);
    return moedist::combine(call->op, ep, tpComm, call->ranks, std::get<CombineArgs>(call->args), ws);
  });
  if (e != ACL_SUCCESS) {
    setRecentError(fmt::format("{}: stream: expected a stream of the current device, got {} (aclError {})",
                               toString(op), stream, e));
    return ACLNN_ERR_RUNTIME_ERROR;
  }
  return ACLNN_SUCCESS;
}

}  // namespace
}  // namespace moedist::compat

using moedist::Operator;
using moedist::compat::CombineIn;
using moedist::compat::DispatchIn;

extern "C" {

aclnnStatus aclnnMoeDistributeDispatchV3GetWorkspaceSize(
    const aclTensor* x, const aclTensor* expertIds, const aclTensor* scalesOptional,
    const aclTensor* xActiveMaskOptional, const aclTensor* expertScalesOptional, const aclTensor* elasticInfoOptional,
    const char* groupEp, int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char* groupTp,
    int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum,
    int64_t sharedExpertRankNum, int64_t quantMode, int64_t globalBS, int64_t expertTokenNumsType, const char* commAlg,
    int64_t zeroExpertNum, int64_t copyExpertNum, int64_t constExpertNum, aclTensor* expandXOut,
    aclTensor* dynamicScalesOut, aclTensor* assistInfoForCombineOut, aclTensor* expertTokenNumsOut,
    aclTensor* epRecvCountsOut, aclTensor* tpRecvCountsOut, aclTensor* expandScalesOut, uint64_t* workspaceSize,
    aclOpExecutor** executor) {
  const DispatchIn in{.x = x,
                      .expertIds = expertIds,
                      .scales = scalesOptional,
                      .xActiveMask = xActiveMaskOptional,
                      .expertScales = expertScalesOptional,
                      .elasticInfo = elasticInfoOptional,
                      .groupEp = groupEp,
                      .epWorldSize = epWorldSize,
                      .epRankId = epRankId,
                      .moeExpertNum = moeExpertNum,
                      .groupTp = groupTp,
                      .tpWorldSize = tpWorldSize,
                      .tpRankId = tpRankId,
                      .expertShardType = expertShardType,
                      .sharedExpertNum = sharedExpertNum,
                      .sharedExpertRankNum = sharedExpertRankNum,
                      .quantMode = quantMode,
                      .globalBs = globalBS,
                      .expertTokenNumsType = expertTokenNumsType,
                      .commAlg = commAlg,
                      .zeroExpertNum = zeroExpertNum,
                      .copyExpertNum = copyExpertNum,
                      .constExpertNum = constExpertNum,
                      .expandX = expandXOut,
                      .dynamicScales = dynamicScalesOut,
                      .assistInfoForCombine = assistInfoForCombineOut,
                      .expertTokenNums = expertTokenNumsOut,
                      .epRecvCounts = epRecvCountsOut,
                      .tpRecvCounts = tpRecvCountsOut,
                      .expandScales = expandScalesOut};
  return moedist::compat::dispatchWorkspace(Operator::kDispatchV3, in, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeDispatchV3(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                         aclrtStream stream) {
  return moedist::compat::execute(Operator::kDispatchV3, workspace, workspaceSize, executor, stream);
}

aclnnStatus aclnnMoeDistributeDispatchV2GetWorkspaceSize(
    const aclTensor* x, const aclTensor* expertIds, const aclTensor* scalesOptional,
    const aclTensor* xActiveMaskOptional, const aclTensor* expertScalesOptional, const char* groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t quantMode,
    int64_t globalBS, int64_t expertTokenNumsType, const char* commAlg, aclTensor* expandXOut,
    aclTensor* dynamicScalesOut, aclTensor* assistInfoForCombineOut, aclTensor* expertTokenNumsOut,
    aclTensor* epRecvCountsOut, aclTensor* tpRecvCountsOut, aclTensor* expandScalesOut, uint64_t* workspaceSize,
    aclOpExecutor** executor) {
  const DispatchIn in{.x = x,
                      .expertIds = expertIds,
                      .scales = scalesOptional,
                      .xActiveMask = xActiveMaskOptional,
                      .expertScales = expertScalesOptional,
                      .groupEp = groupEp,
                      .epWorldSize = epWorldSize,
                      .epRankId = epRankId,
                      .moeExpertNum = moeExpertNum,
                      .groupTp = groupTp,
                      .tpWorldSize = tpWorldSize,
                      .tpRankId = tpRankId,
                      .expertShardType = expertShardType,
                      .sharedExpertNum = sharedExpertNum,
                      .sharedExpertRankNum = sharedExpertRankNum,
                      .quantMode = quantMode,
                      .globalBs = globalBS,
                      .expertTokenNumsType = expertTokenNumsType,
                      .commAlg = commAlg,
                      .expandX = expandXOut,
                      .dynamicScales = dynamicScalesOut,
                      .assistInfoForCombine = assistInfoForCombineOut,
                      .expertTokenNums = expertTokenNumsOut,
                      .epRecvCounts = epRecvCountsOut,
                      .tpRecvCounts = tpRecvCountsOut,
                      .expandScales = expandScalesOut};
  return moedist::compat::dispatchWorkspace(Operator::kDispatchV2, in, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeDispatchV2(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                         aclrtStream stream) {
  return moedist::compat::execute(Operator::kDispatchV2, workspace, workspaceSize, executor, stream);
}

aclnnStatus aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
    const aclTensor* expandX, const aclTensor* expertIds, const aclTensor* assistInfoForCombine,
    const aclTensor* epSendCounts, const aclTensor* expertScales, const aclTensor* residualX, const aclTensor* gamma,
    const aclTensor* tpSendCountsOptional, const aclTensor* xActiveMaskOptional,
    const aclTensor* activationScaleOptional, const aclTensor* weightScaleOptional, const aclTensor* groupListOptional,
    const aclTensor* expandScalesOptional, const aclTensor* sharedExpertXOptional, const aclTensor* elasticInfoOptional,
    const aclTensor* oriXOptional, const aclTensor* constExpertAlpha1Optional,
    const aclTensor* constExpertAlpha2Optional, const aclTensor* constExpertVOptional, const char* groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs,
    int64_t outDtype, int64_t commQuantMode, int64_t groupListType, const char* commAlg, float normEps,
    int64_t zeroExpertNum, int64_t copyExpertNum, int64_t constExpertNum, aclTensor* yOut, aclTensor* rstdOut,
    aclTensor* xOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
  const CombineIn in{.expandX = expandX,
                     .expertIds = expertIds,
                     .assistInfoForCombine = assistInfoForCombine,
                     .epSendCounts = epSendCounts,
                     .expertScales = expertScales,
                     .residualX = residualX,
                     .gamma = gamma,
                     .tpSendCounts = tpSendCountsOptional,
                     .xActiveMask = xActiveMaskOptional,
                     .activationScale = activationScaleOptional,
                     .weightScale = weightScaleOptional,
                     .groupList = groupListOptional,
                     .expandScales = expandScalesOptional,
                     .sharedExpertX = sharedExpertXOptional,
                     .elasticInfo = elasticInfoOptional,
                     .oriX = oriXOptional,
                     .constExpertAlpha1 = constExpertAlpha1Optional,
                     .constExpertAlpha2 = constExpertAlpha2Optional,
                     .constExpertV = constExpertVOptional,
                     .groupEp = groupEp,
                     .epWorldSize = epWorldSize,
                     .epRankId = epRankId,
                     .moeExpertNum = moeExpertNum,
                     .groupTp = groupTp,
                     .tpWorldSize = tpWorldSize,
                     .tpRankId = tpRankId,
                     .expertShardType = expertShardType,
                     .sharedExpertNum = sharedExpertNum,
                     .sharedExpertRankNum = sharedExpertRankNum,
                     .globalBs = globalBs,
                     .outDtype = outDtype,
                     .commQuantMode = commQuantMode,
                     .groupListType = groupListType,
                     .commAlg = commAlg,
                     .normEps = normEps,
                     .zeroExpertNum = zeroExpertNum,
                     .copyExpertNum = copyExpertNum,
                     .constExpertNum = constExpertNum,
                     .yOut = yOut,
                     .rstdOut = rstdOut,
                     .xOut = xOut};
  return moedist::compat::combineWorkspace(Operator::kCombineAddRmsNormV2, in, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeCombineAddRmsNormV2(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                                  aclrtStream stream) {
  return moedist::compat::execute(Operator::kCombineAddRmsNormV2, workspace, workspaceSize, executor, stream);
}

aclnnStatus aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize(
    const aclTensor* expandX, const aclTensor* expertIds, const aclTensor* assistInfoForCombine,
    const aclTensor* epSendCounts, const aclTensor* expertScales, const aclTensor* residualX, const aclTensor* gamma,
    const aclTensor* tpSendCountsOptional, const aclTensor* xActiveMaskOptional,
    const aclTensor* activationScaleOptional, const aclTensor* weightScaleOptional, const aclTensor* groupListOptional,
    const aclTensor* expandScalesOptional, const aclTensor* sharedExpertXOptional, const char* groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBS,
    int64_t outDtype, int64_t commQuantMode, int64_t groupListType, const char* commAlg, float normEps, aclTensor* yOut,
    aclTensor* rstdOut, aclTensor* xOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
  const CombineIn in{.expandX = expandX,
                     .expertIds = expertIds,
                     .assistInfoForCombine = assistInfoForCombine,
                     .epSendCounts = epSendCounts,
                     .expertScales = expertScales,
                     .residualX = residualX,
                     .gamma = gamma,
                     .tpSendCounts = tpSendCountsOptional,
                     .xActiveMask = xActiveMaskOptional,
                     .activationScale = activationScaleOptional,
                     .weightScale = weightScaleOptional,
                     .groupList = groupListOptional,
                     .expandScales = expandScalesOptional,
                     .sharedExpertX = sharedExpertXOptional,
                     .groupEp = groupEp,
                     .epWorldSize = epWorldSize,
                     .epRankId = epRankId,
                     .moeExpertNum = moeExpertNum,
                     .groupTp = groupTp,
                     .tpWorldSize = tpWorldSize,
                     .tpRankId = tpRankId,
                     .expertShardType = expertShardType,
                     .sharedExpertNum = sharedExpertNum,
                     .sharedExpertRankNum = sharedExpertRankNum,
                     .globalBs = globalBS,
                     .outDtype = outDtype,
                     .commQuantMode = commQuantMode,
                     .groupListType = groupListType,
                     .commAlg = commAlg,
                     .normEps = normEps,
                     .yOut = yOut,
                     .rstdOut = rstdOut,
                     .xOut = xOut};
  return moedist::compat::combineWorkspace(Operator::kCombineAddRmsNorm, in, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeCombineAddRmsNorm(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                                aclrtStream stream) {
  return moedist::compat::execute(Operator::kCombineAddRmsNorm, workspace, workspaceSize, executor, stream);
}

aclnnStatus aclnnMoeDistributeCombineV3GetWorkspaceSize(
    const aclTensor* expandX, const aclTensor* expertIds, const aclTensor* assistInfoForCombine,
    const aclTensor* epSendCounts, const aclTensor* expertScales, const aclTensor* tpSendCountsOptional,
    const aclTensor* xActiveMaskOptional, const aclTensor* activationScaleOptional,
    const aclTensor* weightScaleOptional, const aclTensor* groupListOptional, const aclTensor* expandScalesOptional,
    const aclTensor* sharedExpertXOptional, const aclTensor* elasticInfoOptional, const aclTensor* oriXOptional,
    const aclTensor* constExpertAlpha1Optional, const aclTensor* constExpertAlpha2Optional,
    const aclTensor* constExpertVOptional, const char* groupEp, int64_t epWorldSize, int64_t epRankId,
    int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
    int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBS, int64_t outDtype, int64_t commQuantMode,
    int64_t groupListType, const char* commAlg, int64_t zeroExpertNum, int64_t copyExpertNum, int64_t constExpertNum,
    aclTensor* xOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
  const CombineIn in{.expandX = expandX,
                     .expertIds = expertIds,
                     .assistInfoForCombine = assistInfoForCombine,
                     .epSendCounts = epSendCounts,
                     .expertScales = expertScales,
                     .tpSendCounts = tpSendCountsOptional,
                     .xActiveMask = xActiveMaskOptional,
                     .activationScale = activationScaleOptional,
                     .weightScale = weightScaleOptional,
                     .groupList = groupListOptional,
                     .expandScales = expandScalesOptional,
                     .sharedExpertX = sharedExpertXOptional,
                     .elasticInfo = elasticInfoOptional,
                     .oriX = oriXOptional,
                     .constExpertAlpha1 = constExpertAlpha1Optional,
                     .constExpertAlpha2 = constExpertAlpha2Optional,
                     .constExpertV = constExpertVOptional,
                     .groupEp = groupEp,
                     .epWorldSize = epWorldSize,
                     .epRankId = epRankId,
                     .moeExpertNum = moeExpertNum,
                     .groupTp = groupTp,
                     .tpWorldSize = tpWorldSize,
                     .tpRankId = tpRankId,
                     .expertShardType = expertShardType,
                     .sharedExpertNum = sharedExpertNum,
                     .sharedExpertRankNum = sharedExpertRankNum,
                     .globalBs = globalBS,
                     .outDtype = outDtype,
                     .commQuantMode = commQuantMode,
                     .groupListType = groupListType,
                     .commAlg = commAlg,
                     .zeroExpertNum = zeroExpertNum,
                     .copyExpertNum = copyExpertNum,
                     .constExpertNum = constExpertNum,
                     .xOut = xOut};
  return moedist::compat::combineWorkspace(Operator::kCombineV3, in, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeCombineV3(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                        aclrtStream stream) {
  return moedist::compat::execute(Operator::kCombineV3, workspace, workspaceSize, executor, stream);
}

aclnnStatus aclnnMoeDistributeCombineV2GetWorkspaceSize(
    const aclTensor* expandX, const aclTensor* expertIds, const aclTensor* assistInfoForCombine,
    const aclTensor* epSendCounts, const aclTensor* expertScales, const aclTensor* tpSendCountsOptional,
    const aclTensor* xActiveMaskOptional, const aclTensor* activationScaleOptional,
    const aclTensor* weightScaleOptional, const aclTensor* groupListOptional, const aclTensor* expandScalesOptional,
    const aclTensor* sharedExpertXOptional, const char* groupEp, int64_t epWorldSize, int64_t epRankId,
    int64_t moeExpertNum, const char* groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
    int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBS, int64_t outDtype, int64_t commQuantMode,
    int64_t groupListType, const char* commAlg, aclTensor* xOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
  const CombineIn in{.expandX = expandX,
                     .expertIds = expertIds,
                     .assistInfoForCombine = assistInfoForCombine,
                     .epSendCounts = epSendCounts,
                     .expertScales = expertScales,
                     .tpSendCounts = tpSendCountsOptional,
                     .xActiveMask = xActiveMaskOptional,
                     .activationScale = activationScaleOptional,
                     .weightScale = weightScaleOptional,
                     .groupList = groupListOptional,
                     .expandScales = expandScalesOptional,
                     .sharedExpertX = sharedExpertXOptional,
                     .groupEp = groupEp,
                     .epWorldSize = epWorldSize,
                     .epRankId = epRankId,
                     .moeExpertNum = moeExpertNum,
                     .groupTp = groupTp,
                     .tpWorldSize = tpWorldSize,
                     .tpRankId = tpRankId,
                     .expertShardType = expertShardType,
                     .sharedExpertNum = sharedExpertNum,
                     .sharedExpertRankNum = sharedExpertRankNum,
                     .globalBs = globalBS,
                     .outDtype = outDtype,
                     .commQuantMode = commQuantMode,
                     .groupListType = groupListType,
                     .commAlg = commAlg,
                     .xOut = xOut};
  return moedist::compat::combineWorkspace(Operator::kCombineV2, in, workspaceSize, executor);
}

aclnnStatus aclnnMoeDistributeCombineV2(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                        aclrtStream stream) {
  return moedist::compat::execute(Operator::kCombineV2, workspace, workspaceSize, executor, stream);
}

}  // extern "C"
