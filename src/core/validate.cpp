// Argument-only validation of the dispatch and combine operators (SPEC section 6), through one funnel: every
// failure is built by Funnel::fail, so every message names the operator and the argument and says what was
// expected and what was found. See validate.h for the order of the steps.
//
// SPEC readings taken here:
//  * A dtype outside the registered combinations is a framework rejection (161002 -> kInvalidArgument) that
//    happens before tiling (SPEC 6.1 "Framework", 10.5); FRACTAL_NZ is treated the same way. The tiling dtype
//    checks that can still fail after that are the quantMode relation of dispatch (expandX int8 iff quantMode 2).
//  * dynamicScales and expandScales are required dispatch outputs (SPEC 10.13); residualX, gamma, yOut and rstdOut
//    are required combine tensors (SPEC 10.6): kNullArgument.
//  * Combine rejects every negative zero/copy/const count, not just -1 (SPEC 10.10).
//  * The capacity rules are reproduced as listed (SPEC 10.11): expandX.dim0 >= tp*A, etc., vacuous when tp is 0.
//    The operators check at run time that the rows actually received fit.
//  * fullmesh_v2 dispatch replaces both Align512 terms of the window rule by ceil(y/480)*512 (SPEC 7.2).
//  * Reserved combine tensors: activationScale, weightScale, groupList must be absent (tiling, 561002);
//    expandScales is ignored entirely (no check at all).
#include "core/validate.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "util/check.h"
#include "util/env.h"

namespace moedist::core {
namespace {

constexpr int64_t kInt32Max = INT32_MAX;
constexpr int64_t kMaxDimValue = int64_t{1} << 40;     // a larger dim is absurd
constexpr int64_t kMaxTensorBytes = int64_t{1} << 48;  // so is a tensor addressing more than 256 TiB

// Saturating arithmetic on non-negative values: capacities derived from absurd attributes must not wrap.
int64_t satMul(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
int64_t satAdd(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}
int64_t ceilDiv(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
int64_t align(int64_t v, int64_t a) {
  return ceilDiv(v, a) * a;
}

std::string dimsStr(std::span<const int64_t> d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(d[i]);
  }
  if (d.size() == 1) s += ",";
  return s + ")";
}

std::string shapeStr(const TensorView& t) {
  if (!t.defined()) return "absent";
  return fmt::format("shape {}", dimsStr(t.shape()));
}

std::string dtypeList(std::initializer_list<DType> l) {
  std::string s;
  for (DType d : l) {
    if (!s.empty()) s += " or ";
    s += toString(d);
  }
  return s;
}

bool hasElasticAndSpecials(Operator op) {
  return op == Operator::kDispatchV3 || op == Operator::kCombineAddRmsNormV2 || op == Operator::kCombineV3;
}
bool hasAddRmsNorm(Operator op) {
  return op == Operator::kCombineAddRmsNormV2 || op == Operator::kCombineAddRmsNorm;
}

// The one place every validation failure goes through.
class Funnel {
 public:
  explicit Funnel(Operator op) : op_(toString(op)) {}
  explicit Funnel(const char* fn) : op_(fn) {}

  template <class E, class G>
  Status fail(StatusCode code, std::string_view arg, const E& expected, const G& got) const {
    return Status(code, fmt::format("{}: {}: expected {}, got {}", op_, arg, expected, got));
  }
  template <class E, class G>
  Status invalid(std::string_view arg, const E& expected, const G& got) const {
    return fail(StatusCode::kInvalidValue, arg, expected, got);
  }

  // A required tensor (op_api or framework check).
  Status required(const TensorView& t, std::string_view name, StatusCode code = StatusCode::kNullArgument) const {
    if (t.defined()) return okStatus();
    return fail(code, name, "a tensor", "null");
  }

  Status dtype(const TensorView& t, std::string_view name, std::initializer_list<DType> allowed) const {
    if (!t.defined()) return okStatus();
    for (DType d : allowed)
      if (t.dtype() == d) return okStatus();
    return fail(StatusCode::kInvalidArgument, name, fmt::format("dtype {}", dtypeList(allowed)),
                fmt::format("dtype {}", toString(t.dtype())));
  }

  Status format(const TensorView& t, std::string_view name) const {
    if (!t.defined() || t.format() == Format::kND) return okStatus();
    return fail(StatusCode::kInvalidArgument, name, "format ND", "format FRACTAL_NZ");
  }

  // moedist's memory-safety rules for a tensor it will address.
  Status layout(const TensorView& t, std::string_view name, bool output) const {
    if (!t.defined()) return okStatus();
    const auto shape = t.shape();
    const auto strides = t.strides();
    for (int d = 0; d < t.ndim(); ++d) {
      if (shape[d] < 0 || shape[d] > kMaxDimValue)
        return fail(StatusCode::kInvalidArgument, name, "dims in 0..2^40", shapeStr(t));
    }
    for (int d = 0; d < t.ndim(); ++d) {
      if (strides[d] < 0)
        return fail(StatusCode::kInvalidArgument, name, "non-negative strides",
                    fmt::format("strides {}", dimsStr(strides)));
    }
    const int64_t eb = dtypeBytes(t.dtype());
    int64_t numel = 1;
    int64_t last = 0;  // offset of the last element, in elements
    bool overflow = false;
    for (int d = 0; d < t.ndim(); ++d) {
      overflow |= __builtin_mul_overflow(numel, shape[d], &numel);
    }
    if (!overflow && numel > 0) {
      for (int d = 0; d < t.ndim(); ++d) {
        int64_t span = 0;
        overflow |= __builtin_mul_overflow(shape[d] - 1, strides[d], &span);
        overflow |= __builtin_add_overflow(last, span, &last);
      }
    }
    int64_t bytes = 0;
    int64_t extent = 0;  // elements from the first to the last, both included
    int64_t extentBytes = 0;
    overflow = overflow || __builtin_mul_overflow(numel, eb, &bytes) || __builtin_add_overflow(last, 1, &extent) ||
               __builtin_mul_overflow(extent, eb, &extentBytes);
    if (overflow || bytes > kMaxTensorBytes || extentBytes > kMaxTensorBytes)
      return fail(StatusCode::kInvalidArgument, name, "at most 2^48 bytes addressed",
                  fmt::format("{} with strides {}", shapeStr(t), dimsStr(strides)));
    if (numel == 0) return okStatus();
    if (t.data() == nullptr)
      return fail(StatusCode::kNullArgument, name, "a data pointer", fmt::format("null data with {} elements", numel));
    if (reinterpret_cast<uintptr_t>(t.data()) % static_cast<uintptr_t>(eb) != 0)
      return fail(StatusCode::kInvalidArgument, name, fmt::format("data aligned to {} bytes", eb),
                  fmt::format("address {}", t.data()));
    if (output && !t.contiguous())
      return fail(StatusCode::kInvalidArgument, name, "a dense row-major output (outputs are written densely)",
                  fmt::format("{} with strides {}", shapeStr(t), dimsStr(strides)));
    return okStatus();
  }

  Status ndim(const TensorView& t, std::string_view name, int nd) const {
    if (!t.defined() || t.ndim() == nd) return okStatus();
    return invalid(name, fmt::format("a {}-D tensor", nd), shapeStr(t));
  }

  Status range(std::string_view name, int64_t v, int64_t lo, int64_t hi) const {
    if (v >= lo && v <= hi) return okStatus();
    return invalid(name, fmt::format("{}..{}", lo, hi), v);
  }

  Status dimEq(const TensorView& t, std::string_view name, int d, int64_t want, std::string_view what) const {
    if (t.dim(d) == want) return okStatus();
    return invalid(fmt::format("{}.dim{}", name, d),
                   what.empty() ? std::to_string(want) : fmt::format("{} = {}", what, want), t.dim(d));
  }
  Status dimAtLeast(const TensorView& t, std::string_view name, int d, int64_t want, std::string_view what) const {
    if (t.dim(d) >= want) return okStatus();
    return invalid(fmt::format("{}.dim{}", name, d), fmt::format(">= {} = {}", what, want), t.dim(d));
  }

  const char* op() const { return op_; }

 private:
  const char* op_;
};

struct NamedTensor {
  const char* name;
  const TensorView* t;
  bool output;
};

// The attribute checks dispatch, combine and the shape query share, in the operators' order.
Status checkRanks(const Funnel& f, const RankAttrs& rk) {
  MOEDIST_RETURN_IF_ERROR(f.range("epWorldSize", rk.epWorldSize, 2, 768));
  MOEDIST_RETURN_IF_ERROR(f.range("tpWorldSize", rk.tpWorldSize, 0, 2));
  MOEDIST_RETURN_IF_ERROR(f.range("epRankId", rk.epRankId, 0, rk.epWorldSize - 1));
  if (rk.tpWorldSize > 1) return f.range("tpRankId", rk.tpRankId, 0, rk.tpWorldSize - 1);
  if (rk.tpRankId != 0) return f.invalid("tpRankId", "0 when tpWorldSize is 0 or 1", rk.tpRankId);
  return okStatus();
}

Status checkSpecialCounts(const Funnel& f, const MoeAttrs& a) {
  if (a.zeroExpertNum < 0) return f.invalid("zeroExpertNum", ">= 0", a.zeroExpertNum);
  if (a.copyExpertNum < 0) return f.invalid("copyExpertNum", ">= 0", a.copyExpertNum);
  if (a.constExpertNum < 0) return f.invalid("constExpertNum", ">= 0", a.constExpertNum);
  const int64_t total = satAdd(satAdd(a.moeExpertNum < 0 ? 0 : a.moeExpertNum, a.zeroExpertNum),
                               satAdd(a.copyExpertNum, a.constExpertNum));
  if (total > kInt32Max)
    return f.invalid("moeExpertNum + zeroExpertNum + copyExpertNum + constExpertNum", fmt::format("<= {}", kInt32Max),
                     total == INT64_MAX ? std::string("more than 2^63") : std::to_string(total));
  return okStatus();
}

// SPEC 6.1 step 8 / 6.2 step 6, the shared-expert relations.
Status checkSharedRelations(const Funnel& f, int64_t S, int64_t Srank) {
  if (S == 0 && Srank > 0)
    return f.invalid("sharedExpertNum", fmt::format("1..4 when sharedExpertRankNum is {}", Srank), S);
  if (S > 0 && Srank == 0)
    return f.invalid("sharedExpertRankNum",
                     fmt::format("> 0 when sharedExpertNum is {} (only 1 means 'none' without shared-expert ranks)", S),
                     Srank);
  if (S > 0 && Srank % S != 0)
    return f.invalid("sharedExpertRankNum", fmt::format("a multiple of sharedExpertNum ({})", S), Srank);
  return okStatus();
}

// The rank attributes (already checked by checkRanks) and the expert attributes, into g: W, r, tp, tpr, M, Srank, S.
Status expertAttrs(const Funnel& f, const RankAttrs& rk, const MoeAttrs& a, Geometry* g) {
  g->W = rk.epWorldSize;
  g->r = rk.epRankId;
  g->tp = rk.tpWorldSize;
  g->tpr = rk.tpRankId;
  if (a.expertShardType != 0) return f.invalid("expertShardType", "0 (shared-expert ranks first)", a.expertShardType);
  MOEDIST_RETURN_IF_ERROR(f.range("sharedExpertNum", a.sharedExpertNum, 0, 4));
  MOEDIST_RETURN_IF_ERROR(f.range("sharedExpertRankNum", a.sharedExpertRankNum, 0, g->W - 1));
  MOEDIST_RETURN_IF_ERROR(f.range("moeExpertNum", a.moeExpertNum, 1, 1024));
  g->M = a.moeExpertNum;
  g->Srank = a.sharedExpertRankNum;
  g->S = (g->Srank == 0 && a.sharedExpertNum == 1) ? 0 : a.sharedExpertNum;
  return okStatus();
}

// The MoE experts split over the MoE ranks, into g: L (experts per MoE rank) and R (ranks per shared expert).
Status moeSplit(const Funnel& f, Geometry* g) {
  if (g->M % (g->W - g->Srank) != 0)
    return f.invalid(
        "moeExpertNum",
        fmt::format("a multiple of epWorldSize - sharedExpertRankNum = {} - {} = {}", g->W, g->Srank, g->W - g->Srank),
        g->M);
  g->L = g->M / (g->W - g->Srank);
  g->R = g->S > 0 ? g->Srank / g->S : 0;
  if (g->tp > 1 && g->L > 1)
    return f.invalid("tpWorldSize", fmt::format("0 or 1 when each MoE rank hosts L = {} experts", g->L), g->tp);
  return okStatus();
}

// globalBs rule (SPEC 6.1 step 8). Returns the effective value through *eff.
Status checkGlobalBs(const Funnel& f, int64_t globalBs, int64_t Bs, int64_t W, int64_t* eff) {
  const int64_t minimum = Bs * W;
  if (globalBs != 0 && (globalBs < minimum || globalBs % W != 0))
    return f.invalid("globalBs",
                     fmt::format("0, or a multiple of epWorldSize ({}) that is >= Bs * epWorldSize = {} * {} = {}", W,
                                 Bs, W, minimum),
                     globalBs);
  *eff = globalBs == 0 ? minimum : globalBs;
  return okStatus();
}

// A (SPEC 1), localExpertNum and the epRecvCounts / epSendCounts base length (without the tp factor).
void deriveCapacity(Geometry* g, int64_t* countsBase) {
  const int64_t sharedTerm = g->S > 0 ? satMul(g->maxBs, ceilDiv(g->W, g->R)) : 0;
  const int64_t moeTerm = satMul(g->globalBs, std::min(g->L, g->K));
  if (g->elastic) {
    g->A = std::max(sharedTerm, moeTerm);
    g->localExpertNum = g->L;
    *countsBase = std::max(g->W, g->W * g->L);
  } else if (g->sharedRank) {
    g->A = sharedTerm;
    g->localExpertNum = 1;
    *countsBase = g->W;
  } else {
    g->A = moeTerm;
    g->localExpertNum = g->L;
    *countsBase = g->W * g->L;
  }
}

std::string windowFormula(bool fullmesh) {
  return fullmesh ? "2*(maxBs*W*L*ceil((Align32(2H)+44)/480)*512 + maxBs*(K+S)*ceil(2H/480)*512)"
                  : "2*(maxBs*W*L*Align512(Align32(2H)+44) + maxBs*(K+S)*Align512(2H))";
}

Status checkWindow(const Funnel& f, const Geometry& g, bool fullmesh) {
  const int64_t need = requiredWindowBytes(g, fullmesh);
  const long mb = util::envHcclBuffSizeMb();
  const int64_t window = satMul(static_cast<int64_t>(mb), int64_t{1} << 20);
  if (need <= window) return okStatus();
  auto blk = [&](int64_t y) { return fullmesh ? ceilDiv(y, 480) * 512 : align(y, 512); };
  const int64_t slot = blk(align(2 * g.H, 32) + 44);
  const int64_t comb = blk(2 * g.H);
  const int64_t needMb = need == INT64_MAX ? INT64_MAX : ceilDiv(need, int64_t{1} << 20);
  return f.invalid("HCCL_BUFFSIZE",
                   fmt::format("{} = 2*({}*{}*{}*{} + {}*({}+{})*{}) = {} bytes to fit the window, i.e. "
                               "HCCL_BUFFSIZE >= {} (MB)",
                               windowFormula(fullmesh), g.maxBs, g.W, g.L, slot, g.maxBs, g.K, g.S, comb,
                               need == INT64_MAX ? std::string("more than 2^63") : std::to_string(need),
                               needMb == INT64_MAX ? std::string("2^43") : std::to_string(needMb)),
                   fmt::format("HCCL_BUFFSIZE {} ({} bytes)", mb, window));
}

}  // namespace

int64_t requiredWindowBytes(const Geometry& g, bool fullmeshV2) {
  auto blk = [&](int64_t y) { return fullmeshV2 ? ceilDiv(y, 480) * 512 : align(y, 512); };
  const int64_t slot = blk(align(2 * g.H, 32) + 44);
  const int64_t comb = blk(2 * g.H);
  const int64_t dispatchArea = satMul(satMul(satMul(g.maxBs, g.W), g.L), slot);
  const int64_t combineArea = satMul(satMul(g.maxBs, g.K + g.S), comb);
  return satMul(2, satAdd(dispatchArea, combineArea));
}

// ---------------------------------------------------------------------------------------------------------------
// The shape query: the attribute checks of phase 1 that the output lengths depend on, in the operators' order.

Status outputShapes(const char* fn, const RankAttrs& rk, const MoeAttrs& a, const ShapeQuery& q, OutputShapes* out) {
  const Funnel f(fn);
  if (out == nullptr) return f.fail(StatusCode::kNullArgument, "out", "an OutputShapes*", "null");
  Geometry g;
  MOEDIST_RETURN_IF_ERROR(checkRanks(f, rk));
  MOEDIST_RETURN_IF_ERROR(expertAttrs(f, rk, a, &g));
  MOEDIST_RETURN_IF_ERROR(checkSpecialCounts(f, a));
  g.elastic = q.elastic;
  MOEDIST_RETURN_IF_ERROR(checkSharedRelations(f, g.S, g.Srank));
  MOEDIST_RETURN_IF_ERROR(moeSplit(f, &g));
  if (g.tp > 1 && g.elastic) return f.invalid("elastic", fmt::format("false with tpWorldSize {}", g.tp), "true");
  g.Bs = q.Bs;
  MOEDIST_RETURN_IF_ERROR(f.range("Bs", g.Bs, 1, 512));
  MOEDIST_RETURN_IF_ERROR(checkGlobalBs(f, a.globalBs, g.Bs, g.W, &g.globalBs));
  g.maxBs = g.globalBs / g.W;
  g.H = q.H;
  MOEDIST_RETURN_IF_ERROR(f.range("H", g.H, 1024, 8192));
  g.K = q.K;
  const int64_t allExperts = g.M + a.zeroExpertNum + a.copyExpertNum + a.constExpertNum;
  MOEDIST_RETURN_IF_ERROR(f.range("K", g.K, 1, std::min<int64_t>(16, allExperts)));
  g.sharedRank = g.r < g.Srank;
  int64_t countsBase = 0;
  deriveCapacity(&g, &countsBase);

  OutputShapes s;
  s.A = g.A;
  s.localExpertNum = g.localExpertNum;
  s.expandXRows = satMul(std::max<int64_t>(g.tp, 1), g.A);
  s.assistInfoForCombine = satMul(128, g.A);
  s.expertTokenNums = g.localExpertNum;
  s.epRecvCounts = countsBase * (g.tp == 2 ? 2 : 1);
  s.tpRecvCounts = g.tp;
  s.expandScales = g.A;
  s.H = g.H;
  s.Bs = g.Bs;
  s.windowBytes = requiredWindowBytes(g, a.commAlg == "fullmesh_v2");
  *out = s;
  return okStatus();
}

// ---------------------------------------------------------------------------------------------------------------
// DispatchV3 / DispatchV2 (SPEC 6.1)

Status validateDispatch(const DispatchCall& call, Geometry* geo) {
  if (!isDispatch(call.op))
    return Status(StatusCode::kInternal, fmt::format("validateDispatch: called for {}", toString(call.op)));
  const Funnel f(call.op);
  if (call.args == nullptr) return f.fail(StatusCode::kNullArgument, "args", "DispatchArgs", "null");
  const DispatchArgs& a = *call.args;
  const RankAttrs& rk = call.ranks;

  // 0. Arguments DispatchV2 does not have.
  if (!hasElasticAndSpecials(call.op)) {
    const char* why = "absent (DispatchV2 has no elastic scale-in)";
    if (a.elasticInfo.defined()) return f.invalid("elasticInfo", why, shapeStr(a.elasticInfo));
    if (a.zeroExpertNum != 0)
      return f.invalid("zeroExpertNum", "0 (DispatchV2 has no special experts)", a.zeroExpertNum);
    if (a.copyExpertNum != 0)
      return f.invalid("copyExpertNum", "0 (DispatchV2 has no special experts)", a.copyExpertNum);
    if (a.constExpertNum != 0)
      return f.invalid("constExpertNum", "0 (DispatchV2 has no special experts)", a.constExpertNum);
  }

  // 1. op_api null checks ([DA3] CheckParams), then the outputs the op definition requires (SPEC 10.13).
  MOEDIST_RETURN_IF_ERROR(f.required(a.x, "x"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.expertIds, "expertIds"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.expandX, "expandX"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.assistInfoForCombine, "assistInfoForCombine"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.expertTokenNums, "expertTokenNums"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.tpRecvCounts, "tpRecvCounts"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.epRecvCounts, "epRecvCounts"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.dynamicScales, "dynamicScales"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.expandScales, "expandScales"));

  const NamedTensor tensors[] = {
      {"x", &a.x, false},
      {"expertIds", &a.expertIds, false},
      {"scales", &a.scales, false},
      {"xActiveMask", &a.xActiveMask, false},
      {"expertScales", &a.expertScales, false},
      {"elasticInfo", &a.elasticInfo, false},
      {"expandX", &a.expandX, true},
      {"dynamicScales", &a.dynamicScales, true},
      {"assistInfoForCombine", &a.assistInfoForCombine, true},
      {"expertTokenNums", &a.expertTokenNums, true},
      {"epRecvCounts", &a.epRecvCounts, true},
      {"tpRecvCounts", &a.tpRecvCounts, true},
      {"expandScales", &a.expandScales, true},
  };

  // 2. Framework: registered dtypes ([DBIN]) and formats.
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.x, "x", {DType::kBFloat16, DType::kFloat16}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.expertIds, "expertIds", {DType::kInt32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.scales, "scales", {DType::kFloat32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.xActiveMask, "xActiveMask", {DType::kBool}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.expertScales, "expertScales", {DType::kFloat32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.elasticInfo, "elasticInfo", {DType::kInt32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.expandX, "expandX", {a.x.dtype(), DType::kInt8}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.dynamicScales, "dynamicScales", {DType::kFloat32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.assistInfoForCombine, "assistInfoForCombine", {DType::kInt32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.expertTokenNums, "expertTokenNums", {DType::kInt64}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.epRecvCounts, "epRecvCounts", {DType::kInt32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.tpRecvCounts, "tpRecvCounts", {DType::kInt32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.expandScales, "expandScales", {DType::kFloat32}));
  for (const auto& nt : tensors) MOEDIST_RETURN_IF_ERROR(f.format(*nt.t, nt.name));

  // 3. moedist: memory safety.
  for (const auto& nt : tensors) MOEDIST_RETURN_IF_ERROR(f.layout(*nt.t, nt.name, nt.output));

  Geometry g;
  g.elastic = a.elasticInfo.defined();
  const bool mask = a.xActiveMask.defined();
  const bool fullmesh = a.commAlg == "fullmesh_v2";

  // Tiling step 1: communicator sizes and ranks.
  MOEDIST_RETURN_IF_ERROR(checkRanks(f, rk));

  // Step 2: expert attributes.
  MOEDIST_RETURN_IF_ERROR(expertAttrs(f, rk, a, &g));
  MOEDIST_RETURN_IF_ERROR(f.range("quantMode", a.quantMode, 0, 2));
  if (a.expertTokenNumsType != 0 && a.expertTokenNumsType != 1)
    return f.invalid("expertTokenNumsType", "0 or 1", a.expertTokenNumsType);

  // Step 3: special experts and commAlg.
  MOEDIST_RETURN_IF_ERROR(checkSpecialCounts(f, a));
  g.Z = a.zeroExpertNum;
  g.C = a.copyExpertNum;
  g.Q = a.constExpertNum;
  g.specials = g.Z + g.C + g.Q > 0;
  if (!a.commAlg.empty() && a.commAlg != "fullmesh_v1" && a.commAlg != "fullmesh_v2")
    return f.invalid("commAlg", "\"\", \"fullmesh_v1\" or \"fullmesh_v2\"", fmt::format("\"{}\"", a.commAlg));

  // Step 4: quantization.
  if (a.quantMode == 1) return f.invalid("quantMode", "0 or 2 (static quantization is not supported)", a.quantMode);
  if (a.scales.defined() && a.quantMode == 0) return f.invalid("scales", "absent with quantMode 0", shapeStr(a.scales));

  // Step 5: ranks of tensors.
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.x, "x", 2));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.expertIds, "expertIds", 2));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.scales, "scales", 2));
  if (mask) {
    const TensorView& m = a.xActiveMask;
    if (m.ndim() != 1 && m.ndim() != 2) return f.invalid("xActiveMask", "a 1-D or 2-D tensor", shapeStr(m));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(m, "xActiveMask", 0, a.x.dim(0), "x.dim0 (Bs)"));
    if (m.ndim() == 2) MOEDIST_RETURN_IF_ERROR(f.dimEq(m, "xActiveMask", 1, a.expertIds.dim(1), "expertIds.dim1 (K)"));
  }
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.elasticInfo, "elasticInfo", 1));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.expandX, "expandX", 2));
  if (a.quantMode == 2) MOEDIST_RETURN_IF_ERROR(f.ndim(a.dynamicScales, "dynamicScales", 1));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.assistInfoForCombine, "assistInfoForCombine", 1));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.expertTokenNums, "expertTokenNums", 1));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.epRecvCounts, "epRecvCounts", 1));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.tpRecvCounts, "tpRecvCounts", 1));
  g.twoDimMask = mask && a.xActiveMask.ndim() == 2;

  // Step 6: the dtype relation the framework cannot see (it depends on quantMode).
  if (a.quantMode == 2 && a.expandX.dtype() != DType::kInt8)
    return f.invalid("expandX", "dtype int8 with quantMode 2", fmt::format("dtype {}", toString(a.expandX.dtype())));
  if (a.quantMode == 0 && a.expandX.dtype() != a.x.dtype())
    return f.invalid("expandX", fmt::format("dtype {} (the dtype of x) with quantMode 0", toString(a.x.dtype())),
                     fmt::format("dtype {}", toString(a.expandX.dtype())));

  // Step 7 (formats) happened with the framework checks.

  // Step 8: attribute relations.
  MOEDIST_RETURN_IF_ERROR(checkSharedRelations(f, g.S, g.Srank));
  if (fullmesh) {
    if (g.elastic) return f.invalid("commAlg", "not \"fullmesh_v2\" together with elasticInfo", "\"fullmesh_v2\"");
    if (g.specials)
      return f.invalid("commAlg", "not \"fullmesh_v2\" together with zero/copy/const experts", "\"fullmesh_v2\"");
    if (mask) return f.invalid("commAlg", "not \"fullmesh_v2\" together with xActiveMask", "\"fullmesh_v2\"");
    if (g.tp == 2) return f.invalid("commAlg", "not \"fullmesh_v2\" together with tpWorldSize 2", "\"fullmesh_v2\"");
  }
  MOEDIST_RETURN_IF_ERROR(moeSplit(f, &g));
  if (g.tp > 1 && g.elastic)
    return f.invalid("elasticInfo", fmt::format("absent with tpWorldSize {}", g.tp), shapeStr(a.elasticInfo));
  g.Bs = a.x.dim(0);
  MOEDIST_RETURN_IF_ERROR(f.range("x.dim0 (Bs)", g.Bs, 1, 512));
  MOEDIST_RETURN_IF_ERROR(checkGlobalBs(f, a.globalBs, g.Bs, g.W, &g.globalBs));
  g.maxBs = g.globalBs / g.W;
  if (g.globalBs > g.Bs * g.W) {
    if (mask)
      return f.invalid("xActiveMask",
                       fmt::format("absent when globalBs ({}) > Bs * epWorldSize ({})", g.globalBs, g.Bs * g.W),
                       shapeStr(a.xActiveMask));
    if (fullmesh)
      return f.invalid(
          "commAlg",
          fmt::format("not \"fullmesh_v2\" when globalBs ({}) > Bs * epWorldSize ({})", g.globalBs, g.Bs * g.W),
          "\"fullmesh_v2\"");
  }

  // Step 9: shapes.
  g.H = a.x.dim(1);
  MOEDIST_RETURN_IF_ERROR(f.range("x.dim1 (H)", g.H, 1024, 8192));
  MOEDIST_RETURN_IF_ERROR(f.dimEq(a.expertIds, "expertIds", 0, g.Bs, "x.dim0 (Bs)"));
  g.K = a.expertIds.dim(1);
  MOEDIST_RETURN_IF_ERROR(f.range("expertIds.dim1 (K)", g.K, 1, 16));
  const int64_t allExperts = g.M + g.Z + g.C + g.Q;
  if (g.K > allExperts)
    return f.invalid("expertIds.dim1 (K)",
                     fmt::format("<= moeExpertNum + zeroExpertNum + copyExpertNum + constExpertNum = {}", allExperts),
                     g.K);
  if (a.scales.defined()) {
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.scales, "scales", 0, g.S + g.M, "sharedExpertNum + moeExpertNum"));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.scales, "scales", 1, g.H, "H"));
  }
  if (g.elastic) MOEDIST_RETURN_IF_ERROR(f.dimEq(a.elasticInfo, "elasticInfo", 0, 4 + 2 * g.W, "4 + 2 * epWorldSize"));
  g.sharedRank = g.r < g.Srank;
  int64_t countsBase = 0;
  deriveCapacity(&g, &countsBase);
  MOEDIST_RETURN_IF_ERROR(
      f.dimAtLeast(a.expandX, "expandX", 0, satMul(g.tp, g.A), fmt::format("tpWorldSize * A = {} * {}", g.tp, g.A)));
  MOEDIST_RETURN_IF_ERROR(f.dimEq(a.expandX, "expandX", 1, g.H, "H"));
  if (a.quantMode == 2)
    MOEDIST_RETURN_IF_ERROR(f.dimAtLeast(a.dynamicScales, "dynamicScales", 0, satMul(g.tp, g.A),
                                         fmt::format("tpWorldSize * A = {} * {}", g.tp, g.A)));
  MOEDIST_RETURN_IF_ERROR(f.dimAtLeast(a.assistInfoForCombine, "assistInfoForCombine", 0, satMul(3, g.A),
                                       fmt::format("3 * A = 3 * {}", g.A)));
  MOEDIST_RETURN_IF_ERROR(f.dimEq(a.expertTokenNums, "expertTokenNums", 0, g.localExpertNum,
                                  g.elastic      ? "localExpertNum (L, with elasticInfo)"
                                  : g.sharedRank ? "localExpertNum (1 on a shared-expert rank)"
                                                 : "localExpertNum (L on a MoE rank)"));
  const int64_t tpFactor = g.tp == 2 ? 2 : 1;
  MOEDIST_RETURN_IF_ERROR(f.dimAtLeast(a.epRecvCounts, "epRecvCounts", 0, countsBase * tpFactor,
                                       fmt::format("{} * (tpWorldSize == 2 ? 2 : 1) = {} * {}",
                                                   g.elastic      ? "max(W, W * L)"
                                                   : g.sharedRank ? "W"
                                                                  : "W * L",
                                                   countsBase, tpFactor)));
  MOEDIST_RETURN_IF_ERROR(f.dimEq(a.tpRecvCounts, "tpRecvCounts", 0, g.tp, "tpWorldSize"));

  // Step 10: the HCCL window.
  MOEDIST_RETURN_IF_ERROR(checkWindow(f, g, fullmesh));

  if (geo != nullptr) *geo = g;
  return okStatus();
}

// ---------------------------------------------------------------------------------------------------------------
// CombineAddRmsNormV2 / CombineAddRmsNorm / CombineV3 / CombineV2 (SPEC 6.2, 9)

Status validateCombine(const CombineCall& call, Geometry* geo) {
  if (isDispatch(call.op))
    return Status(StatusCode::kInternal, fmt::format("validateCombine: called for {}", toString(call.op)));
  const Funnel f(call.op);
  if (call.args == nullptr) return f.fail(StatusCode::kNullArgument, "args", "CombineArgs", "null");
  const CombineArgs& a = *call.args;
  const RankAttrs& rk = call.ranks;
  const bool norm = hasAddRmsNorm(call.op);

  // 0. Arguments the variant does not have.
  if (!hasElasticAndSpecials(call.op)) {
    const std::string noSpecial = fmt::format("absent ({} has no special experts)", f.op());
    if (a.elasticInfo.defined())
      return f.invalid("elasticInfo", fmt::format("absent ({} has no elastic scale-in)", f.op()),
                       shapeStr(a.elasticInfo));
    const std::string zero = fmt::format("0 ({} has no special experts)", f.op());
    if (a.zeroExpertNum != 0) return f.invalid("zeroExpertNum", zero, a.zeroExpertNum);
    if (a.copyExpertNum != 0) return f.invalid("copyExpertNum", zero, a.copyExpertNum);
    if (a.constExpertNum != 0) return f.invalid("constExpertNum", zero, a.constExpertNum);
    if (a.oriX.defined()) return f.invalid("oriX", noSpecial, shapeStr(a.oriX));
    if (a.constExpertAlpha1.defined()) return f.invalid("constExpertAlpha1", noSpecial, shapeStr(a.constExpertAlpha1));
    if (a.constExpertAlpha2.defined()) return f.invalid("constExpertAlpha2", noSpecial, shapeStr(a.constExpertAlpha2));
    if (a.constExpertV.defined()) return f.invalid("constExpertV", noSpecial, shapeStr(a.constExpertV));
  }
  if (!norm) {
    const std::string why = fmt::format("absent ({} has no residual add and RmsNorm)", f.op());
    if (a.residualX.defined()) return f.invalid("residualX", why, shapeStr(a.residualX));
    if (a.gamma.defined()) return f.invalid("gamma", why, shapeStr(a.gamma));
    if (a.yOut.defined()) return f.invalid("yOut", why, shapeStr(a.yOut));
    if (a.rstdOut.defined()) return f.invalid("rstdOut", why, shapeStr(a.rstdOut));
  }

  // 1. op_api null checks ([CA2]), then the tensors the op definition requires (SPEC 10.6).
  MOEDIST_RETURN_IF_ERROR(f.required(a.expandX, "expandX"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.expertIds, "expertIds"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.assistInfoForCombine, "assistInfoForCombine"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.epSendCounts, "epSendCounts"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.expertScales, "expertScales"));
  MOEDIST_RETURN_IF_ERROR(f.required(a.xOut, "xOut"));
  if (norm) {
    MOEDIST_RETURN_IF_ERROR(f.required(a.residualX, "residualX"));
    MOEDIST_RETURN_IF_ERROR(f.required(a.gamma, "gamma"));
    MOEDIST_RETURN_IF_ERROR(f.required(a.yOut, "yOut"));
    MOEDIST_RETURN_IF_ERROR(f.required(a.rstdOut, "rstdOut"));
  }

  // expandScales is reserved and ignored: it is not looked at. activationScale, weightScale and groupList must be
  // absent (tiling); they take part in no framework or layout check.
  const NamedTensor tensors[] = {
      {"expandX", &a.expandX, false},
      {"expertIds", &a.expertIds, false},
      {"assistInfoForCombine", &a.assistInfoForCombine, false},
      {"epSendCounts", &a.epSendCounts, false},
      {"expertScales", &a.expertScales, false},
      {"residualX", &a.residualX, false},
      {"gamma", &a.gamma, false},
      {"tpSendCounts", &a.tpSendCounts, false},
      {"xActiveMask", &a.xActiveMask, false},
      {"sharedExpertX", &a.sharedExpertX, false},
      {"elasticInfo", &a.elasticInfo, false},
      {"oriX", &a.oriX, false},
      {"constExpertAlpha1", &a.constExpertAlpha1, false},
      {"constExpertAlpha2", &a.constExpertAlpha2, false},
      {"constExpertV", &a.constExpertV, false},
      {"yOut", &a.yOut, true},
      {"rstdOut", &a.rstdOut, true},
      {"xOut", &a.xOut, true},
  };

  // 2. Framework: registered dtypes ([CBIN]; CombineV3/V2 also fp16) and formats.
  if (norm) {
    MOEDIST_RETURN_IF_ERROR(f.dtype(a.expandX, "expandX", {DType::kBFloat16}));
  } else {
    MOEDIST_RETURN_IF_ERROR(f.dtype(a.expandX, "expandX", {DType::kBFloat16, DType::kFloat16}));
  }
  const DType xt = a.expandX.dtype();
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.expertIds, "expertIds", {DType::kInt32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.assistInfoForCombine, "assistInfoForCombine", {DType::kInt32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.epSendCounts, "epSendCounts", {DType::kInt32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.expertScales, "expertScales", {DType::kFloat32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.residualX, "residualX", {DType::kBFloat16}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.gamma, "gamma", {DType::kBFloat16}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.tpSendCounts, "tpSendCounts", {DType::kInt32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.xActiveMask, "xActiveMask", {DType::kBool}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.sharedExpertX, "sharedExpertX", {xt}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.elasticInfo, "elasticInfo", {DType::kInt32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.oriX, "oriX", {xt}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.constExpertAlpha1, "constExpertAlpha1", {xt}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.constExpertAlpha2, "constExpertAlpha2", {xt}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.constExpertV, "constExpertV", {xt}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.yOut, "yOut", {xt}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.rstdOut, "rstdOut", {DType::kFloat32}));
  MOEDIST_RETURN_IF_ERROR(f.dtype(a.xOut, "xOut", {xt}));
  for (const auto& nt : tensors) MOEDIST_RETURN_IF_ERROR(f.format(*nt.t, nt.name));

  // 3. moedist: memory safety.
  for (const auto& nt : tensors) MOEDIST_RETURN_IF_ERROR(f.layout(*nt.t, nt.name, nt.output));

  Geometry g;
  g.elastic = a.elasticInfo.defined();
  const bool mask = a.xActiveMask.defined();

  // Tiling step 1 (expandX int32) is unreachable after the framework dtype check.
  // Step 2: attributes. Every negative special count is refused (SPEC 10.10).
  MOEDIST_RETURN_IF_ERROR(checkSpecialCounts(f, a));
  MOEDIST_RETURN_IF_ERROR(checkRanks(f, rk));
  if (rk.tpWorldSize > 1 && a.commQuantMode != 0)
    return f.invalid("commQuantMode", fmt::format("0 with tpWorldSize {}", rk.tpWorldSize), a.commQuantMode);
  MOEDIST_RETURN_IF_ERROR(expertAttrs(f, rk, a, &g));
  if (a.commQuantMode != 0 && a.commQuantMode != 2) return f.invalid("commQuantMode", "0 or 2", a.commQuantMode);
  // moedist: the int8 transport of SPEC 3.7 is defined for bf16 rows only (CombineV2/V3 with fp16 have no kernel).
  if (a.commQuantMode == 2 && xt == DType::kFloat16)
    return f.invalid("commQuantMode", "0 with an fp16 expandX (int8 transport needs bf16 rows)", a.commQuantMode);
  g.Z = a.zeroExpertNum;
  g.C = a.copyExpertNum;
  g.Q = a.constExpertNum;
  g.specials = g.Z + g.C + g.Q > 0;

  // Step 3: ranks of tensors, presence of the reserved ones.
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.expandX, "expandX", 2));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.expertIds, "expertIds", 2));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.assistInfoForCombine, "assistInfoForCombine", 1));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.epSendCounts, "epSendCounts", 1));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.expertScales, "expertScales", 2));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.residualX, "residualX", 3));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.gamma, "gamma", 1));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.oriX, "oriX", 2));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.constExpertAlpha1, "constExpertAlpha1", 1));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.constExpertAlpha2, "constExpertAlpha2", 1));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.constExpertV, "constExpertV", 2));
  MOEDIST_RETURN_IF_ERROR(f.required(a.tpSendCounts, "tpSendCounts", StatusCode::kInvalidValue));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.tpSendCounts, "tpSendCounts", 1));
  if (mask && a.xActiveMask.ndim() != 1 && a.xActiveMask.ndim() != 2)
    return f.invalid("xActiveMask", "a 1-D or 2-D tensor", shapeStr(a.xActiveMask));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.elasticInfo, "elasticInfo", 1));
  if (a.activationScale.defined())
    return f.invalid("activationScale", "absent (reserved)", shapeStr(a.activationScale));
  if (a.weightScale.defined()) return f.invalid("weightScale", "absent (reserved)", shapeStr(a.weightScale));
  if (a.groupList.defined()) return f.invalid("groupList", "absent (reserved)", shapeStr(a.groupList));
  if (a.sharedExpertX.defined()) {
    if (g.Srank != 0)
      return f.invalid("sharedExpertX", fmt::format("absent when sharedExpertRankNum is {} (not 0)", g.Srank),
                       shapeStr(a.sharedExpertX));
    if (a.sharedExpertX.ndim() != 2 && a.sharedExpertX.ndim() != 3)
      return f.invalid("sharedExpertX", "a 2-D or 3-D tensor", shapeStr(a.sharedExpertX));
  }
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.yOut, "yOut", 3));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.rstdOut, "rstdOut", 3));
  MOEDIST_RETURN_IF_ERROR(f.ndim(a.xOut, "xOut", norm ? 3 : 2));
  g.twoDimMask = mask && a.xActiveMask.ndim() == 2;

  // Steps 4-5 (dtypes, formats) happened with the framework checks.

  // Step 6: attribute relations.
  MOEDIST_RETURN_IF_ERROR(checkSharedRelations(f, g.S, g.Srank));
  MOEDIST_RETURN_IF_ERROR(moeSplit(f, &g));
  if (g.tp > 1 && g.elastic)
    return f.invalid("elasticInfo", fmt::format("absent with tpWorldSize {}", g.tp), shapeStr(a.elasticInfo));
  g.Bs = a.expertIds.dim(0);
  MOEDIST_RETURN_IF_ERROR(f.range("expertIds.dim0 (Bs)", g.Bs, 1, 512));
  MOEDIST_RETURN_IF_ERROR(checkGlobalBs(f, a.globalBs, g.Bs, g.W, &g.globalBs));
  g.maxBs = g.globalBs / g.W;
  if (g.globalBs > g.Bs * g.W && mask)
    return f.invalid("xActiveMask",
                     fmt::format("absent when globalBs ({}) > Bs * epWorldSize ({})", g.globalBs, g.Bs * g.W),
                     shapeStr(a.xActiveMask));
  if (g.C > 0 && !a.oriX.defined())
    return f.invalid("oriX", fmt::format("a tensor when copyExpertNum is {}", g.C), "null");
  if (g.Q > 0) {
    const std::string why = fmt::format("a tensor when constExpertNum is {}", g.Q);
    if (!a.oriX.defined()) return f.invalid("oriX", why, "null");
    if (!a.constExpertAlpha1.defined()) return f.invalid("constExpertAlpha1", why, "null");
    if (!a.constExpertAlpha2.defined()) return f.invalid("constExpertAlpha2", why, "null");
    if (!a.constExpertV.defined()) return f.invalid("constExpertV", why, "null");
  }

  // Step 7: shapes.
  g.K = a.expertIds.dim(1);
  const int64_t allExperts = g.M + g.Z + g.C + g.Q;
  if (g.K < 1 || g.K > std::min<int64_t>(16, allExperts))
    return f.invalid("expertIds.dim1 (K)",
                     fmt::format("1..min(16, moeExpertNum + zeroExpertNum + copyExpertNum + constExpertNum) = 1..{}",
                                 std::min<int64_t>(16, allExperts)),
                     g.K);
  g.sharedRank = g.r < g.Srank;
  int64_t countsBase = 0;
  g.H = a.expandX.dim(1);  // A does not depend on H
  deriveCapacity(&g, &countsBase);
  if (g.elastic) MOEDIST_RETURN_IF_ERROR(f.dimEq(a.elasticInfo, "elasticInfo", 0, 4 + 2 * g.W, "4 + 2 * epWorldSize"));
  MOEDIST_RETURN_IF_ERROR(
      f.dimAtLeast(a.expandX, "expandX", 0, satMul(g.A, g.tp), fmt::format("A * tpWorldSize = {} * {}", g.A, g.tp)));
  MOEDIST_RETURN_IF_ERROR(f.range("expandX.dim1 (H)", g.H, 1024, 8192));
  MOEDIST_RETURN_IF_ERROR(f.dimAtLeast(a.assistInfoForCombine, "assistInfoForCombine", 0, satMul(128, g.A),
                                       fmt::format("128 * A = 128 * {}", g.A)));
  MOEDIST_RETURN_IF_ERROR(f.dimAtLeast(a.epSendCounts, "epSendCounts", 0, countsBase * g.tp,
                                       fmt::format("{} * tpWorldSize = {} * {}",
                                                   g.elastic      ? "max(W, W * L)"
                                                   : g.sharedRank ? "W"
                                                                  : "W * L",
                                                   countsBase, g.tp)));
  MOEDIST_RETURN_IF_ERROR(f.dimEq(a.tpSendCounts, "tpSendCounts", 0, g.tp, "tpWorldSize"));
  MOEDIST_RETURN_IF_ERROR(f.dimEq(a.expertScales, "expertScales", 0, g.Bs, "Bs"));
  MOEDIST_RETURN_IF_ERROR(f.dimEq(a.expertScales, "expertScales", 1, g.K, "K"));
  if (norm) {
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.residualX, "residualX", 0, g.Bs, "Bs"));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.residualX, "residualX", 1, 1, ""));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.residualX, "residualX", 2, g.H, "H"));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.gamma, "gamma", 0, g.H, "H"));
  }
  if (mask) {
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.xActiveMask, "xActiveMask", 0, g.Bs, "Bs"));
    if (g.twoDimMask) MOEDIST_RETURN_IF_ERROR(f.dimEq(a.xActiveMask, "xActiveMask", 1, g.K, "K"));
  }
  if (a.sharedExpertX.defined()) {
    const TensorView& s = a.sharedExpertX;
    if (s.ndim() == 2) {
      MOEDIST_RETURN_IF_ERROR(f.dimEq(s, "sharedExpertX", 0, g.Bs, "Bs"));
      MOEDIST_RETURN_IF_ERROR(f.dimEq(s, "sharedExpertX", 1, g.H, "H"));
    } else {
      if (s.dim(0) * s.dim(1) != g.Bs)  // dims are <= 2^40 here, the product cannot overflow
        return f.invalid("sharedExpertX", fmt::format("dim0 * dim1 = Bs = {}", g.Bs), shapeStr(s));
      MOEDIST_RETURN_IF_ERROR(f.dimEq(s, "sharedExpertX", 2, g.H, "H"));
    }
  }
  if (norm) {
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.yOut, "yOut", 0, g.Bs, "Bs"));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.yOut, "yOut", 1, 1, ""));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.yOut, "yOut", 2, g.H, "H"));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.rstdOut, "rstdOut", 0, g.Bs, "Bs"));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.rstdOut, "rstdOut", 1, 1, ""));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.rstdOut, "rstdOut", 2, 1, ""));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.xOut, "xOut", 0, g.Bs, "Bs"));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.xOut, "xOut", 1, 1, ""));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.xOut, "xOut", 2, g.H, "H"));
  } else {
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.xOut, "xOut", 0, g.Bs, "Bs"));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.xOut, "xOut", 1, g.H, "H"));
  }
  if (a.oriX.defined()) {
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.oriX, "oriX", 0, g.Bs, "Bs"));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.oriX, "oriX", 1, g.H, "H"));
  }
  if (a.constExpertAlpha1.defined())
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.constExpertAlpha1, "constExpertAlpha1", 0, g.Q, "constExpertNum"));
  if (a.constExpertAlpha2.defined())
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.constExpertAlpha2, "constExpertAlpha2", 0, g.Q, "constExpertNum"));
  if (a.constExpertV.defined()) {
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.constExpertV, "constExpertV", 0, g.Q, "constExpertNum"));
    MOEDIST_RETURN_IF_ERROR(f.dimEq(a.constExpertV, "constExpertV", 1, g.H, "H"));
  }

  // Step 8: the HCCL window.
  MOEDIST_RETURN_IF_ERROR(checkWindow(f, g, /*fullmesh=*/false));

  if (geo != nullptr) *geo = g;
  return okStatus();
}

}  // namespace moedist::core
