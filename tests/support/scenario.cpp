// Deterministic generation of end-to-end test inputs (see scenario.h).
#include "support/scenario.h"

#include <moedist_ref/numeric.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace moedist::testing {

uint64_t Rng::next() {
  state_ += 0x9E3779B97F4A7C15ull;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint32_t Rng::below(uint32_t n) {
  return static_cast<uint32_t>((next() >> 32) % n);
}

float Rng::uniform() {
  return static_cast<float>(next() >> 40) * 0x1p-24f;
}

float Rng::normalish() {
  float s = 0.0f;
  for (int i = 0; i < 4; ++i) s = s + uniform();
  return s - 2.0f;
}

bool Rng::chance(double p) {
  return static_cast<double>(next() >> 11) * 0x1p-53 < p;
}

namespace {

// Independent streams per purpose, group and rank.
enum Stream : uint64_t { kIds = 1, kMask, kX, kScales, kWeights, kResidual, kGamma, kSharedX, kConst };

Rng streamRng(uint64_t seed, Stream s, int g, int p) {
  Rng mix(seed ^ (static_cast<uint64_t>(s) << 48) ^ (static_cast<uint64_t>(g) << 40) ^
          (static_cast<uint64_t>(p) << 20));
  return Rng(mix.next());
}

// Random row values with varied magnitudes: a per-row scale 2^[-4, 4] and, for one element in 16, an extra
// 2^[-8, 0], times an Irwin-Hall sample.
float sampleValue(Rng& rng, int rowExp) {
  float v = rng.normalish() * std::ldexp(1.0f, rowExp);
  if (rng.below(16) == 0) v = v * std::ldexp(1.0f, -static_cast<int>(rng.below(9)));
  return v;
}

uint16_t toBits(bool fp16, float v) {
  return fp16 ? ref::floatToFp16(v) : ref::floatToBf16(v);
}

struct Derived {
  int S = 0, Srank = 0, L = 0, Meff = 0, Weff = 0, SrankEff = 0;
  std::vector<int> newOf;  // physical -> new (-1 removed)
};

Derived derive(const Scenario& sc) {
  const ref::Config cfg = sc.config();
  Derived d;
  d.Srank = cfg.sharedExpertRankNum;
  d.S = (d.Srank == 0 && cfg.sharedExpertNum == 1) ? 0 : cfg.sharedExpertNum;
  if (cfg.W <= d.Srank || cfg.M % (cfg.W - d.Srank) != 0)
    throw std::invalid_argument("scenario: M must be a multiple of W - sharedExpertRankNum");
  d.L = cfg.M / (cfg.W - d.Srank);
  d.Meff = cfg.M;
  d.Weff = cfg.W;
  d.SrankEff = d.Srank;
  d.newOf.resize(static_cast<size_t>(cfg.W));
  for (int r = 0; r < cfg.W; ++r) d.newOf[static_cast<size_t>(r)] = r;
  const auto& e = cfg.elasticInfo;
  if (!e.empty() && e[0] != 0) {
    d.Weff = e[1];
    d.SrankEff = e[2];
    d.Meff = e[3];
    for (int r = 0; r < cfg.W; ++r) d.newOf[static_cast<size_t>(r)] = e[static_cast<size_t>(4 + r)];
  }
  return d;
}

}  // namespace

int Scenario::batch(int epRank) const {
  if (bs.empty()) return 4;
  return bs.at(static_cast<size_t>(epRank));
}

std::vector<int32_t> Scenario::elasticInfo() const {
  if (!elasticInfoGiven && !elasticActive && removedRanks.empty()) return {};
  const int W = cfg.W;
  const int srank = cfg.sharedExpertRankNum;
  const int L = cfg.M / (W - srank);
  std::vector<int32_t> info(static_cast<size_t>(4 + 2 * W), -1);
  const bool active = elasticActive || !removedRanks.empty();
  int next = 0, sharedSurvivors = 0;
  for (int r = 0; r < W; ++r) {
    if (std::find(removedRanks.begin(), removedRanks.end(), r) != removedRanks.end()) continue;
    info[static_cast<size_t>(4 + r)] = next;
    info[static_cast<size_t>(4 + W + next)] = r;
    ++next;
    if (r < srank) ++sharedSurvivors;
  }
  const int srankAfter = sharedRanksAfter >= 0 ? sharedRanksAfter : sharedSurvivors;
  info[0] = active ? 1 : 0;
  info[1] = next;
  info[2] = srankAfter;
  info[3] = L * (next - srankAfter);
  return info;
}

ref::Config Scenario::config() const {
  ref::Config c = cfg;
  if (c.globalBs == 0 && !bs.empty()) {
    const int mx = *std::max_element(bs.begin(), bs.end());
    const int mn = *std::min_element(bs.begin(), bs.end());
    if (mx != mn) c.globalBs = mx * c.W;
  }
  std::vector<int32_t> e = elasticInfo();
  if (!e.empty()) c.elasticInfo = std::move(e);
  return c;
}

bool Scenario::participates(int epRank) const {
  const ref::Config c = config();
  if (c.elasticInfo.empty() || c.elasticInfo[0] == 0) return true;
  return c.elasticInfo[static_cast<size_t>(4 + epRank)] >= 0;
}

std::vector<int64_t> Scenario::sharedExpertXShape(int epRank) const {
  const int64_t b = batch(epRank);
  switch (sharedX) {
    case SharedXShape::kNone:
      return {};
    case SharedXShape::k2D:
      return {b, cfg.H};
    case SharedXShape::k3D:
      return {b, 1, cfg.H};
  }
  return {};
}

std::string Scenario::describe() const {
  const ref::Config c = config();
  std::ostringstream os;
  os << "W=" << c.W << " M=" << c.M << " K=" << c.K << " H=" << c.H;
  if (c.sharedExpertRankNum > 0) os << " S=" << c.sharedExpertNum << "/Srank=" << c.sharedExpertRankNum;
  os << " bs=[";
  for (int r = 0; r < c.W; ++r) os << (r ? "," : "") << batch(r);
  os << "]";
  if (c.globalBs) os << " globalBs=" << c.globalBs;
  if (c.tp) os << " tp=" << c.tp;
  os << " x=" << (c.fp16 ? "fp16" : "bf16");
  if (c.quantMode) os << " quant=" << c.quantMode << (smoothScales ? "(smooth)" : "") << (zeroRow ? "(zeroRow)" : "");
  os << " etn=" << c.expertTokenNumsType;
  if (c.commQuantMode) os << " commQuant=" << c.commQuantMode;
  if (c.maskDims == 1)
    os << " mask=1D(" << (activeTokens >= 0 ? std::to_string(activeTokens) : std::string("rand")) << ")";
  if (c.maskDims == 2) os << " mask=2D";
  if (c.Z + c.C + c.Q > 0) os << " specials=Z" << c.Z << "C" << c.C << "Q" << c.Q << "(frac " << specialFraction << ")";
  switch (routing) {
    case Routing::kUniform:
      os << " routing=uniform";
      break;
    case Routing::kOneExpert:
      os << " routing=oneExpert(" << hotExpert << ")";
      break;
    case Routing::kStarveRank:
      os << " routing=starveRank(" << starvedRank << ")";
      break;
  }
  if (!c.elasticInfo.empty()) {
    os << " elastic=" << (c.elasticInfo[0] ? "on" : "off") << "(W'=" << c.elasticInfo[1]
       << " Srank'=" << c.elasticInfo[2] << " M'=" << c.elasticInfo[3] << " removed{";
    for (size_t i = 0; i < removedRanks.size(); ++i) os << (i ? "," : "") << removedRanks[i];
    os << "})";
  }
  if (sharedX == SharedXShape::k2D) os << " sharedX=2D";
  if (sharedX == SharedXShape::k3D) os << " sharedX=3D";
  if (oriX) os << " oriX";
  if (constTensors) os << " const";
  os << " eps=" << c.normEps << " seed=" << seed;
  return os.str();
}

ref::DispatchInputs Scenario::makeDispatchInputs() const {
  const ref::Config c = config();
  const Derived d = derive(*this);
  const int W = c.W, K = c.K, H = c.H, G = numGroups();
  if (!bs.empty() && static_cast<int>(bs.size()) != W) throw std::invalid_argument("scenario: bs needs W entries");
  const int numSpecial = c.Z + c.C + c.Q;

  // MoE id pool (new id space) and special id pool.
  std::vector<int> moePool;
  for (int e = 0; e < d.Meff; ++e) moePool.push_back(e);
  if (routing == Routing::kStarveRank) {
    if (starvedRank < 0 || starvedRank >= W) throw std::invalid_argument("scenario: starvedRank out of range");
    const int n = d.newOf[static_cast<size_t>(starvedRank)];
    if (n < d.SrankEff) throw std::invalid_argument("scenario: starvedRank must be a surviving MoE rank");
    const int lo = (n - d.SrankEff) * d.L;
    moePool.erase(std::remove_if(moePool.begin(), moePool.end(), [&](int e) { return e >= lo && e < lo + d.L; }),
                  moePool.end());
  }
  if (routing == Routing::kOneExpert && (hotExpert < 0 || hotExpert >= d.Meff))
    throw std::invalid_argument("scenario: hotExpert must be a MoE id < M_eff");
  if (specialFraction > 0 && numSpecial == 0) throw std::invalid_argument("scenario: specialFraction needs Z+C+Q > 0");
  const int usable = static_cast<int>(moePool.size()) + (specialFraction > 0 ? numSpecial : 0);
  if (usable < K) throw std::invalid_argument("scenario: fewer than K distinct ids available");

  // Smooth scales: the same tensor on every rank.
  std::vector<float> scales;
  if (smoothScales) {
    Rng rs = streamRng(seed, kScales, 0, 0);
    scales.resize(static_cast<size_t>(d.S + c.M) * static_cast<size_t>(H));
    for (float& s : scales) s = 0.5f + 1.5f * rs.uniform();
  }

  ref::DispatchInputs in(static_cast<size_t>(G), std::vector<ref::DispatchInput>(static_cast<size_t>(W)));
  for (int g = 0; g < G; ++g) {
    for (int p = 0; p < W; ++p) {
      ref::DispatchInput& di = in[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const int Bs = batch(p);
      di.Bs = Bs;
      di.scales = scales;

      Rng rx = streamRng(seed, kX, g, p);
      di.x.resize(static_cast<size_t>(Bs) * static_cast<size_t>(H));
      for (int b = 0; b < Bs; ++b) {
        const int rowExp = static_cast<int>(rx.below(9)) - 4;
        for (int h = 0; h < H; ++h) di.x[static_cast<size_t>(b * H + h)] = toBits(c.fp16, sampleValue(rx, rowExp));
      }
      if (zeroRow && p == 0)
        for (int h = 0; h < H; ++h) di.x[static_cast<size_t>(h)] = 0;

      Rng ri = streamRng(seed, kIds, g, p);
      di.expertIds.resize(static_cast<size_t>(Bs) * static_cast<size_t>(K));
      for (int b = 0; b < Bs; ++b) {
        std::vector<int> chosen;
        auto taken = [&](int e) { return std::find(chosen.begin(), chosen.end(), e) != chosen.end(); };
        // Draws an unused id from a pool (rejection first, then a scan); returns -1 when the pool is used up.
        auto draw = [&](auto&& idAt, int poolSize) -> int {
          if (poolSize <= 0) return -1;
          for (int attempt = 0; attempt < 32; ++attempt) {
            const int e = idAt(static_cast<int>(ri.below(static_cast<uint32_t>(poolSize))));
            if (!taken(e)) return e;
          }
          const int start = static_cast<int>(ri.below(static_cast<uint32_t>(poolSize)));
          for (int i = 0; i < poolSize; ++i) {
            const int e = idAt((start + i) % poolSize);
            if (!taken(e)) return e;
          }
          return -1;
        };
        auto moeAt = [&](int i) { return moePool[static_cast<size_t>(i)]; };
        auto specialAt = [&](int i) { return c.M + i; };
        int hotSlot = -1;
        if (routing == Routing::kOneExpert) hotSlot = static_cast<int>(ri.below(static_cast<uint32_t>(K)));
        std::vector<int> ids(static_cast<size_t>(K), -1);
        if (hotSlot >= 0) {
          ids[static_cast<size_t>(hotSlot)] = hotExpert;
          chosen.push_back(hotExpert);
        }
        for (int k = 0; k < K; ++k) {
          if (k == hotSlot) continue;
          const bool wantSpecial = specialFraction > 0 && ri.chance(specialFraction);
          int e = wantSpecial ? draw(specialAt, numSpecial) : draw(moeAt, static_cast<int>(moePool.size()));
          if (e < 0) e = wantSpecial ? draw(moeAt, static_cast<int>(moePool.size())) : draw(specialAt, numSpecial);
          if (e < 0) throw std::invalid_argument("scenario: cannot draw K distinct ids");
          ids[static_cast<size_t>(k)] = e;
          chosen.push_back(e);
        }
        for (int k = 0; k < K; ++k) di.expertIds[static_cast<size_t>(b * K + k)] = ids[static_cast<size_t>(k)];
      }

      Rng rm = streamRng(seed, kMask, g, p);
      if (c.maskDims == 1) {
        const int n =
            activeTokens >= 0 ? std::min(activeTokens, Bs) : static_cast<int>(rm.below(static_cast<uint32_t>(Bs + 1)));
        di.mask.assign(static_cast<size_t>(Bs), 0);
        for (int b = 0; b < n; ++b) di.mask[static_cast<size_t>(b)] = 1;
      } else if (c.maskDims == 2) {
        di.mask.assign(static_cast<size_t>(Bs) * static_cast<size_t>(K), 0);
        for (int b = 0; b < Bs; ++b) {
          if (rm.chance(allFalseRowFraction)) continue;
          bool any = false;
          for (int k = 0; k < K; ++k) {
            const bool on = !rm.chance(falseSlotFraction);
            di.mask[static_cast<size_t>(b * K + k)] = on ? 1 : 0;
            any = any || on;
          }
          if (!any) di.mask[static_cast<size_t>(b * K + static_cast<int>(rm.below(static_cast<uint32_t>(K))))] = 1;
        }
      }
    }
  }
  return in;
}

ref::CombineInputs Scenario::makeCombineInputs(const ref::DispatchOutputs& dispatchOut,
                                               const FfnOutputs& ffnOut) const {
  const ref::Config c = config();
  const int W = c.W, K = c.K, H = c.H, G = numGroups();
  const bool half = ref::combineFp16(c);  // CombineV2/V3 with an fp16 x take fp16 rows
  ref::DispatchInputs din;
  if (oriX) din = makeDispatchInputs();
  if (static_cast<int>(dispatchOut.size()) != G || static_cast<int>(ffnOut.size()) != G)
    throw std::invalid_argument("scenario: dispatch / FFN outputs need one entry per TP group");

  ref::CombineInputs in(static_cast<size_t>(G), std::vector<ref::CombineInput>(static_cast<size_t>(W)));
  for (int g = 0; g < G; ++g) {
    for (int p = 0; p < W; ++p) {
      const ref::DispatchOutput& o = dispatchOut[static_cast<size_t>(g)][static_cast<size_t>(p)];
      if (!o.participates) continue;
      ref::CombineInput& ci = in[static_cast<size_t>(g)][static_cast<size_t>(p)];
      const int Bs = batch(p);
      const size_t BsH = static_cast<size_t>(Bs) * static_cast<size_t>(H);
      ci.expandX = ffnOut[static_cast<size_t>(g)][static_cast<size_t>(p)];
      ci.assistInfo = o.assistInfo;
      ci.epSendCounts = o.epRecvCounts;
      ci.tpSendCounts = o.tpRecvCounts;

      Rng rw = streamRng(seed, kWeights, g, p);
      ci.expertScales.resize(static_cast<size_t>(Bs) * static_cast<size_t>(K));
      for (float& w : ci.expertScales) w = rw.uniform();

      Rng rr = streamRng(seed, kResidual, g, p);
      ci.residualX.resize(BsH);
      for (uint16_t& v : ci.residualX) v = ref::floatToBf16(rr.normalish());
      Rng rgm = streamRng(seed, kGamma, 0, 0);  // gamma: the same weights on every rank
      ci.gamma.resize(static_cast<size_t>(H));
      for (uint16_t& v : ci.gamma) v = ref::floatToBf16(1.0f + 0.25f * rgm.normalish());

      if (sharedX != SharedXShape::kNone) {
        Rng rs = streamRng(seed, kSharedX, g, p);
        ci.sharedExpertX.resize(BsH);
        for (uint16_t& v : ci.sharedExpertX) v = toBits(half, rs.normalish());
      }
      if (oriX) {
        const auto& x = din[static_cast<size_t>(g)][static_cast<size_t>(p)].x;
        ci.oriX.resize(BsH);
        for (size_t i = 0; i < BsH; ++i) ci.oriX[i] = c.fp16 && !half ? ref::floatToBf16(ref::fp16ToFloat(x[i])) : x[i];
      }
      if (constTensors) {
        Rng rc = streamRng(seed, kConst, 0, 0);  // the same constants on every rank
        ci.alpha1.resize(static_cast<size_t>(c.Q));
        ci.alpha2.resize(static_cast<size_t>(c.Q));
        ci.constV.resize(static_cast<size_t>(c.Q) * static_cast<size_t>(H));
        for (uint16_t& v : ci.alpha1) v = toBits(half, rc.normalish());
        for (uint16_t& v : ci.alpha2) v = toBits(half, rc.normalish());
        for (uint16_t& v : ci.constV) v = toBits(half, rc.normalish());
      }
    }
  }
  return in;
}

ref::CombineInputs Scenario::makeCombineInputs(const ref::DispatchOutputs& dispatchOut) const {
  return makeCombineInputs(dispatchOut, runFfn(config(), dispatchOut));
}

}  // namespace moedist::testing
