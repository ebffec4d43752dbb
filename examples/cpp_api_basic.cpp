// The README's C++ API example, built and run by the test suite (label examples): 4 ranks as threads dispatch
// and combine through the public API of libmoedist.
#include <moedist/moedist.h>

#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

using moedist::DType;
using moedist::TensorView;

int main() {
  constexpr int W = 4;                               // ranks (threads)
  constexpr int64_t Bs = 4, H = 1024, K = 2, M = 4;  // tokens per rank, hidden size, top-k, MoE experts

  std::vector<moedist::Communicator> ranks;
  moedist::Status st = moedist::Communicator::createInProcess(W, moedist::CommOptions{}, &ranks);
  if (!st.ok()) {
    std::printf("%s\n", st.toString().c_str());
    return 1;
  }

  std::vector<std::thread> threads;
  std::vector<moedist::Status> results(W);
  for (int r = 0; r < W; ++r) {
    threads.emplace_back([&, r] {
      // Inputs: bf16 rows (0x3F80 = 1.0), two distinct experts per token, equal router weights.
      std::vector<uint16_t> x(Bs * H, 0x3F80), residual(Bs * H, 0), gamma(H, 0x3F80);
      std::vector<int32_t> ids(Bs * K);
      for (int64_t t = 0; t < Bs; ++t)
        for (int64_t k = 0; k < K; ++k) ids[t * K + k] = static_cast<int32_t>((r + t + k) % M);
      std::vector<float> weights(Bs * K, 0.5f);

      moedist::DispatchArgs d;
      d.moeExpertNum = M;
      // The output lengths (the shape query): here A = globalBs * min(L, K) = 16 rows, L = M / W = 1 expert.
      moedist::RankAttrs ra;
      moedist::OutputShapes n;
      moedist::Status s = moedist::rankAttrs(ranks[r], /*tp=*/nullptr, &ra);
      if (s.ok()) s = moedist::outputShapes(ra, d, {Bs, H, K, /*elastic=*/false}, &n);
      if (!s.ok()) {
        results[r] = s;
        return;
      }
      std::vector<uint16_t> expandX(n.expandXRows * H);
      std::vector<float> dynamicScales(n.expandXRows), expandScales(n.expandScales);
      std::vector<int32_t> assistInfo(n.assistInfoForCombine), epRecvCounts(n.epRecvCounts);
      std::vector<int64_t> expertTokenNums(n.expertTokenNums);
      d.x = TensorView(x.data(), DType::kBFloat16, {Bs, H});
      d.expertIds = TensorView(ids.data(), DType::kInt32, {Bs, K});
      d.expandX = TensorView(expandX.data(), DType::kBFloat16, {n.expandXRows, H});
      d.dynamicScales = TensorView(dynamicScales.data(), DType::kFloat32, {n.expandXRows});
      d.assistInfoForCombine = TensorView(assistInfo.data(), DType::kInt32, {n.assistInfoForCombine});
      d.expertTokenNums = TensorView(expertTokenNums.data(), DType::kInt64, {n.expertTokenNums});
      d.epRecvCounts = TensorView(epRecvCounts.data(), DType::kInt32, {n.epRecvCounts});
      d.tpRecvCounts = TensorView(nullptr, DType::kInt32, {n.tpRecvCounts});  // tpWorldSize 0: a defined, empty tensor
      d.expandScales = TensorView(expandScales.data(), DType::kFloat32, {n.expandScales});
      s = moedist::dispatchV3(ranks[r], /*tp=*/nullptr, d);
      if (!s.ok()) {
        results[r] = s;
        return;
      }

      // The expert FFN would run here on rows [0, epRecvCounts[W-1]) of expandX; this example returns them as is.
      std::vector<uint16_t> yOut(Bs * H), xOut(Bs * H);
      std::vector<float> rstd(Bs);
      moedist::CombineArgs c;
      c.moeExpertNum = M;
      c.expandX = d.expandX;
      c.expertIds = d.expertIds;
      c.assistInfoForCombine = d.assistInfoForCombine;
      c.epSendCounts = d.epRecvCounts;
      c.tpSendCounts = d.tpRecvCounts;
      c.expertScales = TensorView(weights.data(), DType::kFloat32, {Bs, K});
      c.residualX = TensorView(residual.data(), DType::kBFloat16, {Bs, 1, H});
      c.gamma = TensorView(gamma.data(), DType::kBFloat16, {H});
      c.yOut = TensorView(yOut.data(), DType::kBFloat16, {Bs, 1, H});
      c.rstdOut = TensorView(rstd.data(), DType::kFloat32, {Bs, 1, 1});
      c.xOut = TensorView(xOut.data(), DType::kBFloat16, {Bs, 1, H});
      results[r] = moedist::combineAddRmsNormV2(ranks[r], /*tp=*/nullptr, c);
      // xOut = bf16(0.5 * 1 + 0.5 * 1 + 0) = 1.0 (0x3F80); rstd = 1 / sqrt(1 + eps).
      if (results[r].ok() && r == 0) std::printf("rank 0: xOut[0] = 0x%04X, rstd[0] = %.7f\n", xOut[0], rstd[0]);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < W; ++r)
    if (!results[r].ok()) std::printf("rank %d: %s\n", r, results[r].toString().c_str());
  return 0;
}
