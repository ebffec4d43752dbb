// One operator call as core sees it: the public argument structs plus the values CANN passes explicitly
// (world sizes and rank ids), and the derived geometry that validation computes (SPEC section 1).
#pragma once

#include <cstdint>

#include "moedist/args.h"

namespace moedist::core {

// The operator (moedist::Operator, for messages and for the features each variant switches off, SPEC section 9) and
// the rank attributes (moedist::RankAttrs) are the public vocabulary of moedist/args.h.

struct DispatchCall {
  Operator op = Operator::kDispatchV3;
  RankAttrs ranks;
  const DispatchArgs* args = nullptr;
};

struct CombineCall {
  Operator op = Operator::kCombineAddRmsNormV2;
  RankAttrs ranks;
  const CombineArgs* args = nullptr;
};

// Derived quantities of SPEC section 1, valid after validation succeeded.
struct Geometry {
  int64_t W = 0;      // epWorldSize as passed
  int64_t r = 0;      // epRankId
  int64_t M = 0;      // moeExpertNum
  int64_t S = 0;      // effective sharedExpertNum (CANN's default 1 becomes 0 when Srank == 0)
  int64_t Srank = 0;  // sharedExpertRankNum
  int64_t R = 0;      // ranks per shared expert, Srank / S (0 when S == 0)
  int64_t L = 0;      // MoE experts per MoE rank, M / (W - Srank)
  int64_t Z = 0, C = 0, Q = 0;
  int64_t K = 0;         // top-k
  int64_t H = 0;         // hidden size
  int64_t Bs = 0;        // local tokens
  int64_t globalBs = 0;  // effective: the attribute, or Bs * W when it is 0
  int64_t maxBs = 0;     // globalBs / W
  int64_t tp = 0;        // tpWorldSize (0 or 1: no TP)
  int64_t tpr = 0;
  int64_t A = 0;               // output row capacity of this rank (SPEC section 1)
  int64_t localExpertNum = 0;  // expertTokenNums length: 1 on a shared rank, L on a MoE rank, L with elasticInfo
  bool sharedRank = false;     // r < Srank
  bool specials = false;       // Z + C + Q > 0
  bool elastic = false;        // elasticInfo given (its flag may still say "not elastic")
  bool twoDimMask = false;     // xActiveMask is (Bs, K)
};

}  // namespace moedist::core
