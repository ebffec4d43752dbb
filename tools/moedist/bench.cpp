// `moedist bench` (bench.h). For each point of the sweep: write the problem for the baselines (bench_case.h), then
// run each engine and baseline as a child with the same shape, iterations and warm-up, sampling the copy bandwidth
// before each, read its JSON, and turn the per-iteration times of the slowest rank into best / median / p99, GB/s,
// the fraction of the copy bandwidth and the ratio to each baseline.
#include "bench.h"

#include <fmt/format.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "child.h"
#include "copy_bandwidth.h"
#include "moedist/ops.h"
#include "run.h"

namespace moedist::tool {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct Shape {
  int W, Bs, H, K, M;
};

// "256 or the largest M that divides": the largest multiple of W up to 256 (W itself when W > 256).
int defaultExperts(int W) {
  return W > 256 ? W : 256 / W * W;
}

struct Preset {
  const char* name;
  const char* what;
  std::vector<Shape> shapes;
};

std::vector<Preset> presets() {
  return {
      {"decode",
       "decode: Bs 128, H 7168, K 8, M 256 (or the largest multiple of W below), W 2, 4, 8",
       {{2, 128, 7168, 8, 256}, {4, 128, 7168, 8, 256}, {8, 128, 7168, 8, 256}}},
      {"prefill",
       "prefill: Bs 512, H 7168, K 8, M 256, W 2, 4, 8",
       {{2, 512, 7168, 8, 256}, {4, 512, 7168, 8, 256}, {8, 512, 7168, 8, 256}}},
      {"seed",
       "the seed example's shape without its special experts: W 8, Bs 8, H 7168, K 3, M 8",
       {{8, 8, 7168, 3, 8}}},
      {"scale",
       "world sizes up to the contract's 768: Bs 8, H 1024, K 8, M = W",
       {{8, 8, 1024, 8, 8}, {64, 8, 1024, 8, 64}, {256, 8, 1024, 8, 256}, {768, 8, 1024, 8, 768}}},
  };
}

std::vector<Shape> shapesOf(const BenchFlags& f) {
  if (!f.preset.empty()) {
    for (const Preset& p : presets())
      if (f.preset == p.name) return p.shapes;
    throw std::invalid_argument(fmt::format("--preset: expected decode, prefill, seed or scale, got '{}'", f.preset));
  }
  std::vector<Shape> out;
  for (int W : f.worldSizes)
    for (int Bs : f.tokens)
      for (int H : f.hiddens)
        for (int K : f.topks)
          for (int M : f.experts) out.push_back({W, Bs, H, K, M == 0 ? defaultExperts(W) : M});
  return out;
}

bool builtWithMpi() {
#if MOEDIST_TOOL_MPI
  return true;
#else
  return false;
#endif
}

std::string selfPath() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "moedist" : p.string();
}

// The HCCL_BUFFSIZE (MB) the operators need for a shape (the shape query's windowBytes), at least CANN's default 200.
int64_t windowMb(const Shape& s) {
  MoeAttrs attrs;
  attrs.moeExpertNum = s.M;
  OutputShapes shapes;
  if (Status st = outputShapes({s.W, 0, 0, 0}, attrs, {s.Bs, s.H, s.K, false}, &shapes); !st.ok())
    throw std::invalid_argument(st.message());
  return std::max<int64_t>(200, (shapes.windowBytes + (int64_t{1} << 20) - 1) >> 20);
}

// MemAvailable of /proc/meminfo in bytes (0 when unknown).
int64_t availableMemoryBytes() {
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    int64_t kb = 0;
    meminfo >> kb;
    if (key == "MemAvailable:") return kb * 1024;
    meminfo.ignore(64, '\n');
  }
  return 0;
}

// A PyTorch process of torch_pipeline holds about this much (measured: 250 MB at W 64, H 1024 on torch 1.13).
constexpr int64_t kTorchProcessBytes = int64_t{300} << 20;

bool runsOk(const std::vector<std::string>& argv) {
  return runChild(argv, {}, "/dev/null", std::chrono::seconds(60)).exitCode == 0;
}

// The slowest rank of each iteration from per-rank per-iteration times.
std::vector<double> slowestPerIteration(const json& perRank) {
  std::vector<double> out;
  for (const json& rank : perRank) {
    const auto times = rank.get<std::vector<double>>();
    if (out.size() < times.size()) out.resize(times.size(), 0.0);
    for (size_t i = 0; i < times.size(); ++i) out[i] = std::max(out[i], times[i]);
  }
  return out;
}

// One engine's or baseline's figures at one point.
struct Outcome {
  std::string runner;
  CallStats dispatch, combine;
  std::vector<double> dispatchPerIteration, combinePerIteration;
  int64_t dispatchBytes = 0, combineBytes = 0;
  int64_t peakRssBytes = 0;  // summed over its processes
  int64_t tensorBytes = 0;   // in-process runner: the bytes of the tensors handed to the operators (0: not known)
  std::string check;         // "pass", "not checked", "fail: ...", "error: ..."
  std::string command, log;
};

// The times of a run's layers after its `warmup` untimed ones.
std::vector<double> timedOnly(const json& perLayer, int warmup) {
  std::vector<double> v = perLayer.get<std::vector<double>>();
  v.erase(v.begin(), v.begin() + std::min<std::ptrdiff_t>(warmup, std::ssize(v)));
  return v;
}

bool passed(const std::string& check) {
  return check == "pass" || check == "not checked";
}

// Adds another round of the same runner at the same point: its timed iterations join the pool the figures come from;
// a failing round's check and log stand for the runner.
void absorb(const Outcome& round, Outcome* o) {
  o->dispatchPerIteration.insert(o->dispatchPerIteration.end(), round.dispatchPerIteration.begin(),
                                 round.dispatchPerIteration.end());
  o->combinePerIteration.insert(o->combinePerIteration.end(), round.combinePerIteration.begin(),
                                round.combinePerIteration.end());
  o->dispatch = callStats(o->dispatchPerIteration, 0);
  o->combine = callStats(o->combinePerIteration, 0);
  o->peakRssBytes = std::max(o->peakRssBytes, round.peakRssBytes);
  if (passed(o->check) && !passed(round.check)) {
    o->check = round.check;
    o->log = round.log;
  }
}

// Reads a runner's JSON: `moedist run --json` (engines[i], named `engine`) or a baseline's.
void readOutcome(const json& doc, const std::string& engine, int warmup, bool referenceKernels, Outcome* o) {
  if (doc.contains("engines")) {
    for (const json& e : doc.at("engines")) {
      if (e.at("name") != engine) continue;
      const json& d = referenceKernels ? e.at("reference_kernels").at("dispatch") : e.at("dispatch");
      const json& c = referenceKernels ? e.at("reference_kernels").at("combine") : e.at("combine");
      o->dispatchPerIteration = timedOnly(d.at("slowest_rank_seconds_per_layer"), warmup);
      o->combinePerIteration = timedOnly(c.at("slowest_rank_seconds_per_layer"), warmup);
      o->dispatchBytes = e.at("dispatch_bytes");
      o->combineBytes = e.at("combine_bytes");
      // Ranks that are threads share their process: count it once; else sum the ranks' processes.
      o->peakRssBytes = 0;
      if (engine == "inproc")
        o->peakRssBytes = doc.at("peak_rss_bytes");
      else
        for (const json& r : e.at("ranks")) o->peakRssBytes += r.at("peak_rss_bytes").get<int64_t>();
      o->tensorBytes = e.value("tensor_bytes", int64_t{0});
      o->check = doc.at("result");
      o->dispatch = callStats(o->dispatchPerIteration, 0);
      o->combine = callStats(o->combinePerIteration, 0);
      return;
    }
    throw std::runtime_error("its JSON has no engine '" + engine + "'");
  }
  // A baseline: timed iterations only, per rank.
  o->dispatchPerIteration = slowestPerIteration(doc.at("dispatch_seconds"));
  o->combinePerIteration = slowestPerIteration(doc.at("combine_seconds"));
  o->dispatchBytes = doc.at("dispatch_bytes");
  o->combineBytes = doc.at("combine_bytes");
  for (const json& r : doc.at("peak_rss_bytes")) o->peakRssBytes += r.get<int64_t>();
  o->check = doc.at("check");
  o->dispatch = callStats(o->dispatchPerIteration, 0);
  o->combine = callStats(o->combinePerIteration, 0);
}

class Bench {
 public:
  explicit Bench(const BenchFlags& f) : f_(f), self_(selfPath()) {}

  int run() {
    const std::vector<Shape> shapes = shapesOf(f_);
    if (!f_.writeCase.empty()) {
      const Shape& s = shapes.front();
      writeBenchCase({s.W, s.Bs, s.H, s.K, s.M, f_.seed}, f_.writeCase);
      return 0;
    }
    chooseRunners();
    work_ = f_.workDir.empty() ? fs::temp_directory_path() / fmt::format("moedist-bench-{}", ::getpid())
                               : fs::path(f_.workDir);
    fs::create_directories(work_);
    printHeader();
    json points = json::array();
    bool allPassed = true;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Shape& s = shapes[i];
      json point = runPoint(s, i, shapes.size(), &allPassed);
      points.push_back(point);
      if (!f_.json.empty()) writeJson(points);  // after every point: a sweep cut short keeps what it measured
    }
    fmt::print("\n# {}\n", allPassed ? "every run passed its check against the reference model"
                                     : "FAIL: a run did not pass its check (see the check column and the logs)");
    fmt::print("# logs and cases: {}\n", work_.string());
    if (f_.workDir.empty() && allPassed) fs::remove_all(work_);
    return allPassed ? 0 : 1;
  }

 private:
  void chooseRunners() {
    for (const std::string& e : f_.engines)
      if (e != "inproc" && e != "shm" && e != "mpi")
        throw std::invalid_argument(fmt::format("--engines: expected inproc, shm or mpi, got '{}'", e));
    for (const std::string& b : f_.baselines)
      if (b != "mpi_pipeline" && b != "torch_pipeline" && b != "ref")
        throw std::invalid_argument(
            fmt::format("--baselines: expected mpi_pipeline, torch_pipeline or ref, got '{}'", b));
    engines_ = f_.engines;
    if (engines_.empty()) {
      engines_ = {"inproc", "shm"};
      if (builtWithMpi() && runsOk({f_.mpirun, "--version"})) engines_.push_back("mpi");
    }
    baselines_ = f_.baselines;
    mpiPipeline_ = f_.mpiPipeline.empty() ? MOEDIST_BENCH_MPI_PIPELINE : f_.mpiPipeline;
    torchPipeline_ = f_.torchPipeline.empty() ? MOEDIST_BENCH_TORCH_PIPELINE : f_.torchPipeline;
    if (baselines_.empty()) {
      if (!mpiPipeline_.empty() && fs::exists(mpiPipeline_) && runsOk({f_.mpirun, "--version"}))
        baselines_.push_back("mpi_pipeline");
      if (fs::exists(torchPipeline_) && runsOk({f_.python, "-c", "import torch"}))
        baselines_.push_back("torch_pipeline");
      baselines_.push_back("ref");
    }
  }

  std::vector<std::string> mpiLauncher(int processes) const {
    std::vector<std::string> argv{f_.mpirun, "-np", std::to_string(processes)};
    for (std::string& flag : mpirunFlags()) argv.push_back(std::move(flag));
    return argv;
  }

  // mpirun's flags besides the number of processes.
  std::vector<std::string> mpirunFlags() const {
    std::vector<std::string> flags{"--oversubscribe"};
    if (::geteuid() == 0) flags.push_back("--allow-run-as-root");
    if (!f_.hostfile.empty()) flags.insert(flags.end(), {"--hostfile", f_.hostfile});
    std::istringstream words(f_.mpirunArgs);
    for (std::string w; words >> w;) flags.push_back(w);
    return flags;
  }

  // The hosts named in --hostfile, in order, each once (Open MPI's format: a host, then options such as slots=N).
  std::vector<std::string> hosts() const {
    std::vector<std::string> names;
    std::ifstream in(f_.hostfile);
    for (std::string line; std::getline(in, line);) {
      std::istringstream words(line.substr(0, line.find('#')));
      std::string host;
      if (words >> host && std::find(names.begin(), names.end(), host) == names.end()) names.push_back(host);
    }
    return names;
  }

  std::vector<std::string> runArgs(const Shape& s, const std::string& engine, const fs::path& jsonPath,
                                   bool withReferenceKernels) const {
    std::vector<std::string> a{self_, "run", "--engine", engine, "--json", jsonPath.string()};
    for (const char* fixed : {"--zero-experts", "0", "--copy-experts", "0", "--const-experts", "0",
                              "--no-shared-expert-x", "--check-layers", "first"})
      a.push_back(fixed);
    a.push_back("--seed");
    a.push_back(std::to_string(f_.seed));
    for (const auto& [flag, value] : {std::pair<const char*, int>{"-w", s.W},
                                      {"-b", s.Bs},
                                      {"--hidden", s.H},
                                      {"-k", s.K},
                                      {"-m", s.M},
                                      {"--layers", f_.iterations},
                                      {"--warmup", f_.warmup}}) {
      a.push_back(flag);
      a.push_back(std::to_string(value));
    }
    if (engine != "inproc") a.push_back("--engine-only");
    if (!withReferenceKernels) a.push_back("--no-baseline");
    if (f_.noCheck) a.push_back("--no-check");
    return a;
  }

  std::vector<std::string> baselineArgs(const std::string& name, const Shape& s, const fs::path& caseDir,
                                        const fs::path& jsonPath) const {
    std::vector<std::string> a;
    if (name == "mpi_pipeline") {
      a = mpiLauncher(s.W);
      a.push_back(mpiPipeline_);
    } else {
      a = {f_.python, torchPipeline_};
    }
    for (const std::string& x :
         {std::string("--case"), caseDir.string(), std::string("--iterations"), std::to_string(f_.iterations),
          std::string("--warmup"), std::to_string(f_.warmup), std::string("--json"), jsonPath.string()})
      a.push_back(x);
    if (f_.noCheck) a.push_back("--no-check");
    return a;
  }

  // Runs argv, reads the JSON it wrote; the outcome says what went wrong instead of throwing. With `reference`,
  // the same JSON's reference-kernel run (moedist run without --no-baseline) fills it as runner "ref".
  Outcome runOne(const std::string& runner, const std::vector<std::string>& argv, const fs::path& jsonPath,
                 const std::string& engine, const std::map<std::string, std::string>& env,
                 Outcome* reference = nullptr) {
    Outcome o;
    o.runner = runner;
    o.command = commandLine(argv);
    o.log = fs::path(jsonPath).replace_extension(".log").string();
    if (reference != nullptr) *reference = o, reference->runner = "ref";
    fs::remove(jsonPath);
    const ChildResult r = runChild(argv, env, o.log, std::chrono::seconds(f_.timeoutSeconds));
    try {
      std::ifstream in(jsonPath);
      if (!in) throw std::runtime_error(r.error.empty() ? fmt::format("exit code {}, no JSON", r.exitCode) : r.error);
      const json doc = json::parse(in);
      readOutcome(doc, engine, f_.warmup, false, &o);
      if (reference != nullptr) readOutcome(doc, engine, f_.warmup, true, reference);
    } catch (const std::exception& e) {
      o.check = fmt::format("error: {} (log: {})", e.what(), o.log);
      if (reference != nullptr) reference->check = o.check;
    }
    return o;
  }

  json runPoint(const Shape& s, size_t index, size_t count, bool* allPassed) {
    const std::string where = fmt::format("W={} Bs={} H={} K={} M={}", s.W, s.Bs, s.H, s.K, s.M);
    const fs::path dir = work_ / fmt::format("W{}_Bs{}_H{}_K{}_M{}", s.W, s.Bs, s.H, s.K, s.M);
    fs::create_directories(dir);
    const auto progress = [&](const std::string& what) {
      fmt::print(stderr, "moedist bench: [{}/{}] {}: {}\n", index + 1, count, where, what);
    };
    const bool needCase =
        std::any_of(baselines_.begin(), baselines_.end(), [](const std::string& b) { return b != "ref"; });
    if (needCase) {
      progress("writing the baselines' case");
      writeBenchCase({s.W, s.Bs, s.H, s.K, s.M, f_.seed}, (dir / "case").string());
    }
    // The operators' window: HCCL_BUFFSIZE from the environment when it is set, else what the shape needs.
    std::map<std::string, std::string> env;
    const char* userWindow = std::getenv("HCCL_BUFFSIZE");
    const std::string window = userWindow != nullptr ? userWindow : std::to_string(windowMb(s));
    if (userWindow == nullptr) env["HCCL_BUFFSIZE"] = window;
    const bool wantRef = std::find(baselines_.begin(), baselines_.end(), "ref") != baselines_.end();
    const auto skipped = [&](const std::string& runner) {
      Outcome o;
      o.runner = runner;
      o.check = fmt::format("skipped: {} processes, more than --max-processes {}", s.W, f_.maxProcesses);
      return o;
    };
    const bool tooMany = s.W > f_.maxProcesses;
    // The copy bandwidth drifts with the machine's load as the runners' times do: sampled before each runner and
    // after the last (best of 3 copies each), and the point's figure is the median of the samples. With --rounds
    // the runners take turns, round after round, and each pools its rounds' timed iterations, so that drift falls
    // on all of them alike.
    const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const double copyBytes = std::max(static_cast<double>(s.W) * s.Bs * s.K * s.H * 2, 64e6);  // a call's rows
    std::vector<double> copySamples;
    const auto sampleCopy = [&] { copySamples.push_back(copyBandwidthGBs(copyBytes, threads, 3)); };
    std::vector<Outcome> outcomes;  // by runner, its rounds pooled
    for (int round = 0; round < f_.rounds; ++round) {
      const std::string roundNote = f_.rounds > 1 ? fmt::format(" (round {} of {})", round + 1, f_.rounds) : "";
      const std::string roundFile = f_.rounds > 1 ? fmt::format("-round{}", round + 1) : "";
      std::vector<Outcome> these;  // this round's, in the same runner order every round
      std::optional<Outcome> ref;  // the reference kernels, from the in-process engine's run
      for (const std::string& engine : engines_) {
        if (engine != "inproc" && tooMany) {
          these.push_back(skipped(engine));
          continue;
        }
        progress("engine " + engine + roundNote);
        sampleCopy();
        const fs::path j = dir / (engine + roundFile + ".json");
        const bool withRef = engine == "inproc" && wantRef;
        std::vector<std::string> argv = runArgs(s, engine, j, withRef);
        if (engine == "mpi") {
          std::vector<std::string> launched = mpiLauncher(s.W);
          launched.insert(launched.end(), argv.begin(), argv.end());
          argv = launched;
        }
        these.push_back(runOne(engine, argv, j, engine, env, withRef ? &ref.emplace() : nullptr));
      }
      for (const std::string& b : baselines_) {
        if (b == "ref") {
          if (ref) these.push_back(*ref);
          continue;
        }
        if (tooMany) {
          these.push_back(skipped(b));
          continue;
        }
        const int64_t available = availableMemoryBytes();
        if (b == "torch_pipeline" && available > 0 && s.W * kTorchProcessBytes > available * 3 / 4) {
          Outcome o;
          o.runner = b;
          o.check = fmt::format("skipped: {} PyTorch processes need about {} MB, more than 3/4 of the {} MB available",
                                s.W, s.W * kTorchProcessBytes >> 20, available >> 20);
          these.push_back(o);
          continue;
        }
        progress("baseline " + b + roundNote);
        sampleCopy();
        const fs::path j = dir / (b + roundFile + ".json");
        these.push_back(runOne(b, baselineArgs(b, s, dir / "case", j), j, "", env));
      }
      if (round == 0) {
        outcomes = std::move(these);
      } else {
        for (size_t i = 0; i < outcomes.size(); ++i) absorb(these[i], &outcomes[i]);
      }
    }
    progress("copy bandwidth");
    sampleCopy();
    std::vector<double> sorted = copySamples;
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    const double copyGBs = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    printPoint(s, outcomes, copyGBs, sorted.front(), sorted.back());
    for (const Outcome& o : outcomes)
      if (!passed(o.check) && o.check.rfind("skipped", 0) != 0) *allPassed = false;
    json point = pointJson(s, outcomes, copyGBs, threads);
    point["copy_bandwidth_gbs_samples"] = copySamples;
    point["hccl_buffsize_mb"] = std::stoll(window);
    return point;
  }

  const Outcome* find(const std::vector<Outcome>& outcomes, const std::string& runner) const {
    for (const Outcome& o : outcomes)
      if (o.runner == runner && o.dispatch.median > 0) return &o;
    return nullptr;
  }

  void printHeader() const {
    fmt::print("# moedist bench: {}\n", f_.preset.empty() ? "shapes from the command line" : presetWhat());
    fmt::print("# engines: {}; baselines: {}\n", fmt::join(engines_, ", "), fmt::join(baselines_, ", "));
    if (!f_.hostfile.empty() || !f_.mpirunArgs.empty())
      fmt::print("# MPI runners: {} {}{}\n", f_.mpirun, fmt::join(mpirunFlags(), " "),
                 f_.hostfile.empty() ? "" : fmt::format(" (hosts: {})", fmt::join(hosts(), ", ")));
    fmt::print(
        "# time per call of the slowest rank over {} iterations after {} warm-up{}: best, median and p99 (ms)\n"
        "# bytes: every (token, expert) row that dispatch delivers, and that combine returns, x H x 2 bytes, all ranks;"
        "\n# GB/s = bytes / median time; 'x copy' = that over memcpy's GB/s with one thread per core, the median of "
        "samples\n# taken before each runner at the point and after the last;\n# 'x <baseline>' = the baseline's "
        "median time over this runner's (above 1: this runner is faster); "
        "peak = resident memory, summed over processes\n",
        f_.rounds * f_.iterations, f_.warmup,
        f_.rounds > 1 ? fmt::format(" ({} rounds of {}, the runners taking turns)", f_.rounds, f_.iterations) : "");
    fmt::print("# {:>4} {:>4} {:>5} {:>2} {:>4}  {:<15} {:<8} {:>9} {:>8} {:>8} {:>8} {:>7} {:>6}", "W", "Bs", "H", "K",
               "M", "runner", "op", "bytes", "best", "median", "p99", "GB/s", "x copy");
    for (const std::string& b : baselines_) fmt::print(" {:>8}", "x " + shortName(b));
    fmt::print(" {:>8}  {}\n", "peak MB", "check");
  }

  std::string presetWhat() const {
    for (const Preset& p : presets())
      if (f_.preset == p.name) return std::string("preset ") + p.what;
    return f_.preset;
  }

  static std::string shortName(const std::string& runner) {
    if (runner == "mpi_pipeline") return "mpi-pipe";
    if (runner == "torch_pipeline") return "torch";
    return runner;
  }

  void printPoint(const Shape& s, const std::vector<Outcome>& outcomes, double copyGBs, double copyMin,
                  double copyMax) const {
    for (const Outcome& o : outcomes) {
      for (const bool dispatch : {true, false}) {
        const CallStats& st = dispatch ? o.dispatch : o.combine;
        const int64_t bytes = dispatch ? o.dispatchBytes : o.combineBytes;
        const double gbs = st.median > 0 ? static_cast<double>(bytes) / st.median / 1e9 : 0;
        fmt::print(
            "  {:>4} {:>4} {:>5} {:>2} {:>4}  {:<15} {:<8} {:>8.2f}M {:>8.3f} {:>8.3f} {:>8.3f} {:>7.2f} {:>6.2f}", s.W,
            s.Bs, s.H, s.K, s.M, o.runner, dispatch ? "dispatch" : "combine", static_cast<double>(bytes) / 1e6,
            st.best * 1e3, st.median * 1e3, st.p99 * 1e3, gbs, copyGBs > 0 ? gbs / copyGBs : 0);
        for (const std::string& b : baselines_) {
          const Outcome* base = find(outcomes, b);
          const double t = base ? (dispatch ? base->dispatch.median : base->combine.median) : 0;
          if (t > 0 && st.median > 0 && b != o.runner)
            fmt::print(" {:>7.2f}x", t / st.median);
          else
            fmt::print(" {:>8}", "-");
        }
        fmt::print(" {:>8.0f}  {}\n", static_cast<double>(o.peakRssBytes) / 1e6, dispatch ? o.check : "");
      }
    }
    fmt::print("  {:>4} {:>4} {:>5} {:>2} {:>4}  {:<15} memcpy GB/s {:.2f} (median of samples from {:.2f} to {:.2f})\n",
               s.W, s.Bs, s.H, s.K, s.M, "copy", copyGBs, copyMin, copyMax);
    std::fflush(stdout);
  }

  static json statsJson(const CallStats& s, const std::vector<double>& perIteration) {
    return {{"best_seconds", s.best},
            {"median_seconds", s.median},
            {"p99_seconds", s.p99},
            {"slowest_rank_seconds_per_iteration", perIteration}};
  }

  json pointJson(const Shape& s, const std::vector<Outcome>& outcomes, double copyGBs, int copyThreads) const {
    json runners = json::array();
    for (const Outcome& o : outcomes) {
      json r = {{"runner", o.runner},
                {"dispatch", statsJson(o.dispatch, o.dispatchPerIteration)},
                {"combine", statsJson(o.combine, o.combinePerIteration)},
                {"dispatch_bytes", o.dispatchBytes},
                {"combine_bytes", o.combineBytes},
                {"peak_rss_bytes", o.peakRssBytes},
                {"tensor_bytes", o.tensorBytes},
                {"check", o.check},
                {"command", o.command}};
      for (const bool dispatch : {true, false}) {
        const CallStats& st = dispatch ? o.dispatch : o.combine;
        const int64_t bytes = dispatch ? o.dispatchBytes : o.combineBytes;
        json& op = r[dispatch ? "dispatch" : "combine"];
        op["gb_per_second"] = st.median > 0 ? static_cast<double>(bytes) / st.median / 1e9 : 0;
        op["fraction_of_copy"] =
            st.median > 0 && copyGBs > 0 ? static_cast<double>(bytes) / st.median / 1e9 / copyGBs : 0;
        for (const std::string& b : baselines_) {
          const Outcome* base = find(outcomes, b);
          const double t = base ? (dispatch ? base->dispatch.median : base->combine.median) : 0;
          if (t > 0 && st.median > 0 && b != o.runner) op["speedup_over_" + b] = t / st.median;
        }
      }
      runners.push_back(r);
    }
    return {{"world_size", s.W},
            {"tokens", s.Bs},
            {"hidden", s.H},
            {"topk", s.K},
            {"experts", s.M},
            {"copy_bandwidth_gbs", copyGBs},
            {"copy_threads", copyThreads},
            {"runners", runners}};
  }

  void writeJson(const json& points) const {
    utsname u{};
    ::uname(&u);
    std::string cpu;
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);)
      if (line.rfind("model name", 0) == 0) {
        cpu = line.substr(line.find(':') + 2);
        break;
      }
    const json doc = {
        {"tool", "moedist bench"},
        {"git_revision", gitRevision()},
        {"machine",
         {{"system", u.sysname},
          {"release", u.release},
          {"arch", u.machine},
          {"cpu", cpu},
          {"cores", std::thread::hardware_concurrency()}}},
        {"compiler", __VERSION__},
        {"build_type", MOEDIST_BUILD_TYPE},
        {"options",
         {{"preset", f_.preset},
          {"engines", engines_},
          {"baselines", baselines_},
          {"iterations", f_.iterations},
          {"rounds", f_.rounds},
          {"warmup", f_.warmup},
          {"check", !f_.noCheck},
          {"seed", f_.seed},
          {"mpirun", f_.mpirun},
          {"mpirun_flags", mpirunFlags()},
          {"hosts", f_.hostfile.empty() ? json::array() : json(hosts())}}},
        {"method",
         "time per call of the slowest rank (each rank meets the others at a barrier before each call); bytes: every "
         "(token, expert) row delivered by dispatch / returned to combine, x H x 2 bytes, all ranks; GB/s = bytes / "
         "median time; fraction_of_copy = GB/s / memcpy GB/s with one thread per core at the same point "
         "(copy_bandwidth_gbs: the median of copy_bandwidth_gbs_samples, each the best of 3 copies, taken before "
         "each runner and after the last); speedup_over_<baseline> = the baseline's median time / this runner's"},
        {"points", points}};
    std::ofstream out(f_.json);
    out << doc.dump(1) << "\n";
    if (!out) throw std::runtime_error("--json: cannot write " + f_.json);
  }

  static std::string gitRevision() {
    const std::string cmd = fmt::format("git -C '{}' describe --always --dirty 2>/dev/null", MOEDIST_SOURCE_DIR);
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char buf[128];
      while (std::fgets(buf, sizeof buf, p)) out += buf;
      ::pclose(p);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out.empty() ? "unknown" : out;
  }

  const BenchFlags& f_;
  std::string self_;
  fs::path work_;
  std::vector<std::string> engines_, baselines_;
  std::string mpiPipeline_, torchPipeline_;
};

}  // namespace

int runBench(const BenchFlags& flags) {
  try {
    return Bench(flags).run();
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "moedist bench: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "moedist bench: {}\n", e.what());
    return 1;
  }
}

}  // namespace moedist::tool
