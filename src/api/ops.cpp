// The public operators: fill in what the communicators say (world sizes and rank ids) and run core.
#include "moedist/ops.h"

#include <fmt/format.h>

#include "api/impl.h"
#include "core/operators.h"

namespace moedist {

namespace {

Status rankAttrs(core::Op op, const Communicator& ep, const Communicator* tp, core::RankAttrs* out) {
  if (!ep.valid())
    return Status(StatusCode::kNullArgument, fmt::format("{}: the EP communicator handle is empty", core::opName(op)));
  if (tp != nullptr && !tp->valid())
    return Status(StatusCode::kNullArgument, fmt::format("{}: the TP communicator handle is empty", core::opName(op)));
  *out = core::RankAttrs{ep.size(), ep.rank(), tp != nullptr ? tp->size() : 0, tp != nullptr ? tp->rank() : 0};
  return okStatus();
}

core::RankContext* tpContext(const Communicator* tp) {
  return tp != nullptr ? &tp->impl()->ctx : nullptr;
}

}  // namespace

Status dispatch(const Communicator& ep, const Communicator* tp, const DispatchArgs& args) {
  core::DispatchCall call{core::Op::kDispatchV3, {}, &args};
  MOEDIST_RETURN_IF_ERROR(rankAttrs(call.op, ep, tp, &call.ranks));
  return core::dispatch(ep.impl()->ctx, tpContext(tp), call, {});
}

Status combineAddRmsNorm(const Communicator& ep, const Communicator* tp, const CombineArgs& args) {
  core::CombineCall call{core::Op::kCombineAddRmsNormV2, {}, &args};
  MOEDIST_RETURN_IF_ERROR(rankAttrs(call.op, ep, tp, &call.ranks));
  return core::combine(ep.impl()->ctx, tpContext(tp), call, {});
}

}  // namespace moedist
