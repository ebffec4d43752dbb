#include "run.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <nlohmann/json.hpp>

#include "copy_bandwidth.h"

namespace moedist::tool {

using testing::RankResult;
using testing::RunOptions;
using testing::RunResult;
using testing::Scenario;

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
  sc.sharedX = f.noSharedX || f.sharedExpertRanks > 0 ? testing::SharedXShape::kNone : testing::SharedXShape::k3D;
  sc.removedRanks = f.removeRanks;
  if (f.elastic && sc.removedRanks.empty()) {
    // The seed example drops ranks 2-5 of 8; other sizes drop the same share from the middle.
    for (int r = f.worldSize / 4; r < f.worldSize * 3 / 4; ++r) sc.removedRanks.push_back(r);
  }
  return sc;
}

RunOptions runOptionsFrom(const RunFlags& f, const Scenario& sc) {
  RunOptions o;
  o.kernelThreads = f.kernelThreads;
  o.timeout = std::chrono::milliseconds(f.timeoutMs);
  o.layers = f.warmup + f.layers;
  o.warmupDispatch = !sc.removedRanks.empty();  // as the seed example: the full world first, then the survivors
  o.stridedInputs = f.strided;
  o.check = !f.noCheck;
  o.checkFirstLayerOnly = f.checkLayers == "first";
  o.tensorsInCommMemory = !f.staging;  // every engine: the same program, x and the expert rows from memAlloc
  return o;
}

std::string publishedTensors(const RunFlags& f, std::string_view space) {
  return f.staging ? "in the caller's memory (staged per call)" : fmt::format("in the {} (memAlloc)", space);
}

std::string kernelsName() {
  const char* kernels = std::getenv("MOEDIST_KERNELS");
  return kernels != nullptr ? kernels : "cpu";
}

namespace {

std::string rowsTable(const RunResult& r, int W, int groups) {
  if (r.ranks.size() != static_cast<size_t>(W * groups)) return "  (none: the run stopped before any rank ran)\n";
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

// Prints "result: FAIL (<what>)" and the failures of `r` when it failed; true when it did.
bool failed(const RunResult& r, const std::string& what, bool print) {
  if (r.ok()) return false;
  if (print) fmt::print("\nresult: FAIL{}\n{}", what.empty() ? "" : " (" + what + ")", r.summary());
  return true;
}

}  // namespace

int runEngine(const RunFlags& f, const Scenario& sc, const RunOptions& o, const std::string& what,
              const std::function<RunResult(const RunOptions&)>& run, bool print, bool printRows, EngineRuns* out) {
  try {
    out->run = run(o);
    if (print && printRows)
      fmt::print("\nrows received per rank (dispatch, own EP rows; '-' = removed by scale-in):\n{}",
                 rowsTable(out->run, f.worldSize, sc.numGroups()));
    if (failed(out->run, what, print)) return 1;
    // The baseline, side by side in the same run: the same scenario with the scalar reference kernels.
    if (!f.noBaseline) {
      RunOptions b = o;
      b.kernels = "ref";
      out->base = run(b);
      const std::string baseWhat = "baseline run with the reference kernels" + (what.empty() ? "" : ", " + what);
      if (failed(out->base, baseWhat, print)) return 1;
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "moedist run: {}\n", e.what());
    return 2;
  }
  return 0;
}

CallStats callStats(const std::vector<double>& slowestPerLayer, int warmup) {
  CallStats s;
  if (static_cast<int>(slowestPerLayer.size()) <= warmup) return s;
  std::vector<double> timed(slowestPerLayer.begin() + warmup, slowestPerLayer.end());
  std::sort(timed.begin(), timed.end());
  const auto at = [&](double q) { return timed[static_cast<size_t>(q * static_cast<double>(timed.size() - 1) + 0.5)]; };
  s.best = timed.front();
  s.median = at(0.5);
  s.p99 = at(0.99);
  return s;
}

double printSummary(const RunFlags& f, const RunOptions& o, const std::vector<EngineRuns>& engines) {
  const RunResult& first = engines.front().run;
  const int threads = f.worldSize * scenarioFrom(f).numGroups();
  const double copyGBs = copyBandwidthGBs(std::max<double>(static_cast<double>(first.dispatchBytes), 64e6), threads);
  auto line = [&](const char* op, const std::string& engine, double sec, double baseSec, int64_t bytes) {
    const double gbs = sec > 0 ? static_cast<double>(bytes) / sec / 1e9 : 0;
    fmt::print("  {:<9} {}{:>9.3f} ms   {:>8.2f} MB moved   {:>6.2f} GB/s   {:.2f}x memcpy", op,
               engine.empty() ? std::string() : fmt::format("{:<11}", engine), sec * 1e3,
               static_cast<double>(bytes) / 1e6, gbs, gbs / copyGBs);
    if (baseSec > 0) fmt::print("   ref kernels {:.3f} ms: {:.2f}x", baseSec * 1e3, baseSec / sec);
    fmt::print("\n");
  };
  fmt::print("\nmatch: {}{}\n",
             !o.check                ? "not checked (--no-check)"
             : o.checkFirstLayerOnly ? "every output of every rank in the first layer is bit-identical to the "
                                       "reference model, and every byte the operators must not write is untouched "
                                       "(--check-layers first)"
                                     : "every output of every rank is bit-identical to the reference model, and every "
                                       "byte the operators must not write is untouched",
             o.check && engines.size() > 1 ? ", on every engine" : "");
  fmt::print("\ntime per call (slowest rank, best of {} layer(s){}):\n", f.layers,
             f.warmup > 0 ? fmt::format(" after {} warm-up layer(s)", f.warmup) : "");
  for (const bool dispatch : {true, false}) {
    const char* op = dispatch ? "dispatch" : "combine";
    auto seconds = [&](const RunResult& r) {
      return callStats(dispatch ? r.dispatchLayerSeconds : r.combineLayerSeconds, f.warmup).best;
    };
    for (const EngineRuns& e : engines)
      line(op, e.name, seconds(e.run), seconds(e.base), dispatch ? e.run.dispatchBytes : e.run.combineBytes);
    for (size_t i = 1; i < engines.size(); ++i) {  // the first engine against each other one
      const double a = seconds(engines[0].run), b = seconds(engines[i].run);
      fmt::print("  {:<9} {:<11}{:>9.2f}x   (time per call, {} / {})\n", op, engines[0].name + "/" + engines[i].name,
                 b > 0 ? a / b : 0.0, engines[0].name, engines[i].name);
    }
  }
  fmt::print("  memcpy bandwidth measured in this run with {} threads: {:.2f} GB/s\n", threads, copyGBs);
  for (const EngineRuns& e : engines)
    if (e.run.tensorBytes > 0)
      fmt::print(
          "\nmemory: peak resident set {:.0f} MB; the tensors the ranks of this process hand the operators, at "
          "the contract's shapes: {:.0f} MB\n",
          static_cast<double>(testing::peakRssBytes()) / 1e6, static_cast<double>(e.run.tensorBytes) / 1e6);
  fmt::print("\nresult: PASS\n");
  return copyGBs;
}

namespace {

nlohmann::json statsJson(const std::vector<double>& slowestPerLayer, int warmup) {
  const CallStats s = callStats(slowestPerLayer, warmup);
  return {{"best_seconds", s.best},
          {"median_seconds", s.median},
          {"p99_seconds", s.p99},
          {"slowest_rank_seconds_per_layer", slowestPerLayer}};
}

nlohmann::json engineJson(const RunFlags& f, const EngineRuns& e) {
  nlohmann::json ranks = nlohmann::json::array();
  for (const RankResult& r : e.run.ranks)
    ranks.push_back({{"tp_index", r.tpIdx},
                     {"ep_rank", r.epRank},
                     {"participates", r.participates},
                     {"own_rows", r.ownRows},
                     {"total_rows", r.totalRows},
                     {"dispatch_seconds_per_layer", r.dispatchLayerSeconds},
                     {"combine_seconds_per_layer", r.combineLayerSeconds},
                     {"peak_rss_bytes", r.peakRssBytes}});
  nlohmann::json out = {{"name", e.name.empty() ? f.engine : e.name},
                        {"dispatch", statsJson(e.run.dispatchLayerSeconds, f.warmup)},
                        {"combine", statsJson(e.run.combineLayerSeconds, f.warmup)},
                        {"dispatch_bytes", e.run.dispatchBytes},
                        {"combine_bytes", e.run.combineBytes},
                        {"ranks", ranks},
                        {"failures", e.run.failures}};
  if (e.run.tensorBytes > 0) out["tensor_bytes"] = e.run.tensorBytes;  // ranks in this process only
  if (!f.noBaseline && !e.base.dispatchLayerSeconds.empty())
    out["reference_kernels"] = {{"dispatch", statsJson(e.base.dispatchLayerSeconds, f.warmup)},
                                {"combine", statsJson(e.base.combineLayerSeconds, f.warmup)}};
  return out;
}

}  // namespace

int writeJson(const RunFlags& f, const std::vector<EngineRuns>& engines, double copyGBs, int rc) {
  if (f.json.empty()) return rc;
  const nlohmann::json config = {{"world_size", f.worldSize},
                                 {"tokens", f.tokens},
                                 {"hidden", f.hidden},
                                 {"topk", f.topk},
                                 {"experts", f.experts},
                                 {"zero_experts", f.zeroExperts},
                                 {"copy_experts", f.copyExperts},
                                 {"const_experts", f.constExperts},
                                 {"special_fraction", f.specialFraction},
                                 {"shared_experts", f.sharedExperts},
                                 {"shared_expert_ranks", f.sharedExpertRanks},
                                 {"tp", f.tp},
                                 {"quant_mode", f.quantMode},
                                 {"smooth_scales", f.smoothScales},
                                 {"comm_quant_mode", f.commQuantMode},
                                 {"mask", f.mask},
                                 {"global_bs", f.globalBs},
                                 {"expert_token_nums_type", f.expertTokenNumsType},
                                 {"fp16", f.fp16},
                                 {"removed_ranks", scenarioFrom(f).removedRanks},
                                 {"shared_expert_x", !f.noSharedX},
                                 {"strided", f.strided},
                                 {"engine", f.engine},
                                 {"layers", f.layers},
                                 {"warmup", f.warmup},
                                 {"kernel_threads", f.kernelThreads},
                                 {"kernels", kernelsName()},
                                 {"timeout_ms", f.timeoutMs},
                                 {"seed", f.seed},
                                 {"check", !f.noCheck},
                                 {"check_layers", f.checkLayers},
                                 {"staging", f.staging}};
  nlohmann::json engineList = nlohmann::json::array();
  for (const EngineRuns& e : engines) engineList.push_back(engineJson(f, e));
  const char* result = rc == 0 ? (f.noCheck ? "not checked" : "pass") : rc == 1 ? "fail" : "error";
  const nlohmann::json doc = {{"tool", "moedist run"},
                              {"config", config},
                              {"engines", engineList},
                              {"copy_bandwidth_gbs", copyGBs},
                              {"peak_rss_bytes", testing::peakRssBytes()},
                              {"result", result}};
  std::ofstream out(f.json);
  out << doc.dump(1) << "\n";
  if (!out) {
    fmt::print(stderr, "moedist run: --json: cannot write {}\n", f.json);
    return 2;
  }
  return rc;
}

int runInProcess(const RunFlags& f) {
  const Scenario sc = scenarioFrom(f);
  const RunOptions o = runOptionsFrom(f, sc);
  fmt::print("moedist run\n  {}\n", sc.describe());
  fmt::print("  engine: in-process, {} ranks as threads, {} kernel thread(s) per rank, kernels {}\n",
             f.worldSize * sc.numGroups(), f.kernelThreads, kernelsName());
  if (!f.noBaseline) fmt::print("  baseline: the same run with the scalar reference kernels (\"ref\")\n");
  EngineRuns inproc;
  const auto run = [&sc](const RunOptions& ro) { return testing::runScenario(sc, ro); };
  if (int rc = runEngine(f, sc, o, "", run, /*print=*/true, /*printRows=*/true, &inproc); rc != 0)
    return writeJson(f, {inproc}, 0, rc);
  return writeJson(f, {inproc}, printSummary(f, o, {inproc}), 0);
}

}  // namespace moedist::tool
