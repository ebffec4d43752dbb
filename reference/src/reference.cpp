// The global-view reference model (see reference.h). Plain loops that follow SPEC.md literally; no code from src/.
//
// Choices where SPEC leaves room:
//  * Argument checks: only those without which the model is undefined or that SPEC ties to the data (attribute
//    relations of SPEC 1 / 6, globalBs vs Bs, tensor sizes). The operator's range limits are NOT reproduced: any
//    H >= 1, K >= 1 (K <= M+Z+C+Q), Bs >= 1, W >= 1 is accepted, so closed-form tests can use tiny shapes.
//  * Data-dependent checks (SPEC decision 2) look only at what the operators read: expert ids of ACTIVE slots
//    (no mask: all; 1-D mask: all K slots of tokens [0, n); 2-D mask: the true slots). An id is valid iff it lies in
//    [0, M_eff) or, with special experts enabled, in [M, M+Z+C+Q). A repeated id among a token's active slots is an
//    error, special ids included.
//  * Elastic (SPEC 5, 10.8): W' in [1, W], Srank' in [0, W'), Srank' a positive multiple of S when S > 0 and 0 when
//    S == 0, M' = L * (W' - Srank') (L unchanged), M' <= M (else ids in [M, M') would be MoE for dispatch and special
//    for combine), exactly W' survivors (table1 != -1) with distinct new ids in [0, W') and table2[table1[r]] == r.
//    table2 entries >= W' are not read. Removed ranks' inputs are ignored.
//  * Combine: a returned row whose triple names a slot that the source does not wait for, a slot delivered twice,
//    or an awaited slot that never arrives is an error (CANN would hang or use stale data).
//  * NaN/inf inputs are out of scope; an all-zero quantized row gives q = 0 and scale 0 (SPEC 10.3).
#include "moedist_ref/reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <utility>

#include "moedist_ref/numeric.h"

namespace moedist::ref {

// SPEC 2.5: dynamic per-row int8 quantization of dispatch (quantMode 2).
// v: the row after widening and (optional) smooth scaling. Writes q[0..n) and returns the stored scale fl(1/d).
// All-zero row (SPEC 10.3): d = 127/0 = +inf, v*d = 0*inf = NaN, NaN -> int8 taken as 0; scale = 1/inf = 0.
int8_t nanSafeToInt8(float r) {
  if (std::isnan(r)) return 0;
  if (r > 127.0f) return 127;
  if (r < -128.0f) return -128;
  return static_cast<int8_t>(r);
}

float dynamicQuantRow(const float* v, int64_t n, int8_t* q) {
  float m = 0.0f;
  for (int64_t h = 0; h < n; ++h) {
    const float a = std::fabs(v[h]);
    if (a > m) m = a;
  }
  const float d = 127.0f / m;
  for (int64_t h = 0; h < n; ++h) {
    const float p = v[h] * d;
    q[h] = nanSafeToInt8(rintHalfEven(p));
  }
  return 1.0f / d;
}

// SPEC 3.7: int8 communication quantization of combine (commQuantMode 2), applied to one bf16 row and undone
// again (the value the source side uses). Groups of 8 consecutive elements, the row padded with zeros to a
// multiple of 16 elements. A group whose max is 0 (0/0 = NaN) gives q = 0 and so 0 after dequantization
// (SPEC 10.4).
void commQuantRoundTrip(const uint16_t* inBf16, int64_t n, uint16_t* outBf16) {
  const int64_t numGroups = ((n + 15) / 16) * 2;
  const float invMax = 1.0f / 127.0f;
  for (int64_t g = 0; g < numGroups; ++g) {
    const int64_t begin = g * 8;
    float mx = 0.0f;
    for (int64_t h = begin; h < begin + 8; ++h) {
      const float v = (h < n) ? bf16ToFloat(inBf16[h]) : 0.0f;
      const float a = std::fabs(v);
      if (a > mx) mx = a;
    }
    const float sc = mx * invMax;
    const uint16_t sb = floatToBf16(sc);
    for (int64_t h = begin; h < begin + 8 && h < n; ++h) {
      const float v = bf16ToFloat(inBf16[h]);
      const float ratio = v / sc;
      const float viaFp16 = fp16ToFloat(floatToFp16(ratio));
      const int8_t q = nanSafeToInt8(rintHalfEven(viaFp16));
      const float deq = static_cast<float>(q) * bf16ToFloat(sb);
      outBf16[h] = floatToBf16(deq);
    }
  }
}

// SPEC 3.4 / 10.2: the A3 "count" ReduceSum. 64-element chunks; each chunk summed by an adjacent-pair binary tree
// (missing lanes of a partial last chunk are 0); the chunk sums are added left to right.
float reduceSumAscend(const float* v, int64_t n) {
  float total = 0.0f;
  for (int64_t begin = 0; begin < n; begin += 64) {
    float lanes[64];
    for (int i = 0; i < 64; ++i) lanes[i] = (begin + i < n) ? v[begin + i] : 0.0f;
    for (int width = 64; width > 1; width /= 2) {
      for (int i = 0; i < width / 2; ++i) {
        const float s = lanes[2 * i] + lanes[2 * i + 1];
        lanes[i] = s;
      }
    }
    if (begin == 0) {
      total = lanes[0];
    } else {
      const float s = total + lanes[0];
      total = s;
    }
  }
  return total;
}

// SPEC 3.4: RmsNorm of one unrounded fp32 row x. Writes y (bf16) and returns rstd.
float rmsNormRow(const float* x, const uint16_t* gammaBf16, int64_t n, float eps, uint16_t* yBf16) {
  const float inv = 1.0f / static_cast<float>(n);
  std::vector<float> sq(static_cast<size_t>(n));
  for (int64_t h = 0; h < n; ++h) {
    const float x2 = x[h] * x[h];
    sq[static_cast<size_t>(h)] = x2 * inv;
  }
  const float ms = reduceSumAscend(sq.data(), n);
  const float msEps = ms + eps;
  const float den = std::sqrt(msEps);
  const float rstd = 1.0f / den;
  for (int64_t h = 0; h < n; ++h) {
    const float xr = x[h] * rstd;
    const float xrBf = bf16ToFloat(floatToBf16(xr));
    const float yv = xrBf * bf16ToFloat(gammaBf16[h]);
    yBf16[h] = floatToBf16(yv);
  }
  return rstd;
}

namespace {

// Everything derived from the attributes (and elasticInfo) that the algorithms need.
struct Topo {
  int W = 0, M = 0, S = 0, Srank = 0, L = 0, K = 0, H = 0, Z = 0, C = 0, Q = 0;
  int G = 1;  // number of EP groups (2 with tp == 2)
  bool tp2 = false;
  bool specials = false;                           // Z + C + Q > 0
  bool elastic = false;                            // elasticInfo given and [0] != 0
  int Weff = 0, SrankEff = 0, Meff = 0, Reff = 0;  // R' = Srank'/S (0 without shared experts)
  std::vector<int> newOf;                          // physical rank -> new rank id (-1: removed)
  std::vector<int> physOf;                         // new rank id -> physical rank
  int KS() const { return K + S; }
  bool participates(int p) const { return newOf[static_cast<size_t>(p)] >= 0; }
  bool sharedRank(int p) const { return newOf[static_cast<size_t>(p)] < SrankEff; }
  // The epRecvCounts index whose value is Nown (SPEC 2.4 / 3.2 / 3.8).
  int lastCountIdx(int p) const { return sharedRank(p) ? Weff - 1 : Weff * L - 1; }
  int numBlocks(int p) const { return sharedRank(p) ? Weff : Weff * L; }
  bool validId(int64_t e) const {
    if (e >= 0 && e < Meff) return true;
    return specials && e >= M && e < static_cast<int64_t>(M) + Z + C + Q;
  }
  // Whether an active slot with this (valid) id is routed to a MoE expert (SPEC 2.3 special filter).
  bool routed(int64_t e) const { return !specials || e < Meff; }
};

std::optional<std::string> buildTopo(const char* op, const Config& cfg, const DispatchInputs& in, Topo* tp) {
  Topo& t = *tp;
  std::ostringstream os;
  os << op << ": ";
  auto fail = [&](const std::string& m) -> std::optional<std::string> { return os.str() + m; };

  if (cfg.W < 1) return fail("epWorldSize must be >= 1, got " + std::to_string(cfg.W));
  if (cfg.H < 1) return fail("H must be >= 1, got " + std::to_string(cfg.H));
  if (cfg.M < 1) return fail("moeExpertNum must be >= 1, got " + std::to_string(cfg.M));
  if (cfg.Z < 0 || cfg.C < 0 || cfg.Q < 0) return fail("zero/copy/const expert counts must be >= 0");
  if (cfg.K < 1 || static_cast<int64_t>(cfg.K) > static_cast<int64_t>(cfg.M) + cfg.Z + cfg.C + cfg.Q)
    return fail("K must be in [1, M+Z+C+Q], got " + std::to_string(cfg.K));
  if (cfg.sharedExpertNum < 0) return fail("sharedExpertNum must be >= 0");
  if (cfg.sharedExpertRankNum < 0 || cfg.sharedExpertRankNum >= cfg.W)
    return fail("sharedExpertRankNum must be in [0, W), got " + std::to_string(cfg.sharedExpertRankNum));
  if (cfg.tp < 0 || cfg.tp > 2) return fail("tpWorldSize must be 0, 1 or 2, got " + std::to_string(cfg.tp));
  if (cfg.quantMode != 0 && cfg.quantMode != 2) return fail("quantMode must be 0 or 2");
  if (cfg.commQuantMode != 0 && cfg.commQuantMode != 2) return fail("commQuantMode must be 0 or 2");
  if (cfg.expertTokenNumsType != 0 && cfg.expertTokenNumsType != 1) return fail("expertTokenNumsType must be 0 or 1");
  if (cfg.maskDims < 0 || cfg.maskDims > 2) return fail("maskDims must be 0, 1 or 2");

  t.W = cfg.W;
  t.M = cfg.M;
  t.Srank = cfg.sharedExpertRankNum;
  t.S = (t.Srank == 0 && cfg.sharedExpertNum == 1) ? 0 : cfg.sharedExpertNum;  // SPEC 1: effective S
  t.K = cfg.K;
  t.H = cfg.H;
  t.Z = cfg.Z;
  t.C = cfg.C;
  t.Q = cfg.Q;
  t.specials = (cfg.Z + cfg.Q + cfg.C) > 0;
  t.tp2 = cfg.tp == 2;
  t.G = t.tp2 ? 2 : 1;
  if (t.S > 0 && t.Srank == 0) return fail("sharedExpertNum > 0 needs sharedExpertRankNum > 0");
  if (t.S == 0 && t.Srank > 0) return fail("sharedExpertRankNum > 0 needs sharedExpertNum > 0");
  if (t.S > 0 && t.Srank % t.S != 0) return fail("sharedExpertRankNum must be a multiple of sharedExpertNum");
  if (t.M % (t.W - t.Srank) != 0) return fail("moeExpertNum must be a multiple of W - sharedExpertRankNum");
  t.L = t.M / (t.W - t.Srank);
  if (t.tp2 && t.L > 1) return fail("tp == 2 needs one MoE expert per rank");
  if (t.tp2 && !cfg.elasticInfo.empty()) return fail("tp == 2 cannot be combined with elasticInfo");

  // Elastic scale-in (SPEC 5).
  t.Weff = t.W;
  t.SrankEff = t.Srank;
  t.Meff = t.M;
  t.newOf.resize(static_cast<size_t>(t.W));
  t.physOf.resize(static_cast<size_t>(t.W));
  for (int r = 0; r < t.W; ++r) t.newOf[static_cast<size_t>(r)] = t.physOf[static_cast<size_t>(r)] = r;
  if (!cfg.elasticInfo.empty()) {
    const auto& e = cfg.elasticInfo;
    if (static_cast<int64_t>(e.size()) != 4 + 2 * static_cast<int64_t>(t.W))
      return fail("elasticInfo must have 4 + 2W = " + std::to_string(4 + 2 * t.W) + " entries, got " +
                  std::to_string(e.size()));
    if (e[0] != 0) {
      t.elastic = true;
      const int W2 = e[1], Sr2 = e[2], M2 = e[3];
      if (W2 < 1 || W2 > t.W) return fail("elasticInfo[1] (W') must be in [1, W], got " + std::to_string(W2));
      if (Sr2 < 0 || Sr2 >= W2) return fail("elasticInfo[2] (Srank') must be in [0, W'), got " + std::to_string(Sr2));
      if (t.S > 0 && (Sr2 == 0 || Sr2 % t.S != 0))
        return fail("elasticInfo[2] (Srank') must be a positive multiple of sharedExpertNum, got " +
                    std::to_string(Sr2));
      if (t.S == 0 && Sr2 != 0) return fail("elasticInfo[2] (Srank') must be 0 without shared experts");
      if (M2 < 1 || M2 % (W2 - Sr2) != 0 || M2 / (W2 - Sr2) != t.L)
        return fail("elasticInfo changes the per-rank MoE expert count: M' = " + std::to_string(M2) +
                    ", W' - Srank' = " + std::to_string(W2 - Sr2) + ", expected L = " + std::to_string(t.L));
      if (M2 > t.M) return fail("elasticInfo[3] (M') must not exceed moeExpertNum, got " + std::to_string(M2));
      int survivors = 0;
      for (int r = 0; r < t.W; ++r) {
        const int n = e[static_cast<size_t>(4 + r)];
        if (n == -1) continue;
        if (n < 0 || n >= W2)
          return fail("elasticInfo table1[" + std::to_string(r) + "] = " + std::to_string(n) +
                      " is not -1 or in [0, W')");
        const int back = e[static_cast<size_t>(4 + t.W + n)];
        if (back != r)
          return fail("elasticInfo tables are not inverse: table1[" + std::to_string(r) + "] = " + std::to_string(n) +
                      " but table2[" + std::to_string(n) + "] = " + std::to_string(back));
        ++survivors;
      }
      if (survivors != W2)
        return fail("elasticInfo lists " + std::to_string(survivors) +
                    " surviving ranks but W' = " + std::to_string(W2));
      t.Weff = W2;
      t.SrankEff = Sr2;
      t.Meff = M2;
      t.physOf.assign(static_cast<size_t>(W2), -1);
      for (int r = 0; r < t.W; ++r) {
        const int n = e[static_cast<size_t>(4 + r)];
        t.newOf[static_cast<size_t>(r)] = n;
        if (n >= 0) t.physOf[static_cast<size_t>(n)] = r;
      }
    }
  }
  t.Reff = t.S > 0 ? t.SrankEff / t.S : 0;

  // Inputs: one group per tp index, W ranks each; batch sizes and globalBs (SPEC 1, 6.1.8).
  if (static_cast<int>(in.size()) != t.G)
    return fail("expected inputs for " + std::to_string(t.G) + " EP group(s), got " + std::to_string(in.size()));
  int commonBs = -1;
  for (int g = 0; g < t.G; ++g) {
    if (static_cast<int>(in[static_cast<size_t>(g)].size()) != t.W)
      return fail("expected inputs for " + std::to_string(t.W) + " ranks in group " + std::to_string(g));
    for (int p = 0; p < t.W; ++p) {
      if (!t.participates(p)) continue;
      const int bs = in[static_cast<size_t>(g)][static_cast<size_t>(p)].Bs;
      if (bs < 1) return fail("rank " + std::to_string(p) + ": Bs must be >= 1, got " + std::to_string(bs));
      if (cfg.globalBs == 0) {
        if (commonBs >= 0 && bs != commonBs)
          return fail("globalBs 0 needs the same Bs on every rank (rank " + std::to_string(p) + " has " +
                      std::to_string(bs) + ", another " + std::to_string(commonBs) + ")");
        commonBs = bs;
      } else {
        if (cfg.globalBs % t.W != 0) return fail("globalBs must be a multiple of W");
        const int maxBs = cfg.globalBs / t.W;
        if (bs > maxBs)
          return fail("rank " + std::to_string(p) + ": Bs " + std::to_string(bs) +
                      " exceeds globalBs / W = " + std::to_string(maxBs));
        if (bs < maxBs && cfg.maskDims != 0)
          return fail("rank " + std::to_string(p) + ": globalBs > Bs*W cannot be combined with xActiveMask");
      }
    }
  }
  return std::nullopt;
}

// Active tokens and slots of one rank (SPEC 2.3, 3.6), after checking the routing data (SPEC decision 2).
struct Active {
  std::vector<uint8_t> token;  // Bs
  std::vector<uint8_t> slot;   // Bs*K
};

std::optional<std::string> activeSets(const char* op, const Config& cfg, const Topo& t, int g, int p,
                                      const DispatchInput& in, Active* out) {
  const std::string where =
      std::string(op) + ": rank " + std::to_string(p) + (t.tp2 ? " (tp " + std::to_string(g) + ")" : "") + ": ";
  const int64_t Bs = in.Bs, K = t.K;
  if (static_cast<int64_t>(in.expertIds.size()) != Bs * K)
    return where + "expertIds must have Bs*K = " + std::to_string(Bs * K) + " entries, got " +
           std::to_string(in.expertIds.size());
  out->token.assign(static_cast<size_t>(Bs), 0);
  out->slot.assign(static_cast<size_t>(Bs * K), 0);
  if (cfg.maskDims == 0) {
    std::fill(out->token.begin(), out->token.end(), 1);
    std::fill(out->slot.begin(), out->slot.end(), 1);
  } else if (cfg.maskDims == 1) {
    if (static_cast<int64_t>(in.mask.size()) != Bs)
      return where + "1-D xActiveMask must have Bs = " + std::to_string(Bs) + " entries, got " +
             std::to_string(in.mask.size());
    int64_t n = 0;
    for (int64_t b = 0; b < Bs; ++b) n += in.mask[static_cast<size_t>(b)] ? 1 : 0;
    for (int64_t b = 0; b < Bs; ++b) {
      const bool expect = b < n;
      if ((in.mask[static_cast<size_t>(b)] != 0) != expect)
        return where + "1-D xActiveMask is not all trues before all falses (entry " + std::to_string(b) + ")";
    }
    for (int64_t b = 0; b < n; ++b) {
      out->token[static_cast<size_t>(b)] = 1;
      for (int64_t k = 0; k < K; ++k) out->slot[static_cast<size_t>(b * K + k)] = 1;
    }
  } else {
    if (static_cast<int64_t>(in.mask.size()) != Bs * K)
      return where + "2-D xActiveMask must have Bs*K = " + std::to_string(Bs * K) + " entries, got " +
             std::to_string(in.mask.size());
    for (int64_t b = 0; b < Bs; ++b)
      for (int64_t k = 0; k < K; ++k)
        if (in.mask[static_cast<size_t>(b * K + k)]) {
          out->slot[static_cast<size_t>(b * K + k)] = 1;
          out->token[static_cast<size_t>(b)] = 1;
        }
  }
  for (int64_t b = 0; b < Bs; ++b) {
    for (int64_t k = 0; k < K; ++k) {
      if (!out->slot[static_cast<size_t>(b * K + k)]) continue;
      const int64_t e = in.expertIds[static_cast<size_t>(b * K + k)];
      if (!t.validId(e)) {
        std::string m = where + "expertIds[" + std::to_string(b) + "][" + std::to_string(k) +
                        "] = " + std::to_string(e) + " is not a valid expert id (MoE ids [0, " +
                        std::to_string(t.Meff) + ")";
        if (t.specials)
          m += ", special ids [" + std::to_string(t.M) + ", " + std::to_string(int64_t{t.M} + t.Z + t.C + t.Q) + ")";
        return m + ")";
      }
      for (int64_t k2 = 0; k2 < k; ++k2) {
        if (out->slot[static_cast<size_t>(b * K + k2)] && in.expertIds[static_cast<size_t>(b * K + k2)] == e)
          return where + "token " + std::to_string(b) + " selects expert " + std::to_string(e) + " twice (slots " +
                 std::to_string(k2) + " and " + std::to_string(k) + ")";
      }
    }
  }
  return std::nullopt;
}

float widen(const Config& cfg, uint16_t bits) {
  return cfg.fp16 ? fp16ToFloat(bits) : bf16ToFloat(bits);
}

// One row received over EP, as a reference to its source.
struct RecvRow {
  int srcNew;    // source's new rank id
  int srcPhys;   // source's physical rank
  int t, k;      // token and slot (K + j for shared expert j)
  int scaleRow;  // smooth-scale row: S + e (MoE) or j (shared)
};

// Own part (before the TP all-gather) of one rank's dispatch result.
struct OwnResult {
  std::vector<uint8_t> expandX;
  std::vector<float> scales;
  std::vector<int32_t> assist;
  std::vector<int32_t> prefix;  // inclusive prefix sums over the receive blocks
  int64_t rows = 0;
};

}  // namespace

std::optional<std::string> dispatch(const Config& cfg, const DispatchInputs& in, DispatchOutputs* out) {
  Topo t;
  if (auto err = buildTopo("dispatch", cfg, in, &t)) return err;
  const int64_t H = t.H, K = t.K;

  // Per-rank argument checks and active sets.
  std::vector<std::vector<Active>> act(static_cast<size_t>(t.G), std::vector<Active>(static_cast<size_t>(t.W)));
  for (int g = 0; g < t.G; ++g) {
    for (int p = 0; p < t.W; ++p) {
      if (!t.participates(p)) continue;
      const DispatchInput& di = in[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const std::string where = "dispatch: rank " + std::to_string(p) + ": ";
      if (static_cast<int64_t>(di.x.size()) != di.Bs * H)
        return where + "x must have Bs*H = " + std::to_string(di.Bs * H) + " entries, got " +
               std::to_string(di.x.size());
      if (!di.scales.empty()) {
        if (cfg.quantMode != 2) return where + "scales are only allowed with quantMode 2";
        if (static_cast<int64_t>(di.scales.size()) != (int64_t{t.S} + t.M) * H)
          return where + "scales must have (S+M)*H = " + std::to_string((int64_t{t.S} + t.M) * H) + " entries, got " +
                 std::to_string(di.scales.size());
      }
      if (auto err = activeSets("dispatch", cfg, t, g, p, di, &act[static_cast<size_t>(g)][static_cast<size_t>(p)]))
        return err;
    }
  }

  // Routing (SPEC 2.2-2.4, 2.8): blocks[g][destination physical rank][block index].
  std::vector<std::vector<std::vector<std::vector<RecvRow>>>> blocks(static_cast<size_t>(t.G));
  for (int g = 0; g < t.G; ++g) {
    auto& bg = blocks[static_cast<size_t>(g)];
    bg.resize(static_cast<size_t>(t.W));
    for (int d = 0; d < t.W; ++d)
      if (t.participates(d)) bg[static_cast<size_t>(d)].resize(static_cast<size_t>(t.numBlocks(d)));
    for (int p = 0; p < t.W; ++p) {
      if (!t.participates(p)) continue;
      const DispatchInput& di = in[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const Active& a = act[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const int s = t.newOf[static_cast<size_t>(p)];
      // MoE slots in ascending f = t*K + k.
      for (int64_t b = 0; b < di.Bs; ++b) {
        for (int64_t k = 0; k < K; ++k) {
          if (!a.slot[static_cast<size_t>(b * K + k)]) continue;
          const int e = di.expertIds[static_cast<size_t>(b * K + k)];
          if (!t.routed(e)) continue;  // special expert: dropped
          const int destNew = t.SrankEff + e / t.L;
          const int le = e % t.L;
          const int destPhys = t.physOf[static_cast<size_t>(destNew)];
          bg[static_cast<size_t>(destPhys)][static_cast<size_t>(le * t.Weff + s)].push_back(
              RecvRow{s, p, static_cast<int>(b), static_cast<int>(k), t.S + e});
        }
      }
      // Shared experts: every active token, replica (s mod R') + j*R', slot K + j.
      for (int64_t b = 0; b < di.Bs; ++b) {
        if (!a.token[static_cast<size_t>(b)]) continue;
        for (int j = 0; j < t.S; ++j) {
          const int destNew = (s % t.Reff) + j * t.Reff;
          const int destPhys = t.physOf[static_cast<size_t>(destNew)];
          bg[static_cast<size_t>(destPhys)][static_cast<size_t>(s)].push_back(
              RecvRow{s, p, static_cast<int>(b), static_cast<int>(K) + j, j});
        }
      }
    }
  }

  // Receiver side: concatenate the blocks, build payloads, triples and prefix sums.
  const int64_t rowBytes = cfg.quantMode == 2 ? H : 2 * H;
  std::vector<std::vector<OwnResult>> own(static_cast<size_t>(t.G), std::vector<OwnResult>(static_cast<size_t>(t.W)));
  std::vector<float> v(static_cast<size_t>(H));
  std::vector<int8_t> q(static_cast<size_t>(H));
  for (int g = 0; g < t.G; ++g) {
    for (int d = 0; d < t.W; ++d) {
      if (!t.participates(d)) continue;
      OwnResult& o = own[static_cast<size_t>(g)][static_cast<size_t>(d)];
      int64_t running = 0;
      for (const auto& blk : blocks[static_cast<size_t>(g)][static_cast<size_t>(d)]) {
        for (const RecvRow& row : blk) {
          const DispatchInput& src = in[static_cast<size_t>(g)][static_cast<size_t>(row.srcPhys)];
          const uint16_t* xr = src.x.data() + static_cast<int64_t>(row.t) * H;
          const size_t at = o.expandX.size();
          o.expandX.resize(at + static_cast<size_t>(rowBytes));
          if (cfg.quantMode == 0) {
            std::memcpy(o.expandX.data() + at, xr, static_cast<size_t>(rowBytes));
          } else {
            for (int64_t h = 0; h < H; ++h) {
              float val = widen(cfg, xr[h]);
              if (!src.scales.empty()) {
                const float sm = src.scales[static_cast<size_t>(static_cast<int64_t>(row.scaleRow) * H + h)];
                val = val * sm;
              }
              v[static_cast<size_t>(h)] = val;
            }
            const float scale = dynamicQuantRow(v.data(), H, q.data());
            std::memcpy(o.expandX.data() + at, q.data(), static_cast<size_t>(H));
            o.scales.push_back(scale);
          }
          o.assist.push_back(row.srcNew);
          o.assist.push_back(row.t);
          o.assist.push_back(row.k);
          ++running;
        }
        o.prefix.push_back(static_cast<int32_t>(running));
      }
      o.rows = running;
    }
  }

  // Outputs (with the TP all-gather of SPEC 2.6).
  out->assign(static_cast<size_t>(t.G), std::vector<DispatchOutput>(static_cast<size_t>(t.W)));
  for (int g = 0; g < t.G; ++g) {
    for (int d = 0; d < t.W; ++d) {
      DispatchOutput& o = (*out)[static_cast<size_t>(g)][static_cast<size_t>(d)];
      if (!t.participates(d)) {
        o.participates = false;
        continue;
      }
      const OwnResult& me = own[static_cast<size_t>(g)][static_cast<size_t>(d)];
      o.numOwnRows = me.rows;
      o.expandX = me.expandX;
      if (cfg.quantMode == 2) o.dynamicScales = me.scales;
      o.assistInfo = me.assist;
      o.epRecvCounts = me.prefix;
      if (t.tp2) {
        const OwnResult& peer = own[static_cast<size_t>(1 - g)][static_cast<size_t>(d)];
        o.numRows = me.rows + peer.rows;
        o.expandX.insert(o.expandX.end(), peer.expandX.begin(), peer.expandX.end());
        if (cfg.quantMode == 2) o.dynamicScales.insert(o.dynamicScales.end(), peer.scales.begin(), peer.scales.end());
        o.epRecvCounts.insert(o.epRecvCounts.end(), peer.prefix.begin(), peer.prefix.end());
        o.tpRecvCounts.assign(2, 0);
        o.tpRecvCounts[static_cast<size_t>(g)] = static_cast<int32_t>(me.rows);
        o.tpRecvCounts[static_cast<size_t>(1 - g)] = static_cast<int32_t>(peer.rows);
        o.expertTokenNums = {o.numRows};
      } else {
        o.numRows = me.rows;
        if (t.sharedRank(d) || t.L == 1) {
          o.expertTokenNums = {me.rows};
        } else {
          int64_t prev = 0;
          for (int le = 0; le < t.L; ++le) {
            const int64_t upTo = me.prefix[static_cast<size_t>(le * t.Weff + t.Weff - 1)];
            const int64_t c = upTo - prev;
            o.expertTokenNums.push_back(cfg.expertTokenNumsType == 1 ? c : upTo);
            prev = upTo;
          }
        }
      }
    }
  }
  return std::nullopt;
}

std::optional<std::string> combine(const Config& cfg, const DispatchInputs& dispatchIn, const CombineInputs& in,
                                   CombineOutputs* out) {
  Topo t;
  if (auto err = buildTopo("combine", cfg, dispatchIn, &t)) return err;
  const int64_t H = t.H, K = t.K, KS = t.KS();
  if (cfg.commQuantMode == 2 && t.tp2) return std::string("combine: commQuantMode 2 needs tp <= 1");
  const bool half = combineFp16(cfg);  // the 16-bit inputs and xOut are fp16 (else bf16)
  if (cfg.commQuantMode == 2 && half) return std::string("combine: commQuantMode 2 needs bf16 rows (SPEC 3.7)");
  auto wide = [half](uint16_t bits) { return half ? fp16ToFloat(bits) : bf16ToFloat(bits); };
  // Rounding of an fp32 value. For the fp16 TP reduce (SPEC 10.12: the exactly rounded fp16 sum), rounding the fp32
  // sum again is exact: fp32 has 24 >= 2*11 + 2 bits, so double rounding of a sum is innocuous.
  auto narrow = [half](float v) { return half ? floatToFp16(v) : floatToBf16(v); };
  if (static_cast<int>(in.size()) != t.G)
    return "combine: expected inputs for " + std::to_string(t.G) + " EP group(s), got " + std::to_string(in.size());
  for (int g = 0; g < t.G; ++g)
    if (static_cast<int>(in[static_cast<size_t>(g)].size()) != t.W)
      return "combine: expected inputs for " + std::to_string(t.W) + " ranks in group " + std::to_string(g);

  // Source-side argument checks and active sets; the slots each source waits for (SPEC 3.5).
  std::vector<std::vector<Active>> act(static_cast<size_t>(t.G), std::vector<Active>(static_cast<size_t>(t.W)));
  std::vector<std::vector<std::vector<uint8_t>>> expected(static_cast<size_t>(t.G),
                                                          std::vector<std::vector<uint8_t>>(static_cast<size_t>(t.W)));
  for (int g = 0; g < t.G; ++g) {
    for (int p = 0; p < t.W; ++p) {
      if (!t.participates(p)) continue;
      const DispatchInput& di = dispatchIn[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const CombineInput& ci = in[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const std::string where = "combine: rank " + std::to_string(p) + ": ";
      const int64_t Bs = di.Bs;
      auto need = [&](size_t have, int64_t want, const char* name) -> std::optional<std::string> {
        if (static_cast<int64_t>(have) != want)
          return where + name + " must have " + std::to_string(want) + " entries, got " + std::to_string(have);
        return std::nullopt;
      };
      if (auto e = need(ci.expertScales.size(), Bs * K, "expertScales")) return e;
      if (auto e = need(ci.residualX.size(), Bs * H, "residualX")) return e;
      if (auto e = need(ci.gamma.size(), H, "gamma")) return e;
      if (!ci.sharedExpertX.empty()) {
        if (cfg.sharedExpertRankNum != 0) return where + "sharedExpertX needs sharedExpertRankNum == 0";
        if (auto e = need(ci.sharedExpertX.size(), Bs * H, "sharedExpertX")) return e;
      }
      if (t.C > 0 && ci.oriX.empty()) return where + "copy experts need oriX";
      if (t.Q > 0 && (ci.oriX.empty() || ci.alpha1.empty() || ci.alpha2.empty() || ci.constV.empty()))
        return where + "const experts need oriX, constExpertAlpha1, constExpertAlpha2 and constExpertV";
      if (!ci.oriX.empty())
        if (auto e = need(ci.oriX.size(), Bs * H, "oriX")) return e;
      if (!ci.alpha1.empty())
        if (auto e = need(ci.alpha1.size(), t.Q, "constExpertAlpha1")) return e;
      if (!ci.alpha2.empty())
        if (auto e = need(ci.alpha2.size(), t.Q, "constExpertAlpha2")) return e;
      if (!ci.constV.empty())
        if (auto e = need(ci.constV.size(), int64_t{t.Q} * H, "constExpertV")) return e;
      Active& a = act[static_cast<size_t>(g)][static_cast<size_t>(p)];
      if (auto err = activeSets("combine", cfg, t, g, p, di, &a)) return err;
      auto& ex = expected[static_cast<size_t>(g)][static_cast<size_t>(p)];
      ex.assign(static_cast<size_t>(Bs * KS), 0);
      for (int64_t b = 0; b < Bs; ++b) {
        if (!a.token[static_cast<size_t>(b)]) continue;
        for (int64_t k = 0; k < K; ++k)
          if (a.slot[static_cast<size_t>(b * K + k)] && t.routed(di.expertIds[static_cast<size_t>(b * K + k)]))
            ex[static_cast<size_t>(b * KS + k)] = 1;
        for (int64_t j = 0; j < t.S; ++j) ex[static_cast<size_t>(b * KS + K + j)] = 1;
      }
    }
  }

  // Expert side (SPEC 3.2, 3.7, 3.8): reduce over TP, optionally quantize, route back by triple.
  // ret[g][p]: Bs*(K+S) rows of H bf16 at the source; got[g][p]: which slots arrived.
  std::vector<std::vector<std::vector<uint16_t>>> ret(static_cast<size_t>(t.G),
                                                      std::vector<std::vector<uint16_t>>(static_cast<size_t>(t.W)));
  std::vector<std::vector<std::vector<uint8_t>>> got(static_cast<size_t>(t.G),
                                                     std::vector<std::vector<uint8_t>>(static_cast<size_t>(t.W)));
  for (int g = 0; g < t.G; ++g)
    for (int p = 0; p < t.W; ++p) {
      if (!t.participates(p)) continue;
      const int64_t Bs = dispatchIn[static_cast<size_t>(g)][static_cast<size_t>(p)].Bs;
      ret[static_cast<size_t>(g)][static_cast<size_t>(p)].assign(static_cast<size_t>(Bs * KS * H), 0);
      got[static_cast<size_t>(g)][static_cast<size_t>(p)].assign(static_cast<size_t>(Bs * KS), 0);
    }
  std::vector<uint16_t> red(static_cast<size_t>(H));
  for (int g = 0; g < t.G; ++g) {
    for (int d = 0; d < t.W; ++d) {
      if (!t.participates(d)) continue;
      const CombineInput& ci = in[static_cast<size_t>(g)][static_cast<size_t>(d)];
      const std::string where =
          "combine: expert rank " + std::to_string(d) + (t.tp2 ? " (tp " + std::to_string(g) + ")" : "") + ": ";
      const int idx = t.lastCountIdx(d);
      if (static_cast<int>(ci.epSendCounts.size()) <= idx)
        return where + "epSendCounts needs at least " + std::to_string(idx + 1) + " entries, got " +
               std::to_string(ci.epSendCounts.size());
      const int64_t nOwn = ci.epSendCounts[static_cast<size_t>(idx)];
      if (nOwn < 0) return where + "epSendCounts[" + std::to_string(idx) + "] is negative";
      int64_t nPeer = 0;
      if (t.tp2) {
        if (ci.tpSendCounts.size() < 2) return where + "tpSendCounts needs 2 entries with tp == 2";
        nPeer = ci.tpSendCounts[static_cast<size_t>(1 - g)];
        if (nPeer < 0) return where + "tpSendCounts[peer] is negative";
      }
      if (static_cast<int64_t>(ci.assistInfo.size()) < 3 * nOwn)
        return where + "assistInfo needs 3*Nown = " + std::to_string(3 * nOwn) + " entries, got " +
               std::to_string(ci.assistInfo.size());
      if (static_cast<int64_t>(ci.expandX.size()) < (nOwn + nPeer) * H)
        return where + "expandX needs (Nown + Npeer)*H = " + std::to_string((nOwn + nPeer) * H) + " entries, got " +
               std::to_string(ci.expandX.size());
      const CombineInput* peer = nullptr;
      if (t.tp2) {
        peer = &in[static_cast<size_t>(1 - g)][static_cast<size_t>(d)];
        if (static_cast<int64_t>(peer->expandX.size()) < (nPeer + nOwn) * H)
          return where + "the TP peer's expandX needs " + std::to_string((nPeer + nOwn) * H) + " entries, got " +
                 std::to_string(peer->expandX.size());
      }
      for (int64_t i = 0; i < nOwn; ++i) {
        const uint16_t* self = ci.expandX.data() + i * H;
        if (t.tp2) {
          const uint16_t* other = peer->expandX.data() + (nPeer + i) * H;
          for (int64_t h = 0; h < H; ++h) {
            const float sum = wide(self[h]) + wide(other[h]);
            red[static_cast<size_t>(h)] = narrow(sum);
          }
        } else if (cfg.commQuantMode == 2) {
          commQuantRoundTrip(self, H, red.data());
        } else {
          std::copy(self, self + H, red.begin());
        }
        const int32_t s = ci.assistInfo[static_cast<size_t>(3 * i)];
        const int32_t tok = ci.assistInfo[static_cast<size_t>(3 * i + 1)];
        const int32_t k = ci.assistInfo[static_cast<size_t>(3 * i + 2)];
        const std::string rowWhere = where + "row " + std::to_string(i) + " (" + std::to_string(s) + ", " +
                                     std::to_string(tok) + ", " + std::to_string(k) + "): ";
        if (s < 0 || s >= t.Weff) return rowWhere + "source rank id out of range";
        const int src = t.physOf[static_cast<size_t>(s)];
        const int64_t Bs = dispatchIn[static_cast<size_t>(g)][static_cast<size_t>(src)].Bs;
        if (tok < 0 || tok >= Bs || k < 0 || k >= KS) return rowWhere + "token or slot out of range";
        const size_t slot = static_cast<size_t>(int64_t{tok} * KS + k);
        if (!expected[static_cast<size_t>(g)][static_cast<size_t>(src)][slot])
          return rowWhere + "the source does not expect a row for this slot";
        auto& gotSlot = got[static_cast<size_t>(g)][static_cast<size_t>(src)][slot];
        if (gotSlot) return rowWhere + "slot delivered twice";
        gotSlot = 1;
        std::copy(
            red.begin(), red.end(),
            ret[static_cast<size_t>(g)][static_cast<size_t>(src)].begin() + static_cast<std::ptrdiff_t>(slot) * H);
      }
    }
  }

  // Source side (SPEC 3.3, 3.4, 3.6).
  out->assign(static_cast<size_t>(t.G), std::vector<CombineOutput>(static_cast<size_t>(t.W)));
  std::vector<float> acc(static_cast<size_t>(H));
  std::vector<float> xrow(static_cast<size_t>(H));
  for (int g = 0; g < t.G; ++g) {
    for (int p = 0; p < t.W; ++p) {
      CombineOutput& o = (*out)[static_cast<size_t>(g)][static_cast<size_t>(p)];
      if (!t.participates(p)) {
        o.participates = false;
        continue;
      }
      const DispatchInput& di = dispatchIn[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const CombineInput& ci = in[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const Active& a = act[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const auto& ex = expected[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const auto& gt = got[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const auto& rt = ret[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const int64_t Bs = di.Bs;
      for (int64_t slot = 0; slot < Bs * KS; ++slot)
        if (ex[static_cast<size_t>(slot)] && !gt[static_cast<size_t>(slot)])
          return "combine: rank " + std::to_string(p) + (t.tp2 ? " (tp " + std::to_string(g) + ")" : "") + ": token " +
                 std::to_string(slot / KS) + " slot " + std::to_string(slot % KS) + " never received its row";
      o.written.assign(static_cast<size_t>(Bs), 0);
      o.yOut.assign(static_cast<size_t>(Bs * H), 0);
      o.rstdOut.assign(static_cast<size_t>(Bs), 0.0f);
      o.xOut.assign(static_cast<size_t>(Bs * H), 0);
      for (int64_t b = 0; b < Bs; ++b) {
        if (!a.token[static_cast<size_t>(b)]) continue;  // SPEC 3.6: not written
        o.written[static_cast<size_t>(b)] = 1;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t k = 0; k < K; ++k) {
          if (cfg.maskDims == 2 && !a.slot[static_cast<size_t>(b * K + k)]) continue;
          const float w = ci.expertScales[static_cast<size_t>(b * K + k)];
          const uint32_t e = static_cast<uint32_t>(di.expertIds[static_cast<size_t>(b * K + k)]);
          const uint32_t M = static_cast<uint32_t>(t.M);  // the ORIGINAL moeExpertNum (SPEC 3.8)
          if (e < M) {
            const uint16_t* r = rt.data() + (b * KS + k) * H;
            for (int64_t h = 0; h < H; ++h) {
              const float term = wide(r[h]) * w;
              acc[static_cast<size_t>(h)] = acc[static_cast<size_t>(h)] + term;
            }
          } else if (e < M + static_cast<uint32_t>(t.Z)) {
            // zero expert: nothing
          } else if (e < M + static_cast<uint32_t>(t.Z + t.C)) {
            const uint16_t* ox = ci.oriX.data() + b * H;
            for (int64_t h = 0; h < H; ++h) {
              const float term = wide(ox[h]) * w;
              acc[static_cast<size_t>(h)] = acc[static_cast<size_t>(h)] + term;
            }
          } else if (e < M + static_cast<uint32_t>(t.Z + t.C + t.Q)) {
            const int64_t c = static_cast<int64_t>(e - (M + static_cast<uint32_t>(t.Z + t.C)));
            const uint16_t* ox = ci.oriX.data() + b * H;
            const uint16_t* vv = ci.constV.data() + c * H;
            const float a1 = wide(ci.alpha1[static_cast<size_t>(c)]);
            const float a2 = wide(ci.alpha2[static_cast<size_t>(c)]);
            for (int64_t h = 0; h < H; ++h) {
              const float p1 = wide(ox[h]) * a1;
              const float p2 = wide(vv[h]) * a2;
              const float tmp = p1 + p2;
              const float term = tmp * w;
              acc[static_cast<size_t>(h)] = acc[static_cast<size_t>(h)] + term;
            }
          }
          // else: out-of-range id, ignored (cannot happen after the id checks)
        }
        for (int64_t j = 0; j < t.S; ++j) {
          const uint16_t* r = rt.data() + (b * KS + K + j) * H;
          for (int64_t h = 0; h < H; ++h) acc[static_cast<size_t>(h)] = acc[static_cast<size_t>(h)] + wide(r[h]);
        }
        if (!ci.sharedExpertX.empty()) {
          const uint16_t* sx = ci.sharedExpertX.data() + b * H;
          for (int64_t h = 0; h < H; ++h) acc[static_cast<size_t>(h)] = acc[static_cast<size_t>(h)] + wide(sx[h]);
        }
        if (!cfg.addRmsNorm) {  // CombineV2/V3: the sum itself, rounded to the rows' dtype (SPEC 9)
          for (int64_t h = 0; h < H; ++h) o.xOut[static_cast<size_t>(b * H + h)] = narrow(acc[static_cast<size_t>(h)]);
          continue;
        }
        const uint16_t* res = ci.residualX.data() + b * H;
        for (int64_t h = 0; h < H; ++h) {
          const float xv = acc[static_cast<size_t>(h)] + bf16ToFloat(res[h]);
          xrow[static_cast<size_t>(h)] = xv;
          o.xOut[static_cast<size_t>(b * H + h)] = floatToBf16(xv);
        }
        o.rstdOut[static_cast<size_t>(b)] =
            rmsNormRow(xrow.data(), ci.gamma.data(), H, cfg.normEps, o.yOut.data() + b * H);
      }
    }
  }
  return std::nullopt;
}

}  // namespace moedist::ref
