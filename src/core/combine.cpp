// CombineAddRmsNormV2 (SPEC section 3): bring every expert output row back to the token it came from, sum the
// rows with the router weights (plus special, shared and residual terms) and apply RmsNorm.
//
//  1. validate; derive the topology and the routing plan (which slots of this rank's tokens expect a row);
//  2. expert side: with TP, reduce the TP pair's partial rows (ReduceScatterV, a call on the TP pair); with
//     commQuantMode 2, quantize the rows to int8; then index the rows by the source rank in their triples;
//  3. open the EP call: regions are the rows, the per-source index and the int8 group scales (and an inbox, when
//     this rank cannot map every participant); an expert rank then pushes its index and rows to the sources that
//     cannot map it (Inbox);
//  4. source side: collect, from every participant, the rows of this rank's slots (each must arrive exactly
//     once), then for each active token run the fused kernel straight on the peers' rows (one read per row).
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "core/call_common.h"
#include "core/exchange.h"
#include "core/operators.h"
#include "core/peer_rows.h"
#include "core/routing_plan.h"
#include "core/topology.h"
#include "core/validate.h"
#include "util/numeric.h"

namespace moedist::core {

namespace {

using kernels::SlotKind;

enum CombineRegion : int { kRegionRows, kRegionIndex, kRegionGroupScales, kRegionInbox, kNumCombineRegions };

struct CombineBookings {
  Booking<std::byte> expandX, ids, assist, epSend, weights, residual, gamma, tpSend, mask, shared, elastic, oriX,
      alpha1, alpha2, constV;
  Booking<uint16_t> tpRows;       // TP-reduced rows (tp == 2)
  Booking<int8_t> quantRows;      // int8 rows (commQuantMode 2)
  Booking<uint16_t> quantScales;  // their bf16 group scales
};

bool isAddRmsNorm(Operator op) {
  return op == Operator::kCombineAddRmsNormV2 || op == Operator::kCombineAddRmsNorm;
}

CombineBookings bookCombine(const CombineArgs& a, const Geometry& geo, Ledger* ledger) {
  CombineBookings b;
  b.expandX = bookDense(*ledger, a.expandX);
  b.ids = bookDense(*ledger, a.expertIds);
  b.assist = bookDense(*ledger, a.assistInfoForCombine);
  b.epSend = bookDense(*ledger, a.epSendCounts);
  b.weights = bookDense(*ledger, a.expertScales);
  b.residual = bookDense(*ledger, a.residualX);
  b.gamma = bookDense(*ledger, a.gamma);
  b.tpSend = bookDense(*ledger, a.tpSendCounts);
  b.mask = bookDense(*ledger, a.xActiveMask);
  b.shared = bookDense(*ledger, a.sharedExpertX);
  b.elastic = bookDense(*ledger, a.elasticInfo);
  b.oriX = bookDense(*ledger, a.oriX);
  b.alpha1 = bookDense(*ledger, a.constExpertAlpha1);
  b.alpha2 = bookDense(*ledger, a.constExpertAlpha2);
  b.constV = bookDense(*ledger, a.constExpertV);
  const size_t maxRows = static_cast<size_t>(geo.A);
  b.tpRows = ledger->book<uint16_t>(geo.tp == 2 ? maxRows * static_cast<size_t>(geo.H) : 0);
  const bool quant = a.commQuantMode == 2;
  b.quantRows = ledger->book<int8_t>(quant ? maxRows * static_cast<size_t>(geo.H) : 0);
  b.quantScales = ledger->book<uint16_t>(quant ? maxRows * static_cast<size_t>(kernels::commQuantGroups(geo.H)) : 0);
  return b;
}

struct IndexEntry {
  int32_t slot;  // t * (K + S) + k at the source
  int32_t row;   // row in this rank's rows region
};

struct Inputs {
  std::span<const std::byte> expandX;
  std::span<const int32_t> ids, assist, epSend, tpSend, elastic;
  std::span<const uint8_t> mask;
  std::span<const float> weights;
  std::span<const uint16_t> residual, gamma, shared, oriX, alpha1, alpha2, constV;
};

class CombineRun {
 public:
  CombineRun(RankContext& ctx, const CombineCall& call, const Geometry& geo, const Topology& topo, const Inputs& in)
      : ctx_(ctx), a_(*call.args), op_(call.op), geo_(geo), topo_(topo), in_(in) {}

  int64_t slotsPerToken() const { return geo_.K + geo_.S; }

  // Expert side, step 1: how many rows this rank returns, and their triples are sane.
  Status readOwnRows() {
    const int64_t numBlocks = topo_.numRecvBlocks(topo_.self);
    if (static_cast<int64_t>(in_.epSend.size()) < numBlocks)  // SPEC leaves this unchecked with tpWorldSize 0
      return bad(fmt::format("epSendCounts: expected at least {} entries (one per receive block), got {}", numBlocks,
                             in_.epSend.size()));
    numOwn_ = in_.epSend[static_cast<size_t>(numBlocks - 1)];
    const int64_t maxRows = std::min<int64_t>({geo_.A, a_.expandX.dim(0), static_cast<int64_t>(in_.assist.size()) / 3});
    if (numOwn_ < 0 || numOwn_ > maxRows)
      return bad(
          fmt::format("epSendCounts[{}] (rows this rank received in dispatch) is {}, expected 0..{} (at most "
                      "the capacity A = {}, the rows of expandX and a triple per row in assistInfoForCombine)",
                      numBlocks - 1, numOwn_, maxRows, geo_.A));
    for (int64_t i = 0; i < numOwn_; ++i) {
      const int32_t s = in_.assist[static_cast<size_t>(3 * i)];
      const int32_t t = in_.assist[static_cast<size_t>(3 * i + 1)];
      const int32_t k = in_.assist[static_cast<size_t>(3 * i + 2)];
      if (s < 0 || s >= topo_.W || t < 0 || t >= geo_.maxBs || k < 0 || k >= slotsPerToken())
        return bad(
            fmt::format("assistInfoForCombine row {} is (rank {}, token {}, slot {}), expected rank < {}, "
                        "token < {}, slot < {}",
                        i, s, t, k, topo_.W, geo_.maxBs, slotsPerToken()));
    }
    return okStatus();
  }

  // Expert side, step 2 (tp == 2): red[i] = round(f(E_self[i]) + f(E_peer[Npeer + i])) (SPEC 3.2).
  // `local` is this rank's verdict so far: the pair joins the call even when it failed, so both learn of it.
  Status tpReduce(RankContext& tp, const Signature& sig, std::span<uint16_t> out, Status local) {
    comm::Engine& engine = *tp.engine;
    const int64_t numPeer = in_.tpSend[static_cast<size_t>(1 - geo_.tpr)];
    if (local.ok() && (numPeer < 0 || numPeer > geo_.A || numOwn_ + numPeer > a_.expandX.dim(0)))
      local = bad(fmt::format("tpSendCounts[{}] (rows of the TP peer) is {}, expected 0..{}", 1 - geo_.tpr, numPeer,
                              std::min(geo_.A, a_.expandX.dim(0) - numOwn_)));
    Header header(sig, local);
    const int64_t counts[2] = {numOwn_, numPeer};
    header.append(std::span<const int64_t>(counts));
    const size_t rowBytes = static_cast<size_t>(geo_.H) * 2;
    // The peer reads rows [numOwn_, numOwn_ + numPeer): publish the prefix up to there.
    const size_t used = local.ok() ? static_cast<size_t>(numOwn_ + numPeer) * rowBytes : 0;
    const comm::Region regions[] = {{in_.expandX.data(), std::min(in_.expandX.size(), used)}};
    const int pair[] = {0, 1};
    OpenCall open(op_, engine, tp.timeout);
    MOEDIST_RETURN_IF_ERROR(open.open(pair, header.bytes(), regions));
    if (Status s = agree(op_, engine, pair, local); !s.ok()) return open.close(s);
    const int peer = 1 - engine.rank();
    const auto peerCounts = headerWords<int64_t>(engine.peerHeader(peer));
    if (peerCounts[0] != numPeer || peerCounts[1] != numOwn_)
      return open.close(
          bad(fmt::format("the TP pair disagrees on its row counts: this rank returns {} rows and "
                          "expects {} from its peer; the peer returns {} and expects {}",
                          numOwn_, numPeer, peerCounts[0], peerCounts[1])));
    const auto kind = a_.expandX.dtype() == DType::kFloat16 ? kernels::Float16Kind::kFp16 : kernels::Float16Kind::kBf16;
    const auto* self = reinterpret_cast<const uint16_t*>(in_.expandX.data());
    PeerRows peers(tp);
    std::vector<PeerPiece> pieces(static_cast<size_t>(numOwn_));
    std::vector<const std::byte*> other(pieces.size());
    for (size_t i = 0; i < pieces.size(); ++i)
      pieces[i] = {peer, 0, (static_cast<size_t>(numPeer) + i) * rowBytes, rowBytes};
    const Status status = peers.resolve(pieces, other);
    if (status.ok())
      tp.pool.parallelFor(numOwn_, 8, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          ctx_.kernels->addRows(self + i * geo_.H, reinterpret_cast<const uint16_t*>(other[static_cast<size_t>(i)]),
                                kind, geo_.H, out.data() + i * geo_.H);
      });
    return open.close(status);
  }

  // Expert side, step 3 (commQuantMode 2): int8 rows with bf16 group scales (SPEC 3.7).
  void quantizeRows(const uint16_t* rows, std::span<int8_t> q, std::span<uint16_t> scales) {
    const int64_t groups = kernels::commQuantGroups(geo_.H);
    ctx_.pool.parallelFor(numOwn_, 8, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        ctx_.kernels->commQuantRow(rows + i * geo_.H, geo_.H, q.data() + i * geo_.H, scales.data() + i * groups);
    });
  }

  // Expert side, step 4: the rows grouped by source id (counting sort on the triples' first field).
  void indexBySource() {
    sourceOffsets_.assign(static_cast<size_t>(topo_.W + 1), 0);
    for (int64_t i = 0; i < numOwn_; ++i) ++sourceOffsets_[static_cast<size_t>(in_.assist[3 * i] + 1)];
    for (int64_t s = 0; s < topo_.W; ++s)
      sourceOffsets_[static_cast<size_t>(s + 1)] += sourceOffsets_[static_cast<size_t>(s)];
    index_.resize(static_cast<size_t>(numOwn_));
    std::vector<int32_t> cursor(sourceOffsets_.begin(), sourceOffsets_.end() - 1);
    for (int64_t i = 0; i < numOwn_; ++i) {
      const int32_t s = in_.assist[static_cast<size_t>(3 * i)];
      const int32_t slot = static_cast<int32_t>(in_.assist[static_cast<size_t>(3 * i + 1)] * slotsPerToken() +
                                                in_.assist[static_cast<size_t>(3 * i + 2)]);
      index_[static_cast<size_t>(cursor[static_cast<size_t>(s)]++)] = IndexEntry{slot, static_cast<int32_t>(i)};
    }
  }

  std::span<const int32_t> sourceOffsets() const { return sourceOffsets_; }
  std::span<const IndexEntry> index() const { return index_; }
  int64_t numOwn() const { return numOwn_; }

  // Every participant's header: its index offsets by source id (W + 1 words), then its push section (Inbox).
  std::span<const int32_t> peerWords(int peer) const {
    const auto words = headerWords<int32_t>(ctx_.engine->peerHeader(peer));
    MOEDIST_CHECK(words.size() > static_cast<size_t>(topo_.W + 1));
    return words;
  }
  std::span<const int32_t> peerOffsets(int peer) const {
    return peerWords(peer).first(static_cast<size_t>(topo_.W + 1));
  }
  size_t rowBytes() const { return static_cast<size_t>(geo_.H) * (a_.commQuantMode == 2 ? 1 : 2); }
  size_t scaleBytes() const {
    return a_.commQuantMode == 2 ? static_cast<size_t>(kernels::commQuantGroups(geo_.H)) * 2 : 0;
  }
  // An expert rank's part of a source's inbox: its index entries for the source, their rows in that order, and
  // (commQuantMode 2) the rows' group scales.
  size_t partBytes(int64_t owner, int64_t reader) const {
    const auto offsets = peerOffsets(topo_.physical[static_cast<size_t>(owner)]);
    const auto c = static_cast<size_t>(
        std::max(offsets[static_cast<size_t>(reader + 1)] - offsets[static_cast<size_t>(reader)], 0));
    return inboxAlign(c * sizeof(IndexEntry)) + inboxAlign(c * rowBytes()) + c * scaleBytes();
  }
  // The inbox this rank publishes when it does not map every participant: every slot of its tokens gets one row.
  size_t inboxBytes(std::span<const int32_t> section) const {
    const auto pushers = static_cast<size_t>(Inbox::pushers(section));
    const auto rows = static_cast<size_t>(geo_.Bs * slotsPerToken());
    return pushers * 3 * Inbox::kAlign + rows * (sizeof(IndexEntry) + rowBytes() + scaleBytes());
  }

  // Expert side, step 5 (after the open): to each source that cannot map this rank, into its part of the source's
  // inbox, the index entries for it and their rows (and group scales), neighbours in one piece; then the fence.
  Status push(const std::byte* rows, const uint16_t* groupScales) {
    const Status status = pushParts(rows, reinterpret_cast<const std::byte*>(groupScales));
    return routes_->fence(*ctx_.engine, ctx_.deadline(), status);
  }

  // The push sections of the participants, read from their headers: after the open.
  void route() {
    routes_.emplace(
        topo_,
        [&](int64_t id) {
          return peerWords(topo_.physical[static_cast<size_t>(id)]).subspan(static_cast<size_t>(topo_.W + 1));
        },
        [&](int64_t owner, int64_t reader) { return partBytes(owner, reader); });
  }

  // Source side, step 1: which peer row serves each expected slot; every expected slot exactly once.
  Status collect(const RoutingPlan& plan) {
    const int64_t KS = slotsPerToken(), K = geo_.K;
    kinds_.assign(static_cast<size_t>(geo_.Bs * KS), SlotKind::kSkip);
    constIdx_.assign(static_cast<size_t>(geo_.Bs * KS), 0);
    rowPeer_.assign(static_cast<size_t>(geo_.Bs * KS), -1);
    rowIdx_.assign(static_cast<size_t>(geo_.Bs * KS), -1);
    int64_t expected = 0;
    const int64_t copyBegin = geo_.M + geo_.Z, constBegin = copyBegin + geo_.C, constEnd = constBegin + geo_.Q;
    for (int64_t t = 0; t < geo_.Bs; ++t) {
      if (!plan.activeToken[static_cast<size_t>(t)]) continue;
      for (int64_t k = 0; k < K; ++k) {
        if (!plan.activeSlot[static_cast<size_t>(t * K + k)]) continue;
        // SPEC 3.3: classification with the ORIGINAL moeExpertNum, also under scale-in.
        const int64_t e = in_.ids[static_cast<size_t>(t * K + k)];
        SlotKind kind = SlotKind::kSkip;
        if (e < geo_.M) {
          kind = SlotKind::kMoe;
          ++expected;
        } else if (e >= copyBegin && e < constBegin) {
          kind = SlotKind::kCopy;
        } else if (e >= constBegin && e < constEnd) {
          kind = SlotKind::kConst;
          constIdx_[static_cast<size_t>(t * KS + k)] = static_cast<int32_t>(e - constBegin);
        }
        kinds_[static_cast<size_t>(t * KS + k)] = kind;
      }
      for (int64_t j = 0; j < geo_.S; ++j) kinds_[static_cast<size_t>(t * KS + K + j)] = SlotKind::kShared;
      expected += geo_.S;
    }
    // Every participant's index entries addressed to this rank: read, or pushed into the inbox with the rows.
    // Where each participant's part of the inbox lies, for those that pushed (none when nobody pushes).
    const std::vector<size_t> parts = routes_->used() ? routes_->parts(topo_.self) : std::vector<size_t>();
    auto pushed = [&](size_t id) { return !parts.empty() && parts[id] != Inbox::kNoPart; };
    std::vector<PeerPiece> pieces;
    std::vector<size_t> counts;
    for (int64_t id = 0; id < topo_.W; ++id) {  // participant `id` is physical rank topo_.physical[id]
      const int peer = topo_.physical[static_cast<size_t>(id)];
      const auto offsets = peerOffsets(peer);
      const int32_t begin = offsets[static_cast<size_t>(topo_.self)],
                    end = offsets[static_cast<size_t>(topo_.self + 1)];
      counts.push_back(static_cast<size_t>(std::max(end - begin, 0)));
      pieces.push_back({peer, kRegionIndex, static_cast<size_t>(begin) * sizeof(IndexEntry),
                        pushed(static_cast<size_t>(id)) ? 0 : counts.back() * sizeof(IndexEntry)});
    }
    PeerRows peers(ctx_);
    std::vector<const std::byte*> at(pieces.size());
    MOEDIST_RETURN_IF_ERROR(peers.resolve(pieces, at));
    pushedRow_.assign(parts.empty() ? 0 : static_cast<size_t>(geo_.Bs * KS), nullptr);
    pushedScales_.assign(pushedRow_.size(), nullptr);
    int64_t arrived = 0;
    for (size_t j = 0; j < pieces.size(); ++j) {
      const int peer = pieces[j].peer;
      const size_t count = counts[j];
      const std::byte* part = nullptr;  // the peer's part of the inbox, when it pushed
      if (pushed(j)) {
        part = routes_->inbox(*ctx_.engine, kRegionInbox) + parts[j];
        at[j] = part;
      }
      for (size_t i = 0; i < count; ++i) {
        IndexEntry entry;
        std::memcpy(&entry, at[j] + i * sizeof(IndexEntry), sizeof entry);
        const bool inRange = entry.slot >= 0 && entry.slot < geo_.Bs * KS;
        const auto kind = inRange ? kinds_[static_cast<size_t>(entry.slot)] : SlotKind::kSkip;
        if ((kind != SlotKind::kMoe && kind != SlotKind::kShared) || rowPeer_[static_cast<size_t>(entry.slot)] != -1)
          return bad(
              fmt::format("rank {} returns its row {} for token {} slot {}, which this rank {}; combine's "
                          "expertIds, xActiveMask and elasticInfo must be the ones given to dispatch, and "
                          "assistInfoForCombine and epSendCounts the ones it returned",
                          peer, entry.row, entry.slot / KS, entry.slot % KS,
                          !inRange || kind == SlotKind::kSkip || kind == SlotKind::kCopy || kind == SlotKind::kConst
                              ? "does not expect"
                              : "already received"));
        rowPeer_[static_cast<size_t>(entry.slot)] = peer;
        rowIdx_[static_cast<size_t>(entry.slot)] = entry.row;
        if (part != nullptr) {
          const std::byte* rows = part + inboxAlign(count * sizeof(IndexEntry));
          pushedRow_[static_cast<size_t>(entry.slot)] = rows + i * rowBytes();
          pushedScales_[static_cast<size_t>(entry.slot)] = rows + inboxAlign(count * rowBytes()) + i * scaleBytes();
        }
        ++arrived;
      }
    }
    if (arrived != expected)
      return bad(fmt::format("this rank expects {} rows back but {} arrived; combine's inputs must match dispatch's",
                             expected, arrived));
    return okStatus();
  }

  // Source side, step 2: the fused weighted sum, residual add and RmsNorm per active token (SPEC 3.3-3.4).
  Status reduce(const RoutingPlan& plan) {
    const int64_t H = geo_.H, KS = slotsPerToken(), K = geo_.K;
    const bool quant = a_.commQuantMode == 2;
    const bool addNorm = isAddRmsNorm(op_);
    const float invH = 1.0f / static_cast<float>(H);
    const size_t rowBytes = this->rowBytes(), scaleBytes = this->scaleBytes();
    // Every expected slot's row (and int8 group scales) at the peer that returns it.
    const size_t slots = rowPeer_.size();
    std::vector<PeerPiece> rowPieces(slots), scalePieces(quant ? slots : 0);
    auto pushed = [&](size_t slot) { return !pushedRow_.empty() && pushedRow_[slot] != nullptr; };
    for (size_t slot = 0; slot < slots; ++slot) {
      if (rowPeer_[slot] < 0 || pushed(slot)) continue;  // no row, or in the inbox: an empty piece
      const auto row = static_cast<size_t>(rowIdx_[slot]);
      rowPieces[slot] = {rowPeer_[slot], kRegionRows, row * rowBytes, rowBytes};
      if (quant) scalePieces[slot] = {rowPeer_[slot], kRegionGroupScales, row * scaleBytes, scaleBytes};
    }
    PeerRows peerRows(ctx_), peerScales(ctx_);
    std::vector<const std::byte*> rowAt(slots), scaleAt(scalePieces.size());
    MOEDIST_RETURN_IF_ERROR(peerRows.resolve(rowPieces, rowAt));
    MOEDIST_RETURN_IF_ERROR(peerScales.resolve(scalePieces, scaleAt));
    for (size_t slot = 0; slot < slots && !pushedRow_.empty(); ++slot) {
      if (!pushed(slot)) continue;
      rowAt[slot] = pushedRow_[slot];
      if (quant) scaleAt[slot] = pushedScales_[slot];
    }
    // The slots' rows of token t as the kernel reads them (nullptr: no row): in place, or dequantized into `local`.
    auto rowsOf = [&](int64_t t, const uint16_t** rows, uint16_t* local) {
      for (int64_t k = 0; k < KS; ++k) {
        const size_t slot = static_cast<size_t>(t * KS + k);
        rows[k] = nullptr;
        if (rowPeer_[slot] < 0) continue;
        const std::byte* src = rowAt[slot];
        if (quant) {
          ctx_.kernels->commDequantRow(reinterpret_cast<const int8_t*>(src),
                                       reinterpret_cast<const uint16_t*>(scaleAt[slot]), H, local + k * H);
          rows[k] = local + k * H;
        } else {
          rows[k] = reinterpret_cast<const uint16_t*>(src);
        }
      }
    };
    auto work = [&](int64_t b, int64_t e) {
      std::vector<float> scratch(static_cast<size_t>(H));
      // This token's rows and, for the kernel to prefetch, the next active token's (peers' rows in place only).
      std::vector<const uint16_t*> rows(static_cast<size_t>(KS)), next(static_cast<size_t>(KS));
      std::vector<float> weights(static_cast<size_t>(KS), 0.0f);
      std::vector<uint16_t> local(quant ? static_cast<size_t>(KS * H) : 0);  // dequantized rows (commQuantMode 2)
      auto nextActive = [&](int64_t t) {
        while (t < e && !plan.activeToken[static_cast<size_t>(t)]) ++t;
        return t;
      };
      bool haveNext = false;  // `rows` already holds token t's rows: they were the previous token's `next`
      for (int64_t t = nextActive(b), u; t < e; t = u) {
        u = nextActive(t + 1);
        if (!haveNext) rowsOf(t, rows.data(), local.data());
        haveNext = !quant && u < e;
        if (haveNext) rowsOf(u, next.data(), nullptr);
        for (int64_t k = 0; k < K; ++k) weights[static_cast<size_t>(k)] = in_.weights[static_cast<size_t>(t * K + k)];
        kernels::CombineTokenArgs args;
        args.h = H;
        args.numSlots = static_cast<int>(KS);
        args.kinds = kinds_.data() + t * KS;
        args.rows = rows.data();
        args.weights = weights.data();
        args.constIdx = constIdx_.data() + t * KS;
        args.oriX = in_.oriX.empty() ? nullptr : in_.oriX.data() + t * H;
        args.alpha1 = in_.alpha1.empty() ? nullptr : in_.alpha1.data();
        args.alpha2 = in_.alpha2.empty() ? nullptr : in_.alpha2.data();
        args.constV = in_.constV.empty() ? nullptr : in_.constV.data();
        args.sharedExpertX = in_.shared.empty() ? nullptr : in_.shared.data() + t * H;
        args.residual = addNorm ? in_.residual.data() + t * H : nullptr;
        args.gamma = addNorm ? in_.gamma.data() : nullptr;
        args.eps = a_.normEps;
        args.invH = invH;
        args.outKind = a_.xOut.dtype() == DType::kFloat16 ? kernels::Float16Kind::kFp16 : kernels::Float16Kind::kBf16;
        args.scratch = scratch.data();
        args.xOut = a_.xOut.ptr<uint16_t>() + t * H;
        args.yOut = addNorm ? a_.yOut.ptr<uint16_t>() + t * H : nullptr;
        args.rstdOut = addNorm ? a_.rstdOut.ptr<float>() + t : nullptr;
        args.nextRows = haveNext ? next.data() : nullptr;
        ctx_.kernels->combineToken(args);
        if (haveNext) std::swap(rows, next);
      }
    };
    ctx_.pool.parallelFor(geo_.Bs, 4, work);
    return okStatus();
  }

 private:
  Status bad(const std::string& what) const {
    return Status(StatusCode::kInvalidArgument, fmt::format("{}: {}", toString(op_), what));
  }

  RankContext& ctx_;
  const CombineArgs& a_;
  Operator op_;
  const Geometry& geo_;
  const Topology& topo_;
  const Inputs& in_;
  int64_t numOwn_ = 0;
  std::vector<int32_t> sourceOffsets_;  // [W + 1] into index_
  std::vector<IndexEntry> index_;
  std::vector<SlotKind> kinds_;    // [Bs * (K + S)]
  std::vector<int32_t> constIdx_;  // [Bs * (K + S)]
  std::vector<int32_t> rowPeer_;   // [Bs * (K + S)] physical rank holding the slot's row, or -1
  std::vector<int32_t> rowIdx_;    // [Bs * (K + S)] row in that rank's rows region
  std::optional<Inbox> routes_;    // who pushes to whom in the open call
  // [Bs * (K + S)] a pushed slot's row and group scales in the inbox; empty when nobody pushes to this rank
  std::vector<const std::byte*> pushedRow_, pushedScales_;

  Status pushParts(const std::byte* rows, const std::byte* groupScales) const {
    if (!routes_->used()) return okStatus();
    std::vector<comm::WritePiece> pieces;
    auto add = [&](const std::byte* src, size_t at, size_t bytes) {
      const comm::WritePiece& last = pieces.back();
      if (static_cast<const std::byte*>(last.src) + last.bytes == src && last.offset + last.bytes == at)
        pieces.back().bytes += bytes;
      else
        pieces.push_back({src, at, bytes});
    };
    for (int64_t s = 0; s < topo_.W; ++s) {
      if (!routes_->pushes(topo_.self, s)) continue;
      const auto b = static_cast<size_t>(sourceOffsets_[static_cast<size_t>(s)]);
      const auto c = static_cast<size_t>(sourceOffsets_[static_cast<size_t>(s + 1)]) - b;
      if (c == 0) continue;
      const size_t part = routes_->partOffset(topo_.self, s);
      const size_t rowsAt = part + inboxAlign(c * sizeof(IndexEntry));
      const size_t scalesAt = rowsAt + inboxAlign(c * rowBytes());
      pieces.assign(1, {index_.data() + b, part, c * sizeof(IndexEntry)});
      for (size_t i = 0; i < c; ++i)
        add(rows + static_cast<size_t>(index_[b + i].row) * rowBytes(), rowsAt + i * rowBytes(), rowBytes());
      for (size_t i = 0; i < c && groupScales != nullptr; ++i)
        add(groupScales + static_cast<size_t>(index_[b + i].row) * scaleBytes(), scalesAt + i * scaleBytes(),
            scaleBytes());
      MOEDIST_RETURN_IF_ERROR(ctx_.engine->write(topo_.physical[static_cast<size_t>(s)], kRegionInbox, pieces));
    }
    return okStatus();
  }
};

template <class T>
std::span<const T> dense(const TensorView& v, const Workspace& ws, const Booking<std::byte>& b) {
  return denseAs<T>(v, ws.get(b));
}

}  // namespace

Status combineWorkspaceBytes(const CombineCall& call, size_t* bytes) {
  Geometry geo;
  MOEDIST_RETURN_IF_ERROR(validateCombine(call, &geo));
  Ledger ledger;
  bookCombine(*call.args, geo, &ledger);
  *bytes = ledger.bytes();
  return okStatus();
}

Status combine(RankContext& ep, RankContext* tp, const CombineCall& call, std::span<std::byte> workspace) {
  const CombineArgs& a = *call.args;
  Geometry geo;
  Ledger ledger;
  CombineBookings bk;
  Workspace ws;
  Status checked = validateCombine(call, &geo);
  if (checked.ok()) checked = checkCommunicators(call.op, geo, ep, tp);
  if (checked.ok()) {
    bk = bookCombine(a, geo, &ledger);  // only valid arguments are booked: their sizes are bounded
    checked = bindWorkspace(call.op, ep, ledger, workspace, &ws);
  }
  if (!checked.ok()) return failTogether(call.op, ep, tp, /*tpFirst=*/true, a.elasticInfo, checked);
  Inputs in;
  in.expandX = denseInput(a.expandX, ws.get(bk.expandX));
  in.ids = dense<int32_t>(a.expertIds, ws, bk.ids);
  in.assist = dense<int32_t>(a.assistInfoForCombine, ws, bk.assist);
  in.epSend = dense<int32_t>(a.epSendCounts, ws, bk.epSend);
  in.weights = dense<float>(a.expertScales, ws, bk.weights);
  in.residual = dense<uint16_t>(a.residualX, ws, bk.residual);
  in.gamma = dense<uint16_t>(a.gamma, ws, bk.gamma);
  in.tpSend = dense<int32_t>(a.tpSendCounts, ws, bk.tpSend);
  in.mask = dense<uint8_t>(a.xActiveMask, ws, bk.mask);
  in.shared = dense<uint16_t>(a.sharedExpertX, ws, bk.shared);
  in.elastic = dense<int32_t>(a.elasticInfo, ws, bk.elastic);
  in.oriX = dense<uint16_t>(a.oriX, ws, bk.oriX);
  in.alpha1 = dense<uint16_t>(a.constExpertAlpha1, ws, bk.alpha1);
  in.alpha2 = dense<uint16_t>(a.constExpertAlpha2, ws, bk.alpha2);
  in.constV = dense<uint16_t>(a.constExpertV, ws, bk.constV);

  Topology topo;
  MOEDIST_RETURN_IF_ERROR(makeTopology(call.op, geo, in.elastic, &topo));
  RoutingPlan plan;
  Status local = buildRoutingPlan(call.op, geo, topo, in.ids, in.mask, &plan);
  CombineRun run(ep, call, geo, topo, in);
  if (local.ok()) local = run.readOwnRows();

  Signature sig = baseSignature(call.op, geo, a, in.elastic);
  sig[SigField::kDType] = static_cast<int64_t>(a.expandX.dtype());
  sig[SigField::kCommQuantMode] = a.commQuantMode;
  sig[SigField::kMaskDims] = a.xActiveMask.defined() ? a.xActiveMask.ndim() : 0;

  // The rows this rank returns: expandX itself, the TP-reduced rows, or their int8 form.
  const std::byte* rows = in.expandX.data();
  size_t rowsBytes = in.expandX.size();
  if (geo.tp == 2) {
    Signature tpSig = sig;
    tpSig[SigField::kBatchSize] = 0;
    auto reduced = ws.get(bk.tpRows);
    local = run.tpReduce(*tp, tpSig, reduced, local);
    rows = reinterpret_cast<const std::byte*>(reduced.data());
    rowsBytes = reduced.size_bytes();
  }
  std::span<int8_t> quantRows;
  std::span<uint16_t> quantScales;
  if (a.commQuantMode == 2) {
    quantRows = ws.get(bk.quantRows);
    quantScales = ws.get(bk.quantScales);
    if (local.ok()) run.quantizeRows(reinterpret_cast<const uint16_t*>(rows), quantRows, quantScales);
    rows = reinterpret_cast<const std::byte*>(quantRows.data());
    rowsBytes = quantRows.size_bytes();
  }
  if (local.ok()) run.indexBySource();

  Header header(sig, local);
  const std::vector<int32_t> section = Inbox::pushSection(*ep.engine, topo);
  std::span<std::byte> inbox;
  if (local.ok()) {
    header.append(run.sourceOffsets());
    header.append(std::span<const int32_t>(section));
    if (Inbox::needsInbox(section)) inbox = ep.inbox.reserve(run.inboxBytes(section));
  }
  // Publish the Nown rows that peers read, not the tensors' whole capacity (an engine may stage what it publishes).
  const size_t numOwn = local.ok() ? static_cast<size_t>(run.numOwn()) : 0;
  const size_t groups = static_cast<size_t>(kernels::commQuantGroups(geo.H));
  rowsBytes = std::min(rowsBytes, numOwn * static_cast<size_t>(geo.H) * (a.commQuantMode == 2 ? 1 : 2));
  const comm::Region regions[kNumCombineRegions] = {
      {rows, rowsBytes},
      {run.index().data(), run.index().size_bytes()},
      {quantScales.data(), std::min(quantScales.size_bytes(), numOwn * groups * 2)},
      {inbox.data(), inbox.size(), /*writable=*/true}};
  OpenCall open(call.op, *ep.engine, ep.timeout);
  Status s = open.open(topo.participants, header.bytes(), regions);
  if (s.ok()) s = agree(call.op, *ep.engine, topo.participants, local);
  if (s.ok()) {
    run.route();
    s = run.push(rows, quantScales.empty() ? nullptr : quantScales.data());
  }
  if (s.ok()) s = run.collect(plan);
  if (s.ok()) s = run.reduce(plan);
  return open.close(s);
}

}  // namespace moedist::core
