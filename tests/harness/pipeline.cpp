#include "harness/pipeline.h"

#include <sys/resource.h>

#include <algorithm>
#include <barrier>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <sstream>
#include <type_traits>

#include "acl/acl.h"
#include "harness/cann_calls.h"
#include "hccl/hccl.h"
#include "moedist/shm.h"
#include "support/aligned_buffer.h"
#include "support/ffn.h"
#include "support/rank_launcher.h"
#include "support/scoped_env.h"

namespace moedist::testing {

namespace {

constexpr uint8_t kSentinel = 0xA5;  // the caller's bytes in every output before each call
constexpr size_t kMaxFailures = 50;

// Output capacities of one rank (SPEC section 1), computed here from the attributes, apart from the library.
struct Capacity {
  int64_t A = 0;
  int64_t localExperts = 0;
  int64_t epRecv = 0;
};

Capacity capacityOf(const ref::Config& cfg, int epRank, int64_t Bs) {
  const int64_t W = cfg.W, K = cfg.K, Srank = cfg.sharedExpertRankNum;
  const int64_t S = (Srank == 0 && cfg.sharedExpertNum == 1) ? 0 : cfg.sharedExpertNum;
  const int64_t L = cfg.M / (W - Srank);
  const int64_t globalBs = cfg.globalBs != 0 ? cfg.globalBs : Bs * W;
  const int64_t maxBs = globalBs / W;
  const int64_t R = S > 0 ? Srank / S : 0;
  const int64_t sharedA = S > 0 ? maxBs * ((W + R - 1) / R) : 0;
  const int64_t moeA = globalBs * std::min(L, K);
  const bool elastic = !cfg.elasticInfo.empty();
  const bool shared = epRank < Srank;
  Capacity c;
  c.A = elastic ? std::max(sharedA, moeA) : (shared ? sharedA : moeA);
  c.localExperts = elastic || !shared ? L : 1;
  c.epRecv = (elastic ? std::max(W, W * L) : (shared ? W : W * L)) * (cfg.tp == 2 ? 2 : 1);
  return c;
}

template <class T>
void fill(AlignedBuffer<T>& v) {
  if (!v.empty()) std::memset(v.data(), kSentinel, v.size() * sizeof(T));
}

// Storage and view of dense row-major data `dense` of `shape`; strided: rows padded (and 2-D float matrices
// stored transposed), so that the view is not contiguous.
template <class T>
TensorView makeInput(AlignedBuffer<T>& storage, const std::vector<T>& dense, std::vector<int64_t> shape, DType dtype,
                     bool strided, bool transpose = false) {
  const int nd = static_cast<int>(shape.size());
  if (!strided || nd == 0) {
    storage.assign(dense.begin(), dense.end());
    return TensorView(storage.data(), dtype, shape);
  }
  if (transpose && nd == 2) {
    const int64_t rows = shape[0], cols = shape[1];
    storage.assign(static_cast<size_t>(rows * cols), T{});
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        storage[static_cast<size_t>(c * rows + r)] = dense[static_cast<size_t>(r * cols + c)];
    const int64_t strides[2] = {1, rows};
    return TensorView(storage.data(), dtype, shape, strides);
  }
  const int64_t cols = shape[static_cast<size_t>(nd - 1)];
  const int64_t pitch = cols + 3;
  int64_t rows = 1;
  for (int d = 0; d < nd - 1; ++d) rows *= shape[static_cast<size_t>(d)];
  storage.assign(static_cast<size_t>(rows * pitch), T{});
  for (int64_t r = 0; r < rows; ++r) std::copy_n(dense.begin() + r * cols, cols, storage.begin() + r * pitch);
  std::vector<int64_t> strides(static_cast<size_t>(nd), 1);
  int64_t s = pitch;
  for (int d = nd - 2; d >= 0; --d) {
    strides[static_cast<size_t>(d)] = s;
    s *= shape[static_cast<size_t>(d)];
  }
  return TensorView(storage.data(), dtype, shape, strides);
}

// Everything one rank owns.
struct RankData {
  int tpIdx = 0, epRank = 0;
  bool participates = true;
  Capacity cap;
  // Dispatch.
  AlignedBuffer<uint16_t> x;
  AlignedBuffer<int32_t> ids, elastic;
  AlignedBuffer<uint8_t> mask;
  AlignedBuffer<float> scales;
  AlignedBuffer<uint8_t> expandX;
  AlignedBuffer<float> dynamicScales, expandScales;
  AlignedBuffer<int32_t> assist, epRecv, tpRecv;
  AlignedBuffer<int64_t> tokenNums;
  DispatchArgs d;
  // Combine.
  AlignedBuffer<uint16_t> ffnRows, residual, gamma, sharedX, oriX, alpha1, alpha2, constV, yOut, xOut;
  AlignedBuffer<float> weights, rstd;
  CombineArgs c;
  uint16_t* ffnRowsData = nullptr;  // where the FFN writes combine's expandX: ffnRows, or segment memory
  int64_t commMemoryBytes = 0;      // x and the expert rows moved into memAlloc's memory (their vectors emptied)
};

class Checker {
 public:
  void fail(std::string what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failures_.size() < kMaxFailures) failures_.push_back(std::move(what));
  }
  // got[0, want.size()) must equal want bitwise; got[want.size(), gotCount) must still hold the sentinel.
  template <class T>
  void expectPrefix(const std::string& where, const T* got, size_t gotCount, const T* want, size_t wantCount) {
    if (wantCount > gotCount) {
      fail(where + ": reference writes " + std::to_string(wantCount) + " elements, tensor holds " +
           std::to_string(gotCount));
      return;
    }
    for (size_t i = 0; i < wantCount; ++i) {
      if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
        fail(where + "[" + std::to_string(i) + "]: got " + hex(&got[i]) + ", expected " + hex(&want[i]));
        return;
      }
    }
    expectUntouched(where, got, wantCount, gotCount);
  }
  template <class T>
  void expectUntouched(const std::string& where, const T* got, size_t from, size_t to) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(got);
    for (size_t i = from * sizeof(T); i < to * sizeof(T); ++i) {
      if (bytes[i] != kSentinel) {
        fail(where + "[" + std::to_string(i / sizeof(T)) + "]: written, but the operator must leave it untouched");
        return;
      }
    }
  }
  std::vector<std::string> take() { return std::move(failures_); }

 private:
  template <class T>
  static std::string hex(const T* v) {
    std::ostringstream os;
    os << "0x" << std::hex;
    const auto* b = reinterpret_cast<const uint8_t*>(v);
    for (size_t i = sizeof(T); i-- > 0;) os << (b[i] < 16 ? "0" : "") << static_cast<int>(b[i]);
    return os.str();
  }
  std::mutex mu_;
  std::vector<std::string> failures_;
};

std::string label(const RankData& r) {
  return "tp " + std::to_string(r.tpIdx) + " ep rank " + std::to_string(r.epRank);
}

// What every rank derives from the scenario alone (deterministically, so that ranks in other processes derive the
// same): the attributes, every rank's generated inputs and the reference model's outputs.
struct Prepared {
  Scenario scenario;
  ref::Config cfg;
  ref::DispatchInputs din;
  ref::DispatchOutputs dout;
  ref::CombineInputs cin;
  ref::CombineOutputs cout;
  bool quant = false;
  DType xType = DType::kBFloat16;
  DType rowType = DType::kBFloat16;  // combine's 16-bit rows
  int64_t expandElem = 2;            // bytes of an expandX element
};

// Fills `p`; false, with the reason in result->failures, when the options or the reference model reject the run.
bool prepare(const Scenario& given, const RunOptions& options, Prepared* p, RunResult* result) {
  p->scenario = given;
  p->scenario.cfg.addRmsNorm = combineAddsRmsNorm(options.ops);  // decides the combine's dtype and outputs
  p->cfg = p->scenario.config();
  const ref::Config& cfg = p->cfg;
  p->quant = cfg.quantMode == 2;
  p->xType = cfg.fp16 ? DType::kFloat16 : DType::kBFloat16;
  p->rowType = ref::combineFp16(cfg) ? DType::kFloat16 : DType::kBFloat16;
  p->expandElem = p->quant ? 1 : 2;

  // The oracle.
  p->din = p->scenario.makeDispatchInputs();
  if (auto err = ref::dispatch(cfg, p->din, &p->dout)) {
    result->failures.push_back("the reference model rejects the scenario's dispatch: " + *err);
    return false;
  }
  p->cin = p->scenario.makeCombineInputs(p->dout);
  if (auto err = ref::combine(cfg, p->din, p->cin, &p->cout)) {
    result->failures.push_back("the reference model rejects the scenario's combine: " + *err);
    return false;
  }
  return true;
}

// The tensors of EP rank e of TP group g: its inputs from the scenario, and room for its outputs.
// Whether x and the expert rows go into the communicator's memory (RunOptions::tensorsInCommMemory).
bool placesInCommMemory(const RunOptions& options) {
  return options.tensorsInCommMemory && options.api != Api::kCann;
}

void buildRank(const Prepared& p, const RunOptions& options, int g, int e, RankData& r) {
  const ref::Config& cfg = p.cfg;
  const int64_t H = cfg.H, K = cfg.K;
  const ref::DispatchInput& in = p.din[static_cast<size_t>(g)][static_cast<size_t>(e)];
  const ref::CombineInput& ci = p.cin[static_cast<size_t>(g)][static_cast<size_t>(e)];
  const int64_t Bs = in.Bs;
  const DType xType = p.xType, rowType = p.rowType;
  r.tpIdx = g;
  r.epRank = e;
  r.participates = p.scenario.participates(e);
  r.cap = capacityOf(cfg, e, Bs);
  const int64_t rows = std::max(cfg.tp, 1) * r.cap.A;
  const bool strided = options.stridedInputs;
  DispatchArgs& d = r.d;
  d.moeExpertNum = cfg.M;
  d.sharedExpertNum = cfg.sharedExpertNum;
  d.sharedExpertRankNum = cfg.sharedExpertRankNum;
  d.globalBs = cfg.globalBs;
  d.zeroExpertNum = cfg.Z;
  d.copyExpertNum = cfg.C;
  d.constExpertNum = cfg.Q;
  d.quantMode = cfg.quantMode;
  d.expertTokenNumsType = cfg.expertTokenNumsType;
  d.x = makeInput(r.x, in.x, {Bs, H}, xType, strided);
  d.expertIds = makeInput(r.ids, in.expertIds, {Bs, K}, DType::kInt32, strided);
  if (cfg.maskDims == 1) d.xActiveMask = makeInput(r.mask, in.mask, {Bs}, DType::kBool, strided);
  if (cfg.maskDims == 2) d.xActiveMask = makeInput(r.mask, in.mask, {Bs, K}, DType::kBool, strided);
  if (!in.scales.empty())
    d.scales =
        makeInput(r.scales, in.scales, {static_cast<int64_t>(in.scales.size()) / H, H}, DType::kFloat32, strided);
  if (!cfg.elasticInfo.empty())
    d.elasticInfo =
        makeInput(r.elastic, cfg.elasticInfo, {static_cast<int64_t>(cfg.elasticInfo.size())}, DType::kInt32, false);
  r.expandX.resize(static_cast<size_t>(rows * H * p.expandElem));
  r.dynamicScales.resize(static_cast<size_t>(rows));
  r.assist.resize(static_cast<size_t>(r.cap.A * 128));
  r.tokenNums.resize(static_cast<size_t>(r.cap.localExperts));
  r.epRecv.resize(static_cast<size_t>(r.cap.epRecv));
  r.tpRecv.resize(static_cast<size_t>(cfg.tp));
  r.expandScales.resize(static_cast<size_t>(r.cap.A));
  d.expandX = TensorView(r.expandX.data(), p.quant ? DType::kInt8 : xType, {rows, H});
  d.dynamicScales = TensorView(r.dynamicScales.data(), DType::kFloat32, {rows});
  d.assistInfoForCombine = TensorView(r.assist.data(), DType::kInt32, {r.cap.A * 128});
  d.expertTokenNums = TensorView(r.tokenNums.data(), DType::kInt64, {r.cap.localExperts});
  d.epRecvCounts = TensorView(r.epRecv.data(), DType::kInt32, {r.cap.epRecv});
  d.tpRecvCounts = TensorView(r.tpRecv.data(), DType::kInt32, {static_cast<int64_t>(cfg.tp)});
  d.expandScales = TensorView(r.expandScales.data(), DType::kFloat32, {r.cap.A});

  if (!r.participates) return;  // a rank removed by scale-in has no combine inputs
  CombineArgs& c = r.c;
  static_cast<MoeAttrs&>(c) = static_cast<const MoeAttrs&>(d);
  c.commQuantMode = cfg.commQuantMode;
  c.normEps = cfg.normEps;
  // In the communicator's memory, CommMemoryTensors allocates the rows: a vector here would only be freed again.
  if (!placesInCommMemory(options)) r.ffnRows.assign(static_cast<size_t>(rows * H), 0);
  r.ffnRowsData = r.ffnRows.data();
  c.expandX = TensorView(r.ffnRowsData, rowType, {rows, H});
  c.expertIds = d.expertIds;
  c.xActiveMask = d.xActiveMask;
  c.elasticInfo = d.elasticInfo;
  c.assistInfoForCombine = d.assistInfoForCombine;
  c.epSendCounts = d.epRecvCounts;
  c.tpSendCounts = d.tpRecvCounts;
  c.expertScales = makeInput(r.weights, ci.expertScales, {Bs, K}, DType::kFloat32, strided, true);
  c.residualX = makeInput(r.residual, ci.residualX, {Bs, 1, H}, DType::kBFloat16, strided);
  c.gamma = makeInput(r.gamma, ci.gamma, {H}, DType::kBFloat16, strided);
  if (!ci.sharedExpertX.empty())
    c.sharedExpertX = makeInput(r.sharedX, ci.sharedExpertX, p.scenario.sharedExpertXShape(e), rowType, strided);
  if (!ci.oriX.empty()) c.oriX = makeInput(r.oriX, ci.oriX, {Bs, H}, rowType, strided);
  if (!ci.alpha1.empty()) {
    const int64_t Q = static_cast<int64_t>(ci.alpha1.size());
    c.constExpertAlpha1 = makeInput(r.alpha1, ci.alpha1, {Q}, rowType, false);
    c.constExpertAlpha2 = makeInput(r.alpha2, ci.alpha2, {Q}, rowType, false);
    c.constExpertV = makeInput(r.constV, ci.constV, {Q, H}, rowType, strided);
  }
  r.yOut.resize(static_cast<size_t>(Bs * H));
  r.xOut.resize(static_cast<size_t>(Bs * H));
  r.rstd.resize(static_cast<size_t>(Bs));
  c.yOut = TensorView(r.yOut.data(), DType::kBFloat16, {Bs, 1, H});
  c.rstdOut = TensorView(r.rstd.data(), DType::kFloat32, {Bs, 1, 1});
  c.xOut = cfg.addRmsNorm ? TensorView(r.xOut.data(), DType::kBFloat16, {Bs, 1, H})
                          : TensorView(r.xOut.data(), rowType, {Bs, H});  // CombineV2/V3
  if (!cfg.addRmsNorm) {  // CombineV2/V3 have no residualX, gamma, yOut and rstdOut
    c.residualX = c.gamma = c.yOut = c.rstdOut = TensorView();
  }
}

// How one rank reaches the operators (the C++ API with its communicators, or the CANN API on its stream), and
// where the ranks meet before each operator when options.syncAroundEachOp.
struct RankCalls {
  std::function<Status(const DispatchArgs&)> dispatch;
  std::function<Status(const CombineArgs&)> combine;
  std::function<void()> barrier;  // empty: none
};

// One call of the general form (Api::kCppGeneral): the rank attributes from the communicators, workspaceBytes(), and
// the call with a workspace of options.workspaceSize bytes (filled with kSentinel first).
template <class Args>
Status generalCall(const RunOptions& options, int tpIdx, int epRank, Operator op, const Communicator& ep,
                   const Communicator* tp, const Args& args, RankResult& out) {
  auto call = [&](const RankAttrs& ranks, std::span<std::byte> workspace) {
    if constexpr (std::is_same_v<Args, DispatchArgs>) {
      return moedist::dispatch(op, ep, tp, ranks, args, workspace);
    } else {
      return moedist::combine(op, ep, tp, ranks, args, workspace);
    }
  };
  RankAttrs ranks;
  if (Status s = rankAttrs(ep, tp, &ranks); !s.ok()) return s;
  if (options.editRanks) options.editRanks(tpIdx, epRank, ranks);
  size_t bytes = 0;
  // A rank whose arguments workspaceBytes() refuses still calls the operator, which refuses them too on every rank at
  // once (the failing rank joins the call's exchanges with its error) instead of leaving the peers to their deadline.
  if (Status s = workspaceBytes(op, ranks, args, &bytes); !s.ok()) return call(ranks, {});
  (std::is_same_v<Args, DispatchArgs> ? out.dispatchWorkspaceBytes : out.combineWorkspaceBytes) = bytes;
  const size_t given = options.workspaceSize ? options.workspaceSize(tpIdx, epRank, bytes) : bytes;
  std::vector<std::max_align_t> buffer(given / sizeof(std::max_align_t) + 1);
  const std::span<std::byte> workspace(reinterpret_cast<std::byte*>(buffer.data()), given);
  std::memset(workspace.data(), kSentinel, workspace.size());
  const Status s = call(ranks, workspace);
  for (std::byte b : workspace) out.workspaceWritten |= b != std::byte{kSentinel};
  return s;
}

// How one rank reaches the operators of options.ops through the C++ API: the named forms (Api::kCpp) or the general
// forms (Api::kCppGeneral).
void cppCalls(const RunOptions& options, int tpIdx, int epRank, const Communicator& ep, const Communicator* tp,
              RankResult& out, RankCalls* calls) {
  const Operator dop = dispatchOperator(options.ops), cop = combineOperator(options.ops);
  if (options.api == Api::kCppGeneral) {
    calls->dispatch = [&options, tpIdx, epRank, dop, &ep, tp, &out](const DispatchArgs& a) {
      return generalCall(options, tpIdx, epRank, dop, ep, tp, a, out);
    };
    calls->combine = [&options, tpIdx, epRank, cop, &ep, tp, &out](const CombineArgs& a) {
      return generalCall(options, tpIdx, epRank, cop, ep, tp, a, out);
    };
    return;
  }
  using DispatchFn = Status (*)(const Communicator&, const Communicator*, const DispatchArgs&);
  using CombineFn = Status (*)(const Communicator&, const Communicator*, const CombineArgs&);
  const DispatchFn d = dop == Operator::kDispatchV2 ? &moedist::dispatchV2 : &moedist::dispatchV3;
  const CombineFn c = cop == Operator::kCombineAddRmsNorm ? &moedist::combineAddRmsNorm
                      : cop == Operator::kCombineV3       ? &moedist::combineV3
                      : cop == Operator::kCombineV2       ? &moedist::combineV2
                                                          : &moedist::combineAddRmsNormV2;
  calls->dispatch = [d, &ep, tp](const DispatchArgs& a) { return d(ep, tp, a); };
  calls->combine = [c, &ep, tp](const CombineArgs& a) { return c(ep, tp, a); };
}

// One rank's part of the run: the warm-up, then per layer dispatch -> stand-in FFN -> combine, each output checked
// against the reference model, the untouched bytes and the outputs of failed calls included.
void runRank(const Prepared& p, const RunOptions& options, RankData& r, const RankCalls& calls, Checker& checker,
             RankResult& out) {
  const ref::Config& cfg = p.cfg;
  const int64_t H = cfg.H;
  const ref::DispatchOutput& want = p.dout[static_cast<size_t>(r.tpIdx)][static_cast<size_t>(r.epRank)];
  const ref::CombineOutput& wantC = p.cout[static_cast<size_t>(r.tpIdx)][static_cast<size_t>(r.epRank)];
  out.tpIdx = r.tpIdx;
  out.epRank = r.epRank;
  out.participates = r.participates;
  const std::string who = label(r);
  auto barrier = [&] {
    if (options.syncAroundEachOp && calls.barrier) calls.barrier();
  };
  auto fillDispatchOutputs = [&] {
    fill(r.expandX), fill(r.dynamicScales), fill(r.assist), fill(r.tokenNums), fill(r.epRecv), fill(r.tpRecv),
        fill(r.expandScales);
  };
  if (options.warmupDispatch) {
    barrier();
    DispatchArgs warm = r.d;
    warm.elasticInfo = TensorView();
    fillDispatchOutputs();
    if (Status s = calls.dispatch(warm); !s.ok()) checker.fail(who + ": warm-up dispatch: " + s.toString());
  }
  for (int layer = 0; layer < options.layers; ++layer) {
    const std::string where = who + (options.layers > 1 ? " layer " + std::to_string(layer) : "");
    // Dispatch.
    DispatchArgs d = r.d;
    if (options.editDispatch) options.editDispatch(r.tpIdx, r.epRank, d);
    fillDispatchOutputs();
    barrier();
    bool ok = false;
    const bool skipD = options.skipDispatch && options.skipDispatch(r.tpIdx, r.epRank);
    if (!r.participates && options.removedRanksCall) out.dispatchStatus = calls.dispatch(d);
    if (r.participates && !skipD) {
      const auto t0 = std::chrono::steady_clock::now();
      out.dispatchStatus = calls.dispatch(d);
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      out.dispatchSeconds = layer == 0 ? sec : std::min(out.dispatchSeconds, sec);
      out.dispatchLayerSeconds.push_back(sec);
      ok = out.dispatchStatus.ok();
      if (!ok) {
        checker.fail(where + ": dispatch: " + out.dispatchStatus.toString());
        const std::string w = where + " dispatch failed but half-written ";
        checker.expectUntouched(w + "expandX", r.expandX.data(), 0, r.expandX.size());
        checker.expectUntouched(w + "dynamicScales", r.dynamicScales.data(), 0, r.dynamicScales.size());
        checker.expectUntouched(w + "assistInfoForCombine", r.assist.data(), 0, r.assist.size());
        checker.expectUntouched(w + "expertTokenNums", r.tokenNums.data(), 0, r.tokenNums.size());
        checker.expectUntouched(w + "epRecvCounts", r.epRecv.data(), 0, r.epRecv.size());
        checker.expectUntouched(w + "tpRecvCounts", r.tpRecv.data(), 0, r.tpRecv.size());
      }
    }
    barrier();  // no rank's FFN or checks compete for the cores with a peer still inside the call
    const bool checkLayer = options.check && (layer == 0 || !options.checkFirstLayerOnly);
    if (ok && checkLayer) {
      const std::string w = where + " dispatch ";
      checker.expectPrefix(w + "expandX", r.expandX.data(), r.expandX.size(), want.expandX.data(), want.expandX.size());
      checker.expectPrefix(w + "dynamicScales", r.dynamicScales.data(), r.dynamicScales.size(),
                           want.dynamicScales.data(), want.dynamicScales.size());
      checker.expectPrefix(w + "assistInfoForCombine", r.assist.data(), r.assist.size(), want.assistInfo.data(),
                           want.assistInfo.size());
      checker.expectPrefix(w + "expertTokenNums", r.tokenNums.data(), r.tokenNums.size(), want.expertTokenNums.data(),
                           want.expertTokenNums.size());
      checker.expectPrefix(w + "epRecvCounts", r.epRecv.data(), r.epRecv.size(), want.epRecvCounts.data(),
                           want.epRecvCounts.size());
      checker.expectPrefix(w + "tpRecvCounts", r.tpRecv.data(), r.tpRecv.size(), want.tpRecvCounts.data(),
                           want.tpRecvCounts.size());
      checker.expectUntouched(w + "expandScales", r.expandScales.data(), 0, r.expandScales.size());
    }
    // The stand-in expert FFN on this rank's own dispatch outputs.
    if (ok) {
      const FfnRank fr = ffnRankFor(cfg, r.epRank, r.tpIdx);
      out.ownRows = r.epRecv[static_cast<size_t>(fr.numSourceRanks * (fr.sharedRank ? 1 : fr.numLocalExperts) - 1)];
      out.totalRows = out.ownRows + (cfg.tp == 2 ? r.tpRecv[static_cast<size_t>(1 - r.tpIdx)] : 0);
      const auto rows =
          expertFfn(fr, r.expandX.data(), p.quant ? r.dynamicScales.data() : nullptr, out.totalRows, r.epRecv.data());
      std::copy(rows.begin(), rows.end(), r.ffnRowsData);
    }
    // Combine.
    CombineArgs c = r.c;
    if (options.editCombine) options.editCombine(r.tpIdx, r.epRank, c);
    fill(r.yOut), fill(r.rstd), fill(r.xOut);
    barrier();
    const bool skipC = options.skipCombine && options.skipCombine(r.tpIdx, r.epRank);
    const bool combined = r.participates && ok && !skipC;
    if (combined) {
      const auto t0 = std::chrono::steady_clock::now();
      out.combineStatus = calls.combine(c);
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      out.combineSeconds = layer == 0 ? sec : std::min(out.combineSeconds, sec);
      out.combineLayerSeconds.push_back(sec);
    }
    barrier();
    if (combined) {
      if (!out.combineStatus.ok()) {
        checker.fail(where + ": combine: " + out.combineStatus.toString());
        const std::string w = where + " combine failed but half-written ";
        checker.expectUntouched(w + "yOut", r.yOut.data(), 0, r.yOut.size());
        checker.expectUntouched(w + "rstdOut", r.rstd.data(), 0, r.rstd.size());
        checker.expectUntouched(w + "xOut", r.xOut.data(), 0, r.xOut.size());
      } else if (checkLayer) {
        for (size_t t = 0; t < wantC.written.size(); ++t) {
          const size_t h = static_cast<size_t>(H);
          const std::string w = where + " combine token " + std::to_string(t) + " ";
          if (wantC.written[t] && !cfg.addRmsNorm) {  // CombineV2/V3 have no yOut and rstdOut
            checker.expectPrefix(w + "xOut", &r.xOut[t * h], h, &wantC.xOut[t * h], h);
            checker.expectUntouched(w + "yOut", &r.yOut[t * h], 0, h);
            checker.expectUntouched(w + "rstdOut", &r.rstd[t], 0, 1);
          } else if (wantC.written[t]) {
            checker.expectPrefix(w + "yOut", &r.yOut[t * h], h, &wantC.yOut[t * h], h);
            checker.expectPrefix(w + "rstdOut", &r.rstd[t], 1, &wantC.rstdOut[t], 1);
            checker.expectPrefix(w + "xOut", &r.xOut[t * h], h, &wantC.xOut[t * h], h);
          } else {
            checker.expectUntouched(w + "yOut", &r.yOut[t * h], 0, h);
            checker.expectUntouched(w + "rstdOut", &r.rstd[t], 0, 1);
            checker.expectUntouched(w + "xOut", &r.xOut[t * h], 0, h);
          }
        }
      }
    }
  }
}

// The bytes of every tensor a rank hands the operators, at the shapes the contract asks the caller for.
int64_t tensorBytes(const RankData& r) {
  const auto bytes = [](const auto&... v) { return (static_cast<int64_t>(v.size() * sizeof(v[0])) + ...); };
  return bytes(r.x, r.ids, r.elastic, r.mask, r.scales, r.expandX, r.dynamicScales, r.expandScales, r.assist, r.epRecv,
               r.tpRecv, r.tokenNums, r.ffnRows, r.residual, r.gamma, r.sharedX, r.oriX, r.alpha1, r.alpha2, r.constV,
               r.yOut, r.xOut, r.weights, r.rstd) +
         r.commMemoryBytes;
}

// The end of a run: what the rank threads threw, the checker's failures, and the totals over result->ranks.
void finish(const Prepared& p, const std::vector<RankData>& ranks, const std::vector<std::string>& errors,
            Checker& checker, RunResult* result) {
  for (size_t i = 0; i < errors.size(); ++i)
    if (!errors[i].empty()) checker.fail(label(ranks[i]) + ": " + errors[i]);
  result->failures = checker.take();
  for (const RankData& r : ranks) result->tensorBytes += tensorBytes(r);
  for (RankResult& r : result->ranks) {
    r.peakRssBytes = peakRssBytes();
    if (!r.participates) continue;
    addRankTimes(r, result);
    result->dispatchBytes += r.totalRows * p.cfg.H * p.expandElem;
    result->combineBytes += r.ownRows * p.cfg.H * (p.cfg.commQuantMode == 2 ? 1 : 2);
  }
}

}  // namespace

void addRankTimes(const RankResult& rank, RunResult* run) {
  if (!rank.participates) return;
  run->dispatchSeconds = std::max(run->dispatchSeconds, rank.dispatchSeconds);
  run->combineSeconds = std::max(run->combineSeconds, rank.combineSeconds);
  const auto fold = [](const std::vector<double>& mine, std::vector<double>* slowest) {
    if (slowest->size() < mine.size()) slowest->resize(mine.size(), 0.0);
    for (size_t i = 0; i < mine.size(); ++i) (*slowest)[i] = std::max((*slowest)[i], mine[i]);
  };
  fold(rank.dispatchLayerSeconds, &run->dispatchLayerSeconds);
  fold(rank.combineLayerSeconds, &run->combineLayerSeconds);
}

int64_t peakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

std::string RunResult::summary() const {
  std::ostringstream os;
  for (const auto& f : failures) os << f << "\n";
  return os.str();
}

CommOptions commOptionsFor(const RunOptions& options) {
  CommOptions commOptions;
  commOptions.timeout = options.timeout;
  commOptions.kernelThreads = options.kernelThreads;
  commOptions.kernels = options.kernels;
  return commOptions;
}

namespace {

// x and the expert rows of one rank moved into its communicator's memory space (memAlloc), released when this goes.
class CommMemoryTensors {
 public:
  explicit CommMemoryTensors(const Communicator& ep) : ep_(ep) {}
  ~CommMemoryTensors() {
    for (void* m : memory_) memFree(ep_, m);
  }
  CommMemoryTensors(const CommMemoryTensors&) = delete;
  CommMemoryTensors& operator=(const CommMemoryTensors&) = delete;

  // Moves x there (its vector is emptied) and allocates the expert rows there (buildRank left them out). False when
  // memory is exhausted.
  bool place(RankData& r) {
    if (r.d.x.contiguous() && r.d.x.numel() > 0) {
      void* m = allocate(r.x.size() * sizeof(uint16_t), r);
      if (m == nullptr) return false;
      std::memcpy(m, r.x.data(), r.x.size() * sizeof(uint16_t));
      AlignedBuffer<uint16_t>().swap(r.x);
      r.d.x = TensorView(m, r.d.x.dtype(), r.d.x.shape());
    }
    if (r.participates && r.c.expandX.numel() > 0) {
      void* m = allocate(static_cast<size_t>(r.c.expandX.nbytes()), r);
      if (m == nullptr) return false;
      std::memset(m, 0, static_cast<size_t>(r.c.expandX.nbytes()));
      r.ffnRowsData = static_cast<uint16_t*>(m);
      r.c.expandX = TensorView(m, r.c.expandX.dtype(), r.c.expandX.shape());
    }
    return true;
  }

 private:
  void* allocate(size_t bytes, RankData& r) {
    void* m = memAlloc(ep_, bytes);
    if (m == nullptr) return nullptr;
    memory_.push_back(m);
    r.commMemoryBytes += static_cast<int64_t>(bytes);
    return m;
  }

  const Communicator& ep_;
  std::vector<void*> memory_;
};

}  // namespace

RunResult runScenario(const Scenario& scenario, const RunOptions& options) {
  RunResult result;
  Prepared p;
  if (!prepare(scenario, options, &p, &result)) return result;
  const ref::Config& cfg = p.cfg;
  const int W = cfg.W, G = p.scenario.numGroups();

  // Communicators: one EP group per TP index; TP pairs (or size-1 TP communicators with tp == 1).
  const CommOptions commOptions = commOptionsFor(options);
  std::vector<std::vector<Communicator>> ep(static_cast<size_t>(G)), tp(static_cast<size_t>(W));
  if (options.api != Api::kCann) {
    for (auto& group : ep) {
      if (Status s = Communicator::createInProcess(W, commOptions, &group); !s.ok()) {
        result.failures.push_back("createInProcess: " + s.toString());
        return result;
      }
    }
    for (auto& pair : tp) {
      if (cfg.tp < 1) break;
      if (Status s = Communicator::createInProcess(G, commOptions, &pair); !s.ok()) {
        result.failures.push_back("createInProcess: " + s.toString());
        return result;
      }
    }
  }

  // With the CANN API: HCCL communicators over devices (device g * W + e is EP rank e of TP group g).
  std::vector<std::vector<HcclComm>> hcclEp(static_cast<size_t>(G)), hcclTp(static_cast<size_t>(W));
  std::vector<std::string> epNames(static_cast<size_t>(G * W)), tpNames(static_cast<size_t>(G * W));
  auto destroyHccl = [&] {
    for (auto* group : {&hcclEp, &hcclTp})
      for (auto& comms : *group)
        for (HcclComm c : comms) HcclCommDestroy(c);
  };
  if (options.api == Api::kCann) {
    (void)aclInit(nullptr);  // a repeated aclInit is harmless here
    // HCCL communicators take their deadline from the environment, as on CANN (HCCL_EXEC_TIMEOUT); moedist's own
    // variable carries options.timeout into the communicators created here.
    const ScopedEnv timeout("MOEDIST_TIMEOUT_MS", std::to_string(options.timeout.count()));
    auto init = [&](std::vector<int32_t> devices, std::vector<HcclComm>& comms, std::vector<std::string>& names) {
      comms.assign(devices.size(), nullptr);
      if (Status s = cannStatus(HcclCommInitAll(static_cast<uint32_t>(devices.size()), devices.data(), comms.data()),
                                "HcclCommInitAll");
          !s.ok())
        return s;
      for (size_t i = 0; i < devices.size(); ++i) {
        char name[128] = {};
        HcclGetCommName(comms[i], name);
        names[static_cast<size_t>(devices[i])] = name;
      }
      return okStatus();
    };
    for (int g = 0; g < G; ++g) {
      std::vector<int32_t> devices;
      for (int e = 0; e < W; ++e) devices.push_back(g * W + e);
      if (Status s = init(devices, hcclEp[static_cast<size_t>(g)], epNames); !s.ok()) {
        result.failures.push_back(s.toString());
        destroyHccl();
        return result;
      }
    }
    if (cfg.tp >= 1) {
      for (int e = 0; e < W; ++e) {
        std::vector<int32_t> devices;
        for (int g = 0; g < G; ++g) devices.push_back(g * W + e);
        if (Status s = init(devices, hcclTp[static_cast<size_t>(e)], tpNames); !s.ok()) {
          result.failures.push_back(s.toString());
          destroyHccl();
          return result;
        }
      }
    }
  }

  // Every rank's tensors.
  std::vector<RankData> ranks(static_cast<size_t>(G * W));
  for (int g = 0; g < G; ++g)
    for (int e = 0; e < W; ++e) buildRank(p, options, g, e, ranks[static_cast<size_t>(g * W + e)]);
  std::vector<std::unique_ptr<CommMemoryTensors>> inCommMemory;
  if (placesInCommMemory(options)) {
    for (RankData& r : ranks) {
      const Communicator& epComm = ep[static_cast<size_t>(r.tpIdx)][static_cast<size_t>(r.epRank)];
      inCommMemory.push_back(std::make_unique<CommMemoryTensors>(epComm));
      if (!inCommMemory.back()->place(r)) {
        result.failures.push_back(label(r) + ": memAlloc gave no memory for x and the expert rows");
        return result;
      }
    }
  }

  Checker checker;
  std::barrier sync(G * W);
  auto body = [&](int index) {
    RankData& r = ranks[static_cast<size_t>(index)];
    RankCalls calls;
    calls.barrier = [&] { sync.arrive_and_wait(); };
    // The CANN API: this thread is device tpIdx * W + epRank, with one stream.
    CannRank cann;
    const int device = r.tpIdx * W + r.epRank;
    if (options.api != Api::kCann) {
      const Communicator& epComm = ep[static_cast<size_t>(r.tpIdx)][static_cast<size_t>(r.epRank)];
      const Communicator* tpComm =
          cfg.tp >= 1 ? &tp[static_cast<size_t>(r.epRank)][static_cast<size_t>(r.tpIdx)] : nullptr;
      cppCalls(options, r.tpIdx, r.epRank, epComm, tpComm, result.ranks[static_cast<size_t>(index)], &calls);
    } else {
      const std::string who = label(r);
      if (Status s = cannStatus(aclrtSetDevice(device), "aclrtSetDevice"); !s.ok())
        checker.fail(who + ": " + s.toString());
      if (Status s = cannStatus(aclrtCreateStream(&cann.stream), "aclrtCreateStream"); !s.ok())
        checker.fail(who + ": " + s.toString());
      cann.groupEp = epNames[static_cast<size_t>(device)];
      cann.groupTp = tpNames[static_cast<size_t>(device)];
      cann.epWorldSize = W;
      cann.epRankId = r.epRank;
      cann.tpWorldSize = cfg.tp;
      cann.tpRankId = r.tpIdx;
      calls.dispatch = [&](const DispatchArgs& args) { return cannDispatch(cann, args, options.ops); };
      calls.combine = [&](const CombineArgs& args) { return cannCombine(cann, args, options.ops); };
    }
    runRank(p, options, r, calls, checker, result.ranks[static_cast<size_t>(index)]);
    if (cann.stream != nullptr) aclrtDestroyStream(cann.stream);
    if (options.api == Api::kCann) aclrtResetDevice(device);
  };
  result.ranks.resize(ranks.size());
  const auto errors = runRanks(G * W, body);
  destroyHccl();
  finish(p, ranks, errors, checker, &result);
  return result;
}

RunResult runScenarioRank(const Scenario& scenario, const RunOptions& options, int tpIdx, int epRank,
                          const Communicator& ep, const Communicator* tp) {
  RunResult result;
  Prepared p;
  if (!prepare(scenario, options, &p, &result)) return result;
  const ref::Config& cfg = p.cfg;
  if (options.api == Api::kCann) {
    result.failures.push_back("runScenarioRank calls the C++ API only: use Api::kCpp or Api::kCppGeneral");
    return result;
  }
  if (tpIdx < 0 || tpIdx >= p.scenario.numGroups() || epRank < 0 || epRank >= cfg.W) {
    result.failures.push_back("runScenarioRank: no rank tp " + std::to_string(tpIdx) + " ep rank " +
                              std::to_string(epRank) + " in " + p.scenario.describe());
    return result;
  }
  if (cfg.tp >= 1 && tp == nullptr) {
    result.failures.push_back("runScenarioRank: the scenario has tp " + std::to_string(cfg.tp) +
                              ", but no TP communicator was given");
    return result;
  }
  std::vector<RankData> ranks(1);
  buildRank(p, options, tpIdx, epRank, ranks[0]);
  CommMemoryTensors inCommMemory(ep);
  if (placesInCommMemory(options) && !inCommMemory.place(ranks[0])) {
    result.failures.push_back("runScenarioRank: memAlloc gave no memory for x and the expert rows");
    return result;
  }

  Checker checker;
  result.ranks.resize(1);
  RankCalls calls;
  cppCalls(options, tpIdx, epRank, ep, tp, result.ranks[0], &calls);
  calls.barrier = options.rankBarrier;
  // On a thread of its own, as in runScenario: the launcher's watchdog turns a hang into a report and an abort.
  const auto errors = runRanks(1, [&](int) { runRank(p, options, ranks[0], calls, checker, result.ranks[0]); });
  finish(p, ranks, errors, checker, &result);
  return result;
}

}  // namespace moedist::testing
