// Faults of the shared-memory engine, with processes forked by the test and the C++ API called directly:
//  - kill -9 of a member while the others are in a call (the member idle, or itself in the middle of calls): every
//    survivor's call fails naming it, long before the deadline (the time from the kill to each survivor's error is
//    printed), and the survivors go on, on the same communicator, with an elastic scale-in that excludes it (checked
//    against the reference model by the harness);
//  - SIGSTOP of a member past the deadline (before its call, or inside it): the others time out naming it, and after
//    SIGCONT the stopped member gets an error too, never a result;
//  - /dev/shm: no entry named moedist* while the communicators live, after they are destroyed, after kill -9 of a
//    member (also during the bootstrap);
//  - tensors allocated in the segment (shmAllocate) are published in place, with right results;
//  - members that exit right after their last call: the others' calls still succeed;
//  - a process of another user cannot join (run as root: the child switches to nobody);
//  - through the harness (runScenarioShm): a rank that skips a call makes the others time out naming it.
// Children report to the test over a pipe as "key=value" lines; they never use gtest themselves.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness/features.h"
#include "harness/pipeline.h"
#include "harness/shm/processes.h"
#include "harness/shm/shm_run.h"
#include "moedist/moedist.h"
#include "moedist/shm.h"

namespace moedist::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kDeadline{30000};        // the communicators' call deadline in the kill tests
constexpr double kMaxKillToErrorSeconds = 2.0;  // "well below the deadline"
constexpr milliseconds kStopTimeout{2000};      // the call deadline in the stop tests

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(ProcessClock::now().time_since_epoch()).count();
}

void sleepMs(int ms) {
  std::this_thread::sleep_for(milliseconds(ms));
}

// Waits (polling) until pred() or `timeout`; returns pred().
template <class Pred>
bool waitUntil(Pred pred, milliseconds timeout) {
  const auto end = ProcessClock::now() + timeout;
  while (!pred() && ProcessClock::now() < end) sleepMs(2);
  return pred();
}

// Whether `message` names `rank` as the engine names ranks ("rank 2", "rank(s) 2", "rank(s) 1, 2").
bool namesRank(const std::string& message, int rank) {
  const std::regex re("rank(\\(s\\))? ([0-9]+, )*" + std::to_string(rank) + "\\b");
  return std::regex_search(message, re);
}

// --- What the children send back: "key=value" lines (values without newlines).

using Report = std::map<std::string, std::string>;

std::string line(const std::string& key, const std::string& value) {
  std::string v = value;
  std::replace(v.begin(), v.end(), '\n', ' ');
  return key + "=" + v + "\n";
}

std::string statusLines(const std::string& key, const Status& s) {
  return line(key + ".ok", s.ok() ? "1" : "0") + line(key + ".code", toString(s.code())) + line(key, s.toString());
}

Report parse(const std::string& out) {
  Report r;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) {
    const size_t eq = l.find('=');
    if (eq != std::string::npos) r[l.substr(0, eq)] = l.substr(eq + 1);
  }
  return r;
}

CommOptions options(milliseconds timeout) {
  CommOptions o;
  o.timeout = timeout;
  return o;
}

// --- One rank's tensors of a small uniform problem (the README example's): W ranks, Bs tokens of bf16 1.0, K = 2
// distinct experts per token among M = W, weights 0.5; combine gets the received rows back unchanged, so every xOut
// element is bf16(0.5 + 0.5) = 1.0.

struct UniformRank {
  static constexpr int64_t Bs = 4, H = 1024, K = 2;
  int64_t W, M, A;
  std::vector<uint16_t> x, residual, gamma, expandX, yOut, xOut;
  std::vector<int32_t> ids, assist, epRecv;
  std::vector<float> weights, dynamicScales, expandScales, rstd;
  std::vector<int64_t> tokenNums;
  DispatchArgs d;
  CombineArgs c;

  UniformRank(int worldSize, int rank) : W(worldSize), M(worldSize), A(Bs * worldSize) {
    x.assign(Bs * H, 0x3F80), residual.assign(Bs * H, 0), gamma.assign(H, 0x3F80);
    ids.resize(Bs * K);
    for (int64_t t = 0; t < Bs; ++t)
      for (int64_t k = 0; k < K; ++k) ids[static_cast<size_t>(t * K + k)] = static_cast<int32_t>((rank + t + k) % M);
    weights.assign(Bs * K, 0.5f);
    expandX.resize(static_cast<size_t>(A * H)), dynamicScales.resize(A), expandScales.resize(A);
    assist.resize(static_cast<size_t>(A * 128)), epRecv.resize(W), tokenNums.resize(1);
    yOut.resize(Bs * H), xOut.resize(Bs * H), rstd.resize(Bs);
    d.moeExpertNum = M;
    d.x = TensorView(x.data(), DType::kBFloat16, {Bs, H});
    d.expertIds = TensorView(ids.data(), DType::kInt32, {Bs, K});
    d.expandX = TensorView(expandX.data(), DType::kBFloat16, {A, H});
    d.dynamicScales = TensorView(dynamicScales.data(), DType::kFloat32, {A});
    d.assistInfoForCombine = TensorView(assist.data(), DType::kInt32, {A * 128});
    d.expertTokenNums = TensorView(tokenNums.data(), DType::kInt64, {1});
    d.epRecvCounts = TensorView(epRecv.data(), DType::kInt32, {W});
    d.tpRecvCounts = TensorView(nullptr, DType::kInt32, {0});
    d.expandScales = TensorView(expandScales.data(), DType::kFloat32, {A});
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
  }
  // Moves x (given a distinct bf16 value per token: 1.0 + rank / 8 + token / 64) and the dispatch output expandX (which
  // combine publishes) into the rank's shared-memory segment (memAlloc): the engine publishes them in place.
  // False when memAlloc gives no memory. Call releaseSegment() before the communicator goes.
  bool placeInSegment(const Communicator& ep, int rank) {
    xShm = static_cast<uint16_t*>(memAlloc(ep, x.size() * 2));
    expandShm = static_cast<uint16_t*>(memAlloc(ep, expandX.size() * 2));
    if (xShm == nullptr || expandShm == nullptr) return false;
    for (int64_t t = 0; t < Bs; ++t) std::fill_n(xShm + t * H, H, static_cast<uint16_t>(0x3F80 + rank * 16 + t * 2));
    d.x = TensorView(xShm, DType::kBFloat16, {Bs, H});
    d.expandX = TensorView(expandShm, DType::kBFloat16, {A, H});
    c.expandX = d.expandX;
    return true;
  }
  void releaseSegment(const Communicator& ep) {
    memFree(ep, xShm);
    memFree(ep, expandShm);
    xShm = expandShm = nullptr;
  }
  uint16_t* xShm = nullptr;
  uint16_t* expandShm = nullptr;

  Status dispatchOnce(const Communicator& ep) { return dispatchV3(ep, nullptr, d); }
  // Combine after a dispatch; false in *right when an xOut element is not 1.0.
  Status combineOnce(const Communicator& ep, bool* right) {
    std::fill(xOut.begin(), xOut.end(), 0);
    const Status s = combineAddRmsNormV2(ep, nullptr, c);
    *right = std::all_of(xOut.begin(), xOut.end(), [](uint16_t v) { return v == 0x3F80; });
    return s;
  }
};

// The survivors' next step after a member died: an elastic scale-in without it, on the same communicator, through the
// harness (runScenarioRank checks this rank's outputs against the reference model).
Scenario scaleInScenario(int W, int removed) {
  Scenario sc;
  sc.cfg.W = W;
  sc.cfg.M = 2 * W;
  sc.cfg.K = 3;
  sc.cfg.H = 1056;
  sc.cfg.Z = 1, sc.cfg.C = 1, sc.specialFraction = 0.1, sc.oriX = true;
  sc.cfg.maskDims = 2;
  sc.bs.assign(static_cast<size_t>(W), 9);
  sc.seed = 4242;
  sc.removedRanks = {removed};
  return sc;
}

std::string scaleInLines(const Communicator& ep, int W, int removed) {
  RunOptions o;
  o.timeout = kDeadline;
  o.syncAroundEachOp = false;
  const RunResult r = runScenarioRank(scaleInScenario(W, removed), o, 0, ep.rank(), ep, nullptr);
  std::string summary = r.summary();
  return line("scalein.ok", r.ok() && r.ranks.size() == 1 ? "1" : "0") + line("scalein.failures", summary);
}

// Entries of /dev/shm named moedist* that were not in `before` and are still there after a moment (an entry of a
// bootstrap running beside this test, in another test process, would be gone by then).
std::vector<std::string> leftovers(const std::vector<std::string>& before) {
  auto fresh = [&] {
    std::vector<std::string> out;
    for (const std::string& e : devShmEntries())
      if (!std::binary_search(before.begin(), before.end(), e)) out.push_back(e);
    return out;
  };
  std::vector<std::string> now = fresh();
  if (now.empty()) return now;
  sleepMs(1500);
  std::vector<std::string> later = fresh(), both;
  std::set_intersection(now.begin(), now.end(), later.begin(), later.end(), std::back_inserter(both));
  return both;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& e : v) s += (s.empty() ? "" : " ") + e;
  return s.empty() ? "(none)" : s;
}

// Shared between the test and its children (a SharedBlock made before fork).
struct Flags {
  std::atomic<int> created;     // members that have their communicator
  std::atomic<int> inCall;      // survivors about to call (or, busy: calls completed)
  std::atomic<int> done;        // survivors whose call returned
  std::atomic<int> go;          // the test lets the survivors call
  std::atomic<int> victimDone;  // the stopped member's call returned
  std::atomic<int> iterations[16];
};

ShmUniqueId newId() {
  ShmUniqueId id{};
  const Status s = getShmUniqueId(&id);
  if (!s.ok()) throw std::runtime_error("getShmUniqueId: " + s.toString());
  return id;
}

// --- kill -9.

struct KillCase {
  std::string name;
  bool victimBusy;  // false: the victim idles and the survivors wait for it in a call; true: all ranks call dispatch
                    // and combine in a loop, and the victim dies in the middle of that
};

void PrintTo(const KillCase& c, std::ostream* os) {
  *os << c.name;
}

class ShmKill : public ::testing::TestWithParam<KillCase> {};

TEST_P(ShmKill, SurvivorsFailNamingTheDeadRankThenScaleIn) {
  constexpr int W = 4, victim = 2;
  const bool busy = GetParam().victimBusy;
  const std::vector<std::string> before = devShmEntries();
  const ShmUniqueId id = newId();
  SharedBlock block(sizeof(Flags));
  Flags* flags = new (block.data()) Flags{};
  ChildProcesses children(W, [&](int rank) -> std::string {
    Communicator ep;
    const Status cs = createShmCommunicator(id, W, rank, options(kDeadline), &ep);
    if (!cs.ok()) return statusLines("create", cs);
    flags->created.fetch_add(1);
    UniformRank u(W, rank);
    if (!busy && rank == victim) {
      for (;;) pause();  // alive, never calling, until killed
    }
    if (!busy) {
      flags->inCall.fetch_add(1);
      const Status s = u.dispatchOnce(ep);
      const int64_t at = nowNs();
      return statusLines("call", s) + line("errorAt", std::to_string(at)) + scaleInLines(ep, W, victim);
    }
    // Busy: dispatch + combine until a call fails (the victim is killed in the middle).
    for (int it = 0; it < 1000000; ++it) {
      Status s = u.dispatchOnce(ep);
      bool right = true;
      if (s.ok()) s = u.combineOnce(ep, &right);
      if (s.ok() && !right)
        return line("wrong", "a combine succeeded with wrong xOut in iteration " + std::to_string(it));
      if (!s.ok()) {
        const int64_t at = nowNs();
        return statusLines("call", s) + line("errorAt", std::to_string(at)) + line("iterations", std::to_string(it)) +
               scaleInLines(ep, W, victim);
      }
      flags->iterations[rank].store(it + 1);
    }
    return line("call.ok", "1") + line("call", "no call failed in 1000000 iterations");
  });
  // Every member created, then the survivors in their call (idle) or every rank through 20 iterations (busy).
  ASSERT_TRUE(waitUntil([&] { return flags->created.load() == W; }, seconds(60))) << "the members did not all join";
  if (!busy) {
    ASSERT_TRUE(waitUntil([&] { return flags->inCall.load() == W - 1; }, seconds(30)));
    sleepMs(300);  // inside the call, waiting for the victim
  } else {
    ASSERT_TRUE(waitUntil(
        [&] {
          for (int r = 0; r < W; ++r)
            if (flags->iterations[r].load() < 20) return false;
          return true;
        },
        seconds(30)))
        << "the ranks did not get through 20 iterations";
  }
  ASSERT_EQ(kill(children.pid(victim), SIGKILL), 0);
  const int64_t killedAt = nowNs();
  const auto exits = children.wait(ProcessClock::now() + kDeadline + seconds(60));

  EXPECT_TRUE(WIFSIGNALED(exits[victim].status) && WTERMSIG(exits[victim].status) == SIGKILL)
      << exits[victim].describe();
  for (int r = 0; r < W; ++r) {
    if (r == victim) continue;
    const ChildExit& x = exits[static_cast<size_t>(r)];
    ASSERT_TRUE(x.finished) << "rank " << r << ": " << x.describe() << "\n" << x.output;
    Report rep = parse(x.output);
    EXPECT_EQ(rep["wrong"], "") << "rank " << r;
    EXPECT_EQ(rep["call.ok"], "0") << "rank " << r << ": its call did not fail: " << rep["call"] << rep["create"];
    EXPECT_TRUE(namesRank(rep["call"], victim))
        << "rank " << r << ": the error does not name rank " << victim << ": " << rep["call"];
    const double seconds =
        static_cast<double>(std::stoll(rep["errorAt"].empty() ? "0" : rep["errorAt"]) - killedAt) / 1e9;
    EXPECT_LT(seconds, kMaxKillToErrorSeconds) << "rank " << r << ": " << rep["call"];
    std::printf("[ kill -9  ] %s: rank %d's call failed %.1f ms after the kill of rank %d (deadline %lld ms)%s: %s\n",
                GetParam().name.c_str(), r, seconds * 1e3, victim, static_cast<long long>(kDeadline.count()),
                busy ? (" after " + rep["iterations"] + " iterations").c_str() : "", rep["call"].c_str());
    EXPECT_EQ(rep["scalein.ok"], "1") << "rank " << r << ": the scale-in without rank " << victim << " failed:\n"
                                      << rep["scalein.failures"];
  }
  std::fflush(stdout);
  EXPECT_EQ(leftovers(before), std::vector<std::string>()) << "left in /dev/shm";
}

INSTANTIATE_TEST_SUITE_P(Shm, ShmKill,
                         ::testing::Values(KillCase{"VictimIdle", false}, KillCase{"VictimInCalls", true}),
                         [](const ::testing::TestParamInfo<KillCase>& info) { return info.param.name; });

// --- SIGSTOP past the deadline.

struct StopCase {
  std::string name;
  bool insideCall;  // false: stopped before it calls; true: stopped inside its dispatch, before the others arrive
};

void PrintTo(const StopCase& c, std::ostream* os) {
  *os << c.name;
}

class ShmStop : public ::testing::TestWithParam<StopCase> {};

TEST_P(ShmStop, OthersTimeOutNamingItAndItFailsAfterSigcont) {
  constexpr int W = 3, victim = 1;
  const bool inside = GetParam().insideCall;
  const std::vector<std::string> before = devShmEntries();
  const ShmUniqueId id = newId();
  SharedBlock block(sizeof(Flags));
  Flags* flags = new (block.data()) Flags{};
  ChildProcesses children(W, [&](int rank) -> std::string {
    Communicator ep;
    const Status cs = createShmCommunicator(id, W, rank, options(kStopTimeout), &ep);
    if (!cs.ok()) return statusLines("create", cs);
    flags->created.fetch_add(1);
    UniformRank u(W, rank);
    if (rank == victim) {
      if (!inside) {
        raise(SIGSTOP);  // stopped before the call; the test resumes it once the others have timed out
      } else {
        flags->inCall.fetch_add(1);  // the test stops it once it is inside its dispatch
      }
      const auto t0 = ProcessClock::now();
      const Status s = u.dispatchOnce(ep);
      const double sec = std::chrono::duration<double>(ProcessClock::now() - t0).count();
      flags->victimDone.store(1);
      std::string out = statusLines("call", s) + line("seconds", std::to_string(sec));
      if (s.ok()) {  // never a result: say whether it was even right
        bool right = true;
        const Status c = u.combineOnce(ep, &right);
        out += line("combineAfter", c.toString() + (right ? " (xOut right)" : " (xOut wrong)"));
      }
      return out;
    }
    if (inside && !waitUntil([&] { return flags->go.load() != 0; }, seconds(60))) return line("call", "no go");
    const auto t0 = ProcessClock::now();
    const Status s = u.dispatchOnce(ep);
    const double sec = std::chrono::duration<double>(ProcessClock::now() - t0).count();
    flags->done.fetch_add(1);
    // Alive until the stopped member's call has returned: it must fail by the protocol, not because we are gone.
    waitUntil([&] { return flags->victimDone.load() != 0; }, seconds(60));
    return statusLines("call", s) + line("seconds", std::to_string(sec));
  });
  ASSERT_TRUE(waitUntil([&] { return flags->created.load() == W; }, seconds(60))) << "the members did not all join";
  const pid_t vpid = children.pid(victim);
  if (inside) {
    ASSERT_TRUE(waitUntil([&] { return flags->inCall.load() == 1; }, seconds(30)));
    sleepMs(300);  // inside its dispatch, waiting for the others
    ASSERT_EQ(kill(vpid, SIGSTOP), 0);
    flags->go.store(1);
  }
  // The victim is stopped (waitpid sees it: the test is its parent).
  int status = 0;
  ASSERT_EQ(waitpid(vpid, &status, WUNTRACED), vpid);
  ASSERT_TRUE(WIFSTOPPED(status)) << status;
  // The others time out (kStopTimeout), then the victim goes on.
  const bool othersDone = waitUntil([&] { return flags->done.load() == W - 1; }, kStopTimeout + seconds(20));
  kill(vpid, SIGCONT);
  ASSERT_TRUE(othersDone) << "the others' calls did not return within the deadline + 20 s";
  const auto exits = children.wait(ProcessClock::now() + seconds(60));
  for (int r = 0; r < W; ++r) {
    const ChildExit& x = exits[static_cast<size_t>(r)];
    ASSERT_TRUE(x.finished) << "rank " << r << ": " << x.describe() << "\n" << x.output;
    Report rep = parse(x.output);
    EXPECT_EQ(rep["call.ok"], "0") << "rank " << r << ": its call did not fail: " << rep["call"] << rep["create"]
                                   << rep["combineAfter"];
    if (r != victim) {
      EXPECT_EQ(rep["call.code"], toString(StatusCode::kTimeout)) << "rank " << r << ": " << rep["call"];
      EXPECT_TRUE(namesRank(rep["call"], victim)) << "rank " << r << ": " << rep["call"];
    }
    std::printf("[ SIGSTOP  ] %s: rank %d%s: failed after %.0f ms: %s\n", GetParam().name.c_str(), r,
                r == victim ? " (stopped, then resumed)" : "",
                std::stod(rep["seconds"].empty() ? "0" : rep["seconds"]) * 1e3, rep["call"].c_str());
  }
  std::fflush(stdout);
  EXPECT_EQ(leftovers(before), std::vector<std::string>()) << "left in /dev/shm";
}

INSTANTIATE_TEST_SUITE_P(Shm, ShmStop,
                         ::testing::Values(StopCase{"BeforeItsCall", false}, StopCase{"InsideItsCall", true}),
                         [](const ::testing::TestParamInfo<StopCase>& info) { return info.param.name; });

// --- Tensors in the segment (memAlloc): published in place, and the results still right.

TEST(ShmMemAlloc, PublishedTensorsInTheSegment) {
  constexpr int W = 4;
  const ShmUniqueId id = newId();
  ChildProcesses children(W, [&](int rank) -> std::string {
    Communicator ep;
    const Status cs = createShmCommunicator(id, W, rank, options(kDeadline), &ep);
    if (!cs.ok()) return statusLines("call", cs);
    UniformRank u(W, rank);
    if (!u.placeInSegment(ep, rank)) return line("call.ok", "0") + line("call", "memAlloc gave no memory");
    std::string out;
    for (int layer = 0; layer < 2 && out.empty(); ++layer) {
      Status s = u.dispatchOnce(ep);
      bool ignored = true;
      if (s.ok()) s = u.combineOnce(ep, &ignored);
      if (!s.ok()) out = statusLines("call", s);
      // xOut of token t = bf16(0.5 x + 0.5 x) = x, this rank's value of token t.
      for (int64_t t = 0; t < UniformRank::Bs && out.empty(); ++t)
        for (int64_t h = 0; h < UniformRank::H && out.empty(); ++h)
          if (u.xOut[static_cast<size_t>(t * UniformRank::H + h)] != u.xShm[t * UniformRank::H + h])
            out = line("call.ok", "1") + line("wrong", "layer " + std::to_string(layer) + " xOut[" + std::to_string(t) +
                                                           "][" + std::to_string(h) + "]");
    }
    u.releaseSegment(ep);
    return out.empty() ? line("call.ok", "1") : out;
  });
  const auto exits = children.wait(ProcessClock::now() + kDeadline + seconds(30));
  for (int r = 0; r < W; ++r) {
    const ChildExit& x = exits[static_cast<size_t>(r)];
    ASSERT_TRUE(x.finished) << "rank " << r << ": " << x.describe() << "\n" << x.output;
    Report rep = parse(x.output);
    EXPECT_EQ(rep["call.ok"], "1") << "rank " << r << ": " << rep["call"];
    EXPECT_EQ(rep["wrong"], "") << "rank " << r << ": wrong combine output at " << rep["wrong"];
  }
}

// --- Members that exit as soon as their last call has returned (as processes of an application do): the others'
// calls must still succeed, whatever the order in which they see the exit and the events the member posted before.

TEST(ShmExit, MembersExitRightAfterTheirLastCall) {
  constexpr int W = 8, kRounds = 30;
  const std::vector<std::string> before = devShmEntries();
  // Processes that keep the cores busy, as other jobs of a loaded host do: the members are preempted at any point.
  const int kSpinners = static_cast<int>(std::max(2L, sysconf(_SC_NPROCESSORS_ONLN)));
  SharedBlock stopBlock(sizeof(std::atomic<int>));
  auto* stop = new (stopBlock.data()) std::atomic<int>(0);
  ChildProcesses spinners(kSpinners, [&](int) {
    while (stop->load(std::memory_order_relaxed) == 0) {
    }
    return std::string();
  });
  int failedRounds = 0;
  std::string firstFailure;
  for (int round = 0; round < kRounds; ++round) {
    const ShmUniqueId id = newId();
    ChildProcesses children(W, [&](int rank) -> std::string {
      Communicator ep;
      const Status cs = createShmCommunicator(id, W, rank, options(kDeadline), &ep);
      if (!cs.ok()) return statusLines("call", cs);
      UniformRank u(W, rank);
      Status s = u.dispatchOnce(ep);
      bool right = true;
      if (s.ok()) s = u.combineOnce(ep, &right);
      return statusLines("call", s) + line("right", right ? "1" : "0");  // and exit at once
    });
    const auto exits = children.wait(ProcessClock::now() + kDeadline + seconds(30));
    bool failed = false;
    for (int r = 0; r < W; ++r) {
      const ChildExit& x = exits[static_cast<size_t>(r)];
      Report rep = parse(x.output);
      if (x.finished && rep["call.ok"] == "1" && rep["right"] == "1") continue;
      if (!failed && firstFailure.empty()) {  // every rank of the first failing round
        for (int q = 0; q < W; ++q) {
          const ChildExit& y = exits[static_cast<size_t>(q)];
          Report qr = parse(y.output);
          firstFailure += "\n  round " + std::to_string(round) + " rank " + std::to_string(q) + ": " + y.describe() +
                          ": " + (qr["call.ok"] == "1" ? std::string("ok") : qr["call"]) +
                          (qr["right"] == "0" ? " (wrong xOut)" : "");
        }
      }
      failed = true;
    }
    failedRounds += failed ? 1 : 0;
  }
  stop->store(1);
  spinners.wait(ProcessClock::now() + seconds(10));
  EXPECT_EQ(failedRounds, 0) << failedRounds << " of " << kRounds << " rounds failed; the first one:" << firstFailure;
  std::printf("[ exit     ] %d of %d rounds of %d members failed (with %d busy processes beside them)\n", failedRounds,
              kRounds, W, kSpinners);
  EXPECT_EQ(leftovers(before), std::vector<std::string>()) << "left in /dev/shm";
}

// --- /dev/shm.

// Nothing of a communicator has a name in /dev/shm once every member has joined, nor after the members destroyed it.
TEST(ShmDevShm, NothingNamedWhileAliveNorAfterDestruction) {
  constexpr int W = 3;
  const std::vector<std::string> before = devShmEntries();
  const ShmUniqueId id = newId();
  SharedBlock block(sizeof(Flags));
  Flags* flags = new (block.data()) Flags{};
  ChildProcesses children(W, [&](int rank) -> std::string {
    std::string out;
    {
      Communicator ep;
      const Status cs = createShmCommunicator(id, W, rank, options(kDeadline), &ep);
      if (!cs.ok()) return statusLines("create", cs);
      flags->created.fetch_add(1);
      UniformRank u(W, rank);
      Status s = u.dispatchOnce(ep);
      bool right = false;
      if (s.ok()) s = u.combineOnce(ep, &right);
      out = statusLines("call", s) + line("right", right ? "1" : "0");
      flags->done.fetch_add(1);
      waitUntil([&] { return flags->go.load() != 0; }, seconds(60));  // alive while the test looks
    }
    return out;
  });
  ASSERT_TRUE(waitUntil([&] { return flags->done.load() == W; }, seconds(60)));
  const std::vector<std::string> whileAlive = leftovers(before);
  flags->go.store(1);
  const auto exits = children.wait(ProcessClock::now() + seconds(60));
  for (int r = 0; r < W; ++r) {
    ASSERT_TRUE(exits[static_cast<size_t>(r)].finished) << exits[static_cast<size_t>(r)].describe();
    Report rep = parse(exits[static_cast<size_t>(r)].output);
    EXPECT_EQ(rep["call.ok"], "1") << "rank " << r << ": " << rep["call"] << rep["create"];
    EXPECT_EQ(rep["right"], "1") << "rank " << r;
  }
  EXPECT_EQ(whileAlive, std::vector<std::string>()) << "named in /dev/shm while every member had joined";
  EXPECT_EQ(leftovers(before), std::vector<std::string>()) << "left in /dev/shm after destruction";
  // The harness's runs (two EP groups and TP pairs) leave nothing either.
  Scenario sc = features::base();
  features::tp2(sc);
  RunOptions o;
  o.timeout = kDeadline;
  const RunResult r = runScenarioShm(sc, o);
  EXPECT_TRUE(r.ok()) << r.summary();
  EXPECT_EQ(leftovers(before), std::vector<std::string>()) << "left in /dev/shm after runScenarioShm";
}

// kill -9 of a member during the bootstrap (it has registered, one member never comes): the member left fails within
// HCCL_CONNECT_TIMEOUT naming a rank, and no name of the communicator stays in /dev/shm.
TEST(ShmDevShm, NothingLeftAfterKillDuringBootstrap) {
  constexpr int W = 3, victim = 1;  // rank 2 never joins
  const std::vector<std::string> before = devShmEntries();
  const ShmUniqueId id = newId();
  SharedBlock block(sizeof(Flags));
  Flags* flags = new (block.data()) Flags{};
  ChildProcesses children(2, [&](int rank) -> std::string {
    setenv("HCCL_CONNECT_TIMEOUT", "8", 1);
    flags->inCall.fetch_add(1);
    Communicator ep;
    const auto t0 = ProcessClock::now();
    const Status cs = createShmCommunicator(id, W, rank, options(kDeadline), &ep);
    const double sec = std::chrono::duration<double>(ProcessClock::now() - t0).count();
    return statusLines("create", cs) + line("seconds", std::to_string(sec));
  });
  ASSERT_TRUE(waitUntil([&] { return flags->inCall.load() == 2; }, seconds(30)));
  sleepMs(500);  // both inside createShmCommunicator, waiting for rank 2
  const std::vector<std::string> during = devShmEntries();
  ASSERT_EQ(kill(children.pid(victim), SIGKILL), 0);
  const auto exits = children.wait(ProcessClock::now() + seconds(60));
  const Report rep = parse(exits[0].output);
  ASSERT_TRUE(exits[0].finished) << exits[0].describe();
  EXPECT_EQ(rep.at("create.ok"), "0") << rep.at("create");
  EXPECT_LT(std::stod(rep.at("seconds")), 8.0 + 5.0) << rep.at("create");
  std::printf("[ bootstrap] rank 0 failed after %.0f ms: %s\n[ bootstrap] /dev/shm during the bootstrap: %s\n",
              std::stod(rep.at("seconds")) * 1e3, rep.at("create").c_str(), join(during).c_str());
  EXPECT_EQ(leftovers(before), std::vector<std::string>()) << "left in /dev/shm";
}

// --- Deadlines through the harness: one process skips a call; every other one returns kTimeout naming it, near the
// deadline, with nothing half-written; the next run (fresh communicators) matches.

RunOptions shmOptions() {
  RunOptions o;
  o.timeout = std::chrono::seconds(60);
  return o;
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

constexpr std::chrono::milliseconds kShortTimeout{1500};
constexpr double kDeadlineMarginSeconds = 3.0;  // polling, the abandon events, 4 processes on 2 cores

void expectTimedOut(const RunResult& r, int skipper, bool dispatch) {
  ASSERT_EQ(r.ranks.size(), 4u) << r.summary();
  const double timeout = std::chrono::duration<double>(kShortTimeout).count();
  double slowest = 0;
  for (const RankResult& me : r.ranks) {
    const Status& s = dispatch ? me.dispatchStatus : me.combineStatus;
    const double seconds = dispatch ? me.dispatchSeconds : me.combineSeconds;
    if (me.epRank == skipper) continue;
    EXPECT_EQ(s.code(), StatusCode::kTimeout) << "rank " << me.epRank << ": " << s.toString();
    EXPECT_TRUE(contains(s.message(), "rank(s) " + std::to_string(skipper)))
        << "rank " << me.epRank << ": " << s.message();
    EXPECT_TRUE(contains(s.message(), dispatch ? "DispatchV3" : "CombineAddRmsNormV2")) << s.message();
    EXPECT_GE(seconds, timeout * 0.5) << "rank " << me.epRank << ": " << s.toString();
    EXPECT_LE(seconds, timeout + kDeadlineMarginSeconds) << "rank " << me.epRank << ": " << s.toString();
    slowest = std::max(slowest, seconds);
  }
  for (const std::string& f : r.failures) {
    EXPECT_FALSE(contains(f, "half-written")) << f;
    EXPECT_FALSE(contains(f, "ep rank " + std::to_string(skipper) + ":")) << "the skipper failed: " << f;
  }
  std::printf("[ deadline ] slowest timed-out %s returned after %.0f ms (timeout %lld ms)\n",
              dispatch ? "dispatch" : "combine", slowest * 1e3, static_cast<long long>(kShortTimeout.count()));
}

TEST(ShmDeadlines, DispatchRankThatNeverArrivesIsNamed) {
  const Scenario sc = features::worldScenario(4, 197);
  RunOptions o = shmOptions();
  o.timeout = kShortTimeout;
  o.skipDispatch = [](int, int epRank) { return epRank == 3; };
  expectTimedOut(runScenarioShm(sc, o), 3, true);
  const RunResult again = runScenarioShm(sc, shmOptions());
  EXPECT_TRUE(again.ok()) << again.summary();
}

TEST(ShmDeadlines, CombineRankThatNeverArrivesIsNamed) {
  const Scenario sc = features::worldScenario(4, 197);
  RunOptions o = shmOptions();
  o.timeout = kShortTimeout;
  o.skipCombine = [](int, int epRank) { return epRank == 0; };
  expectTimedOut(runScenarioShm(sc, o), 0, false);
}

// --- Another user.

// A process of another user, with a valid id, tries to join as a member: it must fail (at once, not at a deadline),
// and the member that waits for it must not succeed.
TEST(ShmSecurity, ProcessOfAnotherUserCannotJoin) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to start a child as another user (nobody, uid 65534)";
  const std::vector<std::string> before = devShmEntries();
  const ShmUniqueId id = newId();
  SharedBlock block(sizeof(Flags));
  Flags* flags = new (block.data()) Flags{};
  ChildProcesses children(2, [&](int rank) -> std::string {
    setenv("HCCL_CONNECT_TIMEOUT", "6", 1);
    if (rank == 1) {  // the intruder: another user, once rank 0 is waiting
      if (!waitUntil([&] { return flags->inCall.load() == 1; }, seconds(30)))
        return line("create", "rank 0 never came");
      sleepMs(300);
      if (setgid(65534) != 0 || setuid(65534) != 0) return line("create", "setuid(65534) failed");
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // cleared by the change of credentials
    } else {
      flags->inCall.fetch_add(1);
    }
    Communicator ep;
    const auto t0 = ProcessClock::now();
    const Status cs = createShmCommunicator(id, 2, rank, options(kDeadline), &ep);
    const double sec = std::chrono::duration<double>(ProcessClock::now() - t0).count();
    return statusLines("create", cs) + line("seconds", std::to_string(sec)) + line("uid", std::to_string(getuid()));
  });
  const auto exits = children.wait(ProcessClock::now() + seconds(60));
  for (int r = 0; r < 2; ++r) {
    const ChildExit& x = exits[static_cast<size_t>(r)];
    ASSERT_TRUE(x.finished) << "rank " << r << ": " << x.describe() << "\n" << x.output;
    Report rep = parse(x.output);
    EXPECT_EQ(rep["create.ok"], "0") << "rank " << r << " (uid " << rep["uid"] << ") joined: " << rep["create"];
    std::printf("[ security ] rank %d (uid %s): failed after %.0f ms: %s\n", r, rep["uid"].c_str(),
                std::stod(rep["seconds"].empty() ? "0" : rep["seconds"]) * 1e3, rep["create"].c_str());
    if (r == 1) {
      EXPECT_LT(std::stod(rep["seconds"].empty() ? "99" : rep["seconds"]), 3.0) << "not at once";
    }
  }
  std::fflush(stdout);
  EXPECT_EQ(leftovers(before), std::vector<std::string>()) << "left in /dev/shm";
}

}  // namespace
}  // namespace moedist::testing
