// `moedist`: the command-line tool.
//
//   moedist run   dispatch -> stand-in expert FFN -> combine on in-process ranks, every output checked bit for bit
//                 against the reference model, with a readable summary (configuration, rows received per rank,
//                 match status, time per call next to the machine's copy bandwidth).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "copy_bandwidth.h"
#include "harness/pipeline.h"

namespace {

using moedist::testing::RankResult;
using moedist::testing::RunOptions;
using moedist::testing::RunResult;
using moedist::testing::Scenario;

struct RunFlags {
  int worldSize = 8, tokens = 8, hidden = 7168, topk = 3, experts = 8;
  int zeroExperts = 7, copyExperts = 8, constExperts = 10;
  double specialFraction = 0.3;
  int sharedExperts = 0, sharedExpertRanks = 0;
  int tp = 0, quantMode = 0, commQuantMode = 0, globalBs = 0, expertTokenNumsType = 1;
  bool smoothScales = false, fp16 = false, elastic = false, strided = false, noCheck = false, noSharedX = false;
  bool noBaseline = false;
  std::string mask = "none";
  std::vector<int> removeRanks;
  int layers = 3, kernelThreads = 1, timeoutMs = 120000;
  uint64_t seed = 1;
};

Scenario scenarioFrom(const RunFlags& f) {
  Scenario sc;
  auto& c = sc.cfg;
  c.W = f.worldSize;
  c.M = f.experts;
  c.K = f.topk;
  c.H = f.hidden;
  c.Z = f.zeroExperts;
  c.C = f.copyExperts;
  c.Q = f.constExperts;
  c.sharedExpertNum = f.sharedExperts;
  c.sharedExpertRankNum = f.sharedExpertRanks;
  c.globalBs = f.globalBs;
  c.tp = f.tp;
  c.fp16 = f.fp16;
  c.quantMode = f.quantMode;
  c.commQuantMode = f.commQuantMode;
  c.expertTokenNumsType = f.expertTokenNumsType;
  c.maskDims = f.mask == "1d" ? 1 : f.mask == "2d" ? 2 : 0;
  sc.bs.assign(static_cast<size_t>(f.worldSize), f.tokens);
  sc.seed = f.seed;
  const bool specials = f.zeroExperts + f.copyExperts + f.constExperts > 0;
  sc.specialFraction = specials ? f.specialFraction : 0.0;
  sc.oriX = f.copyExperts + f.constExperts > 0;
  sc.constTensors = f.constExperts > 0;
  sc.smoothScales = f.smoothScales;
  // The seed example passes a (Bs, 1, H) sharedExpertX; CANN allows it only without shared-expert ranks.
  sc.sharedX = f.noSharedX || f.sharedExpertRanks > 0 ? moedist::testing::SharedXShape::kNone
                                                      : moedist::testing::SharedXShape::k3D;
  sc.removedRanks = f.removeRanks;
  if (f.elastic && sc.removedRanks.empty()) {
    // The seed example drops ranks 2-5 of 8; other sizes drop the same share from the middle.
    for (int r = f.worldSize / 4; r < f.worldSize * 3 / 4; ++r) sc.removedRanks.push_back(r);
  }
  return sc;
}

std::string rowsTable(const RunResult& r, int W, int groups) {
  std::string out = "  rank     ";
  for (int e = 0; e < W; ++e) out += fmt::format("{:>6}", e);
  out += "\n";
  for (int g = 0; g < groups; ++g) {
    out += groups > 1 ? fmt::format("  tp {} own ", g) : std::string("  rows     ");
    for (int e = 0; e < W; ++e) {
      const RankResult& rank = r.ranks[static_cast<size_t>(g * W + e)];
      out += rank.participates ? fmt::format("{:>6}", rank.ownRows) : fmt::format("{:>6}", "-");
    }
    out += "\n";
  }
  return out;
}

int run(const RunFlags& f) {
  const Scenario sc = scenarioFrom(f);
  RunOptions o;
  o.kernelThreads = f.kernelThreads;
  o.timeout = std::chrono::milliseconds(f.timeoutMs);
  o.layers = f.layers;
  o.warmupDispatch = !sc.removedRanks.empty();  // as the seed example: the full world first, then the survivors
  o.stridedInputs = f.strided;
  o.check = !f.noCheck;
  const int groups = sc.numGroups();
  const char* kernels = std::getenv("MOEDIST_KERNELS");

  fmt::print("moedist run\n  {}\n", sc.describe());
  fmt::print("  engine: in-process, {} ranks as threads, {} kernel thread(s) per rank, kernels {}\n",
             f.worldSize * groups, f.kernelThreads, kernels != nullptr ? kernels : "cpu");
  if (!f.noBaseline) fmt::print("  baseline: the same run with the scalar reference kernels (\"ref\")\n");
  RunResult r;
  try {
    r = moedist::testing::runScenario(sc, o);
  } catch (const std::exception& e) {
    fmt::print(stderr, "moedist run: {}\n", e.what());
    return 2;
  }
  fmt::print("\nrows received per rank (dispatch, own EP rows; '-' = removed by scale-in):\n{}",
             rowsTable(r, f.worldSize, groups));
  if (!r.ok()) {
    fmt::print("\nresult: FAIL\n{}", r.summary());
    return 1;
  }
  // The baseline, side by side in the same run: the same scenario with the scalar reference kernels.
  RunResult base;
  if (!f.noBaseline) {
    RunOptions b = o;
    b.kernels = "ref";
    base = moedist::testing::runScenario(sc, b);
    if (!base.ok()) {
      fmt::print("\nresult: FAIL (baseline run with the reference kernels)\n{}", base.summary());
      return 1;
    }
  }
  const int threads = f.worldSize * groups;
  const double copyGBs =
      moedist::tool::copyBandwidthGBs(std::max<double>(static_cast<double>(r.dispatchBytes), 64e6), threads);
  auto line = [&](const char* name, double sec, double baseSec, int64_t bytes) {
    const double gbs = sec > 0 ? static_cast<double>(bytes) / sec / 1e9 : 0;
    fmt::print("  {:<9} {:>9.3f} ms   {:>8.2f} MB moved   {:>6.2f} GB/s   {:.2f}x memcpy", name, sec * 1e3,
               static_cast<double>(bytes) / 1e6, gbs, gbs / copyGBs);
    if (baseSec > 0) fmt::print("   ref kernels {:.3f} ms: {:.2f}x", baseSec * 1e3, baseSec / sec);
    fmt::print("\n");
  };
  fmt::print("\nmatch: {}\n", o.check ? "every output of every rank is bit-identical to the reference model, and "
                                        "every byte the operators must not write is untouched"
                                      : "not checked (--no-check)");
  fmt::print("\ntime per call (slowest rank, best of {} layer(s)):\n", f.layers);
  line("dispatch", r.dispatchSeconds, base.dispatchSeconds, r.dispatchBytes);
  line("combine", r.combineSeconds, base.combineSeconds, r.combineBytes);
  fmt::print("  memcpy bandwidth measured in this run with {} threads: {:.2f} GB/s\n", threads, copyGBs);
  fmt::print("\nresult: PASS\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "moedist: expert-parallel MoE dispatch and combine (CANN's MoeDistributeDispatchV3 and "
      "MoeDistributeCombineAddRmsNormV2) on ordinary machines"};
  app.require_subcommand(1);
  RunFlags f;
  CLI::App* runCmd = app.add_subcommand(
      "run", "dispatch -> stand-in expert FFN -> combine on in-process ranks, checked against the reference model");
  runCmd->add_option("-w,--world-size", f.worldSize, "EP ranks (epWorldSize)")->capture_default_str();
  runCmd->add_option("-b,--tokens", f.tokens, "tokens per rank (Bs)")->capture_default_str();
  runCmd->add_option("--hidden", f.hidden, "hidden size H (1024..8192)")->capture_default_str();
  runCmd->add_option("-k,--topk", f.topk, "experts per token K")->capture_default_str();
  runCmd->add_option("-m,--experts", f.experts, "MoE experts (moeExpertNum)")->capture_default_str();
  runCmd->add_option("--zero-experts", f.zeroExperts, "zero experts")->capture_default_str();
  runCmd->add_option("--copy-experts", f.copyExperts, "copy experts")->capture_default_str();
  runCmd->add_option("--const-experts", f.constExperts, "const experts")->capture_default_str();
  runCmd->add_option("--special-fraction", f.specialFraction, "share of slots routed to special experts")
      ->capture_default_str();
  runCmd->add_option("--shared-experts", f.sharedExperts, "shared experts (sharedExpertNum)")->capture_default_str();
  runCmd->add_option("--shared-expert-ranks", f.sharedExpertRanks, "ranks hosting shared experts")
      ->capture_default_str();
  runCmd->add_option("--tp", f.tp, "tpWorldSize: 0 or 1 (no TP), 2 (TP pairs: 2*W ranks)")->capture_default_str();
  runCmd->add_option("--quant-mode", f.quantMode, "dispatch quantMode: 0 or 2 (dynamic int8)")->capture_default_str();
  runCmd->add_flag("--smooth-scales", f.smoothScales, "pass smooth-quant scales (quantMode 2)");
  runCmd->add_option("--comm-quant-mode", f.commQuantMode, "combine commQuantMode: 0 or 2 (int8 transport)")
      ->capture_default_str();
  runCmd->add_option("--mask", f.mask, "xActiveMask: none, 1d or 2d")
      ->check(CLI::IsMember({"none", "1d", "2d"}))
      ->capture_default_str();
  runCmd->add_option("--global-bs", f.globalBs, "globalBs attribute (0: Bs * W)")->capture_default_str();
  runCmd->add_option("--expert-token-nums-type", f.expertTokenNumsType, "0 cumulative, 1 per expert")
      ->capture_default_str();
  runCmd->add_flag("--fp16", f.fp16, "x in fp16 instead of bf16");
  runCmd->add_flag("--elastic", f.elastic, "scale-in: drop ranks 2-5 of 8 (the middle half of other sizes)");
  runCmd->add_option("--remove-ranks", f.removeRanks, "scale-in: drop these ranks")->delimiter(',');
  runCmd->add_flag("--no-shared-expert-x", f.noSharedX, "do not pass sharedExpertX to combine");
  runCmd->add_flag("--strided", f.strided, "pass the inputs as strided (non-contiguous) views");
  runCmd->add_option("--layers", f.layers, "dispatch + combine repetitions (timing: best layer)")
      ->capture_default_str();
  runCmd->add_option("--kernel-threads", f.kernelThreads, "kernel threads per rank")->capture_default_str();
  runCmd->add_option("--timeout-ms", f.timeoutMs, "deadline of every cross-rank wait")->capture_default_str();
  runCmd->add_option("--seed", f.seed, "input data seed")->capture_default_str();
  runCmd->add_flag("--no-check", f.noCheck, "skip the comparison with the reference model");
  runCmd->add_flag("--no-baseline", f.noBaseline, "skip the baseline run with the scalar reference kernels");
  CLI11_PARSE(app, argc, argv);
  if (runCmd->parsed()) return run(f);
  return 0;
}
