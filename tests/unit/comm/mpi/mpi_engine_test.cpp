// Tests of the MPI engine (src/comm/mpi), one process per rank: run under mpirun with 3 or more processes. Each
// test runs twice: with the shared-memory window (ranks of this host read each other in place) and with
// MOEDIST_MPI_SHM=0's path (every peer through messages, as across hosts). main() is tests/mpi/mpi_main.cpp: the
// job fails when any process failed.
#include "comm/mpi/mpi_engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace {

using moedist::Status;
using moedist::StatusCode;
using moedist::comm::Clock;
using moedist::comm::Engine;
using moedist::comm::Region;
using namespace std::chrono_literals;

int worldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int worldSize() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

std::vector<int> everyone() {
  std::vector<int> v(static_cast<size_t>(worldSize()));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

Clock::time_point in(std::chrono::milliseconds d) {
  return Clock::now() + d;
}

// Rank r's region i holds bytes (r * 31 + i * 7 + k) mod 251 at offset k.
std::vector<uint8_t> pattern(int rank, int region, size_t bytes) {
  std::vector<uint8_t> v(bytes);
  for (size_t k = 0; k < bytes; ++k) v[k] = static_cast<uint8_t>((rank * 31 + region * 7 + static_cast<int>(k)) % 251);
  return v;
}

std::span<const std::byte> asBytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

class MpiEngineTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_GE(worldSize(), 3) << "run under mpirun with at least 3 processes";
    Status s =
        moedist::comm::mpi::createEngine(MPI_COMM_WORLD, "mpi-engine-test", GetParam(), size_t{8} << 20, &engine_);
    ASSERT_TRUE(s.ok()) << s.toString();
  }
  void TearDown() override {
    engine_.reset();  // collective (the shared window), so every rank tears down together
    MPI_Barrier(MPI_COMM_WORLD);
  }
  std::unique_ptr<Engine> engine_;
};

TEST_P(MpiEngineTest, HeadersAndRegionsOfEveryPeer) {
  Engine& e = *engine_;
  const int me = e.rank(), n = e.size();
  EXPECT_EQ(me, worldRank());
  EXPECT_STREQ(e.kind(), "mpi");
  const auto a = pattern(me, 0, 1000), b = pattern(me, 1, 70000);  // b: larger than any eager limit
  const Region regions[] = {{a.data(), a.size()}, {b.data(), b.size()}, {nullptr, 0}};
  const std::string header = "header of rank " + std::to_string(me);
  const auto all = everyone();
  for (int layer = 0; layer < 3; ++layer) {  // calls back to back over the same list
    ASSERT_TRUE(e.open(all, asBytes(header), regions, in(10s)).ok());
    EXPECT_EQ(e.mapped(), GetParam());  // one host: mapped exactly when the window exists
    for (int p = 0; p < n; ++p) {
      const auto h = e.peerHeader(p);
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(h.data()), h.size()), "header of rank " + std::to_string(p));
      EXPECT_EQ(e.peerRegionBytes(p, 0), 1000u);
      EXPECT_EQ(e.peerRegionBytes(p, 1), 70000u);
      EXPECT_EQ(e.peerRegionBytes(p, 2), 0u);
      const auto want = pattern(p, 1, 70000);
      std::vector<uint8_t> got(5000);
      ASSERT_TRUE(e.read(p, 1, 60000, got.data(), got.size()).ok());
      EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin() + 60000)) << "from rank " << p;
      if (const std::byte* base = e.peerRegion(p, 1))
        EXPECT_EQ(std::memcmp(base, want.data(), want.size()), 0) << "in place from rank " << p;
      else
        EXPECT_NE(p, me) << "a rank always maps itself";
    }
    ASSERT_TRUE(e.close(in(10s)).ok());
  }
}

TEST_P(MpiEngineTest, BadReadsAreErrorsNotCrashes) {
  Engine& e = *engine_;
  const auto a = pattern(e.rank(), 0, 64);
  const Region regions[] = {{a.data(), a.size()}};
  std::vector<uint8_t> buf(128);
  EXPECT_EQ(e.read(0, 0, 0, buf.data(), 1).code(), StatusCode::kInvalidArgument);  // no call open
  const auto all = everyone();
  ASSERT_TRUE(e.open(all, {}, regions, in(10s)).ok());
  const int peer = (e.rank() + 1) % e.size();
  EXPECT_EQ(e.read(peer, 0, 60, buf.data(), 8).code(), StatusCode::kInvalidArgument);  // past the end
  EXPECT_EQ(e.read(peer, 1, 0, buf.data(), 1).code(), StatusCode::kInvalidArgument);   // no such region
  EXPECT_EQ(e.read(e.size(), 0, 0, buf.data(), 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.open(all, {}, regions, in(10s)).code(), StatusCode::kInvalidArgument);  // already open
  ASSERT_TRUE(e.close(in(10s)).ok());
  const int unsorted[] = {1, 0};
  EXPECT_EQ(e.open(unsorted, {}, {}, in(1s)).code(), StatusCode::kInvalidArgument);
}

// Survivors call among themselves while the last rank stays out, as after an elastic scale-in; then everyone
// meets again over the full list, whose sequence is independent of the survivors' calls.
TEST_P(MpiEngineTest, SubsetsWithoutTheOthers) {
  Engine& e = *engine_;
  const int me = e.rank(), n = e.size();
  std::vector<int> survivors(static_cast<size_t>(n - 1));
  std::iota(survivors.begin(), survivors.end(), 0);
  const auto x = pattern(me, 0, 4096);
  const Region regions[] = {{x.data(), x.size()}};
  if (me != n - 1) {
    for (int layer = 0; layer < 2; ++layer) {
      ASSERT_TRUE(e.open(survivors, {}, regions, in(10s)).ok());
      EXPECT_EQ(e.peerHeader(n - 1).size(), 0u);
      EXPECT_EQ(e.peerRegionBytes(n - 1, 0), 0u);
      std::vector<uint8_t> got(4096);
      const int peer = (me + 1) % (n - 1);
      ASSERT_TRUE(e.read(peer, 0, 0, got.data(), got.size()).ok());
      EXPECT_EQ(got, pattern(peer, 0, 4096));
      ASSERT_TRUE(e.close(in(10s)).ok());
    }
  }
  const auto all = everyone();
  ASSERT_TRUE(e.open(all, {}, regions, in(10s)).ok());
  std::vector<uint8_t> got(16);
  ASSERT_TRUE(e.read(n - 1, 0, 100, got.data(), got.size()).ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), pattern(n - 1, 0, 4096).begin() + 100));
  ASSERT_TRUE(e.close(in(10s)).ok());
}

// The last rank comes late to call #0: every other rank times out in time with a message naming it. The late rank
// then fails at once (it finds the others' notices that they gave up), and everyone meets again at call #1.
TEST_P(MpiEngineTest, AMissingRankIsNamedWithinTheDeadline) {
  Engine& e = *engine_;
  const int me = e.rank(), n = e.size();
  const auto all = everyone();
  const std::string missing = std::to_string(n - 1);
  if (me != n - 1) {
    const auto t0 = Clock::now();
    const Status s = e.open(all, {}, {}, in(800ms));
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    EXPECT_EQ(s.code(), StatusCode::kTimeout) << s.toString();
    EXPECT_NE(s.message().find("rank(s) " + missing), std::string::npos) << s.message();
    EXPECT_GE(ms, 700);
    EXPECT_LT(ms, 3000);
  }
  MPI_Barrier(MPI_COMM_WORLD);  // the skipper arrives after everyone gave up on call #0
  if (me == n - 1) {
    // Its call #0 meets the headers of the abandoned call and the abandon notes: it fails at once, not at its
    // deadline.
    const auto t0 = Clock::now();
    const Status s = e.open(all, {}, {}, in(5s));
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    EXPECT_EQ(s.code(), StatusCode::kTimeout) << s.toString();
    EXPECT_LT(ms, 4000) << s.message();
  }
  // Everyone is at call #1 now and it works.
  const auto x = pattern(me, 0, 256);
  const Region regions[] = {{x.data(), x.size()}};
  ASSERT_TRUE(e.open(all, {}, regions, in(10s)).ok());
  std::vector<uint8_t> got(256);
  const int peer = (me + 1) % n;
  ASSERT_TRUE(e.read(peer, 0, 0, got.data(), got.size()).ok());
  EXPECT_EQ(got, pattern(peer, 0, 256));
  ASSERT_TRUE(e.close(in(10s)).ok());
}

// A rank that opens but never closes: the others time out in close() naming it, and abandon the call. When the
// late rank closes after all, it fails at once with their note rather than at its deadline; then everyone meets again.
TEST_P(MpiEngineTest, AMissingCloseIsNamed) {
  Engine& e = *engine_;
  const int me = e.rank(), n = e.size();
  const auto all = everyone();
  ASSERT_TRUE(e.open(all, {}, {}, in(10s)).ok());
  if (me != 0) {
    const Status s = e.close(in(600ms));
    EXPECT_EQ(s.code(), StatusCode::kTimeout) << s.toString();
    EXPECT_NE(s.message().find("rank(s) 0 to close"), std::string::npos) << s.message();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (me == 0) {
    const auto t0 = Clock::now();
    const Status s = e.close(in(10s));
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    EXPECT_EQ(s.code(), StatusCode::kTimeout) << s.toString();
    EXPECT_NE(s.message().find("timed out waiting for rank(s) 0 to close it"), std::string::npos) << s.message();
    EXPECT_LT(ms, 5000) << s.message();
  }
  // The next call works.
  const auto x = pattern(me, 0, 256);
  const Region regions[] = {{x.data(), x.size()}};
  ASSERT_TRUE(e.open(all, {}, regions, in(10s)).ok());
  std::vector<uint8_t> got(256);
  const int peer = (me + 1) % n;
  ASSERT_TRUE(e.read(peer, 0, 0, got.data(), got.size()).ok());
  EXPECT_EQ(got, pattern(peer, 0, 256));
  ASSERT_TRUE(e.close(in(10s)).ok());
}

// A read through messages waits for the peer to answer, which it does only from inside the engine. When another
// participant abandons the call meanwhile, the read fails at once with that participant's note, not at the call's
// deadline; the abandon still reaches the protocol, so the reader's close() fails at once too.
TEST_P(MpiEngineTest, AReadStopsWhenTheCallIsAbandoned) {
  if (GetParam()) GTEST_SKIP() << "one host with the window: every read is in place";
  Engine& e = *engine_;
  const int me = e.rank(), n = e.size();
  const auto all = everyone();
  const auto x = pattern(me, 0, 4096);
  const Region regions[] = {{x.data(), x.size()}};
  ASSERT_TRUE(e.open(all, {}, regions, in(10s)).ok());
  ASSERT_FALSE(e.mapped());
  MPI_Barrier(MPI_COMM_WORLD);  // rank 1 has left open(), where it would answer the read
  if (me == 0) {
    std::vector<uint8_t> got(4096);
    auto t0 = Clock::now();
    const Status s = e.read(1, 0, 0, got.data(), got.size());  // rank 1 is busy elsewhere
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    EXPECT_EQ(s.code(), StatusCode::kTimeout) << s.toString();
    EXPECT_NE(s.message().find("to close it"), std::string::npos) << s.message();
    EXPECT_LT(ms, 3000) << s.message();
    t0 = Clock::now();
    const Status c = e.close(in(10s));
    ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    EXPECT_EQ(c.code(), StatusCode::kTimeout) << c.toString();
    EXPECT_LT(ms, 3000) << c.message();
  } else if (me == 1) {
    std::this_thread::sleep_for(1500ms);  // outside the engine: rank 0's request stays unanswered
    EXPECT_EQ(e.close(in(10s)).code(), StatusCode::kTimeout);
  } else {
    const Status s = e.close(in(300ms));  // gives up on ranks 0 and 1, abandoning the call
    EXPECT_EQ(s.code(), StatusCode::kTimeout) << s.toString();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  // The next call works.
  ASSERT_TRUE(e.open(all, {}, regions, in(10s)).ok());
  std::vector<uint8_t> got(4096);
  const int peer = (me + 1) % n;
  ASSERT_TRUE(e.read(peer, 0, 0, got.data(), got.size()).ok());
  EXPECT_EQ(got, pattern(peer, 0, 4096));
  ASSERT_TRUE(e.close(in(10s)).ok());
}

INSTANTIATE_TEST_SUITE_P(Paths, MpiEngineTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return param.param ? "SharedWindow" : "Messages";
                         });

}  // namespace
