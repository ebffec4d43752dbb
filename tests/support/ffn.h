// A deterministic stand-in for the expert FFN that runs between dispatch and combine, used by the tests and by
// `moedist run`. Written apart from the library (reference-model side).
//
// Formula. For row i of a rank's dispatch expandX (all numRows = Nown + Npeer rows are processed):
//   v_h   = f(x_h)                                   bf16 / fp16 rows, exact widening
//         = fl(float(q_h) * dynamicScales[i])        int8 rows (quantMode 2)
//   out_h = bf16(fl(v_h * c))                        round to nearest even (fp16 when the combine is CombineV2/V3
//                                                    with an fp16 x: ref::combineFp16)
//   c     = fl(base * share)
//   base  = 0.5                                       on a shared-expert rank
//         = 1 + 0.125 * (le mod 8)                    on a MoE rank, le = local expert of row i
//   share = 1 (no TP); 0.75 on TP rank 0 and 0.25 on TP rank 1, so that the TP pair's partial results differ and
//           their sum (combine's TP reduce) is about v * base.
// The local expert of row i (MoE rank, no TP) is the le with epRecvCounts[le*W_eff - 1] <= i <
// epRecvCounts[(le+1)*W_eff - 1] (epRecvCounts[-1] read as 0). With TP (one local expert) every row has le = 0.
#pragma once

#include <moedist_ref/reference.h>

#include <cstdint>
#include <vector>

namespace moedist::testing {

// What the FFN needs to know about the rank that runs it.
struct FfnRank {
  int H = 0;
  bool fp16 = false;        // dtype of the dispatch x (rows are bf16 unless this is set); ignored with int8
  bool int8 = false;        // quantMode 2: rows are int8 with one fp32 dynamic scale each
  bool outFp16 = false;     // return fp16 rows (else bf16)
  bool sharedRank = false;  // a shared-expert rank (role after elastic scale-in)
  int numLocalExperts = 1;  // L on MoE ranks, 1 on shared ranks
  int numSourceRanks = 1;   // W_eff: receive blocks per local expert in epRecvCounts
  bool tp2 = false;         // tp == 2
  int tpIdx = 0;            // tp rank id (0 without TP)
};

// The coefficient c of the formula above for local expert `localExpert`.
float ffnCoefficient(const FfnRank& rank, int localExpert);

// Runs the FFN on numRows rows. expandX: numRows*H elements (uint16 bf16/fp16 bits, or int8); dynamicScales:
// numRows floats (int8 only, else may be null); epRecvCounts: the rank's epRecvCounts (at least numLocalExperts *
// numSourceRanks entries when numLocalExperts > 1, else unused). Returns numRows*H bf16 (or fp16) values.
std::vector<uint16_t> expertFfn(const FfnRank& rank, const void* expandX, const float* dynamicScales, int64_t numRows,
                                const int32_t* epRecvCounts);

// The FfnRank of physical EP rank epRank in TP group tpIdx under cfg (elasticInfo decides the role and W_eff).
// Throws std::invalid_argument for a rank removed by elastic scale-in.
FfnRank ffnRankFor(const ref::Config& cfg, int epRank, int tpIdx);

// Runs the FFN on one rank's reference dispatch output.
std::vector<uint16_t> expertFfn(const ref::Config& cfg, int epRank, int tpIdx, const ref::DispatchOutput& out);

// [tpIdx][epRank] FFN outputs for all participating ranks (empty for removed ranks).
using FfnOutputs = std::vector<std::vector<std::vector<uint16_t>>>;
FfnOutputs runFfn(const ref::Config& cfg, const ref::DispatchOutputs& outs);

}  // namespace moedist::testing
