// Phase 1 of every operator: the checks that depend only on the arguments (shapes, dtypes, attributes, the
// HCCL window size), never on tensor contents and never on other ranks. SPEC section 6 fixes their order and
// their codes; the derived quantities of SPEC section 1 come out as a Geometry.
//
// Order (each step runs only when the previous ones passed):
//   0. variant: an argument the operator does not have (DispatchV2 / CombineAddRmsNorm / CombineV2 have no
//      elasticInfo and no special experts; CombineV3 / CombineV2 have no residualX, gamma, yOut, rstdOut)
//      -> kInvalidValue
//   1. op_api null checks, then the tensors the framework requires              -> kNullArgument
//   2. framework dtype / format checks (registered dtype combinations, ND only)  -> kInvalidArgument
//   3. moedist's memory-safety checks (project decision): dims and strides non-negative and sane, data aligned
//      to the element size, data non-null when there are elements (kNullArgument), outputs dense row-major
//                                                                                -> kInvalidArgument
//   4. the tiling checks, in the order of SPEC 6.1 / 6.2, ending with the window rule of SPEC 7.2
//                                                                                -> kInvalidValue
// Every message reads "<operator>: <argument>: expected <...>, got <...>".
#pragma once

#include <cstdint>

#include "core/problem.h"
#include "moedist/status.h"

namespace moedist::core {

// On success fills *geo (when geo is not null); on failure leaves it untouched.
Status validateDispatch(const DispatchCall& call, Geometry* geo);
Status validateCombine(const CombineCall& call, Geometry* geo);

// The output lengths of moedist::outputShapes (SPEC section 1): checks the rank attributes, the expert counts, the
// shared-expert layout, Bs, H, K and globalBs as phase 1 does, then fills *out. Messages start with `fn`.
Status outputShapes(const char* fn, const RankAttrs& ranks, const MoeAttrs& attrs, const ShapeQuery& query,
                    OutputShapes* out);

// The HCCL window bytes one communicator needs (SPEC 7.2), saturating at INT64_MAX:
//   2 * (maxBs*W*L*Align512(Align32(2H) + 44) + maxBs*(K + S)*Align512(2H)),
// with L = M / (W - Srank) on every rank; fullmeshV2 (dispatch only) replaces Align512(y) by ceil(y/480)*512.
int64_t requiredWindowBytes(const Geometry& geo, bool fullmeshV2);

}  // namespace moedist::core
