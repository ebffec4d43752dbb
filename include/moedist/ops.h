// moedist: the MoE distribute operators of CANN's aclnn API as C++ functions.
//
//   dispatchV3()           = aclnnMoeDistributeDispatchV3
//   dispatchV2()           = aclnnMoeDistributeDispatchV2
//   combineAddRmsNormV2()  = aclnnMoeDistributeCombineAddRmsNormV2
//   combineAddRmsNorm()    = aclnnMoeDistributeCombineAddRmsNorm (the V1 operator)
//   combineV3()            = aclnnMoeDistributeCombineV3
//   combineV2()            = aclnnMoeDistributeCombineV2
//
// Every rank of the expert-parallel (EP) communicator calls the operator with its own handle; with tensor
// parallelism (tpWorldSize 2) each rank also passes its TP pair communicator. The arguments are in moedist/args.h.
// The named forms read epWorldSize, epRankId, tpWorldSize and tpRankId from the communicators and take their
// scratch memory from the rank's own arena. The general forms below them take any operator, the rank attributes
// as CANN passes them (checked against the communicators) and optionally the caller's workspace, which is
// CANN's two-phase contract: workspaceBytes() first (it runs every argument check), then the call.
//
// Every function here returns a Status and never throws; nothing is written to an output when a call fails
// before its exchanges (argument errors, on every rank).
#pragma once

#include <cstddef>
#include <span>

#include "moedist/args.h"
#include "moedist/communicator.h"
#include "moedist/status.h"

namespace moedist {

// tp is null (tpWorldSize 0) or this rank's TP communicator (size 1, or 2 for the TP pair).
Status dispatchV3(const Communicator& ep, const Communicator* tp, const DispatchArgs& args);
Status dispatchV2(const Communicator& ep, const Communicator* tp, const DispatchArgs& args);
Status combineAddRmsNormV2(const Communicator& ep, const Communicator* tp, const CombineArgs& args);
Status combineAddRmsNorm(const Communicator& ep, const Communicator* tp, const CombineArgs& args);
Status combineV3(const Communicator& ep, const Communicator* tp, const CombineArgs& args);
Status combineV2(const Communicator& ep, const Communicator* tp, const CombineArgs& args);

// The general forms. `op` must be a dispatch operator for DispatchArgs and a combine operator for CombineArgs.
// workspaceBytes validates everything that depends only on the arguments (shapes, dtypes, attributes, the window
// size) and returns the scratch bytes the call needs. An empty `workspace` means the rank's own arena; else it must
// hold workspaceBytes() bytes, aligned to alignof(std::max_align_t).
Status workspaceBytes(Operator op, const RankAttrs& ranks, const DispatchArgs& args, size_t* bytes);
Status workspaceBytes(Operator op, const RankAttrs& ranks, const CombineArgs& args, size_t* bytes);
Status dispatch(Operator op, const Communicator& ep, const Communicator* tp, const RankAttrs& ranks,
                const DispatchArgs& args, std::span<std::byte> workspace = {});
Status combine(Operator op, const Communicator& ep, const Communicator* tp, const RankAttrs& ranks,
               const CombineArgs& args, std::span<std::byte> workspace = {});

// The rank attributes the communicators describe: (ep.size(), ep.rank(), tp ? tp->size() : 0, tp ? tp->rank() : 0).
Status rankAttrs(const Communicator& ep, const Communicator* tp, RankAttrs* out);

// The output lengths of a call (shape query): checks the attributes the lengths depend on (ranks, expert counts,
// shared-expert layout, Bs, H, K, globalBs against Bs) with the operators' rules and fills *out, so that no caller
// computes the capacity formulas. Errors are kInvalidValue, "outputShapes: <argument>: expected ..., got ...".
Status outputShapes(const RankAttrs& ranks, const MoeAttrs& attrs, const ShapeQuery& query, OutputShapes* out);

}  // namespace moedist
