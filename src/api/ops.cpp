// The public operators: the named forms read the rank attributes from the communicators; the general forms take
// them as CANN passes them and leave the check against the communicators to core (which fails every rank together,
// as it does for any argument error). Every function runs inside api::guard.
#include "moedist/ops.h"

#include <fmt/format.h>

#include "api/guard.h"
#include "api/impl.h"
#include "core/operators.h"
#include "core/validate.h"

namespace moedist {

namespace {

bool known(Operator op) {
  return static_cast<uint8_t>(op) <= static_cast<uint8_t>(Operator::kCombineV2);
}

// `op` must be an operator of the kind the argument struct belongs to.
Status checkKind(std::string_view fn, Operator op, bool dispatchArgs) {
  if (known(op) && isDispatch(op) == dispatchArgs) return okStatus();
  const std::string got = known(op) ? toString(op) : fmt::format("Operator value {}", static_cast<int>(op));
  return Status(StatusCode::kInvalidArgument,
                fmt::format("{}: op: expected {} with {}, got {}", fn,
                            dispatchArgs ? "a dispatch operator (DispatchV3, DispatchV2)"
                                         : "a combine operator (CombineAddRmsNormV2, CombineAddRmsNorm, CombineV3, "
                                           "CombineV2)",
                            dispatchArgs ? "DispatchArgs" : "CombineArgs", got));
}

Status checkHandles(Operator op, const Communicator& ep, const Communicator* tp) {
  if (!ep.valid())
    return Status(StatusCode::kNullArgument, fmt::format("{}: the EP communicator handle is empty", toString(op)));
  if (tp != nullptr && !tp->valid())
    return Status(StatusCode::kNullArgument, fmt::format("{}: the TP communicator handle is empty", toString(op)));
  return okStatus();
}

RankAttrs communicatorRanks(const Communicator& ep, const Communicator* tp) {
  return RankAttrs{ep.size(), ep.rank(), tp != nullptr ? tp->size() : 0, tp != nullptr ? tp->rank() : 0};
}

core::RankContext* tpContext(const Communicator* tp) {
  return tp != nullptr ? &tp->impl()->ctx : nullptr;
}

Status runDispatch(std::string_view fn, Operator op, const Communicator& ep, const Communicator* tp,
                   const RankAttrs* ranks, const DispatchArgs& args, std::span<std::byte> workspace) {
  return api::guard(fn, [&]() -> Status {
    MOEDIST_RETURN_IF_ERROR(checkKind(fn, op, /*dispatchArgs=*/true));
    MOEDIST_RETURN_IF_ERROR(checkHandles(op, ep, tp));
    const core::DispatchCall call{op, ranks != nullptr ? *ranks : communicatorRanks(ep, tp), &args};
    return core::dispatch(ep.impl()->ctx, tpContext(tp), call, workspace);
  });
}

Status runCombine(std::string_view fn, Operator op, const Communicator& ep, const Communicator* tp,
                  const RankAttrs* ranks, const CombineArgs& args, std::span<std::byte> workspace) {
  return api::guard(fn, [&]() -> Status {
    MOEDIST_RETURN_IF_ERROR(checkKind(fn, op, /*dispatchArgs=*/false));
    MOEDIST_RETURN_IF_ERROR(checkHandles(op, ep, tp));
    const core::CombineCall call{op, ranks != nullptr ? *ranks : communicatorRanks(ep, tp), &args};
    return core::combine(ep.impl()->ctx, tpContext(tp), call, workspace);
  });
}

Status nullOut(std::string_view fn, std::string_view arg, std::string_view type) {
  return Status(StatusCode::kNullArgument, fmt::format("{}: {}: expected a {}, got null", fn, arg, type));
}

}  // namespace

Status dispatchV3(const Communicator& ep, const Communicator* tp, const DispatchArgs& args) {
  return runDispatch("dispatchV3", Operator::kDispatchV3, ep, tp, nullptr, args, {});
}
Status dispatchV2(const Communicator& ep, const Communicator* tp, const DispatchArgs& args) {
  return runDispatch("dispatchV2", Operator::kDispatchV2, ep, tp, nullptr, args, {});
}
Status combineAddRmsNormV2(const Communicator& ep, const Communicator* tp, const CombineArgs& args) {
  return runCombine("combineAddRmsNormV2", Operator::kCombineAddRmsNormV2, ep, tp, nullptr, args, {});
}
Status combineAddRmsNorm(const Communicator& ep, const Communicator* tp, const CombineArgs& args) {
  return runCombine("combineAddRmsNorm", Operator::kCombineAddRmsNorm, ep, tp, nullptr, args, {});
}
Status combineV3(const Communicator& ep, const Communicator* tp, const CombineArgs& args) {
  return runCombine("combineV3", Operator::kCombineV3, ep, tp, nullptr, args, {});
}
Status combineV2(const Communicator& ep, const Communicator* tp, const CombineArgs& args) {
  return runCombine("combineV2", Operator::kCombineV2, ep, tp, nullptr, args, {});
}

Status workspaceBytes(Operator op, const RankAttrs& ranks, const DispatchArgs& args, size_t* bytes) {
  return api::guard("workspaceBytes", [&]() -> Status {
    MOEDIST_RETURN_IF_ERROR(checkKind("workspaceBytes", op, /*dispatchArgs=*/true));
    if (bytes == nullptr) return nullOut("workspaceBytes", "bytes", "size_t*");
    return core::dispatchWorkspaceBytes(core::DispatchCall{op, ranks, &args}, bytes);
  });
}

Status workspaceBytes(Operator op, const RankAttrs& ranks, const CombineArgs& args, size_t* bytes) {
  return api::guard("workspaceBytes", [&]() -> Status {
    MOEDIST_RETURN_IF_ERROR(checkKind("workspaceBytes", op, /*dispatchArgs=*/false));
    if (bytes == nullptr) return nullOut("workspaceBytes", "bytes", "size_t*");
    return core::combineWorkspaceBytes(core::CombineCall{op, ranks, &args}, bytes);
  });
}

Status dispatch(Operator op, const Communicator& ep, const Communicator* tp, const RankAttrs& ranks,
                const DispatchArgs& args, std::span<std::byte> workspace) {
  return runDispatch("dispatch", op, ep, tp, &ranks, args, workspace);
}

Status combine(Operator op, const Communicator& ep, const Communicator* tp, const RankAttrs& ranks,
               const CombineArgs& args, std::span<std::byte> workspace) {
  return runCombine("combine", op, ep, tp, &ranks, args, workspace);
}

Status rankAttrs(const Communicator& ep, const Communicator* tp, RankAttrs* out) {
  return api::guard("rankAttrs", [&]() -> Status {
    if (out == nullptr) return nullOut("rankAttrs", "out", "RankAttrs*");
    if (!ep.valid()) return Status(StatusCode::kNullArgument, "rankAttrs: the EP communicator handle is empty");
    if (tp != nullptr && !tp->valid())
      return Status(StatusCode::kNullArgument, "rankAttrs: the TP communicator handle is empty");
    *out = communicatorRanks(ep, tp);
    return okStatus();
  });
}

Status outputShapes(const RankAttrs& ranks, const MoeAttrs& attrs, const ShapeQuery& query, OutputShapes* out) {
  return api::guard("outputShapes",
                    [&]() -> Status { return core::outputShapes("outputShapes", ranks, attrs, query, out); });
}

}  // namespace moedist
