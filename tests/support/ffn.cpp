// The stand-in expert FFN; the formula is documented in ffn.h.
#include "support/ffn.h"

#include <moedist_ref/numeric.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace moedist::testing {

float ffnCoefficient(const FfnRank& rank, int localExpert) {
  float base = 0.5f;
  if (!rank.sharedRank) {
    const float step = 0.125f * static_cast<float>(localExpert % 8);
    base = 1.0f + step;
  }
  float share = 1.0f;
  if (rank.tp2) share = rank.tpIdx == 0 ? 0.75f : 0.25f;
  return base * share;
}

std::vector<uint16_t> expertFfn(const FfnRank& rank, const void* expandX, const float* dynamicScales, int64_t numRows,
                                const int32_t* epRecvCounts) {
  const int64_t H = rank.H;
  std::vector<uint16_t> out(static_cast<size_t>(numRows * H));
  int le = 0;
  for (int64_t i = 0; i < numRows; ++i) {
    if (!rank.tp2 && rank.numLocalExperts > 1) {
      // Advance to the local expert whose rows contain row i.
      while (le < rank.numLocalExperts - 1 &&
             i >= epRecvCounts[static_cast<size_t>((le + 1) * rank.numSourceRanks - 1)])
        ++le;
    }
    const float c = ffnCoefficient(rank, le);
    for (int64_t h = 0; h < H; ++h) {
      float v;
      if (rank.int8) {
        const int8_t q = static_cast<const int8_t*>(expandX)[i * H + h];
        v = static_cast<float>(q) * dynamicScales[i];
      } else {
        uint16_t bits;
        std::memcpy(&bits, static_cast<const uint8_t*>(expandX) + 2 * (i * H + h), sizeof bits);
        v = rank.fp16 ? ref::fp16ToFloat(bits) : ref::bf16ToFloat(bits);
      }
      const float y = v * c;
      out[static_cast<size_t>(i * H + h)] = rank.outFp16 ? ref::floatToFp16(y) : ref::floatToBf16(y);
    }
  }
  return out;
}

FfnRank ffnRankFor(const ref::Config& cfg, int epRank, int tpIdx) {
  FfnRank r;
  r.H = cfg.H;
  r.fp16 = cfg.fp16;
  r.int8 = cfg.quantMode == 2;
  r.outFp16 = ref::combineFp16(cfg);
  r.tp2 = cfg.tp == 2;
  r.tpIdx = r.tp2 ? tpIdx : 0;
  const int srank = cfg.sharedExpertRankNum;
  const int L = cfg.M / (cfg.W - srank);
  int newRank = epRank, weff = cfg.W, srankEff = srank;
  const auto& e = cfg.elasticInfo;
  if (!e.empty() && e[0] != 0) {
    newRank = e[static_cast<size_t>(4 + epRank)];
    weff = e[1];
    srankEff = e[2];
    if (newRank < 0) throw std::invalid_argument("ffnRankFor: rank " + std::to_string(epRank) + " was removed");
  }
  r.sharedRank = newRank < srankEff;
  r.numLocalExperts = r.sharedRank ? 1 : L;
  r.numSourceRanks = weff;
  return r;
}

std::vector<uint16_t> expertFfn(const ref::Config& cfg, int epRank, int tpIdx, const ref::DispatchOutput& out) {
  const FfnRank r = ffnRankFor(cfg, epRank, tpIdx);
  return expertFfn(r, out.expandX.data(), out.dynamicScales.empty() ? nullptr : out.dynamicScales.data(), out.numRows,
                   out.epRecvCounts.data());
}

FfnOutputs runFfn(const ref::Config& cfg, const ref::DispatchOutputs& outs) {
  FfnOutputs res(outs.size());
  for (size_t g = 0; g < outs.size(); ++g) {
    res[g].resize(outs[g].size());
    for (size_t p = 0; p < outs[g].size(); ++p)
      if (outs[g][p].participates) res[g][p] = expertFfn(cfg, static_cast<int>(p), static_cast<int>(g), outs[g][p]);
  }
  return res;
}

}  // namespace moedist::testing
