// The operators as core runs them. Each is two-phase like CANN's aclnn API:
//   *WorkspaceBytes  validates every argument (SPEC section 6) and returns the scratch bytes the call needs;
//   the operator     validates again, plans, exchanges counts, moves rows and reduces.
// An empty workspace span means "use the rank's own arena" (the C++ API path).
#pragma once

#include <cstddef>
#include <span>

#include "core/context.h"
#include "core/problem.h"
#include "moedist/status.h"

namespace moedist::core {

Status dispatchWorkspaceBytes(const DispatchCall& call, size_t* bytes);
Status dispatch(RankContext& ep, RankContext* tp, const DispatchCall& call, std::span<std::byte> workspace);

Status combineWorkspaceBytes(const CombineCall& call, size_t* bytes);
Status combine(RankContext& ep, RankContext* tp, const CombineCall& call, std::span<std::byte> workspace);

}  // namespace moedist::core
