// Pieces dispatch and combine share: matching the communicators to the attributes, booking dense copies of
// strided inputs, binding the workspace, failing together, and how rows are written (peer_rows.h reaches peers).
#pragma once

#include <cstddef>
#include <cstring>
#include <span>

#include "core/context.h"
#include "core/problem.h"
#include "core/tensor_access.h"
#include "core/workspace.h"
#include "moedist/status.h"

namespace moedist::core {

// The EP communicator must be the world the attributes describe; tp must be given when tpWorldSize is 2.
Status checkCommunicators(Operator op, const Geometry& geo, const RankContext& ep, const RankContext* tp);

// Scratch for a dense copy of `v` when it is strided, nothing when it is dense or absent.
inline Booking<std::byte> bookDense(Ledger& ledger, const TensorView& v) {
  return ledger.book<std::byte>(v.defined() && !v.contiguous() ? denseBytes(v) : 0);
}

// The caller's workspace if given (it must be large enough and aligned to alignof(std::max_align_t)), else the
// rank's arena.
Status bindWorkspace(Operator op, RankContext& ctx, const Ledger& ledger, std::span<std::byte> given, Workspace* ws);

// Joins the call's exchanges carrying `error` (a failure found before them), so that every participant fails at
// once with it instead of waiting for this rank until its deadline. The participants are read from elasticInfo as
// far as it is usable, else all ranks; a rank that elasticInfo removes does not join. `tpFirst`: the operator talks
// to its TP pair before its EP group (combine), else after (dispatch).
Status failTogether(Operator op, RankContext& ep, RankContext* tp, bool tpFirst, const TensorView& elasticInfo,
                    const Status& error);

// Whether a call that writes `bytes` of rows should write them with kernels' streamRow (around the caches): when
// they would not fit in a quarter of the last-level cache (8 MB where its size is unknown), so keeping them cached
// would only evict other data and cost a read for ownership per line.
bool streamOutput(size_t bytes);

// Copies rows of an output: with the kernel table's streamRow when `stream` (streamOutput() of the call's rows),
// else memcpy.
inline void copyRows(const kernels::KernelTable& k, bool stream, void* dst, const void* src, size_t bytes) {
  if (stream) {
    k.streamRow(dst, src, bytes);
  } else {
    std::memcpy(dst, src, bytes);
  }
}

}  // namespace moedist::core
