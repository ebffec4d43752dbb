// DispatchV3 (SPEC section 2): send each active token to the ranks hosting its top-k MoE experts and its shared
// experts; each rank receives its rows grouped by local expert, then source rank, then the source's (t, k) order.
//
// Check, plan, exchange counts, move rows (DESIGN "The algorithm"):
//  1. validate arguments; derive the topology (elastic scale-in) and this rank's routing plan;
//  2. open the EP call: the header carries the signature, any local error and the plan's block offsets; the
//     regions are x, the plan's entries and the smooth scales;
//  3. agree on success, lay out the receive blocks from every source's offsets, and pull each row straight from
//     the source's x (one copy; quantized on the way with quantMode 2), writing its (source, token, slot) triple;
//     a source this rank cannot map (another host) pushes its rows instead, each token once (Inbox);
//  4. with TP, a second call on the TP pair appends the peer's rows (AllGatherV).
#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <vector>

#include "core/call_common.h"
#include "core/exchange.h"
#include "core/operators.h"
#include "core/peer_rows.h"
#include "core/routing_plan.h"
#include "core/topology.h"
#include "core/validate.h"

namespace moedist::core {

namespace {

enum DispatchRegion : int { kRegionX, kRegionEntries, kRegionScales, kRegionInbox, kNumDispatchRegions };

struct DispatchBookings {
  Booking<std::byte> x, ids, mask, scales, elastic;
};

DispatchBookings bookDispatch(const DispatchArgs& a, Ledger* ledger) {
  DispatchBookings b;
  b.x = bookDense(*ledger, a.x);
  b.ids = bookDense(*ledger, a.expertIds);
  b.mask = bookDense(*ledger, a.xActiveMask);
  b.scales = bookDense(*ledger, a.scales);
  b.elastic = bookDense(*ledger, a.elasticInfo);
  return b;
}

// One received row: where it comes from.
struct RowSource {
  int32_t peer;      // physical rank of the source
  int32_t sourceId;  // its id in the (possibly renumbered) world: the triple's first field
  int32_t entry;     // index into the source's plan entries
  int32_t localExpert;
};

class DispatchRun {
 public:
  DispatchRun(RankContext& ctx, const DispatchCall& call, const Geometry& geo, const Topology& topo)
      : ctx_(ctx), engine_(*ctx.engine), a_(*call.args), op_(call.op), geo_(geo), topo_(topo) {}

  // Every participant's header (headerWords below): its send-block offsets (W*L + 1 words), then its output
  // capacity in rows, then the most rows it sends to one MoE rank and to one shared-expert rank, then its push
  // section (Inbox).
  static constexpr size_t kCapacityWord = 0, kMaxToMoeWord = 1, kMaxToSharedWord = 2, kTailWords = 3;
  std::span<const int32_t> peerWords(int peer) const {
    auto words = headerWords<int32_t>(engine_.peerHeader(peer));
    MOEDIST_CHECK(words.size() > numOffsets() + kTailWords);
    return words;
  }
  size_t numOffsets() const { return static_cast<size_t>(topo_.W * topo_.L + 1); }
  std::span<const int32_t> peerOffsets(int peer) const { return peerWords(peer).first(numOffsets()); }
  int32_t peerTail(int peer, size_t word) const { return peerWords(peer)[numOffsets() + word]; }
  std::span<const int32_t> peerSection(int peer) const { return peerWords(peer).subspan(numOffsets() + kTailWords); }

  // The inbox this rank publishes when it does not map every participant: room for the entries and rows of every
  // source it cannot map, each source's part as large as its entries would make it without repeated tokens. What
  // arrives is bounded by the capacity (checked before anything moves) and by each source's tokens times slots.
  size_t inboxBytes(std::span<const int32_t> section, int64_t capacity) const {
    const int64_t pushers = Inbox::pushers(section);
    const int64_t rows = std::min(capacity, pushers * geo_.maxBs * (geo_.K + geo_.S));
    return static_cast<size_t>(pushers) * 2 * Inbox::kAlign +
           static_cast<size_t>(rows) * (sizeof(SlotRef) + xRowBytes());
  }
  size_t xRowBytes() const { return static_cast<size_t>(geo_.H * dtypeBytes(a_.x.dtype())); }
  // A source's part of a reader's inbox: its entries for the reader, then room for as many rows (its distinct
  // tokens come first).
  int64_t entriesFor(int64_t owner, int64_t reader) const {
    auto offsets = peerOffsets(topo_.physical[static_cast<size_t>(owner)]);
    return offsets[static_cast<size_t>((reader + 1) * topo_.L)] - offsets[static_cast<size_t>(reader * topo_.L)];
  }
  size_t partBytes(int64_t owner, int64_t reader) const {
    const auto c = static_cast<size_t>(entriesFor(owner, reader));
    return inboxAlign(c * sizeof(SlotRef)) + c * xRowBytes();
  }

  // Every rank checks every receiver's capacity from the headers, so all reach the same verdict before any row
  // moves (SPEC leaves expandX unchecked with tpWorldSize 0). In O(W): the sum over the sources of the most rows
  // each sends to one rank of a kind bounds what any rank of that kind receives; only when that bound exceeds the
  // smallest capacity of the kind (a caller's expandX below A, or ids repeated within a token) is every receiver
  // counted exactly, in O(W^2).
  Status checkCapacities() const {
    int64_t toMoe = 0, toShared = 0;
    int64_t minMoeCap = INT64_MAX, minSharedCap = INT64_MAX;
    for (int peer : topo_.participants) {
      toMoe += peerTail(peer, kMaxToMoeWord);
      toShared += peerTail(peer, kMaxToSharedWord);
    }
    for (int64_t d = 0; d < topo_.W; ++d) {
      const int64_t cap = peerTail(topo_.physical[static_cast<size_t>(d)], kCapacityWord);
      int64_t& minCap = topo_.isSharedRank(d) ? minSharedCap : minMoeCap;
      minCap = std::min(minCap, cap);
    }
    if (toMoe <= minMoeCap && toShared <= minSharedCap) return okStatus();
    return checkCapacitiesExactly();
  }

  // The rows each receiver gets, counted; the first one over its capacity fails the call.
  Status checkCapacitiesExactly() const {
    const int64_t L = topo_.L;
    std::vector<int64_t> rows(static_cast<size_t>(topo_.W), 0);
    for (int peer : topo_.participants) {
      auto offsets = peerOffsets(peer);
      for (int64_t d = 0; d < topo_.W; ++d)
        rows[static_cast<size_t>(d)] += offsets[static_cast<size_t>((d + 1) * L)] - offsets[static_cast<size_t>(d * L)];
    }
    for (int64_t d = 0; d < topo_.W; ++d) {
      const int dPeer = topo_.physical[static_cast<size_t>(d)];
      const int32_t capacity = peerTail(dPeer, kCapacityWord);
      if (rows[static_cast<size_t>(d)] > capacity)
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("{}: rank {} receives {} rows, but its expandX, dynamicScales or "
                                  "assistInfoForCombine has room for {} (the capacity A of a rank is {})",
                                  toString(op_), dPeer, rows[static_cast<size_t>(d)], capacity, geo_.A));
    }
    return okStatus();
  }

  // Lays out the receive blocks from the sources' headers.
  void layout() {
    const int64_t self = topo_.self, L = topo_.L, W = topo_.W;
    const int64_t numBlocks = topo_.numRecvBlocks(self);
    recvCounts_.resize(static_cast<size_t>(numBlocks));
    rows_.clear();
    int64_t total = 0;
    for (int64_t i = 0; i < numBlocks; ++i) {
      const int64_t le = topo_.selfShared() ? 0 : i / W;
      const int64_t s = topo_.selfShared() ? i : i % W;
      const int peer = topo_.physical[static_cast<size_t>(s)];
      auto offsets = peerOffsets(peer);
      const int64_t block = self * L + le;
      for (int32_t e = offsets[static_cast<size_t>(block)]; e < offsets[static_cast<size_t>(block + 1)]; ++e)
        rows_.push_back(RowSource{peer, static_cast<int32_t>(s), e, static_cast<int32_t>(le)});
      total += offsets[static_cast<size_t>(block + 1)] - offsets[static_cast<size_t>(block)];
      recvCounts_[static_cast<size_t>(i)] = static_cast<int32_t>(total);
    }
  }

  // Moves every row from its source into expandX (quantized on the way with quantMode 2) and writes dynamicScales
  // and the triples: pulled from the sources this rank maps, pushed by the others into its inbox (Inbox), while this
  // rank pushes its own rows to the readers that cannot map it.
  Status moveRows(const RoutingPlan& plan, std::span<const std::byte> x) {
    const int64_t H = geo_.H, K = geo_.K, S = geo_.S;
    const size_t rowBytes = xRowBytes();
    const auto kind = a_.x.dtype() == DType::kFloat16 ? kernels::Float16Kind::kFp16 : kernels::Float16Kind::kBf16;
    const bool quant = a_.quantMode == 2;
    const size_t outRowBytes = quant ? static_cast<size_t>(H) : rowBytes;
    auto* out = static_cast<std::byte*>(a_.expandX.data());
    auto* triples = a_.assistInfoForCombine.ptr<int32_t>();
    const int64_t moeBase = S + (topo_.self - topo_.Srank) * topo_.L;  // smooth-scale row of local expert 0
    const size_t n = rows_.size();
    const Inbox routes(
        topo_, [&](int64_t id) { return peerSection(topo_.physical[static_cast<size_t>(id)]); },
        [&](int64_t owner, int64_t reader) { return partBytes(owner, reader); });
    // Where each source's part of this rank's inbox lies, and which rows were pushed (none when nobody pushes).
    const std::vector<size_t> parts = routes.used() ? routes.parts(topo_.self) : std::vector<size_t>();
    std::vector<uint8_t> pushed(n, 0);
    if (!parts.empty())
      for (size_t row = 0; row < n; ++row)
        pushed[row] = parts[static_cast<size_t>(rows_[row].sourceId)] != Inbox::kNoPart ? 1 : 0;

    // Before the fence: this rank's pushes, then each pulled row's slot (t, k) at its source, from the source's plan
    // entries, and (unquantized) the row itself: x[t] of the source, copied once (streamed around the caches when
    // the output is large).
    Status status = routes.used() ? pushRows(routes, plan, x) : okStatus();
    PeerRows peers(ctx_);
    std::vector<PeerPiece> pieces(n);
    std::vector<const std::byte*> at(n);
    std::vector<SlotRef> refs(n);
    for (size_t row = 0; row < n; ++row)
      if (!pushed[row])
        pieces[row] = {rows_[row].peer, kRegionEntries, static_cast<size_t>(rows_[row].entry) * sizeof(SlotRef),
                       sizeof(SlotRef)};
    if (status.ok()) status = peers.resolve(pieces, at);
    if (status.ok()) {
      for (size_t row = 0; row < n; ++row)
        if (!pushed[row]) std::memcpy(&refs[row], at[row], sizeof(SlotRef));
      for (size_t row = 0; row < n; ++row)
        pieces[row] = pushed[row]
                          ? PeerPiece{}
                          : PeerPiece{rows_[row].peer, kRegionX, static_cast<size_t>(refs[row].t) * rowBytes, rowBytes};
      if (!quant) status = peers.gather(pieces, out, outRowBytes, streamOutput(n * outRowBytes));
    }
    MOEDIST_RETURN_IF_ERROR(routes.fence(engine_, ctx_.deadline(), status));

    // After it: the pushed rows' slots and rows, from the inbox.
    std::vector<const std::byte*> pushedRow(n, nullptr);
    if (!parts.empty()) takePushed(parts, pushed, refs, pushedRow);
    for (size_t row = 0; row < n; ++row) {
      triples[3 * row] = rows_[row].sourceId;
      triples[3 * row + 1] = refs[row].t;
      triples[3 * row + 2] = refs[row].k;
    }
    if (!quant) {
      if (routes.used()) {
        const bool stream = streamOutput(n * outRowBytes);
        ctx_.pool.parallelFor(static_cast<int64_t>(n), 16, [&](int64_t begin, int64_t end) {
          for (auto row = static_cast<size_t>(begin); row < static_cast<size_t>(end); ++row)
            if (pushed[row]) copyRows(*ctx_.kernels, stream, out + row * outRowBytes, pushedRow[row], rowBytes);
        });
      }
      return okStatus();
    }

    // quantMode 2: quantized on the way, with the smooth-scale row of the row's expert when the source gave scales
    // (read from the source, pushed or not: a few rows per source).
    MOEDIST_RETURN_IF_ERROR(peers.resolve(pieces, at));
    for (size_t row = 0; row < n; ++row)
      if (pushed[row]) at[row] = pushedRow[row];
    PeerRows scalePeers(ctx_);
    std::vector<PeerPiece> scalePieces(n);
    std::vector<const std::byte*> smooth(n);
    for (size_t row = 0; row < n; ++row) {
      const RowSource& src = rows_[row];
      if (engine_.peerRegionBytes(src.peer, kRegionScales) == 0) continue;  // no scales: an empty piece
      const int64_t scaleRow = refs[row].k >= K ? refs[row].k - K : moeBase + src.localExpert;
      scalePieces[row] = {src.peer, kRegionScales, static_cast<size_t>(scaleRow * H) * sizeof(float),
                          static_cast<size_t>(H) * sizeof(float)};
    }
    MOEDIST_RETURN_IF_ERROR(scalePeers.resolve(scalePieces, smooth));
    float* dynScales = a_.dynamicScales.ptr<float>();
    ctx_.pool.parallelFor(static_cast<int64_t>(n), 16, [&](int64_t begin, int64_t end) {
      for (auto row = static_cast<size_t>(begin); row < static_cast<size_t>(end); ++row)
        ctx_.kernels->quantizeRow(reinterpret_cast<const uint16_t*>(at[row]), kind,
                                  reinterpret_cast<const float*>(smooth[row]), H,
                                  reinterpret_cast<int8_t*>(out + row * outRowBytes), &dynScales[row]);
    });
    return okStatus();
  }

  // To each reader that cannot map this rank, into its part of the reader's inbox: this rank's plan entries for the
  // reader (its blocks, in order), then each token they name once, in ascending order, neighbours in one piece.
  Status pushRows(const Inbox& routes, const RoutingPlan& plan, std::span<const std::byte> x) const {
    const size_t rowBytes = xRowBytes();
    std::vector<int32_t> tokens;
    std::vector<comm::WritePiece> pieces;
    for (int64_t d = 0; d < topo_.W; ++d) {
      if (!routes.pushes(topo_.self, d)) continue;
      const auto b = static_cast<size_t>(plan.blockOffsets[static_cast<size_t>(d * topo_.L)]);
      const auto e = static_cast<size_t>(plan.blockOffsets[static_cast<size_t>((d + 1) * topo_.L)]);
      if (b == e) continue;
      const size_t part = routes.partOffset(topo_.self, d);
      pieces.assign(1, {plan.entries.data() + b, part, (e - b) * sizeof(SlotRef)});
      tokens.clear();
      for (size_t i = b; i < e; ++i) tokens.push_back(plan.entries[i].t);
      std::sort(tokens.begin(), tokens.end());
      tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
      size_t at = part + inboxAlign((e - b) * sizeof(SlotRef));
      for (size_t i = 0; i < tokens.size(); ++i) {
        const size_t src = static_cast<size_t>(tokens[i]) * rowBytes;
        if (i > 0 && tokens[i] == tokens[i - 1] + 1)
          pieces.back().bytes += rowBytes;
        else
          pieces.push_back({x.data() + src, at, rowBytes});
        at += rowBytes;
      }
      MOEDIST_RETURN_IF_ERROR(engine_.write(topo_.physical[static_cast<size_t>(d)], kRegionInbox, pieces));
    }
    return okStatus();
  }

  // The slots and row addresses of the rows that were pushed to this rank, from its inbox (see pushRows); `at`: where
  // each source's part lies (Inbox::parts).
  void takePushed(const std::vector<size_t>& at, const std::vector<uint8_t>& pushed, std::vector<SlotRef>& refs,
                  std::vector<const std::byte*>& rowAt) const {
    struct Part {
      const std::byte* entries = nullptr;
      int32_t first = 0;            // the source's entry index of its first entry for this rank
      std::vector<int32_t> tokens;  // its distinct tokens, ascending: the order of its rows
      const std::byte* rows = nullptr;
    };
    std::vector<Part> parts(static_cast<size_t>(topo_.W));
    for (int64_t s = 0; s < topo_.W; ++s) {
      if (at[static_cast<size_t>(s)] == Inbox::kNoPart) continue;
      Part& p = parts[static_cast<size_t>(s)];
      const int64_t c = entriesFor(s, topo_.self);
      p.first = peerOffsets(topo_.physical[static_cast<size_t>(s)])[static_cast<size_t>(topo_.self * topo_.L)];
      p.entries = Inbox::inbox(engine_, kRegionInbox) + at[static_cast<size_t>(s)];
      p.rows = p.entries + inboxAlign(static_cast<size_t>(c) * sizeof(SlotRef));
      for (int64_t i = 0; i < c; ++i) {
        SlotRef ref;
        std::memcpy(&ref, p.entries + i * static_cast<int64_t>(sizeof(SlotRef)), sizeof ref);
        p.tokens.push_back(ref.t);
      }
      std::sort(p.tokens.begin(), p.tokens.end());
      p.tokens.erase(std::unique(p.tokens.begin(), p.tokens.end()), p.tokens.end());
    }
    for (size_t row = 0; row < rows_.size(); ++row) {
      if (!pushed[row]) continue;
      const Part& p = parts[static_cast<size_t>(rows_[row].sourceId)];
      std::memcpy(&refs[row], p.entries + (rows_[row].entry - p.first) * static_cast<int64_t>(sizeof(SlotRef)),
                  sizeof(SlotRef));
      const auto i = std::lower_bound(p.tokens.begin(), p.tokens.end(), refs[row].t) - p.tokens.begin();
      rowAt[row] = p.rows + static_cast<size_t>(i) * xRowBytes();
    }
  }

  // epRecvCounts and expertTokenNums (SPEC 2.4).
  void writeCounts() {
    std::copy(recvCounts_.begin(), recvCounts_.end(), a_.epRecvCounts.ptr<int32_t>());
    auto* tokenNums = a_.expertTokenNums.ptr<int64_t>();
    const int64_t n = numRows();
    if (topo_.selfShared() || topo_.L == 1) {
      tokenNums[0] = n;
      return;
    }
    int64_t previous = 0;
    for (int64_t le = 0; le < topo_.L; ++le) {
      const int64_t upTo = recvCounts_[static_cast<size_t>(le * topo_.W + topo_.W - 1)];
      tokenNums[le] = a_.expertTokenNumsType == 0 ? upTo : upTo - previous;
      previous = upTo;
    }
  }

  int64_t numRows() const { return recvCounts_.empty() ? 0 : recvCounts_.back(); }
  std::span<const int32_t> recvCounts() const { return recvCounts_; }

 private:
  RankContext& ctx_;
  comm::Engine& engine_;
  const DispatchArgs& a_;
  Operator op_;
  const Geometry& geo_;
  const Topology& topo_;
  std::vector<int32_t> recvCounts_;  // inclusive prefix sums over the receive blocks
  std::vector<RowSource> rows_;
};

// SPEC 2.6: AllGatherV over the TP pair. Appends the peer's own rows (and scales) after this rank's own rows.
// `epStatus` is the EP phase's verdict: the pair joins the call even when it failed, so both learn of it.
Status tpAllGather(RankContext& tp, const DispatchCall& call, const Geometry& geo, const Signature& sig,
                   const Status& epStatus, int64_t numOwn, std::span<const int32_t> ownCounts) {
  const DispatchArgs& a = *call.args;
  comm::Engine& engine = *tp.engine;
  const size_t rowBytes = static_cast<size_t>(geo.H * dtypeBytes(a.expandX.dtype()));
  const bool quant = a.quantMode == 2;
  Header header(sig, epStatus);
  const int64_t own[1] = {numOwn};
  header.append(std::span<const int64_t>(own));
  header.append(ownCounts);
  const comm::Region regions[] = {
      {a.expandX.data(), static_cast<size_t>(numOwn) * rowBytes},
      {quant ? a.dynamicScales.data() : nullptr, quant ? static_cast<size_t>(numOwn) * sizeof(float) : 0}};
  const int pair[] = {0, 1};
  OpenCall open(call.op, engine, tp.timeout);
  MOEDIST_RETURN_IF_ERROR(open.open(pair, header.bytes(), regions));
  if (Status s = agree(call.op, engine, pair, epStatus); !s.ok()) return open.close(s);

  const int peer = 1 - engine.rank();
  auto payload = headerPayload(engine.peerHeader(peer));
  int64_t numPeer = 0;
  std::memcpy(&numPeer, payload.data(), sizeof numPeer);
  auto peerCounts = std::span(reinterpret_cast<const int32_t*>(payload.data() + sizeof numPeer), ownCounts.size());
  if (numOwn + numPeer > a.expandX.dim(0))
    return open.close(Status(StatusCode::kInvalidArgument,
                             fmt::format("{}: expandX: has room for {} rows, but own + peer rows are {} + {}",
                                         toString(call.op), a.expandX.dim(0), numOwn, numPeer)));
  // The peer's rows after this rank's own, then their dynamic scales.
  PeerRows peers(tp);
  std::vector<PeerPiece> pieces(static_cast<size_t>(numPeer));
  for (size_t i = 0; i < pieces.size(); ++i) pieces[i] = {peer, 0, i * rowBytes, rowBytes};
  auto* dst = static_cast<std::byte*>(a.expandX.data()) + numOwn * rowBytes;
  Status status = peers.gather(pieces, dst, rowBytes, streamOutput(pieces.size() * rowBytes));
  if (quant && status.ok()) {
    const PeerPiece scales[] = {{peer, 1, 0, static_cast<size_t>(numPeer) * sizeof(float)}};
    status = peers.gather(scales, reinterpret_cast<std::byte*>(a.dynamicScales.ptr<float>() + numOwn), scales[0].bytes,
                          /*stream=*/false);
  }
  if (status.ok()) {
    std::copy(peerCounts.begin(), peerCounts.end(), a.epRecvCounts.ptr<int32_t>() + ownCounts.size());
    a.tpRecvCounts.ptr<int32_t>()[geo.tpr] = static_cast<int32_t>(numOwn);
    a.tpRecvCounts.ptr<int32_t>()[1 - geo.tpr] = static_cast<int32_t>(numPeer);
    a.expertTokenNums.ptr<int64_t>()[0] = numOwn + numPeer;
  }
  return open.close(status);
}

}  // namespace

Status dispatchWorkspaceBytes(const DispatchCall& call, size_t* bytes) {
  Geometry geo;
  MOEDIST_RETURN_IF_ERROR(validateDispatch(call, &geo));
  Ledger ledger;
  bookDispatch(*call.args, &ledger);
  *bytes = ledger.bytes();
  return okStatus();
}

Status dispatch(RankContext& ep, RankContext* tp, const DispatchCall& call, std::span<std::byte> workspace) {
  const DispatchArgs& a = *call.args;
  Geometry geo;
  Ledger ledger;
  DispatchBookings bk;
  Workspace ws;
  Status checked = validateDispatch(call, &geo);
  if (checked.ok()) checked = checkCommunicators(call.op, geo, ep, tp);
  if (checked.ok()) {
    bk = bookDispatch(a, &ledger);  // only valid arguments are booked: their sizes are bounded
    checked = bindWorkspace(call.op, ep, ledger, workspace, &ws);
  }
  if (!checked.ok()) return failTogether(call.op, ep, tp, /*tpFirst=*/false, a.elasticInfo, checked);
  const auto x = denseInput(a.x, ws.get(bk.x));
  const auto ids = denseAs<int32_t>(a.expertIds, ws.get(bk.ids));
  const auto mask = denseAs<uint8_t>(a.xActiveMask, ws.get(bk.mask));
  const auto scales = denseInput(a.scales, ws.get(bk.scales));
  const auto elastic = denseAs<int32_t>(a.elasticInfo, ws.get(bk.elastic));

  Topology topo;
  MOEDIST_RETURN_IF_ERROR(makeTopology(call.op, geo, elastic, &topo));
  RoutingPlan plan;
  const Status local = buildRoutingPlan(call.op, geo, topo, ids, mask, &plan);

  Signature sig = baseSignature(call.op, geo, a, elastic);
  sig[SigField::kDType] = static_cast<int64_t>(a.x.dtype());
  sig[SigField::kQuantMode] = a.quantMode;
  sig[SigField::kMaskDims] = a.xActiveMask.defined() ? a.xActiveMask.ndim() : 0;
  Header header(sig, local);
  const std::vector<int32_t> section = Inbox::pushSection(*ep.engine, topo);
  DispatchRun run(ep, call, geo, topo);
  std::span<std::byte> inbox;
  if (local.ok()) {
    // The rows this rank can receive: what expandX, dynamicScales and assistInfoForCombine hold.
    int64_t capacity = std::min(a.expandX.dim(0), a.assistInfoForCombine.numel() / 3);
    if (a.quantMode == 2) capacity = std::min(capacity, a.dynamicScales.dim(0));
    // The most rows this rank sends to one MoE rank and to one shared-expert rank (DispatchRun::checkCapacities).
    int32_t toMoe = 0, toShared = 0;
    for (int64_t d = 0; d < topo.W; ++d) {
      const int32_t rows =
          plan.blockOffsets[static_cast<size_t>((d + 1) * topo.L)] - plan.blockOffsets[static_cast<size_t>(d * topo.L)];
      int32_t& most = topo.isSharedRank(d) ? toShared : toMoe;
      most = std::max(most, rows);
    }
    const int32_t words[3] = {static_cast<int32_t>(std::min<int64_t>(capacity, INT32_MAX)), toMoe, toShared};
    header.append(std::span<const int32_t>(plan.blockOffsets));
    header.append(std::span<const int32_t>(words));
    header.append(std::span<const int32_t>(section));
    if (Inbox::needsInbox(section)) inbox = ep.inbox.reserve(run.inboxBytes(section, capacity));
  }
  const comm::Region regions[kNumDispatchRegions] = {{x.data(), x.size()},
                                                     {plan.entries.data(), plan.entries.size() * sizeof(SlotRef)},
                                                     {scales.data(), scales.size()},
                                                     {inbox.data(), inbox.size(), /*writable=*/true}};

  OpenCall open(call.op, *ep.engine, ep.timeout);
  Status s = open.open(topo.participants, header.bytes(), regions);
  if (s.ok()) s = agree(call.op, *ep.engine, topo.participants, local);
  if (s.ok()) s = run.checkCapacities();
  if (s.ok()) run.layout();
  if (s.ok()) s = run.moveRows(plan, x);
  if (s.ok()) run.writeCounts();
  s = open.close(s);
  if (geo.tp != 2) return s;
  sig[SigField::kBatchSize] = 0;  // the two EP groups may have different batch sizes
  return tpAllGather(*tp, call, geo, sig, s, run.numRows(), run.recvCounts());
}

}  // namespace moedist::core
