// Shared by the CANN example programs and by their checker (tests/cann/examples_test.cpp): the examples'
// configurations, the closed-form inputs of one rank, and the digest lines each example prints.
//
// Plain C++ with standard headers only, so that the checker can build the same inputs for the reference model.
// Every input value is a small multiple of a power of two, exactly representable in bf16 and fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

namespace moedist_examples {

// One example's attributes (the same on every rank).
struct ExampleConfig {
  int64_t W;   // epWorldSize (before any scale-in)
  int64_t tp;  // tpWorldSize (1: no TP)
  int64_t Bs, H, K;
  int64_t M;        // moeExpertNum
  int64_t Z, C, Q;  // zero / copy / const experts
  // Elastic scale-in (0 when not used): the ranks after scale-in and the MoE experts they keep.
  int64_t Wafter = 0, Mafter = 0;
  std::vector<int32_t> elasticInfo = {};  // 4 + 2W int32, or empty

  int64_t L() const { return M / W; }                             // MoE experts per rank
  int64_t globalBs() const { return Bs * W; }                     // the globalBS attribute
  int64_t A() const { return globalBs() * (L() < K ? L() : K); }  // expandX row capacity (per TP rank)
};

// (a) basic_pipeline: 8 devices, 2 MoE experts per rank, plus 2 zero, 2 copy and 2 const experts.
inline ExampleConfig basicPipelineConfig() {
  return ExampleConfig{8, 1, 16, 1024, 4, 16, 2, 2, 2};
}

// (b) elastic_scale_in: 8 devices; ranks 2-5 are removed, the 4 survivors are renumbered 0..3 and keep L = 2
// experts each (M' = 8).
inline ExampleConfig elasticScaleInConfig() {
  ExampleConfig c{8, 1, 16, 1024, 4, 16, 0, 0, 0};
  c.Wafter = 4;
  c.Mafter = c.L() * c.Wafter;
  c.elasticInfo = {1, static_cast<int32_t>(c.Wafter), 0, static_cast<int32_t>(c.Mafter),
                   // table1: physical rank -> new id (-1: removed)
                   0, 1, -1, -1, -1, -1, 2, 3,
                   // table2: new id -> physical rank
                   0, 1, 6, 7, -1, -1, -1, -1};
  return c;
}
inline bool elasticSurvivor(int64_t rank) {
  return rank < 2 || rank > 5;
}

// (c) tp2: 4 EP ranks x 2 TP ranks = 8 devices, one expert per EP rank. Device d is EP rank d / 2, TP rank d % 2.
inline ExampleConfig tp2Config() {
  return ExampleConfig{4, 2, 8, 1024, 3, 4, 0, 0, 0};
}

// (d) mpi_pipeline and fork_pipeline: one process per device (MPI processes, or processes forked without MPI), W EP
// ranks x tp TP ranks (tp 1 or 2), plus 2 zero, 2 copy and 2
// const experts; 2 MoE experts per EP rank without TP, 1 with TP (CANN allows no more with TP 2). Process p is EP
// rank p / tp and TP rank p % tp (as device p in tp2).
inline ExampleConfig mpiPipelineConfig(int64_t W, int64_t tp) {
  return ExampleConfig{W, tp, 16, 1024, 4, (tp == 2 ? 1 : 2) * W, 2, 2, 2};
}

// ---- numbers ----

// bf16 bits of a float (round to nearest even; the inputs below are exact anyway).
inline uint16_t bf16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// ---- the inputs of one rank (`rank` is the device / physical rank id) ----

struct RankInputs {
  std::vector<uint16_t> x;          // (Bs, H) bf16
  std::vector<int32_t> expertIds;   // (Bs, K)
  std::vector<float> expertScales;  // (Bs, K)
  std::vector<uint16_t> residualX;  // (Bs, 1, H) bf16
  std::vector<uint16_t> gamma;      // (H) bf16
  std::vector<uint16_t> oriX;       // (Bs, H) bf16, with special experts
  std::vector<uint16_t> alpha1;     // (Q) bf16
  std::vector<uint16_t> alpha2;     // (Q) bf16
  std::vector<uint16_t> constV;     // (Q, H) bf16
};

// moeIds: the MoE ids in use ([0, moeIds)); special ids are [M, M+Z+C+Q). Each token picks K distinct ids from
// that pool: pool[(base + k*step) % n] with step coprime to n.
inline RankInputs makeRankInputs(const ExampleConfig& c, int64_t rank, int64_t moeIds) {
  RankInputs in;
  const int64_t Bs = c.Bs, H = c.H, K = c.K;
  std::vector<int32_t> pool;
  for (int64_t e = 0; e < moeIds; ++e) pool.push_back(static_cast<int32_t>(e));
  for (int64_t e = c.M; e < c.M + c.Z + c.C + c.Q; ++e) pool.push_back(static_cast<int32_t>(e));
  const int64_t n = static_cast<int64_t>(pool.size());
  int64_t step = 3;
  while (std::gcd(step, n) != 1) ++step;

  in.x.resize(Bs * H);
  in.residualX.resize(Bs * H);
  in.oriX.resize(Bs * H);
  for (int64_t t = 0; t < Bs; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      in.x[t * H + h] = bf16Bits(static_cast<float>((rank * 31 + t * 7 + h * 3) % 17 - 8) / 16.0f);
      in.residualX[t * H + h] = bf16Bits(static_cast<float>((rank + 2 * t + h) % 9 - 4) / 8.0f);
      in.oriX[t * H + h] = bf16Bits(static_cast<float>((rank * 3 + t + 2 * h) % 11 - 5) / 16.0f);
    }
  }
  for (int64_t t = 0; t < Bs; ++t) {
    const int64_t base = (rank * 5 + t * 3 + (t * t) / 3) % n;
    for (int64_t k = 0; k < K; ++k) {
      in.expertIds.push_back(pool[(base + k * step) % n]);
      in.expertScales.push_back(static_cast<float>(1 + (rank + t + k) % 4) / 8.0f);
    }
  }
  for (int64_t h = 0; h < H; ++h) in.gamma.push_back(bf16Bits(1.0f + static_cast<float>(h % 5) / 8.0f));
  for (int64_t q = 0; q < c.Q; ++q) {
    in.alpha1.push_back(bf16Bits(0.5f + static_cast<float>(q) / 4.0f));
    in.alpha2.push_back(bf16Bits(0.25f * static_cast<float>(q + 1)));
    for (int64_t h = 0; h < H; ++h)
      in.constV.push_back(bf16Bits(static_cast<float>(h % 7 - 3) / 8.0f + static_cast<float>(q)));
  }
  return in;
}

// ---- digests and the printed lines ----

// FNV-1a 64 over bytes.
inline uint64_t fnv1a(const void* data, size_t bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

// The digests of one rank's written outputs: expandX (numRows rows: own rows, then the TP peer's), assistInfo
// (3 * Nown ints), epRecvCounts (the written entries), and every token's xOut / yOut / rstd row.
struct RankDigests {
  uint64_t expandX, assistInfo, epRecvCounts, xOut, yOut, rstd;
};

// The digests of one rank, from its output buffers and the prefix lengths that were written.
inline RankDigests digestOutputs(const ExampleConfig& c, const uint16_t* expandX, int64_t numRows,
                                 const int32_t* assistInfo, int64_t nOwn, const int32_t* epRecvCounts,
                                 int64_t nEpRecvCounts, const uint16_t* xOut, const uint16_t* yOut, const float* rstd) {
  RankDigests d;
  d.expandX = fnv1a(expandX, static_cast<size_t>(numRows * c.H) * sizeof(uint16_t));
  d.assistInfo = fnv1a(assistInfo, static_cast<size_t>(3 * nOwn) * sizeof(int32_t));
  d.epRecvCounts = fnv1a(epRecvCounts, static_cast<size_t>(nEpRecvCounts) * sizeof(int32_t));
  d.xOut = fnv1a(xOut, static_cast<size_t>(c.Bs * c.H) * sizeof(uint16_t));
  d.yOut = fnv1a(yOut, static_cast<size_t>(c.Bs * c.H) * sizeof(uint16_t));
  d.rstd = fnv1a(rstd, static_cast<size_t>(c.Bs) * sizeof(float));
  return d;
}

// "rank 3: expandX <hex> assistInfo <hex> epRecvCounts <hex> xOut <hex> yOut <hex> rstd <hex>"
inline std::string digestLine(int64_t rank, const RankDigests& d) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "rank %lld: expandX %016llx assistInfo %016llx epRecvCounts %016llx xOut %016llx yOut %016llx "
                "rstd %016llx",
                static_cast<long long>(rank), static_cast<unsigned long long>(d.expandX),
                static_cast<unsigned long long>(d.assistInfo), static_cast<unsigned long long>(d.epRecvCounts),
                static_cast<unsigned long long>(d.xOut), static_cast<unsigned long long>(d.yOut),
                static_cast<unsigned long long>(d.rstd));
  return buf;
}

}  // namespace moedist_examples
