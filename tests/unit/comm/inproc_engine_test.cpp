// Tests of the in-process engine: N ranks as threads over one communicator (tests/support/rank_launcher.h).
// Inside a rank, a failed check throws (require()), and runRanks() collects the text per rank.
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <latch>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "comm/protocol.h"
#include "comm/registry.h"
#include "support/rank_launcher.h"

namespace {

using moedist::Status;
using moedist::StatusCode;
using moedist::comm::Clock;
using moedist::comm::Engine;
using moedist::comm::ProtocolEngine;
using moedist::comm::Region;
using moedist::testing::runRanks;
using namespace std::chrono_literals;

using Engines = std::vector<std::unique_ptr<Engine>>;

Engines makeEngines(const std::string& name, int worldSize) {
  Engines engines;
  Status s = moedist::comm::createInprocEngines(name, worldSize, &engines);
  if (!s.ok()) throw std::runtime_error("createInprocEngines: " + s.toString());
  return engines;
}

// A communicator name unique to the running test.
std::string testName(const std::string& suffix = "") {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string(info->test_suite_name()) + "." + info->name() + suffix;
}

// Events that ranks keep for calls they have not opened yet: none once every rank that was sent one has made the call.
size_t liveCalls(const Engines& engines) {
  size_t n = 0;
  for (const auto& e : engines)
    if (e) n += dynamic_cast<const ProtocolEngine&>(*e).earlyEvents();
  return n;
}

Clock::time_point in(std::chrono::milliseconds d) {
  return Clock::now() + d;
}

std::vector<int> ranksUpTo(int n) {
  std::vector<int> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

void require(bool cond, const std::string& what) {
  if (!cond) throw std::runtime_error(what);
}

void requireOk(const Status& s, const std::string& what) {
  if (!s.ok()) throw std::runtime_error(what + ": " + s.toString());
}

void expectAllOk(const std::vector<std::string>& errors) {
  for (size_t r = 0; r < errors.size(); ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
}

template <typename T>
std::span<const std::byte> bytesOf(const T& v) {
  return std::as_bytes(std::span<const T>(&v, 1));
}

template <typename T>
T headerAs(std::span<const std::byte> h) {
  T v{};
  require(h.size() == sizeof(T),
          "header of " + std::to_string(h.size()) + " bytes, expected " + std::to_string(sizeof(T)));
  std::memcpy(&v, h.data(), sizeof(T));
  return v;
}

// What each rank publishes in the back-to-back tests: who it is and which call it thinks this is.
struct CallHeader {
  int32_t rank;
  int32_t phase;
  int64_t call;
};

// One call over `participants` in which every participant checks every other's header (rank, phase, call).
void headerCall(Engine& e, const std::vector<int>& participants, int32_t phase, int64_t call) {
  const CallHeader mine{e.rank(), phase, call};
  requireOk(e.open(participants, bytesOf(mine), {}, in(20s)), "open");
  for (int p : participants) {
    const auto h = headerAs<CallHeader>(e.peerHeader(p));
    require(h.rank == p && h.phase == phase && h.call == call,
            "rank " + std::to_string(e.rank()) + " phase " + std::to_string(phase) + " call " + std::to_string(call) +
                ": rank " + std::to_string(p) + " published rank " + std::to_string(h.rank) + " phase " +
                std::to_string(h.phase) + " call " + std::to_string(h.call));
  }
  requireOk(e.close(in(20s)), "close");
}

TEST(InprocEngine, CreateGivesOneEnginePerRank) {
  Engines engines = makeEngines(testName(), 4);
  ASSERT_EQ(engines.size(), 4u);
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(engines[r]->rank(), r);
    EXPECT_EQ(engines[r]->size(), 4);
    EXPECT_EQ(engines[r]->name(), testName());
    EXPECT_STREQ(engines[r]->kind(), "inproc");
  }
  EXPECT_EQ(liveCalls(engines), 0u);
}

TEST(InprocEngine, CreateRejectsBadArguments) {
  Engines engines;
  EXPECT_EQ(moedist::comm::createInprocEngines("x", 2, nullptr).code(), StatusCode::kNullArgument);
  EXPECT_EQ(moedist::comm::createInprocEngines("", 2, &engines).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(moedist::comm::createInprocEngines(testName(), 0, &engines).code(), StatusCode::kInvalidValue);
  EXPECT_TRUE(engines.empty());

  ASSERT_TRUE(moedist::comm::createInprocEngines(testName(), 2, &engines).ok());
  Engines again;
  Status dup = moedist::comm::createInprocEngines(testName(), 2, &again);
  EXPECT_EQ(dup.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dup.message().find("already exists"), std::string::npos) << dup.message();
  // The name is free again once every engine of the first communicator is gone.
  engines.pop_back();
  EXPECT_FALSE(moedist::comm::createInprocEngines(testName(), 2, &again).ok());
  engines.clear();
  EXPECT_TRUE(moedist::comm::createInprocEngines(testName(), 2, &again).ok());
}

TEST(InprocEngine, AllGathersHeaders) {
  constexpr int W = 8;
  Engines engines = makeEngines(testName(), W);
  // Rank r publishes 5r bytes (rank 0 an empty header), byte i being 31r + i.
  auto expected = [](int r) {
    std::vector<std::byte> h(static_cast<size_t>(5 * r));
    for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<std::byte>(31 * r + static_cast<int>(i));
    return h;
  };
  expectAllOk(runRanks(W, [&](int rank) {
    Engine& e = *engines[rank];
    std::vector<std::byte> mine = expected(rank);
    requireOk(e.open(ranksUpTo(W), mine, {}, in(20s)), "open");
    std::fill(mine.begin(), mine.end(), std::byte{0xEE});  // the engine copied the header
    for (int p = 0; p < W; ++p) {
      const auto h = e.peerHeader(p);
      const auto want = expected(p);
      require(std::equal(h.begin(), h.end(), want.begin(), want.end()),
              "rank " + std::to_string(rank) + " sees a wrong header of rank " + std::to_string(p));
    }
    require(e.peerHeader(-1).empty() && e.peerHeader(W).empty(), "header of a non-participant");
    requireOk(e.close(in(20s)), "close");
    require(e.peerHeader(rank).empty(), "header visible after close");
  }));
  EXPECT_EQ(liveCalls(engines), 0u);
}

TEST(InprocEngine, ReadsPeerRegions) {
  constexpr int W = 4;
  Engines engines = makeEngines(testName(), W);
  expectAllOk(runRanks(W, [&](int rank) {
    Engine& e = *engines[rank];
    // Region 0: 100 + rank int32 values 1000 * rank + i. Region 1: rank bytes (rank 0: empty). Region 2: empty.
    std::vector<int32_t> values(static_cast<size_t>(100 + rank));
    for (size_t i = 0; i < values.size(); ++i) values[i] = 1000 * rank + static_cast<int32_t>(i);
    std::vector<uint8_t> small(static_cast<size_t>(rank), static_cast<uint8_t>(rank + 7));
    const Region regions[] = {
        {values.data(), values.size() * sizeof(int32_t)}, {small.data(), small.size()}, {nullptr, 0}};
    requireOk(e.open(ranksUpTo(W), {}, regions, in(20s)), "open");
    for (int p = 0; p < W; ++p) {
      const std::string who = "rank " + std::to_string(rank) + " reading rank " + std::to_string(p);
      const size_t n = static_cast<size_t>(100 + p);
      require(e.peerRegionBytes(p, 0) == n * sizeof(int32_t), who + ": region 0 size");
      require(e.peerRegionBytes(p, 1) == static_cast<size_t>(p), who + ": region 1 size");
      require(e.peerRegionBytes(p, 2) == 0 && e.peerRegionBytes(p, 3) == 0, who + ": regions 2, 3 size");
      require(e.peerRegion(p, 3) == nullptr && e.peerRegion(p, -1) == nullptr, who + ": region out of range");
      // Straight from the peer's memory.
      const auto* direct = reinterpret_cast<const int32_t*>(e.peerRegion(p, 0));
      require(direct != nullptr, who + ": no direct address");
      for (size_t i = 0; i < n; ++i) require(direct[i] == 1000 * p + static_cast<int32_t>(i), who + ": direct value");
      // Through read(), at an offset.
      std::vector<int32_t> got(10, -1);
      requireOk(e.read(p, 0, 90 * sizeof(int32_t), got.data(), got.size() * sizeof(int32_t)), who + ": read");
      for (size_t i = 0; i < got.size(); ++i) require(got[i] == 1000 * p + 90 + static_cast<int32_t>(i), who);
      std::vector<uint8_t> b(static_cast<size_t>(p));
      requireOk(e.read(p, 1, 0, b.data(), b.size()), who + ": read region 1");
      require(std::all_of(b.begin(), b.end(), [&](uint8_t x) { return x == p + 7; }), who + ": region 1 value");
      requireOk(e.read(p, 2, 0, nullptr, 0), who + ": empty read of an empty region");
      // Out of bounds.
      int32_t x = 0;
      require(e.read(p, 0, n * sizeof(int32_t) - 2, &x, 4).code() == StatusCode::kInvalidArgument, who + ": tail");
      require(e.read(p, 0, n * sizeof(int32_t) + 1, &x, 0).code() == StatusCode::kInvalidArgument, who + ": offset");
      require(e.read(p, 0, SIZE_MAX, &x, 4).code() == StatusCode::kInvalidArgument, who + ": overflow");
      require(e.read(p, 3, 0, &x, 0).code() == StatusCode::kInvalidArgument, who + ": region 3");
      require(e.read(p, 0, 0, nullptr, 4).code() == StatusCode::kInvalidArgument, who + ": null dst");
    }
    int32_t x = 0;
    Status bad = e.read(W, 0, 0, &x, 4);
    require(bad.code() == StatusCode::kInvalidArgument, "read from rank W");
    require(bad.message().find("not a participant") != std::string::npos, bad.message());
    requireOk(e.close(in(20s)), "close");
  }));
  EXPECT_EQ(liveCalls(engines), 0u);
}

// Many calls in a row over a reused buffer: rank r's region holds 1000000 r + call, rewritten before every open.
// Each rank checks its neighbour's value, so a close() that let a rank through before its peers were done reading
// would show up as a wrong value, and calls matched to the wrong sequence number as a wrong header.
void backToBack(const std::string& name, int W, int calls) {
  Engines engines = makeEngines(name, W);
  const auto start = Clock::now();
  expectAllOk(runRanks(W, [&](int rank) {
    Engine& e = *engines[rank];
    const std::vector<int> all = ranksUpTo(W);
    int64_t buffer = 0;
    const Region region{&buffer, sizeof(buffer)};
    for (int64_t c = 0; c < calls; ++c) {
      buffer = 1000000 * int64_t{rank} + c;
      const CallHeader mine{rank, 0, c};
      requireOk(e.open(all, bytesOf(mine), {&region, 1}, in(20s)), "open of call " + std::to_string(c));
      for (int d = 1; d <= 2; ++d) {
        const int p = (rank + d) % W;
        const auto h = headerAs<CallHeader>(e.peerHeader(p));
        require(h.rank == p && h.call == c, "call " + std::to_string(c) + ": rank " + std::to_string(p) +
                                                " published call " + std::to_string(h.call));
        int64_t v = -1;
        requireOk(e.read(p, 0, 0, &v, sizeof(v)), "read");
        require(v == 1000000 * int64_t{p} + c,
                "call " + std::to_string(c) + ": rank " + std::to_string(p) + " holds " + std::to_string(v));
      }
      // Skew the ranks a little so that some reach the next open while others are still in this close.
      if ((c + rank) % 7 == 0) std::this_thread::yield();
      requireOk(e.close(in(20s)), "close of call " + std::to_string(c));
    }
  }));
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  std::printf("[ info     ] %d back-to-back calls, W=%d: %.0f ms (%.1f us per call)\n", calls, W, ms,
              1000.0 * ms / calls);
  EXPECT_EQ(liveCalls(engines), 0u);
}

TEST(InprocEngine, BackToBackCallsW8) {
  backToBack(testName(), 8, 1000);
}

// More ranks than cores: only works fast if waiting ranks sleep.
TEST(InprocEngine, BackToBackCallsW32) {
  backToBack(testName(), 32, 1000);
}

TEST(InprocEngine, SurvivorSubsetThenFullSetAgain) {
  constexpr int W = 8;
  Engines engines = makeEngines(testName(), W);
  const std::vector<int> all = ranksUpTo(W);
  const std::vector<int> survivors = {0, 1, 6, 7};
  expectAllOk(runRanks(W, [&](int rank) {
    Engine& e = *engines[rank];
    headerCall(e, all, 0, 0);
    if (std::binary_search(survivors.begin(), survivors.end(), rank)) {
      for (int c = 0; c < 5; ++c) {
        const CallHeader mine{rank, 1, c};
        int64_t value = 10 * rank + c;
        const Region region{&value, sizeof(value)};
        requireOk(e.open(survivors, bytesOf(mine), {&region, 1}, in(20s)), "survivor open");
        for (int p = 0; p < W; ++p) {
          const bool isSurvivor = std::binary_search(survivors.begin(), survivors.end(), p);
          require(e.peerHeader(p).empty() != isSurvivor, "peerHeader(" + std::to_string(p) + ") in a survivor call");
          require((e.peerRegion(p, 0) != nullptr) == isSurvivor, "peerRegion(" + std::to_string(p) + ")");
          if (isSurvivor) {
            const auto h = headerAs<CallHeader>(e.peerHeader(p));
            require(h.rank == p && h.phase == 1 && h.call == c, "survivor header");
            require(*reinterpret_cast<const int64_t*>(e.peerRegion(p, 0)) == 10 * p + c, "survivor region");
          }
        }
        requireOk(e.close(in(20s)), "survivor close");
      }
    }
    // The removed ranks never called; the full set matches again at its second call.
    for (int c = 1; c < 4; ++c) headerCall(e, all, 0, c);
  }));
  EXPECT_EQ(liveCalls(engines), 0u);
}

TEST(InprocEngine, DisjointSubsetsAtTheSameTime) {
  constexpr int W = 8;
  Engines engines = makeEngines(testName(), W);
  const std::vector<int> low = {0, 1, 2, 3}, high = {4, 5, 6, 7}, evens = {0, 2, 4, 6};
  expectAllOk(runRanks(W, [&](int rank) {
    Engine& e = *engines[rank];
    for (int c = 0; c < 50; ++c) {
      headerCall(e, rank < 4 ? low : high, 1, c);
      if (rank % 2 == 0) headerCall(e, evens, 2, c);
      if (c % 10 == 0) headerCall(e, ranksUpTo(W), 3, c / 10);
    }
  }));
  EXPECT_EQ(liveCalls(engines), 0u);
}

// An EP communicator of 8 ranks and four TP communicators of 2 (the pairs {0,1}, {2,3}, ...), used by the same
// threads in turn and nested (a TP call while an EP call is open).
TEST(InprocEngine, TwoCommunicatorsOnTheSameThreads) {
  constexpr int W = 8;
  Engines ep = makeEngines(testName(".ep"), W);
  std::vector<Engines> tp;
  for (int pair = 0; pair < W / 2; ++pair) tp.push_back(makeEngines(testName(".tp" + std::to_string(pair)), 2));
  expectAllOk(runRanks(W, [&](int rank) {
    Engine& epE = *ep[rank];
    Engine& tpE = *tp[rank / 2][rank % 2];
    require(tpE.rank() == rank % 2 && tpE.size() == 2, "tp engine");
    for (int c = 0; c < 200; ++c) {
      headerCall(epE, ranksUpTo(W), 0, c);
      headerCall(tpE, {0, 1}, 0, 2 * c);
      headerCall(tpE, {0, 1}, 0, 2 * c + 1);
      // Nested: open EP, run a TP call inside, then close EP.
      const CallHeader mine{rank, 1, c};
      requireOk(epE.open(ranksUpTo(W), bytesOf(mine), {}, in(20s)), "ep open");
      const CallHeader tpMine{rank % 2, 1, c};
      requireOk(tpE.open(std::vector<int>{0, 1}, bytesOf(tpMine), {}, in(20s)), "tp open");
      const auto peer = headerAs<CallHeader>(tpE.peerHeader(1 - rank % 2));
      require(peer.rank == 1 - rank % 2 && peer.phase == 1 && peer.call == c, "tp header");
      requireOk(tpE.close(in(20s)), "tp close");
      for (int p = 0; p < W; ++p) require(headerAs<CallHeader>(epE.peerHeader(p)).call == c, "ep header");
      requireOk(epE.close(in(20s)), "ep close");
    }
  }));
  EXPECT_EQ(liveCalls(ep), 0u);
  for (const Engines& t : tp) EXPECT_EQ(liveCalls(t), 0u);
}

TEST(InprocEngine, OpenTimesOutNamingTheMissingRank) {
  constexpr int W = 4;
  Engines engines = makeEngines(testName(), W);
  std::barrier sync(W);
  expectAllOk(runRanks(W, [&](int rank) {
    Engine& e = *engines[rank];
    const std::vector<int> all = ranksUpTo(W);
    if (rank != 3) {  // rank 3 skips call #0
      const auto start = Clock::now();
      Status s = e.open(all, {}, {}, in(300ms));
      const auto elapsed = Clock::now() - start;
      require(s.code() == StatusCode::kTimeout, "expected a timeout, got " + s.toString());
      require(s.message().find("rank(s) 3 to open") != std::string::npos, "message: " + s.message());
      require(s.message().find("'" + testName() + "' rank " + std::to_string(rank)) != std::string::npos,
              "message: " + s.message());
      require(elapsed < 5s, "took " + std::to_string(std::chrono::duration<double>(elapsed).count()) + " s");
      require(e.peerHeader(rank).empty(), "a failed open leaves no call open");
    }
    sync.arrive_and_wait();
    require(liveCalls(engines) == 0, "no rank holds events of the abandoned call");
    sync.arrive_and_wait();
    if (rank == 3) {
      // Late for call #0, which the others abandoned: it fails at once, saying why.
      const auto start = Clock::now();
      Status s = e.open(all, {}, {}, in(20s));
      require(s.code() == StatusCode::kTimeout, "late rank: expected a timeout, got " + s.toString());
      require(s.message().find("timed out waiting for rank(s) 3 to open it") != std::string::npos,
              "message: " + s.message());
      require(Clock::now() - start < 5s, "the late rank waited for its deadline");
    }
    // Everyone is at call #1 now and it works.
    headerCall(e, all, 0, 0);
  }));
  EXPECT_EQ(liveCalls(engines), 0u);
}

// When the first participant reaches its deadline, the others fail at once rather than at their own deadlines.
TEST(InprocEngine, OthersFailFastOnceOneTimesOut) {
  constexpr int W = 3;
  Engines engines = makeEngines(testName(), W);
  expectAllOk(runRanks(W, [&](int rank) {
    if (rank == 2) return;
    const auto start = Clock::now();
    Status s = engines[rank]->open(ranksUpTo(W), {}, {}, in(rank == 0 ? 100ms : 60s));
    require(s.code() == StatusCode::kTimeout, "expected a timeout, got " + s.toString());
    require(s.message().find("rank(s) 2 to open") != std::string::npos, "message: " + s.message());
    if (rank == 1) require(s.message().find("rank 0 timed out") != std::string::npos, "message: " + s.message());
    require(Clock::now() - start < 10s, "rank " + std::to_string(rank) + " waited for its own deadline");
  }));
  EXPECT_EQ(liveCalls(engines), 0u);
}

TEST(InprocEngine, CloseTimesOutNamingTheMissingRank) {
  constexpr int W = 3;
  Engines engines = makeEngines(testName(), W);
  std::latch othersGaveUp(W - 1);
  expectAllOk(runRanks(W, [&](int rank) {
    Engine& e = *engines[rank];
    requireOk(e.open(ranksUpTo(W), {}, {}, in(20s)), "open");
    if (rank != 2) {
      const auto start = Clock::now();
      Status s = e.close(in(200ms));
      require(s.code() == StatusCode::kTimeout, "expected a timeout, got " + s.toString());
      require(s.message().find("rank(s) 2 to close") != std::string::npos, "message: " + s.message());
      require(Clock::now() - start < 5s, "close took too long");
      othersGaveUp.count_down();
    } else {
      othersGaveUp.wait();  // still "working" on the call
      Status s = e.close(in(20s));
      require(s.code() == StatusCode::kTimeout, "the straggler's close: expected a timeout, got " + s.toString());
      require(s.message().find("to close it") != std::string::npos, "message: " + s.message());
    }
    headerCall(e, ranksUpTo(W), 0, 0);  // the next call works
  }));
  EXPECT_EQ(liveCalls(engines), 0u);
}

TEST(InprocEngine, RejectsBadArguments) {
  constexpr int W = 4;
  Engines engines = makeEngines(testName(), W);
  Engine& e = *engines[0];
  auto expectInvalid = [&](const Status& s, const std::string& words) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.toString();
    EXPECT_NE(s.message().find(words), std::string::npos) << s.message();
  };
  const auto deadline = in(20s);
  expectInvalid(e.open(std::vector<int>{1, 0, 2, 3}, {}, {}, deadline), "sorted and unique");
  expectInvalid(e.open(std::vector<int>{0, 0, 1}, {}, {}, deadline), "sorted and unique");
  expectInvalid(e.open(std::vector<int>{1, 2}, {}, {}, deadline), "do not include this rank");
  expectInvalid(e.open(std::vector<int>{0, 4}, {}, {}, deadline), "outside [0, 4)");
  expectInvalid(e.open(std::vector<int>{-1, 0}, {}, {}, deadline), "outside [0, 4)");
  expectInvalid(e.open(std::vector<int>{}, {}, {}, deadline), "empty participant list");
  int x = 0;
  std::vector<Region> nine(9, Region{&x, sizeof(x)});
  expectInvalid(e.open(ranksUpTo(W), {}, nine, deadline), "at most 8");
  const Region nullRegion{nullptr, 4};
  expectInvalid(e.open(ranksUpTo(W), {}, {&nullRegion, 1}, deadline), "null address");
  expectInvalid(e.close(deadline), "no open call");
  expectInvalid(e.read(0, 0, 0, &x, sizeof(x)), "no open call");

  // A call of one participant needs nobody else; opening twice is an error, the first call stays open.
  const Region region{&x, sizeof(x)};
  ASSERT_TRUE(e.open(std::vector<int>{0}, {}, {&region, 1}, deadline).ok());
  expectInvalid(e.open(std::vector<int>{0}, {}, {}, deadline), "still open");
  EXPECT_EQ(e.peerRegion(0, 0), reinterpret_cast<const std::byte*>(&x));
  EXPECT_TRUE(e.close(deadline).ok());

  // The rejected opens did not count as calls: rank 0 is still at call #0 of the full set.
  expectAllOk(runRanks(W, [&](int rank) { headerCall(*engines[rank], ranksUpTo(W), 0, 0); }));
  EXPECT_EQ(liveCalls(engines), 0u);
}

TEST(InprocEngine, FarDeadlineIsFine) {
  constexpr int W = 2;
  Engines engines = makeEngines(testName(), W);
  expectAllOk(runRanks(W, [&](int rank) {
    Engine& e = *engines[rank];
    if (rank == 1) std::this_thread::sleep_for(20ms);  // rank 0 really waits
    requireOk(e.open(ranksUpTo(W), {}, {}, Clock::time_point::max()), "open");
    requireOk(e.close(Clock::time_point::max()), "close");
  }));
}

TEST(InprocEngine, EngineDestroyedWithAnOpenCallReleasesThePeers) {
  constexpr int W = 2;
  Engines engines = makeEngines(testName(), W);
  std::latch opened(W);
  expectAllOk(runRanks(W, [&](int rank) {
    requireOk(engines[rank]->open(ranksUpTo(W), {}, {}, in(20s)), "open");
    opened.arrive_and_wait();
    if (rank == 1) {
      engines[1].reset();
      return;
    }
    const auto start = Clock::now();
    Status s = engines[0]->close(in(60s));
    require(s.code() == StatusCode::kTimeout, "expected a failure, got " + s.toString());
    require(s.message().find("rank 1 was destroyed") != std::string::npos, "message: " + s.message());
    require(Clock::now() - start < 10s, "close waited for its deadline");
  }));
  EXPECT_EQ(liveCalls(engines), 0u);
}

}  // namespace
