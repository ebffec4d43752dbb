#include "harness/shm/shm_run.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdlib>
#include <stdexcept>

#include "harness/shm/processes.h"
#include "moedist/shm.h"

namespace moedist::testing {

namespace {

constexpr size_t kMaxFailures = 50;
// What the parent and the barriers allow beyond the deadline of a call: building the scenario and computing the
// reference model in every child, the checks between calls, many processes on few cores.
constexpr std::chrono::seconds kMargin{60};
constexpr const char* kEndMark = "end";

// --- The encoding: a sequence of fields, each "<length>:<bytes>".

void put(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

void put(std::string& out, int64_t v) {
  put(out, std::to_string(v));
}

void put(std::string& out, double v) {
  put(out, fmt::format("{:.17g}", v));
}

void put(std::string& out, const std::vector<double>& values) {
  put(out, static_cast<int64_t>(values.size()));
  for (double v : values) put(out, v);
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool field(std::string_view* out) {
    const size_t colon = in_.find(':');
    if (colon == std::string_view::npos) return false;
    size_t n = 0;
    const auto [p, ec] = std::from_chars(in_.data(), in_.data() + colon, n);
    if (ec != std::errc() || p != in_.data() + colon || n > in_.size() - colon - 1) return false;
    *out = in_.substr(colon + 1, n);
    in_.remove_prefix(colon + 1 + n);
    return true;
  }
  bool str(std::string* out) {
    std::string_view f;
    if (!field(&f)) return false;
    out->assign(f);
    return true;
  }
  bool num(int64_t* out) {
    std::string_view f;
    if (!field(&f)) return false;
    const auto [p, ec] = std::from_chars(f.data(), f.data() + f.size(), *out);
    return ec == std::errc() && p == f.data() + f.size();
  }
  bool num(int* out) {
    int64_t v = 0;
    if (!num(&v)) return false;
    *out = static_cast<int>(v);
    return true;
  }
  bool num(double* out) {
    std::string f;
    if (!str(&f) || f.empty()) return false;
    char* end = nullptr;
    *out = std::strtod(f.c_str(), &end);
    return end == f.c_str() + f.size();
  }
  bool nums(std::vector<double>* out) {
    int64_t n = 0;
    if (!num(&n) || n < 0 || n > 1 << 24) return false;
    out->resize(static_cast<size_t>(n));
    for (double& v : *out)
      if (!num(&v)) return false;
    return true;
  }
  bool status(Status* out) {
    int64_t code = 0;
    std::string message;
    if (!num(&code) || !str(&message)) return false;
    *out = Status(static_cast<StatusCode>(code), std::move(message));
    return true;
  }
  bool empty() const { return in_.empty(); }

 private:
  std::string_view in_;
};

void putStatus(std::string& out, const Status& s) {
  put(out, static_cast<int64_t>(s.code()));
  put(out, s.message());
}

std::string label(int W, int p) {
  return fmt::format("tp {} ep rank {}", p / W, p % W);
}

// The part of child p (EP rank p % W of TP group p / W): its communicators, then its rank.
RunResult runChild(const Scenario& sc, const RunOptions& o, int p, const std::vector<ShmUniqueId>& epIds,
                   const std::vector<ShmUniqueId>& tpIds, ProcessBarrier& barrier, std::atomic<int>* createFailures) {
  const int W = sc.cfg.W, G = sc.numGroups();
  const int tpIdx = p / W, epRank = p % W;
  const CommOptions co = commOptionsFor(o);
  RunResult failed;
  Communicator ep, tp;
  // Both, even when the first fails: the members of the other communicator wait for this process otherwise.
  const Status epStatus = createShmCommunicator(epIds[static_cast<size_t>(tpIdx)], W, epRank, co, &ep);
  Status tpStatus;
  if (sc.cfg.tp >= 1) tpStatus = createShmCommunicator(tpIds[static_cast<size_t>(epRank)], G, tpIdx, co, &tp);
  if (!epStatus.ok()) failed.failures.push_back(label(W, p) + ": createShmCommunicator (EP): " + epStatus.toString());
  if (!tpStatus.ok()) failed.failures.push_back(label(W, p) + ": createShmCommunicator (TP): " + tpStatus.toString());
  if (!failed.failures.empty()) createFailures->fetch_add(1);
  // Every process learns whether all could create theirs, so that none runs into a deadline waiting for one that
  // stopped here. The bound: the connect timeout of createShmCommunicator (HCCL_CONNECT_TIMEOUT, 120 s by default).
  if (!barrier.arriveAndWait(std::chrono::seconds(180)) && failed.failures.empty()) {
    failed.failures.push_back(label(W, p) + ": the processes did not all get past creating their communicators");
    return failed;
  }
  if (!failed.failures.empty()) return failed;
  if (createFailures->load() != 0) {
    failed.failures.push_back(label(W, p) + ": not run: another process could not create its communicators");
    return failed;
  }
  RunOptions ro = o;
  const auto barrierTimeout = std::chrono::duration_cast<std::chrono::milliseconds>(o.timeout + kMargin);
  ro.rankBarrier = [&barrier, barrierTimeout] {
    if (!barrier.arriveAndWait(barrierTimeout))
      throw std::runtime_error(fmt::format(
          "the process barrier before an operator was broken: another process died, or did not arrive within {} ms",
          barrierTimeout.count()));
  };
  RunResult result = runScenarioRank(sc, ro, tpIdx, epRank, ep, sc.cfg.tp >= 1 ? &tp : nullptr);
  // The processes stay until every one has run its rank, as MPI processes stay until MPI_Finalize: a rank that skips
  // a call (deadline tests) is late, not gone. (That members may also exit at once is tested apart.)
  if (!barrier.arriveAndWait(barrierTimeout) && result.ok())
    result.failures.push_back(label(W, p) + ": the final process barrier failed: a process died or did not finish");
  return result;
}

}  // namespace

std::string encodeRunResult(const RunResult& r) {
  std::string out;
  put(out, static_cast<int64_t>(r.ranks.size()));
  for (const RankResult& k : r.ranks) {
    put(out, int64_t{k.tpIdx});
    put(out, int64_t{k.epRank});
    put(out, int64_t{k.participates ? 1 : 0});
    put(out, k.ownRows);
    put(out, k.totalRows);
    putStatus(out, k.dispatchStatus);
    putStatus(out, k.combineStatus);
    put(out, k.dispatchSeconds);
    put(out, k.combineSeconds);
    put(out, k.dispatchLayerSeconds);
    put(out, k.combineLayerSeconds);
    put(out, k.peakRssBytes);
  }
  put(out, static_cast<int64_t>(r.failures.size()));
  for (const std::string& f : r.failures) put(out, f);
  put(out, r.dispatchSeconds);
  put(out, r.combineSeconds);
  put(out, r.dispatchBytes);
  put(out, r.combineBytes);
  put(out, kEndMark);
  return out;
}

bool decodeRunResult(std::string_view bytes, RunResult* out) {
  Reader in(bytes);
  RunResult r;
  int64_t n = 0;
  if (!in.num(&n) || n < 0 || n > 1 << 20) return false;
  r.ranks.resize(static_cast<size_t>(n));
  for (RankResult& k : r.ranks) {
    int64_t participates = 0;
    if (!in.num(&k.tpIdx) || !in.num(&k.epRank) || !in.num(&participates) || !in.num(&k.ownRows) ||
        !in.num(&k.totalRows) || !in.status(&k.dispatchStatus) || !in.status(&k.combineStatus) ||
        !in.num(&k.dispatchSeconds) || !in.num(&k.combineSeconds) || !in.nums(&k.dispatchLayerSeconds) ||
        !in.nums(&k.combineLayerSeconds) || !in.num(&k.peakRssBytes))
      return false;
    k.participates = participates != 0;
  }
  if (!in.num(&n) || n < 0 || n > 1 << 20) return false;
  r.failures.resize(static_cast<size_t>(n));
  for (std::string& f : r.failures)
    if (!in.str(&f)) return false;
  std::string end;
  if (!in.num(&r.dispatchSeconds) || !in.num(&r.combineSeconds) || !in.num(&r.dispatchBytes) ||
      !in.num(&r.combineBytes) || !in.str(&end) || end != kEndMark || !in.empty())
    return false;
  *out = std::move(r);
  return true;
}

RunResult mergeRunResults(int W, const std::vector<RunResult>& perProcess) {
  RunResult job;
  bool everyRankRan = true;
  std::vector<std::string> failures;
  for (size_t p = 0; p < perProcess.size(); ++p) {
    const RunResult& r = perProcess[p];
    if (r.ranks.size() == 1) {
      const RankResult& k = r.ranks.front();
      job.ranks.push_back(k);
      addRankTimes(k, &job);  // the slowest rank per call, as runScenario
    } else {
      everyRankRan = false;
      RankResult k;
      k.tpIdx = static_cast<int>(p) / W;
      k.epRank = static_cast<int>(p) % W;
      job.ranks.push_back(k);
    }
    job.dispatchBytes += r.dispatchBytes;
    job.combineBytes += r.combineBytes;
    failures.insert(failures.end(), r.failures.begin(), r.failures.end());
  }
  if (failures.size() > kMaxFailures) {
    const size_t more = failures.size() - kMaxFailures;
    failures.resize(kMaxFailures);
    failures.push_back(fmt::format("... and {} more", more));
  }
  job.failures = std::move(failures);
  if (!everyRankRan) job.ranks.clear();  // no rows table: some rank never ran
  return job;
}

RunResult runScenarioShm(const Scenario& sc, const RunOptions& o) {
  RunResult failed;
  if (o.api != Api::kCpp) {
    failed.failures.push_back("runScenarioShm calls the C++ API only: use Api::kCpp");
    return failed;
  }
  const int W = sc.cfg.W, G = sc.numGroups(), N = W * G;
  if (W < 1) {
    failed.failures.push_back(fmt::format("runScenarioShm: the scenario has W = {}", W));
    return failed;
  }
  // The unique ids, made here and inherited by the children.
  std::vector<ShmUniqueId> epIds(static_cast<size_t>(G)), tpIds(static_cast<size_t>(sc.cfg.tp >= 1 ? W : 0));
  for (auto* ids : {&epIds, &tpIds}) {
    for (ShmUniqueId& id : *ids) {
      if (Status s = getShmUniqueId(&id); !s.ok()) {
        failed.failures.push_back("getShmUniqueId: " + s.toString());
        return failed;
      }
    }
  }
  ProcessBarrier barrier(N);
  SharedBlock flags(sizeof(std::atomic<int>));
  auto* createFailures = new (flags.data()) std::atomic<int>(0);

  const auto deadline = ProcessClock::now() + o.timeout + kMargin;
  std::vector<ChildExit> exits;
  {
    ChildProcesses children(N, [&](int p) {
      RunResult r;
      try {
        r = runChild(sc, o, p, epIds, tpIds, barrier, createFailures);
      } catch (const std::exception& e) {
        r = RunResult();
        r.failures.push_back(label(W, p) + ": " + e.what());
      }
      return encodeRunResult(r);
    });
    // A child that ends without finishing breaks the barrier: the others fail at once rather than at its deadline.
    exits = children.wait(deadline, [&](int, const ChildExit& x) {
      if (!x.finished) barrier.breakAll();
    });
  }

  std::vector<RunResult> perProcess(static_cast<size_t>(N));
  for (int p = 0; p < N; ++p) {
    const ChildExit& x = exits[static_cast<size_t>(p)];
    RunResult& r = perProcess[static_cast<size_t>(p)];
    const std::string who = fmt::format("{} (process {})", label(W, p), x.pid);
    if (x.killed) {
      r.failures.push_back(
          fmt::format("{}: did not finish within {} ms (the run's timeout {} ms + {} s): {}", who,
                      std::chrono::duration_cast<std::chrono::milliseconds>(o.timeout + kMargin).count(),
                      o.timeout.count(), kMargin.count(), x.describe()));
    } else if (!decodeRunResult(x.output, &r)) {
      r = RunResult();
      r.failures.push_back(
          fmt::format("{}: {} without a complete result{}", who, x.describe(),
                      x.output.empty() ? std::string() : " (it sent: " + x.output.substr(0, 300) + ")"));
    } else if (!x.finished) {
      r.failures.push_back(fmt::format("{}: {}", who, x.describe()));
    }
  }
  return mergeRunResults(W, perProcess);
}

}  // namespace moedist::testing
