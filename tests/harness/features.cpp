#include "harness/features.h"

#include <algorithm>

namespace moedist::testing::features {

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

Scenario worldScenario(int W, uint64_t seed) {
  Scenario sc;
  sc.cfg.W = W;
  sc.cfg.M = 2 * W;
  sc.cfg.K = std::min(3, 2 * (W - 1));
  sc.cfg.H = 1056;
  sc.cfg.Z = 1, sc.cfg.C = 1, sc.specialFraction = 0.1, sc.oriX = true;
  sc.cfg.maskDims = 2;
  sc.bs.assign(static_cast<size_t>(W), 9);
  sc.seed = seed + static_cast<uint64_t>(W);
  return sc;
}

Scenario base() {
  Scenario sc;
  sc.cfg.W = 4;
  sc.cfg.M = 8;
  sc.cfg.K = 3;
  sc.cfg.H = 1056;
  sc.bs.assign(4, 7);
  sc.seed = 11;
  return sc;
}

void specials(Scenario& sc) {
  sc.cfg.Z = 2;
  sc.cfg.C = 2;
  sc.cfg.Q = 3;
  sc.specialFraction = 0.35;
  sc.oriX = true;
  sc.constTensors = true;
}

void sharedExperts(Scenario& sc, int S, int Srank) {
  sc.cfg.W = Srank + 4;
  sc.cfg.sharedExpertNum = S;
  sc.cfg.sharedExpertRankNum = Srank;
  sc.cfg.M = 8;
  sc.bs.assign(static_cast<size_t>(sc.cfg.W), 7);
}

void tp2(Scenario& sc) {
  sc.cfg.tp = 2;
  sc.cfg.M = 4;  // TP needs one expert per MoE rank
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"Bf16", [](Scenario&, RunOptions&) {}},
      {"Fp16", [](Scenario& s, RunOptions&) { s.cfg.fp16 = true; }},
      {"QuantDynamic", [](Scenario& s, RunOptions&) { s.cfg.quantMode = 2; }},
      {"QuantDynamicSmoothScales", [](Scenario& s, RunOptions&) { s.cfg.quantMode = 2, s.smoothScales = true; }},
      {"QuantFp16ZeroRow", [](Scenario& s, RunOptions&) { s.cfg.quantMode = 2, s.cfg.fp16 = true, s.zeroRow = true; }},
      {"ExpertTokenNumsCumulative", [](Scenario& s, RunOptions&) { s.cfg.expertTokenNumsType = 0; }},
      {"OneLocalExpert", [](Scenario& s, RunOptions&) { s.cfg.M = 4; }},
      {"FourLocalExperts", [](Scenario& s, RunOptions&) { s.cfg.M = 16; }},
      {"Mask1D", [](Scenario& s, RunOptions&) { s.cfg.maskDims = 1, s.activeTokens = 4; }},
      {"Mask1DNoneActive", [](Scenario& s, RunOptions&) { s.cfg.maskDims = 1, s.activeTokens = 0; }},
      {"Mask1DRandomPrefix", [](Scenario& s, RunOptions&) { s.cfg.maskDims = 1; }},
      {"Mask2D", [](Scenario& s, RunOptions&) { s.cfg.maskDims = 2; }},
      {"GlobalBsWithDifferentBs",
       [](Scenario& s, RunOptions&) {
         s.bs = {1, 7, 3, 5};
       }},
      {"GlobalBsLargerThanNeeded", [](Scenario& s, RunOptions&) { s.cfg.globalBs = 4 * 9; }},
      {"Tp2", [](Scenario& s, RunOptions&) { tp2(s); }},
      {"Tp2Quant", [](Scenario& s, RunOptions&) { tp2(s), s.cfg.quantMode = 2, s.smoothScales = true; }},
      {"Tp2Mask2D", [](Scenario& s, RunOptions&) { tp2(s), s.cfg.maskDims = 2; }},
      {"Tp1CommunicatorOfOne", [](Scenario& s, RunOptions&) { s.cfg.tp = 1; }},
      {"SharedExpert1On1Rank", [](Scenario& s, RunOptions&) { sharedExperts(s, 1, 1); }},
      {"SharedExpert1On2Ranks", [](Scenario& s, RunOptions&) { sharedExperts(s, 1, 2); }},
      {"SharedExperts2On4Ranks", [](Scenario& s, RunOptions&) { sharedExperts(s, 2, 4); }},
      {"SharedExperts4On4Ranks", [](Scenario& s, RunOptions&) { sharedExperts(s, 4, 4); }},
      {"SharedExpertsQuantSmooth",
       [](Scenario& s, RunOptions&) { sharedExperts(s, 2, 2), s.cfg.quantMode = 2, s.smoothScales = true; }},
      {"SharedExpertX2D", [](Scenario& s, RunOptions&) { s.sharedX = SharedXShape::k2D; }},
      {"SharedExpertX3D", [](Scenario& s, RunOptions&) { s.sharedX = SharedXShape::k3D; }},
      {"SpecialExperts", [](Scenario& s, RunOptions&) { specials(s); }},
      {"ZeroExpertsOnly", [](Scenario& s, RunOptions&) { s.cfg.Z = 3, s.specialFraction = 0.5; }},
      {"CopyExpertsOnly", [](Scenario& s, RunOptions&) { s.cfg.C = 3, s.specialFraction = 0.5, s.oriX = true; }},
      {"ConstExpertsOnly",
       [](Scenario& s, RunOptions&) { s.cfg.Q = 3, s.specialFraction = 0.5, s.oriX = true, s.constTensors = true; }},
      {"SpecialsMask2D", [](Scenario& s, RunOptions&) { specials(s), s.cfg.maskDims = 2; }},
      {"CommQuant", [](Scenario& s, RunOptions&) { s.cfg.commQuantMode = 2; }},
      {"CommQuantSharedExperts", [](Scenario& s, RunOptions&) { sharedExperts(s, 1, 2), s.cfg.commQuantMode = 2; }},
      {"ElasticDropOne", [](Scenario& s, RunOptions&) { s.removedRanks = {2}; }},
      {"ElasticDropHalf",
       [](Scenario& s, RunOptions&) {
         s.cfg.W = 8, s.bs.assign(8, 7), s.cfg.M = 16, s.removedRanks = {1, 2, 5, 6};
       }},
      {"ElasticInfoGivenNotActive", [](Scenario& s, RunOptions&) { s.elasticInfoGiven = true; }},
      {"ElasticDropSharedRank", [](Scenario& s, RunOptions&) { sharedExperts(s, 1, 2), s.removedRanks = {1}; }},
      {"ElasticSharedRanksBecomeMoe",
       [](Scenario& s, RunOptions&) { sharedExperts(s, 1, 2), s.removedRanks = {4}, s.sharedRanksAfter = 1; }},
      {"ElasticSpecialsQuant",
       [](Scenario& s, RunOptions&) { specials(s), s.removedRanks = {0}, s.cfg.quantMode = 2, s.smoothScales = true; }},
      {"ElasticMask1DWarmup",
       [](Scenario& s, RunOptions& o) { s.removedRanks = {3}, s.cfg.maskDims = 1, o.warmupDispatch = true; }},
      {"StridedInputs",
       [](Scenario& s, RunOptions& o) {
         specials(s), s.cfg.maskDims = 2, o.stridedInputs = true, s.sharedX = SharedXShape::k2D;
       }},
      {"StridedInputsQuantTp2",
       [](Scenario& s, RunOptions& o) { tp2(s), s.cfg.quantMode = 2, s.smoothScales = true, o.stridedInputs = true; }},
      {"AllToOneExpert", [](Scenario& s, RunOptions&) { s.routing = Routing::kOneExpert, s.hotExpert = 5; }},
      {"RankReceivesNothing", [](Scenario& s, RunOptions&) { s.routing = Routing::kStarveRank, s.starvedRank = 2; }},
      {"KernelThreads3", [](Scenario& s, RunOptions& o) { specials(s), o.kernelThreads = 3; }},
      {"Everything",
       [](Scenario& s, RunOptions& o) {
         sharedExperts(s, 1, 2), specials(s), s.cfg.maskDims = 2, s.cfg.quantMode = 2, s.smoothScales = true;
         s.removedRanks = {3}, o.stridedInputs = true, o.kernelThreads = 2;  // sharedExpertX needs Srank 0
       }},
      {"EverythingTp",
       [](Scenario& s, RunOptions& o) {
         sharedExperts(s, 1, 2), tp2(s), s.cfg.W = 6, s.bs.assign(6, 7), s.cfg.fp16 = true, s.cfg.maskDims = 1;
         s.cfg.quantMode = 2, o.stridedInputs = true, o.kernelThreads = 2;
       }},
      {"EverythingCommQuant",
       [](Scenario& s, RunOptions& o) {
         specials(s), s.cfg.commQuantMode = 2, s.bs = {2, 7, 5, 7}, s.cfg.expertTokenNumsType = 0;
         s.sharedX = SharedXShape::k2D, o.kernelThreads = 2;
       }},
  };
  return all;
}

}  // namespace moedist::testing::features
