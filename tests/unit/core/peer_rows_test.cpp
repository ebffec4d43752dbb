// PeerRows (core/peer_rows.h), the one way core reaches peers' bytes: over a real in-process communicator of 2 ranks,
// once mapped (pointers into the peer's memory) and once through a wrapper that hides the mappings and counts the
// engine's reads (how an engine across hosts is reached). Both must give the same bytes; the second in as few reads
// as the rule promises (neighbours together, gaps no larger than what a read keeps).
#include "core/peer_rows.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/copying_engine.h"
#include "comm/registry.h"
#include "kernels/kernels.h"
#include "support/rank_launcher.h"

namespace moedist::core {
namespace {

using namespace std::chrono_literals;

constexpr size_t kRow = 256;   // bytes per row of region 0
constexpr size_t kRows = 200;  // rows of region 0

// Byte i of region `region` of rank `rank`.
std::byte patternByte(int rank, int region, size_t i) {
  return static_cast<std::byte>((i * 131 + i / kRow * 7 + static_cast<size_t>(rank) * 61 + region * 17) & 0xFF);
}

// The copy path's engine (peers' mappings hidden), counting read() calls.
class CountingEngine final : public comm::CopyingEngine {
 public:
  using CopyingEngine::CopyingEngine;
  Status read(int peer, int region, size_t offset, void* dst, size_t bytes) override {
    ++reads;
    bytesRead += bytes;
    return CopyingEngine::read(peer, region, offset, dst, bytes);
  }

  int reads = 0;
  size_t bytesRead = 0;
};

std::string testName(bool mapped) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string("core.") + info->test_suite_name() + "." + info->name() + (mapped ? ".mapped" : ".counted");
}

// Runs `body` on rank 0 of a 2-rank communicator (kernel threads 2) inside one open call in which each rank
// publishes region 0 (kRows rows of kRow bytes) and region 1 (100 bytes); rank 1 only publishes.
void withCall(bool mapped, const std::function<void(RankContext&, CountingEngine*)>& body) {
  std::vector<std::unique_ptr<comm::Engine>> engines;
  ASSERT_TRUE(comm::createInprocEngines(testName(mapped), 2, &engines).ok());
  std::vector<std::unique_ptr<RankContext>> ctx;
  CountingEngine* counting = nullptr;
  for (int r = 0; r < 2; ++r) {
    std::unique_ptr<comm::Engine> e = std::move(engines[static_cast<size_t>(r)]);
    if (!mapped && r == 0) {
      auto c = std::make_unique<CountingEngine>(std::move(e));
      counting = c.get();
      e = std::move(c);
    }
    ctx.push_back(std::make_unique<RankContext>(std::move(e), 20s, 2, kernels::defaultKernels()));
  }
  const auto errors = testing::runRanks(2, [&](int r) {
    std::vector<std::byte> rows(kRows * kRow), small(100);
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = patternByte(r, 0, i);
    for (size_t i = 0; i < small.size(); ++i) small[i] = patternByte(r, 1, i);
    const comm::Region regions[] = {{rows.data(), rows.size()}, {small.data(), small.size()}};
    const int all[] = {0, 1};
    RankContext& c = *ctx[static_cast<size_t>(r)];
    if (!c.engine->open(all, {}, regions, c.deadline()).ok()) throw std::runtime_error("open failed");
    if (r == 0) body(c, counting);
    if (!c.engine->close(c.deadline()).ok()) throw std::runtime_error("close failed");
  });
  for (const std::string& e : errors) EXPECT_EQ(e, "");
}

PeerPiece row(int peer, size_t i, size_t bytes = kRow) {
  return {peer, 0, i * kRow, bytes};
}

void expectBytes(const PeerPiece& p, const std::byte* got, const std::string& what) {
  for (size_t i = 0; i < p.bytes; ++i)
    ASSERT_EQ(got[i], patternByte(p.peer, p.region, p.offset + i)) << what << ", byte " << i;
}

class PeerRowsTest : public ::testing::TestWithParam<bool> {};  // mapped?

// Scattered rows of both ranks (neighbours, a duplicate, rows far apart, part of a row, the small region, an empty
// piece): the bytes come back either way; unmapped, in one read per run of the rule.
TEST_P(PeerRowsTest, ResolveGivesEveryPieceInAsFewReadsAsTheRulePromises) {
  withCall(GetParam(), [](RankContext& ctx, CountingEngine* counting) {
    const std::vector<PeerPiece> pieces = {
        row(1, 2),     row(1, 0),       row(1, 1),  // one run: rows 0-2
        row(1, 1),                                  // the same row again: the same run
        row(1, 10),    row(1, 12, 100),             // 7 rows after a run of 3: a new run, rows 10 to 12 + 100 bytes
        row(1, 150),                                // far away: a run of its own
        {1, 1, 5, 50},                              // another region: a run of its own
        {1, 0, 0, 0},                               // empty: nothing, no read
        row(0, 7),                                  // this rank's own row: in place, no read
    };
    std::vector<const std::byte*> at(pieces.size());
    PeerRows peers(ctx);
    ASSERT_TRUE(peers.resolve(pieces, at).ok());
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (pieces[i].bytes == 0) {
        EXPECT_EQ(at[i], nullptr) << "piece " << i;
        continue;
      }
      expectBytes(pieces[i], at[i], "piece " + std::to_string(i));
    }
    if (counting != nullptr) {
      EXPECT_EQ(counting->reads, 4);
      EXPECT_EQ(counting->bytesRead, 3 * kRow + (2 * kRow + 100) + kRow + 50);
    }
  });
}

// gather() puts piece i at dst + i * stride and nothing else; pieces that follow each other in the region and in
// dst (a TP gather) take one read straight into place.
TEST_P(PeerRowsTest, GatherPutsEveryPieceInItsPlace) {
  withCall(GetParam(), [](RankContext& ctx, CountingEngine* counting) {
    const size_t stride = kRow + 64;
    const std::vector<PeerPiece> pieces = {row(1, 40), row(1, 3, 10), {1, 0, 0, 0}, row(1, 41), row(1, 3)};
    std::vector<std::byte> dst(pieces.size() * stride, std::byte{0xEE});
    PeerRows peers(ctx);
    for (bool stream : {false, true}) {
      ASSERT_TRUE(peers.gather(pieces, dst.data(), stride, stream).ok());
      for (size_t i = 0; i < pieces.size(); ++i) {
        expectBytes(pieces[i], dst.data() + i * stride, "piece " + std::to_string(i));
        for (size_t j = pieces[i].bytes; j < stride; ++j)
          ASSERT_EQ(dst[i * stride + j], std::byte{0xEE}) << "piece " << i << " wrote past its bytes at " << j;
      }
    }
    if (counting != nullptr) {
      EXPECT_EQ(counting->reads, 2 * 2) << "rows 3 and 40-41, twice";
    }

    const std::vector<PeerPiece> consecutive = {row(1, 5), row(1, 6), row(1, 7), row(1, 8)};
    std::vector<std::byte> out(consecutive.size() * kRow);
    const int before = counting != nullptr ? counting->reads : 0;
    ASSERT_TRUE(peers.gather(consecutive, out.data(), kRow, false).ok());
    for (size_t i = 0; i < consecutive.size(); ++i)
      expectBytes(consecutive[i], out.data() + i * kRow, "consecutive piece " + std::to_string(i));
    if (counting != nullptr) {
      EXPECT_EQ(counting->reads - before, 1);
    }
  });
}

// A piece beyond its region fails with kInternal before anything is read.
TEST_P(PeerRowsTest, APieceOutsideItsRegionFails) {
  withCall(GetParam(), [](RankContext& ctx, CountingEngine* counting) {
    PeerRows peers(ctx);
    const std::vector<PeerPiece> pieces = {row(1, 0), row(1, kRows - 1, kRow + 1)};
    std::vector<const std::byte*> at(pieces.size());
    const Status s = peers.resolve(pieces, at);
    EXPECT_EQ(s.code(), StatusCode::kInternal) << s.toString();
    EXPECT_NE(s.message().find("region 0 has 51200 bytes"), std::string::npos) << s.message();
    std::vector<std::byte> dst(2 * (kRow + 1));
    EXPECT_EQ(peers.gather(pieces, dst.data(), kRow + 1, false).code(), StatusCode::kInternal);
    if (counting != nullptr) {
      EXPECT_EQ(counting->reads, 0);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Engines, PeerRowsTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Mapped" : "Reads"; });

}  // namespace
}  // namespace moedist::core
