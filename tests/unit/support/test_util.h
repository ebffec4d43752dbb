// Small builders shared by the tests of the reference model. Expected values in the tests are hand-computed;
// these helpers only assemble inputs and read outputs.
#pragma once

#include <gtest/gtest.h>
#include <moedist_ref/numeric.h>
#include <moedist_ref/reference.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

namespace moedist::ref::test {

inline uint16_t bf(float v) {
  return floatToBf16(v);
}

inline std::vector<uint16_t> bfRow(std::initializer_list<float> vals) {
  std::vector<uint16_t> r;
  for (float v : vals) r.push_back(floatToBf16(v));
  return r;
}

inline Config smallConfig(int W, int M, int K, int H) {
  Config c;
  c.W = W;
  c.M = M;
  c.K = K;
  c.H = H;
  return c;
}

// One rank: Bs tokens whose rows are x (Bs*H bf16 values, row-major), ids (Bs*K).
inline DispatchInput rankInput(int Bs, std::vector<uint16_t> x, std::vector<int32_t> ids,
                               std::vector<uint8_t> mask = {}) {
  DispatchInput d;
  d.Bs = Bs;
  d.x = std::move(x);
  d.expertIds = std::move(ids);
  d.mask = std::move(mask);
  return d;
}

// Rows whose every element is `value(rank, token)` = 10*rank + token + 1, negated at odd h: recognisable rows.
inline std::vector<uint16_t> taggedRows(int rank, int Bs, int H) {
  std::vector<uint16_t> x;
  for (int t = 0; t < Bs; ++t)
    for (int h = 0; h < H; ++h) {
      const float v = static_cast<float>(10 * rank + t + 1);
      x.push_back(floatToBf16(h % 2 ? -v : v));
    }
  return x;
}

// expandX row i of a non-quantized output, as bf16/fp16 bits.
inline std::vector<uint16_t> row16(const DispatchOutput& o, int64_t i, int H) {
  std::vector<uint16_t> r(static_cast<size_t>(H));
  std::memcpy(r.data(), o.expandX.data() + i * H * 2, static_cast<size_t>(H) * 2);
  return r;
}

inline std::vector<int8_t> row8(const DispatchOutput& o, int64_t i, int H) {
  std::vector<int8_t> r(static_cast<size_t>(H));
  std::memcpy(r.data(), o.expandX.data() + i * H, static_cast<size_t>(H));
  return r;
}

inline std::vector<uint16_t> xRow(const DispatchInput& in, int t, int H) {
  return std::vector<uint16_t>(in.x.begin() + t * H, in.x.begin() + (t + 1) * H);
}

// Identity expert FFN: the bf16 rows dispatch produced (quantMode 0, bf16 x), reinterpreted.
inline std::vector<uint16_t> identityRows(const DispatchOutput& o) {
  std::vector<uint16_t> r(o.expandX.size() / 2);
  if (!r.empty()) std::memcpy(r.data(), o.expandX.data(), r.size() * 2);
  return r;
}

// Combine inputs for every participating rank: identity FFN, weights, zero residual (unless given), gamma = 1.
inline CombineInputs identityCombineInputs(const Config& cfg, const DispatchOutputs& dout,
                                           const std::vector<std::vector<std::vector<float>>>& weights) {
  CombineInputs ci(dout.size());
  for (size_t g = 0; g < dout.size(); ++g) {
    ci[g].resize(dout[g].size());
    for (size_t p = 0; p < dout[g].size(); ++p) {
      const DispatchOutput& o = dout[g][p];
      if (!o.participates) continue;
      CombineInput& c = ci[g][p];
      c.expandX = identityRows(o);
      c.assistInfo = o.assistInfo;
      c.epSendCounts = o.epRecvCounts;
      c.tpSendCounts = o.tpRecvCounts;
      c.expertScales = weights[g][p];
      const size_t Bs = c.expertScales.size() / static_cast<size_t>(cfg.K);
      c.residualX.assign(Bs * static_cast<size_t>(cfg.H), floatToBf16(0.0f));
      c.gamma.assign(static_cast<size_t>(cfg.H), floatToBf16(1.0f));
    }
  }
  return ci;
}

inline std::vector<int32_t> triples(std::initializer_list<std::initializer_list<int32_t>> ts) {
  std::vector<int32_t> r;
  for (auto t : ts) r.insert(r.end(), t.begin(), t.end());
  return r;
}

inline std::vector<float> xOutRow(const CombineOutput& o, int t, int H) {
  std::vector<float> r;
  for (int h = 0; h < H; ++h) r.push_back(bf16ToFloat(o.xOut[static_cast<size_t>(t * H + h)]));
  return r;
}

}  // namespace moedist::ref::test
