// One end-to-end test case (dispatch -> stand-in FFN -> combine) described by a handful of knobs, and the
// deterministic generation of all ranks' inputs from it. Generated data always respects the SPEC contract:
// expert ids valid and distinct within each token's top-k, MoE ids < M' under elastic scale-in, masks in
// prefix form, Bs <= globalBs / W.
//
// Typical use:
//   Scenario sc;  sc.cfg.W = 4; sc.cfg.M = 8; sc.cfg.K = 2; sc.cfg.H = 128; sc.bs = {4, 4, 4, 4}; sc.seed = 7;
//   ref::Config cfg = sc.config();
//   auto din = sc.makeDispatchInputs();
//   ref::DispatchOutputs dout;  ref::dispatch(cfg, din, &dout);
//   auto cin = sc.makeCombineInputs(dout);              // runs the stand-in FFN (ffn.h)
//   ref::CombineOutputs cout;   ref::combine(cfg, din, cin, &cout);
#pragma once

#include <moedist_ref/reference.h>

#include <cstdint>
#include <string>
#include <vector>

#include "support/ffn.h"

namespace moedist::testing {

enum class Routing {
  kUniform,     // K distinct ids per token, uniformly from the MoE ids [0, M_eff)
  kOneExpert,   // every token's K distinct ids include hotExpert (the rest uniform)
  kStarveRank,  // no id of starvedRank's MoE experts: that rank receives no MoE rows
};

enum class SharedXShape { kNone, k2D, k3D };  // sharedExpertX absent, (Bs, H), or (Bs, 1, H)

struct Scenario {
  // Attributes. config() derives globalBs (when bs differ and cfg.globalBs is 0) and elasticInfo (when any elastic
  // knob below is set); cfg.maskDims selects the mask pattern: 1 -> prefix of activeTokens, 2 -> random 2-D.
  ref::Config cfg;
  std::vector<int> bs;  // Bs per EP rank (W entries; empty: 4 on every rank); the same in both TP groups
  uint64_t seed = 1;

  // Routing.
  Routing routing = Routing::kUniform;
  int hotExpert = 0;             // kOneExpert: a MoE id (< M_eff)
  int starvedRank = -1;          // kStarveRank: a physical rank hosting MoE experts (after scale-in)
  double specialFraction = 0.0;  // probability that a slot takes a special id (needs Z+C+Q > 0), on any routing

  // Masks.
  int activeTokens = -1;              // 1-D: active prefix length per rank (clamped to Bs); -1: random in [0, Bs]
  double allFalseRowFraction = 0.25;  // 2-D: probability of an all-false row
  double falseSlotFraction = 0.3;     // 2-D: probability of a false slot in other rows (each keeps >= 1 true)

  // Elastic scale-in: elasticInfo is built when elasticInfoGiven, elasticActive or removedRanks is set;
  // isElastic = 1 when elasticActive or removedRanks is non-empty, else 0 (the tensor is passed but ignored).
  // Survivors are renumbered in ascending physical order (so surviving shared ranks come first);
  // W' = survivors, Srank' = sharedRanksAfter (-1: the number of surviving shared ranks), M' = L * (W' - Srank').
  bool elasticInfoGiven = false;
  bool elasticActive = false;
  std::vector<int> removedRanks;  // physical ranks
  int sharedRanksAfter = -1;

  // Dispatch extras.
  bool smoothScales = false;  // quantMode 2: pass (S + M, H) smooth scales
  bool zeroRow = false;       // token 0 of rank 0 (each TP group) is all zeros

  // Combine optional tensors.
  SharedXShape sharedX = SharedXShape::kNone;
  bool oriX = false;          // pass oriX (x in the combine's dtype, ref::combineFp16); needed when C > 0 or Q > 0
  bool constTensors = false;  // pass constExpertAlpha1/Alpha2/V; needed when Q > 0

  // Derived values.
  ref::Config config() const;  // cfg + globalBs + elasticInfo
  int numGroups() const { return cfg.tp == 2 ? 2 : 1; }
  int batch(int epRank) const;               // Bs of an EP rank
  std::vector<int32_t> elasticInfo() const;  // empty when no elastic knob is set (then cfg.elasticInfo is used)
  bool participates(int epRank) const;
  std::vector<int64_t> sharedExpertXShape(int epRank) const;  // {} without sharedExpertX
  std::string describe() const;                               // one readable line

  // Inputs. Throws std::invalid_argument when the knobs cannot be satisfied (e.g. too few ids for K distinct).
  ref::DispatchInputs makeDispatchInputs() const;
  // Combine inputs from dispatch outputs: expert-side tensors from `dispatchOut` and `ffnOut` (expandX rows per
  // [tpIdx][epRank]); expertScales, residualX, gamma and the optional tensors generated from the seed.
  ref::CombineInputs makeCombineInputs(const ref::DispatchOutputs& dispatchOut, const FfnOutputs& ffnOut) const;
  // The same with ffnOut = runFfn(config(), dispatchOut).
  ref::CombineInputs makeCombineInputs(const ref::DispatchOutputs& dispatchOut) const;
};

// splitmix64-based generator used by the scenario (exposed for tests that want more deterministic data).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  uint32_t below(uint32_t n);  // uniform in [0, n), n > 0
  float uniform();             // [0, 1), 24 random bits
  float normalish();           // Irwin-Hall(4) centred: in (-2, 2), mean 0, variance 1/3
  bool chance(double p);

 private:
  uint64_t state_;
};

}  // namespace moedist::testing
