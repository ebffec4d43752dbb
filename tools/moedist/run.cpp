#include "run.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <exception>

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
  o.layers = f.layers;
  o.warmupDispatch = !sc.removedRanks.empty();  // as the seed example: the full world first, then the survivors
  o.stridedInputs = f.strided;
  o.check = !f.noCheck;
  return o;
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

void printSummary(const RunFlags& f, const RunOptions& o, const std::vector<EngineRuns>& engines) {
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
             o.check ? "every output of every rank is bit-identical to the reference model, and every byte the "
                       "operators must not write is untouched"
                     : "not checked (--no-check)",
             o.check && engines.size() > 1 ? ", on every engine" : "");
  fmt::print("\ntime per call (slowest rank, best of {} layer(s)):\n", f.layers);
  for (const bool dispatch : {true, false}) {
    const char* op = dispatch ? "dispatch" : "combine";
    auto seconds = [&](const RunResult& r) { return dispatch ? r.dispatchSeconds : r.combineSeconds; };
    for (const EngineRuns& e : engines)
      line(op, e.name, seconds(e.run), seconds(e.base), dispatch ? e.run.dispatchBytes : e.run.combineBytes);
    for (size_t i = 1; i < engines.size(); ++i) {  // the first engine against each other one
      const double a = seconds(engines[0].run), b = seconds(engines[i].run);
      fmt::print("  {:<9} {:<11}{:>9.2f}x   (time per call, {} / {})\n", op, engines[0].name + "/" + engines[i].name,
                 b > 0 ? a / b : 0.0, engines[0].name, engines[i].name);
    }
  }
  fmt::print("  memcpy bandwidth measured in this run with {} threads: {:.2f} GB/s\n", threads, copyGBs);
  fmt::print("\nresult: PASS\n");
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
  if (int rc = runEngine(f, sc, o, "", run, /*print=*/true, /*printRows=*/true, &inproc); rc != 0) return rc;
  printSummary(f, o, {inproc});
  return 0;
}

}  // namespace moedist::tool
