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
  constexpr int64_t A = Bs * W * 1;                  // row capacity: globalBs * min(L, K), L = M / W = 1

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
      // Dispatch outputs, sized as docs/operators/dispatch.md says.
      std::vector<uint16_t> expandX(A * H);
      std::vector<float> dynamicScales(A), expandScales(A);
      std::vector<int32_t> assistInfo(A * 128), epRecvCounts(W * 1);
      std::vector<int64_t> expertTokenNums(1);

      moedist::DispatchArgs d;
      d.moeExpertNum = M;
      d.x = TensorView(x.data(), DType::kBFloat16, {Bs, H});
      d.expertIds = TensorView(ids.data(), DType::kInt32, {Bs, K});
      d.expandX = TensorView(expandX.data(), DType::kBFloat16, {A, H});
      d.dynamicScales = TensorView(dynamicScales.data(), DType::kFloat32, {A});
      d.assistInfoForCombine = TensorView(assistInfo.data(), DType::kInt32, {A * 128});
      d.expertTokenNums = TensorView(expertTokenNums.data(), DType::kInt64, {1});
      d.epRecvCounts = TensorView(epRecvCounts.data(), DType::kInt32, {W * 1});
      d.tpRecvCounts = TensorView(nullptr, DType::kInt32, {0});  // tpWorldSize 0: a defined, empty tensor
      d.expandScales = TensorView(expandScales.data(), DType::kFloat32, {A});
      moedist::Status s = moedist::dispatch(ranks[r], /*tp=*/nullptr, d);
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
      results[r] = moedist::combineAddRmsNorm(ranks[r], /*tp=*/nullptr, c);
      // xOut = bf16(0.5 * 1 + 0.5 * 1 + 0) = 1.0 (0x3F80); rstd = 1 / sqrt(1 + eps).
      if (results[r].ok() && r == 0) std::printf("rank 0: xOut[0] = 0x%04X, rstd[0] = %.7f\n", xOut[0], rstd[0]);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < W; ++r)
    if (!results[r].ok()) std::printf("rank %d: %s\n", r, results[r].toString().c_str());
  return 0;
}
