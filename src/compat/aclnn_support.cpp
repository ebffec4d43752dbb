#include "compat/aclnn_support.h"

#include <fmt/format.h>

#include <climits>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace moedist::compat {
namespace {

// ---------------------------------------------------------------------------------------------------------------
// Executor registry

struct Registry {
  std::mutex mu;
  std::unordered_map<uintptr_t, std::unique_ptr<AclnnCall>> live;
  uintptr_t nextToken = 1;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: safe to use from other static destructors
  return *r;
}

// Handles are tokens spaced like aligned pointers, far below any heap or stack address, and never reused.
constexpr uintptr_t kHandleBase = 0x10000;
constexpr uintptr_t kHandleStep = 16;

std::string executorFunction(Operator op) {
  return fmt::format("aclnnMoeDistribute{}GetWorkspaceSize", toString(op));
}

}  // namespace

aclOpExecutor* registerExecutor(std::unique_ptr<AclnnCall> call) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  const uintptr_t handle = kHandleBase + kHandleStep * r.nextToken++;
  r.live.emplace(handle, std::move(call));
  return reinterpret_cast<aclOpExecutor*>(handle);
}

Status takeExecutor(aclOpExecutor* handle, Operator op, std::unique_ptr<AclnnCall>* out) {
  const std::string fn = fmt::format("aclnnMoeDistribute{}", toString(op));
  if (handle == nullptr)
    return argError(StatusCode::kNullArgument, op, "executor",
                    fmt::format("the executor returned by {}", executorFunction(op)), "null");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.live.find(reinterpret_cast<uintptr_t>(handle));
  if (it == r.live.end())
    return argError(StatusCode::kInvalidArgument, op, "executor",
                    fmt::format("a live executor returned by {} (an executor runs once)", executorFunction(op)),
                    fmt::format("{}, which is not one (already used by an execute call, or never returned)",
                                static_cast<const void*>(handle)));
  if (it->second->op != op)
    return argError(StatusCode::kInvalidArgument, op, "executor",
                    fmt::format("an executor returned by {}", executorFunction(op)),
                    fmt::format("one returned by {}", executorFunction(it->second->op)));
  *out = std::move(it->second);
  r.live.erase(it);
  return okStatus();
}

size_t liveExecutorCount() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.live.size();
}

TensorView TensorReader::operator()(const aclTensor* t, const char* name) {
  if (t == nullptr) return TensorView();
  if (!isLiveTensor(t)) {
    if (dead_.ok())
      dead_ = Status(StatusCode::kInvalidArgument,
                     fmt::format("{}: {}: expected a tensor made by aclCreateTensor and not destroyed, got {}", op_,
                                 name, static_cast<const void*>(t)));
    return TensorView();
  }
  const TensorView& v = t->view;
  DType dtype = DType::kBFloat16;
  if (!toDType(t->dataType, &dtype)) {
    // Core's framework check refuses int64 for every tensor but expertTokenNums, which refuses fp32.
    dtype = std::strcmp(name, "expertTokenNums") == 0 ? DType::kFloat32 : DType::kInt64;
    substitutes_.push_back({name, "dtype", toString(dtype), dataTypeName(t->dataType)});
  }
  Format format = Format::kND;
  switch (t->format) {
    case ACL_FORMAT_ND:
    case ACL_FORMAT_NCHW:  // the plain formats all describe row-major data; only the private ones are refused
    case ACL_FORMAT_NHWC:
    case ACL_FORMAT_NCDHW:
    case ACL_FORMAT_NDHWC:
      break;
    case ACL_FORMAT_FRACTAL_NZ:
      format = Format::kFractalNZ;
      break;
    default:
      format = Format::kFractalNZ;
      substitutes_.push_back({name, "format", "FRACTAL_NZ", fmt::format("aclFormat {}", static_cast<int>(t->format))});
      break;
  }
  return TensorView(v.data(), dtype, v.shape(), v.strides(), format);
}

Status TensorReader::fix(Status s) const {
  if (s.ok() || s.code() != StatusCode::kInvalidArgument) return s;
  for (const Substitute& sub : substitutes_) {
    std::string msg = s.message();
    if (msg.find(fmt::format(": {}: expected {}", sub.name, sub.what)) == std::string::npos) continue;
    const std::string used = fmt::format("got {} {}", sub.what, sub.used);
    const size_t at = msg.rfind(used);
    if (at == std::string::npos) continue;
    msg.replace(at, used.size(), fmt::format("got {} {}", sub.what, sub.real));
    return Status(s.code(), msg);
  }
  return s;
}

Status argError(StatusCode code, Operator op, const std::string& arg, const std::string& expected,
                const std::string& got) {
  return Status(code, fmt::format("{}: {}: expected {}, got {}", toString(op), arg, expected, got));
}

Status checkRequired(Operator op, std::initializer_list<std::pair<const char*, const aclTensor*>> tensors) {
  for (const auto& [name, t] : tensors)
    if (t == nullptr) return argError(StatusCode::kNullArgument, op, name, "a tensor", "null");
  return okStatus();
}

Status checkGroupEpPresent(Operator op, const char* groupEp) {
  if (groupEp == nullptr) return argError(StatusCode::kNullArgument, op, "groupEp", "a communicator name", "null");
  if (groupEp[0] == '\0')
    return argError(StatusCode::kNullArgument, op, "groupEp", "a communicator name", "an empty string");
  return okStatus();
}

Status checkGroupNameLengths(Operator op, const char* groupEp, const char* groupTp) {
  // CANN's dispatch op_api returns ACLNN_ERR_PARAM_NULLPTR for a name too long, its combine op_api
  // ACLNN_ERR_PARAM_INVALID (SPEC 6.1, 6.2).
  const StatusCode tooLong = isDispatch(op) ? StatusCode::kNullArgument : StatusCode::kInvalidArgument;
  constexpr size_t kMaxName = 128;  // HCCL_GROUP_NAME_MAX, the terminating NUL included
  if (std::strlen(groupEp) >= kMaxName)
    return argError(tooLong, op, "groupEp", fmt::format("a name of at most {} characters", kMaxName - 1),
                    fmt::format("{} characters", std::strlen(groupEp)));
  if (groupTp == nullptr)
    return argError(StatusCode::kNullArgument, op, "groupTp", "a communicator name (\"\" without TP)", "null");
  if (std::strlen(groupTp) >= kMaxName)
    return argError(tooLong, op, "groupTp", fmt::format("a name of at most {} characters", kMaxName - 1),
                    fmt::format("{} characters", std::strlen(groupTp)));
  return okStatus();
}

Status applyGroupTpRule(Operator op, const RankAttrs& rk, const MoeAttrs& attrs, const char* groupTp,
                        Status coreStatus) {
  if (rk.tpWorldSize != 2 || groupTp == nullptr || groupTp[0] != '\0') return coreStatus;
  Status rule = argError(StatusCode::kInvalidValue, op, "groupTp", "a communicator name when tpWorldSize is 2",
                         "an empty string");
  if (coreStatus.ok()) return rule;
  // The op_api, framework and memory-safety checks come before the tiling.
  if (coreStatus.code() != StatusCode::kInvalidValue) return coreStatus;
  // Tiling checks that come before this rule: the rank attributes, and in combine the special-expert counts first.
  bool before = rk.epWorldSize < 2 || rk.epWorldSize > 768 || rk.epRankId < 0 || rk.epRankId >= rk.epWorldSize ||
                rk.tpRankId < 0 || rk.tpRankId >= rk.tpWorldSize;
  if (!isDispatch(op)) {
    const int64_t z = attrs.zeroExpertNum, c = attrs.copyExpertNum, q = attrs.constExpertNum;
    before = before || z < 0 || c < 0 || q < 0;
    if (!before) {
      int64_t total = 0;
      const bool overflow = __builtin_add_overflow(attrs.moeExpertNum < 0 ? 0 : attrs.moeExpertNum, z, &total) ||
                            __builtin_add_overflow(total, c, &total) || __builtin_add_overflow(total, q, &total);
      before = overflow || total > INT32_MAX;
    }
  }
  return before ? coreStatus : rule;
}

Status checkDistinctGroups(Operator op, const char* groupEp, const char* groupTp) {
  if (groupTp == nullptr || groupTp[0] == '\0' || std::strcmp(groupEp, groupTp) != 0) return okStatus();
  return argError(StatusCode::kInvalidArgument, op, "groupTp", "a communicator other than groupEp",
                  fmt::format("\"{}\", the name of groupEp", groupTp));
}

aclnnStatus fail(const Status& s) {
  setRecentError(s.message());
  return toAclnnStatus(s);
}

}  // namespace moedist::compat
