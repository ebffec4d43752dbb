// The engine conformance suite (gloo's transport tests): every engine must pass the same cases, written once against
// Engine& (src/comm/engine.h) and run on every rank of a fresh communicator by launcher.h.
//
// Built twice: as moedist_unit_comm_conformance_tests (ranks as threads: inproc, inproc_copy and, when built, shm)
// and with MOEDIST_CONFORMANCE_MPI as moedist_unit_comm_conformance_mpi_tests (ranks as the processes of an mpirun
// job: mpi_shm, mpi_msg; main() is tests/mpi/mpi_main.cpp).
//
// Data are checked byte by byte against closed-form patterns (pattern() below). Timing checks are generous, for a
// loaded 2-core CI machine: "fails within 5 s when its deadline is 30 s".
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "comm/engine.h"
#include "launcher.h"

namespace {

using moedist::Status;
using moedist::StatusCode;
using moedist::comm::Clock;
using moedist::comm::Engine;
using moedist::comm::kMaxRegions;
using moedist::comm::Region;
using moedist::comm::WritePiece;
using moedist::conformance::RankContext;
using namespace std::chrono_literals;

static_assert(std::endian::native == std::endian::little, "the patterns are compared word by word");

// ---- helpers -------------------------------------------------------------------------------------------------------

Clock::time_point in(Clock::duration d) {
  return Clock::now() + d;
}

double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<int> ranksUpTo(int n) {
  std::vector<int> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

bool contains(const std::vector<int>& ranks, int r) {
  return std::find(ranks.begin(), ranks.end(), r) != ranks.end();
}

std::string str(size_t v) {
  return std::to_string(v);
}

uint64_t splitmix(uint64_t x) {
  uint64_t z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The seed of one pattern: what it is (tag), which call, whose, which region.
uint64_t seedOf(uint64_t tag, uint64_t call, int rank, int region) {
  return splitmix(splitmix(splitmix(tag) + call) + static_cast<uint64_t>(rank) * 1000003u +
                  static_cast<uint64_t>(region + 7));
}

// Byte k of the pattern `seed`: byte k % 8 of splitmix(seed + k / 8).
uint8_t patternByte(uint64_t seed, size_t k) {
  return static_cast<uint8_t>(splitmix(seed + (k >> 3)) >> (8 * (k & 7)));
}

void fillPattern(uint64_t seed, void* dst, size_t bytes) {
  auto* out = static_cast<uint8_t*>(dst);
  size_t k = 0;
  for (; k + 8 <= bytes; k += 8) {
    const uint64_t w = splitmix(seed + (k >> 3));
    std::memcpy(out + k, &w, 8);
  }
  for (; k < bytes; ++k) out[k] = patternByte(seed, k);
}

std::vector<std::byte> pattern(uint64_t seed, size_t bytes) {
  std::vector<std::byte> v(bytes);
  fillPattern(seed, v.data(), v.size());
  return v;
}

// Checks that data[0, bytes) holds bytes [offset, offset + bytes) of the pattern; records the first wrong byte.
bool checkPattern(RankContext& ctx, const std::string& what, uint64_t seed, const void* data, size_t bytes,
                  size_t offset = 0) {
  const auto* in = static_cast<const uint8_t*>(data);
  size_t i = 0;
  auto bad = [&](size_t at) {
    ctx.fail(what + ": byte " + str(offset + at) + " is " + std::to_string(in[at]) + ", expected " +
             std::to_string(patternByte(seed, offset + at)));
    return false;
  };
  for (; i < bytes && ((offset + i) & 7) != 0; ++i)
    if (in[i] != patternByte(seed, offset + i)) return bad(i);
  for (; i + 8 <= bytes; i += 8) {
    const uint64_t w = splitmix(seed + ((offset + i) >> 3));
    if (std::memcmp(in + i, &w, 8) != 0) {
      for (size_t j = i; j < i + 8; ++j)
        if (in[j] != patternByte(seed, offset + j)) return bad(j);
    }
  }
  for (; i < bytes; ++i)
    if (in[i] != patternByte(seed, offset + i)) return bad(i);
  return true;
}

// The rank lists that follow "rank " or "rank(s) " in a message: "rank(s) 2, 5 to open" -> {2, 5}.
std::vector<std::vector<int>> rankLists(const std::string& msg) {
  std::vector<std::vector<int>> lists;
  auto digit = [&](size_t i) { return i < msg.size() && std::isdigit(static_cast<unsigned char>(msg[i])); };
  for (size_t pos = msg.find("rank"); pos != std::string::npos; pos = msg.find("rank", pos + 1)) {
    size_t i = pos + 4;
    if (msg.compare(i, 4, "(s) ") == 0)
      i += 4;
    else if (i < msg.size() && msg[i] == ' ')
      i += 1;
    else
      continue;
    std::vector<int> list;
    while (digit(i)) {
      int v = 0;
      while (digit(i)) v = 10 * v + (msg[i++] - '0');
      list.push_back(v);
      if (msg.compare(i, 2, ", ") == 0 && digit(i + 2))
        i += 2;
      else
        break;
    }
    if (!list.empty()) lists.push_back(std::move(list));
  }
  return lists;
}

// Whether the message names exactly `ranks` ("rank(s) 2 to open", "rank 2 was destroyed").
bool names(const std::string& msg, const std::vector<int>& ranks) {
  const auto lists = rankLists(msg);
  return std::find(lists.begin(), lists.end(), ranks) != lists.end();
}

std::string rankText(const std::vector<int>& ranks) {
  std::string s;
  for (int r : ranks) s += (s.empty() ? "" : ", ") + std::to_string(r);
  return s;
}

// What every participant publishes in the verified calls: which call it thinks this is.
struct CallHeader {
  uint64_t tag;
  uint64_t seq;
  int64_t rank;
};

template <typename T>
std::span<const std::byte> bytesOf(const T& v) {
  return std::as_bytes(std::span<const T>(&v, 1));
}

// The mapping contract (engine.h): mapped() says whether peerRegion() addresses every non-empty region of every
// participant; engines that do not map peers (the copy path, MPI messages) give no peer's address, and engines that
// map some (the MPI engine across hosts) say mapped() false; an address given shows the region's bytes (checked by
// the callers).
void checkMapping(RankContext& ctx, const std::vector<int>& participants, const std::string& what) {
  using moedist::conformance::Mapping;
  Engine& e = ctx.engine();
  const bool mapped = e.mapped();
  const Mapping kind = moedist::conformance::kindMapping(ctx.kind());
  // A call of this rank alone has only its own regions, which an engine that maps no peer may still map; one over
  // this rank's host only is mapped by an engine that maps the peers of its host.
  const bool alone = participants.size() == 1 && participants[0] == e.rank();
  const bool expected = kind == Mapping::kAll;
  ctx.check(mapped == expected || (alone && !expected) || kind == Mapping::kSome,
            what + ": mapped() is " + (mapped ? "true" : "false") + ", expected " + (expected ? "true" : "false") +
                " for engine kind " + ctx.kind());
  for (int p : participants) {
    for (int r = 0; r < kMaxRegions; ++r) {
      const std::byte* base = e.peerRegion(p, r);
      const size_t bytes = e.peerRegionBytes(p, r);
      if (mapped && bytes > 0)
        ctx.check(base != nullptr,
                  what + ": mapped() but peerRegion(" + std::to_string(p) + ", " + std::to_string(r) + ") is null");
      if (kind == Mapping::kNone && p != e.rank())
        ctx.check(base == nullptr, what + ": engine kind " + ctx.kind() + " maps no peer, but peerRegion(" +
                                       std::to_string(p) + ", " + std::to_string(r) + ") is not null");
    }
  }
}

// Checks region `region` of `peer` (bytes of the pattern `seed`) both in place (when peerRegion gives an address)
// and through read() (whole).
void checkRegion(RankContext& ctx, int peer, int region, uint64_t seed, size_t bytes, const std::string& what) {
  Engine& e = ctx.engine();
  const std::string where = what + ", rank " + std::to_string(peer) + " region " + std::to_string(region);
  const size_t got = e.peerRegionBytes(peer, region);
  if (got != bytes) {
    ctx.fail(where + ": peerRegionBytes is " + str(got) + ", expected " + str(bytes));
    return;
  }
  if (const std::byte* base = e.peerRegion(peer, region)) checkPattern(ctx, where + " (in place)", seed, base, bytes);
  std::vector<std::byte> buf(bytes);
  const Status s = e.read(peer, region, 0, buf.data(), bytes);
  if (!s.ok()) {
    ctx.fail(where + ": read: " + s.toString());
    return;
  }
  checkPattern(ctx, where + " (read)", seed, buf.data(), bytes);
}

struct CallOptions {
  Clock::duration lateOpen{};   // sleep before open()
  Clock::duration lateClose{};  // sleep before close()
  size_t baseBytes = 1000;      // region 0's size (plus a little per rank and call)
};

size_t regionBytes(const CallOptions& o, uint64_t seq, int rank) {
  return o.baseBytes + 7 * static_cast<size_t>(rank) + seq % 3;
}

// One call over `participants` in which each participant publishes a header {tag, seq, rank} and a region of the
// pattern (tag, seq, rank), and checks every participant's header and region, and that non-participants are absent.
void verifiedCall(RankContext& ctx, const std::vector<int>& participants, uint64_t tag, uint64_t seq,
                  const CallOptions& o = {}) {
  Engine& e = ctx.engine();
  const int me = e.rank();
  const std::string what = "call #" + str(seq) + " of tag " + str(tag) + " over {" + rankText(participants) + "}";
  const CallHeader mine{tag, seq, me};
  const auto data = pattern(seedOf(tag, seq, me, 0), regionBytes(o, seq, me));
  const Region regions[] = {{data.data(), data.size()}};
  if (o.lateOpen > Clock::duration::zero()) std::this_thread::sleep_for(o.lateOpen);
  const Status opened = e.open(participants, bytesOf(mine), regions, in(20s));
  if (!opened.ok()) {
    ctx.fail(what + ": open: " + opened.toString());
    return;
  }
  for (int p = -1; p <= e.size(); ++p) {
    const std::string who = what + ", rank " + std::to_string(p);
    if (!contains(participants, p)) {
      ctx.check(e.peerHeader(p).empty(), who + ": a non-participant has a header");
      ctx.check(e.peerRegionBytes(p, 0) == 0, who + ": a non-participant has a region");
      ctx.check(e.peerRegion(p, 0) == nullptr, who + ": a non-participant has a region address");
      continue;
    }
    const auto h = e.peerHeader(p);
    CallHeader theirs{};
    if (h.size() != sizeof(CallHeader)) {
      ctx.fail(who + ": header of " + str(h.size()) + " bytes, expected " + str(sizeof(CallHeader)));
    } else {
      std::memcpy(&theirs, h.data(), sizeof theirs);
      ctx.check(theirs.tag == tag && theirs.seq == seq && theirs.rank == p,
                who + ": published tag " + str(theirs.tag) + " call #" + str(theirs.seq) + " as rank " +
                    std::to_string(theirs.rank) + " (calls matched wrongly)");
    }
    checkRegion(ctx, p, 0, seedOf(tag, seq, p, 0), regionBytes(o, seq, p), what);
  }
  checkMapping(ctx, participants, what);
  if (o.lateClose > Clock::duration::zero()) std::this_thread::sleep_for(o.lateClose);
  const Status closed = e.close(in(20s));
  ctx.check(closed.ok(), what + ": close: " + closed.toString());
}

// Opens a call over `participants` with an empty header and no regions; records a failure when it does not open.
bool plainOpen(RankContext& ctx, const std::vector<int>& participants, const std::string& what) {
  const Status s = ctx.engine().open(participants, {}, {}, in(20s));
  ctx.check(s.ok(), what + ": open: " + s.toString());
  return s.ok();
}

// A failed call: the expected code, within [minSeconds, maxSeconds], naming `missing`.
void checkFailure(RankContext& ctx, const Status& s, double seconds, StatusCode code, double minSeconds,
                  double maxSeconds, const std::vector<int>& missing, const std::string& what) {
  const std::string took = " (after " + std::to_string(seconds) + " s): " + s.toString();
  if (s.ok()) {
    ctx.fail(what + ": succeeded, expected a failure" + took);
    return;
  }
  ctx.check(s.code() == code, what + ": expected code " + moedist::toString(code) + took);
  ctx.check(seconds >= minSeconds, what + ": failed sooner than " + std::to_string(minSeconds) + " s" + took);
  ctx.check(seconds <= maxSeconds, what + ": failed later than " + std::to_string(maxSeconds) + " s" + took);
  if (!missing.empty())
    ctx.check(names(s.message(), missing), what + ": the message does not name rank(s) " + rankText(missing) + took);
}

// ---- the suite -----------------------------------------------------------------------------------------------------

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  // Runs body on every rank of a fresh communicator of `ranks` ranks of this engine kind; reports each rank's
  // failures.
  void run(int ranks, const moedist::conformance::RankBody& body) {
    static int counter = 0;  // the same sequence on every process of an MPI job
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string name = std::string("conformance.") + info->name() + "." + std::to_string(counter++);
    const auto result = moedist::conformance::runOnRanks(GetParam(), ranks, name, body);
    if (result.skipped) GTEST_SKIP() << result.skipReason;
    for (const auto& outcome : result.ranks) {
      const size_t shown = std::min<size_t>(outcome.failures.size(), 10);
      for (size_t i = 0; i < shown; ++i) ADD_FAILURE() << "rank " << outcome.rank << ": " << outcome.failures[i];
      if (outcome.failures.size() > shown)
        ADD_FAILURE() << "rank " << outcome.rank << ": and " << outcome.failures.size() - shown << " more failures";
    }
  }
};

enum Tag : uint64_t {
  kHeaders = 1,
  kLarge,
  kBounds,
  kSubsets,
  kDisjoint,
  kSurvivors,
  kBackToBack,
  kLate,
  kMissing,
  kDeparted,
  kBad,
  kWrites
};

TEST_P(Conformance, Identity) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    ctx.check(e.rank() == ctx.rank(), "rank() is " + std::to_string(e.rank()));
    ctx.check(e.size() == ctx.ranks(), "size() is " + std::to_string(e.size()));
    ctx.check(e.kind() != nullptr && std::strlen(e.kind()) > 0, "kind() is empty");
    ctx.check(!e.mapped(), "mapped() with no open call");
    ctx.check(e.peerHeader(e.rank()).empty(), "a header with no open call");
    ctx.check(e.peerRegion(e.rank(), 0) == nullptr, "a region with no open call");
  });
}

// Headers of every peer: empty, small, large (256 KB), and mixed sizes in one call. The engine copies the header.
TEST_P(Conformance, HeadersOfEveryPeer) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const auto all = ranksUpTo(ctx.ranks());
    auto headerBytes = [](int call, int rank) -> size_t {
      const size_t r = static_cast<size_t>(rank);
      switch (call) {
        case 0:
          return 0;
        case 1:
          return 1 + 13 * r;
        case 2:
          return (size_t{256} << 10) + 997 * r;
        case 3:
          return std::vector<size_t>{0, 24, 100000}[r % 3] + r;
        default:
          return rank == 0 ? (size_t{64} << 10) : 0;
      }
    };
    for (int call = 0; call < 5; ++call) {
      const std::string what = "header call " + std::to_string(call);
      auto mine = pattern(seedOf(kHeaders, static_cast<uint64_t>(call), ctx.rank(), -1), headerBytes(call, ctx.rank()));
      const Status s = e.open(all, mine, {}, in(20s));
      if (!s.ok()) {
        ctx.fail(what + ": open: " + s.toString());
        return;
      }
      std::fill(mine.begin(), mine.end(), std::byte{0xEE});  // the engine keeps its own copy
      for (int p : all) {
        const auto h = e.peerHeader(p);
        const size_t want = headerBytes(call, p);
        if (h.size() != want)
          ctx.fail(what + ": rank " + std::to_string(p) + "'s header has " + str(h.size()) + " bytes, expected " +
                   str(want));
        else
          checkPattern(ctx, what + ", rank " + std::to_string(p) + "'s header",
                       seedOf(kHeaders, static_cast<uint64_t>(call), p, -1), h.data(), h.size());
      }
      ctx.check(e.peerHeader(-1).empty() && e.peerHeader(e.size()).empty(), what + ": header of a non-rank");
      const Status c = e.close(in(20s));
      ctx.check(c.ok(), what + ": close: " + c.toString());
    }
  });
}

// Large regions (24 MB, and an odd-sized one of 1 MB) read in place and through read(): whole, in chunks, at odd
// offsets; plus an empty region and a one-byte region.
TEST_P(Conformance, LargeRegions) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const auto all = ranksUpTo(ctx.ranks());
    auto sizeOf = [](int rank, int region) -> size_t {
      const size_t r = static_cast<size_t>(rank);
      switch (region) {
        case 0:
          return (size_t{24} << 20) + 8 * r;
        case 1:
          return (size_t{1} << 20) + 3 + r;
        case 2:
          return 0;
        default:
          return 1;
      }
    };
    auto seed = [](int rank, int region) { return seedOf(kLarge, 0, rank, region); };
    std::vector<std::vector<std::byte>> data;
    std::vector<Region> regions;
    for (int r = 0; r < 4; ++r) data.push_back(pattern(seed(ctx.rank(), r), sizeOf(ctx.rank(), r)));
    for (auto& d : data) regions.push_back({d.empty() ? nullptr : d.data(), d.size()});
    const Status s = e.open(all, {}, regions, in(30s));
    if (!s.ok()) {
      ctx.fail("open: " + s.toString());
      return;
    }
    checkMapping(ctx, all, "large regions");
    std::vector<std::byte> buf(sizeOf(2, 0) + 64);
    for (int p : all) {
      const std::string who = "rank " + std::to_string(p);
      for (int r = 0; r < 4; ++r) {
        const size_t n = sizeOf(p, r);
        ctx.check(e.peerRegionBytes(p, r) == n, who + " region " + std::to_string(r) + ": peerRegionBytes is " +
                                                    str(e.peerRegionBytes(p, r)) + ", expected " + str(n));
        if (const std::byte* base = e.peerRegion(p, r))
          checkPattern(ctx, who + " region " + std::to_string(r) + " in place", seed(p, r), base, n);
      }
      ctx.check(e.peerRegionBytes(p, 4) == 0 && e.peerRegion(p, 4) == nullptr, who + ": region 4 exists");
      // Region 0 whole through read().
      const size_t n0 = sizeOf(p, 0);
      std::fill(buf.begin(), buf.end(), std::byte{0});
      Status rs = e.read(p, 0, 0, buf.data(), n0);
      if (rs.ok())
        checkPattern(ctx, who + " region 0 read whole", seed(p, 0), buf.data(), n0);
      else
        ctx.fail(who + " region 0 read whole: " + rs.toString());
      // Region 0 at an odd offset, an odd length, up to its end.
      const size_t off = 12345677;
      rs = e.read(p, 0, off, buf.data(), n0 - off);
      if (rs.ok())
        checkPattern(ctx, who + " region 0 read at an odd offset", seed(p, 0), buf.data(), n0 - off, off);
      else
        ctx.fail(who + " region 0 read at an odd offset: " + rs.toString());
      // Region 1 in chunks of 65537 bytes (the last one short).
      const size_t n1 = sizeOf(p, 1);
      for (size_t at = 0; at < n1; at += 65537) {
        const size_t len = std::min<size_t>(65537, n1 - at);
        rs = e.read(p, 1, at, buf.data(), len);
        if (!rs.ok()) {
          ctx.fail(who + " region 1 chunk at " + str(at) + ": " + rs.toString());
          break;
        }
        if (!checkPattern(ctx, who + " region 1 chunk", seed(p, 1), buf.data(), len, at)) break;
      }
      rs = e.read(p, 3, 0, buf.data(), 1);
      ctx.check(rs.ok() && static_cast<uint8_t>(buf[0]) == patternByte(seed(p, 3), 0), who + " region 3");
      ctx.check(e.read(p, 2, 0, buf.data(), 0).ok(), who + ": an empty read of an empty region");
    }
    const Status c = e.close(in(30s));
    ctx.check(c.ok(), "close: " + c.toString());
  });
}

// read() outside a region, of a missing region, of a non-participant, with no call: kInvalidArgument, and the call
// goes on working.
TEST_P(Conformance, ReadBoundsErrors) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    auto invalid = [&](const Status& s, const std::string& what) {
      ctx.check(s.code() == StatusCode::kInvalidArgument, what + ": expected kInvalidArgument, got " + s.toString());
    };
    std::vector<std::byte> buf(4096);
    invalid(e.read(me, 0, 0, buf.data(), 1), "read() with no open call");
    const auto data = pattern(seedOf(kBounds, 0, me, 0), 1000 + static_cast<size_t>(me));
    const Region regions[] = {{data.data(), data.size()}, {nullptr, 0}};
    if (const Status s = e.open(all, {}, regions, in(20s)); !s.ok()) {
      ctx.fail("open: " + s.toString());
      return;
    }
    for (int p : all) {
      const std::string who = "read from rank " + std::to_string(p);
      const size_t n = 1000 + static_cast<size_t>(p);
      invalid(e.read(p, 0, n - 2, buf.data(), 4), who + ": past the end");
      invalid(e.read(p, 0, n + 1, buf.data(), 0), who + ": offset past the end, no bytes");
      invalid(e.read(p, 0, SIZE_MAX, buf.data(), 4), who + ": offset SIZE_MAX");
      invalid(e.read(p, 0, 8, buf.data(), SIZE_MAX - 4), who + ": offset + bytes wraps around");
      invalid(e.read(p, 0, 0, buf.data(), n + 1), who + ": one byte too many");
      invalid(e.read(p, 1, 0, buf.data(), 1), who + ": a byte of an empty region");
      invalid(e.read(p, 2, 0, buf.data(), 0), who + ": region 2 (not published)");
      invalid(e.read(p, -1, 0, buf.data(), 1), who + ": region -1");
      invalid(e.read(p, kMaxRegions, 0, buf.data(), 1), who + ": region kMaxRegions");
      invalid(e.read(p, 0, 0, nullptr, 4), who + ": null destination");
      ctx.check(e.read(p, 0, n, buf.data(), 0).ok(), who + ": an empty read at the end");
      ctx.check(e.read(p, 1, 0, nullptr, 0).ok(), who + ": an empty read of an empty region");
      // Still working after the errors.
      const Status s = e.read(p, 0, n - 4, buf.data(), 4);
      if (s.ok())
        checkPattern(ctx, who + ": the last 4 bytes", seedOf(kBounds, 0, p, 0), buf.data(), 4, n - 4);
      else
        ctx.fail(who + ": the last 4 bytes: " + s.toString());
    }
    invalid(e.read(-1, 0, 0, buf.data(), 1), "read from rank -1");
    invalid(e.read(ctx.ranks(), 0, 0, buf.data(), 1), "read from rank size()");
    const Status c = e.close(in(20s));
    ctx.check(c.ok(), "close: " + c.toString());
    invalid(e.read(me, 0, 0, buf.data(), 1), "read() after close()");

    // A non-participant of a subset call.
    const std::vector<int> pair = {0, 1};
    if (me < 2) {
      if (!e.open(pair, {}, regions, in(20s)).ok()) {
        ctx.fail("open of {0, 1} failed");
        return;
      }
      const Status s = e.read(2, 0, 0, buf.data(), 1);
      invalid(s, "read from rank 2, not a participant");
      ctx.check(s.message().find("not a participant") != std::string::npos || s.ok(), "message: " + s.message());
      ctx.check(e.close(in(20s)).ok(), "close of {0, 1}");
    }
  });
}

// mapped() == false: peerRegion() gives no peer's address (everything through read()); mapped() == true: every
// non-empty region of every participant has one, holding its bytes.
TEST_P(Conformance, PeerRegionAgreesWithMapped) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    std::vector<std::vector<std::byte>> data;
    std::vector<Region> regions;
    for (int r = 0; r < kMaxRegions; ++r) {
      const size_t bytes = r == 3 ? 0 : static_cast<size_t>(r) * 4099 + static_cast<size_t>(me) + 1;
      data.push_back(pattern(seedOf(kLarge, 1, me, r), bytes));
    }
    for (auto& d : data) regions.push_back({d.empty() ? nullptr : d.data(), d.size()});
    if (!e.open(all, {}, regions, in(20s)).ok()) {
      ctx.fail("open failed");
      return;
    }
    checkMapping(ctx, all, "eight regions");
    for (int p : all)
      for (int r = 0; r < kMaxRegions; ++r) {
        const size_t bytes = r == 3 ? 0 : static_cast<size_t>(r) * 4099 + static_cast<size_t>(p) + 1;
        checkRegion(ctx, p, r, seedOf(kLarge, 1, p, r), bytes, "eight regions");
      }
    ctx.check(e.close(in(20s)).ok(), "close");
  });
}

// The engine's memory space (Engine::allocate): engines that share memory between processes give memory that a call
// publishes where it is, with no staging copy: a peer sees two allocated regions as far apart as the owner does
// (staged copies would lie side by side). The others give none. Either way the bytes arrive; release() takes back
// only what allocate() gave, once.
TEST_P(Conformance, AllocatedMemoryIsPublishedInPlace) {
  run(2, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    const bool hasMemory = ctx.kind() == "shm" || ctx.kind() == "mpi_shm";
    constexpr size_t kFirst = 1000, kGap = 4096, kSecond = 3000;
    auto* first = static_cast<std::byte*>(e.allocate(kFirst));
    void* gap = e.allocate(kGap);
    auto* second = static_cast<std::byte*>(e.allocate(kSecond));
    ctx.check((first != nullptr && gap != nullptr && second != nullptr) == hasMemory,
              std::string("allocate() gave ") + (first != nullptr ? "memory" : "none") + ", expected " +
                  (hasMemory ? "memory" : "none") + " for engine kind " + ctx.kind());
    std::vector<std::byte> heapFirst, heapSecond;
    if (first == nullptr || second == nullptr) {
      heapFirst.resize(kFirst);
      heapSecond.resize(kSecond);
      first = heapFirst.data();
      second = heapSecond.data();
    }
    if (heapFirst.empty())
      ctx.check(reinterpret_cast<uintptr_t>(first) % 64 == 0 && reinterpret_cast<uintptr_t>(second) % 64 == 0,
                "allocate() gave memory not aligned to 64 bytes");
    fillPattern(seedOf(kLarge, 2, me, 0), first, kFirst);
    fillPattern(seedOf(kLarge, 2, me, 1), second, kSecond);
    const int64_t distance = heapFirst.empty() ? second - first : 0;
    const Region regions[] = {{first, kFirst}, {second, kSecond}};
    if (!e.open(all, bytesOf(distance), regions, in(20s)).ok()) {
      ctx.fail("open failed");
      return;
    }
    for (int p : all) {
      checkRegion(ctx, p, 0, seedOf(kLarge, 2, p, 0), kFirst, "allocated memory");
      checkRegion(ctx, p, 1, seedOf(kLarge, 2, p, 1), kSecond, "allocated memory");
      int64_t theirs = 0;
      std::memcpy(&theirs, e.peerHeader(p).data(), sizeof theirs);
      const std::byte* a = e.peerRegion(p, 0);
      const std::byte* b = e.peerRegion(p, 1);
      if (theirs != 0 && a != nullptr && b != nullptr)
        ctx.check(b - a == theirs, "rank " + std::to_string(p) + "'s allocated regions are " + std::to_string(b - a) +
                                       " bytes apart here and " + std::to_string(theirs) +
                                       " bytes apart in its memory: they were copied, not published in place");
    }
    ctx.check(e.close(in(20s)).ok(), "close");
    if (!heapFirst.empty()) {
      ctx.check(!e.release(heapFirst.data()), "release() took memory allocate() did not give");
      return;
    }
    ctx.check(e.release(first) && e.release(gap) && e.release(second), "release() refused allocate()'s memory");
    ctx.check(!e.release(first), "release() took the same memory twice");
    ctx.check(e.allocate(size_t{1} << 50) == nullptr, "allocate() gave a petabyte");
    void* again = e.allocate(kFirst + kGap + kSecond);
    ctx.check(again != nullptr, "allocate() gave nothing after everything was released");
    if (again != nullptr) ctx.check(e.release(again), "release() refused allocate()'s memory");
  });
}

// ---- writes (push) ----

// What `writer` writes into `receiver`'s inbox in round `round`: pieces of the pattern seedOf(kWrites, round, writer,
// receiver), taken one after another from its start, each placed in the writer's slice of the inbox. Round 0 has an
// odd small piece, one that starts at an odd offset and a large one (3 MB: more than an eager MPI message); round 1
// overwrites part of the first.
struct Placed {
  size_t offset;  // in the receiver's inbox
  size_t bytes;
};
constexpr size_t kSlice = 8192 + (size_t{3} << 20) + 64;  // each writer's part of an inbox

std::vector<Placed> writesOf(int round, int writer, int receiver) {
  const size_t base = static_cast<size_t>(writer) * kSlice;
  const size_t small = 1000 + static_cast<size_t>(writer) + 3 * static_cast<size_t>(receiver);
  if (round == 0) return {{base, small}, {base + 4096 + 7, 100}, {base + 8192, (size_t{3} << 20) + 5}};
  return {{base + 500, 333}};
}

uint64_t writeSeed(int round, int writer, int receiver) {
  return seedOf(kWrites, static_cast<uint64_t>(round), writer, receiver);
}

// Writes this rank's pieces of `round` to every participant (itself included) from `sources` (one per receiver, kept
// alive by the caller until the call's fence or close).
void writeRound(RankContext& ctx, const std::vector<int>& all, int round, std::vector<std::vector<std::byte>>& sources,
                const std::string& what) {
  Engine& e = ctx.engine();
  for (int p : all) {
    const auto placed = writesOf(round, ctx.rank(), p);
    size_t total = 0;
    for (const Placed& w : placed) total += w.bytes;
    sources.push_back(pattern(writeSeed(round, ctx.rank(), p), total));
    std::vector<WritePiece> pieces;
    size_t from = 0;
    for (const Placed& w : placed) {
      pieces.push_back({sources.back().data() + from, w.offset, w.bytes});
      from += w.bytes;
    }
    const Status s = e.write(p, 1, pieces);
    ctx.check(s.ok(), what + ": write to rank " + std::to_string(p) + ": " + s.toString());
  }
}

// Checks this rank's inbox after `rounds` rounds: every writer's pieces (the later round where they overlap), and
// the sentinel everywhere else.
void checkInbox(RankContext& ctx, const std::vector<int>& all, const std::byte* inbox, size_t bytes, int rounds,
                const std::string& what) {
  std::vector<uint8_t> expected(bytes, 0xEE);
  for (int round = 0; round < rounds; ++round)
    for (int w : all) {
      size_t from = 0;
      for (const Placed& p : writesOf(round, w, ctx.rank())) {
        for (size_t k = 0; k < p.bytes; ++k)
          expected[p.offset + k] = patternByte(writeSeed(round, w, ctx.rank()), from + k);
        from += p.bytes;
      }
    }
  const auto* got = reinterpret_cast<const uint8_t*>(inbox);
  const auto bad = std::mismatch(expected.begin(), expected.end(), got).first;
  if (bad != expected.end()) {
    const auto at = static_cast<size_t>(bad - expected.begin());
    ctx.fail(what + ": inbox byte " + str(at) + " (writer " + std::to_string(at / kSlice) + ") is " +
             std::to_string(got[at]) + ", expected " + std::to_string(*bad));
  }
}

// Every participant writes pieces into every participant's writable region (its own included), then fence(): the
// bytes are there (where peerRegion() of this rank addresses the region), bytes nobody wrote keep their value, and the
// readable region next to it is still read in place or through read(). A second round after another fence lands by
// close(). Once with the inbox in ordinary memory, once in the engine's memory (allocate(), where the engine has it).
TEST_P(Conformance, WritesLandInPeersRegions) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    const size_t inboxBytes = kSlice * all.size();
    for (int call = 0; call < 2; ++call) {
      const std::string what = call == 0 ? "inbox in ordinary memory" : "inbox from allocate()";
      std::vector<std::byte> heap;
      auto* inbox = call == 1 ? static_cast<std::byte*>(e.allocate(inboxBytes)) : nullptr;
      if (inbox == nullptr) {
        heap.resize(inboxBytes);
        inbox = heap.data();
      }
      std::fill(inbox, inbox + inboxBytes, std::byte{0xEE});
      const auto readable = pattern(seedOf(kWrites, 9, me, 0), 5000 + static_cast<size_t>(me));
      const Region regions[] = {{readable.data(), readable.size()}, {inbox, inboxBytes, /*writable=*/true}};
      if (Status s = e.open(all, {}, regions, in(30s)); !s.ok()) {
        ctx.fail(what + ": open: " + s.toString());
        return;
      }
      std::vector<std::vector<std::byte>> sources;
      writeRound(ctx, all, 0, sources, what);
      if (Status s = e.fence(in(30s)); !s.ok()) ctx.fail(what + ": fence: " + s.toString());
      // After a fence, where the engine addresses this rank's own region; after the close, in its memory.
      if (const std::byte* seen = e.peerRegion(me, 1))
        checkInbox(ctx, all, seen, inboxBytes, 1, what + ", after the fence");
      else
        ctx.fail(what + ": peerRegion() of this rank's own writable region is null");
      for (int p : all) checkRegion(ctx, p, 0, seedOf(kWrites, 9, p, 0), 5000 + static_cast<size_t>(p), what);
      // A second fence, with no writes: everyone has checked before round 1 overwrites.
      if (Status s = e.fence(in(30s)); !s.ok()) ctx.fail(what + ": second fence: " + s.toString());
      writeRound(ctx, all, 1, sources, what);
      if (Status s = e.close(in(30s)); !s.ok()) ctx.fail(what + ": close: " + s.toString());
      checkInbox(ctx, all, inbox, inboxBytes, 2, what + ", after the close");
      if (heap.empty()) ctx.check(e.release(inbox), what + ": release");
    }
  });
}

// write() outside a region, into a read-only or missing region, to a non-participant, from a null source, with no
// call: kInvalidArgument, nothing written, and the call goes on; fence() with no call too.
TEST_P(Conformance, WriteErrors) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    auto invalid = [&](const Status& s, const std::string& what) {
      ctx.check(s.code() == StatusCode::kInvalidArgument, what + ": expected kInvalidArgument, got " + s.toString());
    };
    const int64_t value = 77;
    const WritePiece one{&value, 0, sizeof value};
    invalid(e.write(0, 1, {&one, 1}), "write() with no open call");
    invalid(e.fence(in(5s)), "fence() with no open call");
    int64_t readOnly = me, inbox[4] = {-1, -1, -1, -1};
    const Region regions[] = {{&readOnly, sizeof readOnly}, {inbox, sizeof inbox, true}};
    if (!e.open(all, {}, regions, in(20s)).ok()) {
      ctx.fail("open failed");
      return;
    }
    const int next = (me + 1) % ctx.ranks();
    invalid(e.write(next, 0, {&one, 1}), "write() into a read-only region");
    invalid(e.write(next, 2, {&one, 1}), "write() into a region that does not exist");
    invalid(e.write(ctx.ranks(), 1, {&one, 1}), "write() to a non-rank");
    const WritePiece outside{&value, sizeof inbox - 4, sizeof value};
    invalid(e.write(next, 1, {&outside, 1}), "write() across the end of the region");
    const WritePiece huge{&value, 8, ~size_t{0}};
    invalid(e.write(next, 1, {&huge, 1}), "write() of SIZE_MAX bytes");
    const WritePiece nullSource{nullptr, 0, 8};
    invalid(e.write(next, 1, {&nullSource, 1}), "write() from a null source");
    // The call still works: one good write each, into slot 1 of the next rank.
    const int64_t mine = 1000 + me;
    const WritePiece good{&mine, 8, sizeof mine};
    ctx.check(e.write(next, 1, {&good, 1}).ok(), "the good write");
    ctx.check(e.close(in(20s)).ok(), "close");
    const int prev = (me + ctx.ranks() - 1) % ctx.ranks();
    ctx.check(inbox[0] == -1 && inbox[1] == 1000 + prev && inbox[2] == -1 && inbox[3] == -1,
              "the inbox holds " + std::to_string(inbox[0]) + ", " + std::to_string(inbox[1]) + ", " +
                  std::to_string(inbox[2]) + ", " + std::to_string(inbox[3]) + "; expected only rank " +
                  std::to_string(prev) + "'s write in slot 1");
  });
}

// A participant that does not fence: the others' fence() times out naming it; the call is then abandoned for
// everyone (its close fails at once), and the next call works.
TEST_P(Conformance, MissingFenceTimesOut) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    if (!plainOpen(ctx, all, "call #0")) return;
    if (me != 2) {
      const auto t0 = Clock::now();
      const Status s = e.fence(in(1s));
      checkFailure(ctx, s, secondsSince(t0), StatusCode::kTimeout, 0.25, 6.0, {2}, "fence without rank 2");
      ctx.check(s.message().find("fence") != std::string::npos, "the message does not say fence: " + s.message());
    }
    ctx.barrier();
    const auto t0 = Clock::now();
    const Status c = e.close(in(3s));
    checkFailure(ctx, c, secondsSince(t0), StatusCode::kTimeout, 0.0, 2.0, {}, "close of the abandoned call");
    verifiedCall(ctx, all, kWrites, 1);
  });
}

// Calls over different subsets interleave, each matched by its own sequence: ranks {0, 1} make two calls while
// {1, 2} make one, rank 1 taking {1, 2} first while rank 0 already waits in {0, 1}; then everyone, then more.
TEST_P(Conformance, InterleavedSubsets) {
  run(3, [](RankContext& ctx) {
    const int me = ctx.rank();
    const std::vector<int> a = {0, 1}, b = {1, 2}, c = {0, 2}, all = {0, 1, 2};
    verifiedCall(ctx, {me}, kSubsets + 10, 0);  // alone
    switch (me) {
      case 0:
        verifiedCall(ctx, a, kSubsets, 0);
        verifiedCall(ctx, a, kSubsets, 1);
        break;
      case 1:
        verifiedCall(ctx, b, kSubsets + 1, 0);
        verifiedCall(ctx, a, kSubsets, 0);
        verifiedCall(ctx, a, kSubsets, 1);
        break;
      default:
        verifiedCall(ctx, b, kSubsets + 1, 0);
        break;
    }
    verifiedCall(ctx, all, kSubsets + 2, 0);
    if (me != 1) verifiedCall(ctx, c, kSubsets + 3, 0);
    if (me != 2) verifiedCall(ctx, a, kSubsets, 2);
    if (me != 0) verifiedCall(ctx, b, kSubsets + 1, 1);
    verifiedCall(ctx, {me}, kSubsets + 10, 1);
    verifiedCall(ctx, all, kSubsets + 2, 1);
  });
}

// Two disjoint pairs call at the same time, with calls of the evens, the odds and everyone in between.
TEST_P(Conformance, DisjointSubsetsConcurrently) {
  run(4, [](RankContext& ctx) {
    const int me = ctx.rank();
    const std::vector<int> low = {0, 1}, high = {2, 3}, evens = {0, 2}, odds = {1, 3}, all = {0, 1, 2, 3};
    for (uint64_t i = 0; i < 30; ++i) {
      verifiedCall(ctx, me < 2 ? low : high, me < 2 ? kDisjoint : kDisjoint + 1, i);
      if (i % 3 == 0)
        verifiedCall(ctx, me % 2 == 0 ? evens : odds, kDisjoint + 2 + static_cast<uint64_t>(me % 2), i / 3);
      if (i % 10 == 9) verifiedCall(ctx, all, kDisjoint + 4, i / 10);
    }
  });
}

// After an elastic scale-in the survivors call among themselves while the removed rank is already waiting in the
// next call of everyone; that call matches once the survivors are done.
TEST_P(Conformance, SurvivorsThenEveryone) {
  run(3, [](RankContext& ctx) {
    const int me = ctx.rank();
    const std::vector<int> survivors = {0, 2}, all = {0, 1, 2};
    verifiedCall(ctx, all, kSurvivors, 0);
    if (me != 1)
      for (uint64_t i = 0; i < 3; ++i) verifiedCall(ctx, survivors, kSurvivors + 1, i);
    verifiedCall(ctx, all, kSurvivors, 1);
    verifiedCall(ctx, all, kSurvivors, 2);
  });
}

// Hundreds of calls in a row over a reused buffer whose size and contents change with every call; every rank checks
// every participant's header and bytes. A close() that let a rank rewrite its buffer while a peer was still reading,
// or calls matched to the wrong sequence number, show up as wrong bytes or headers.
TEST_P(Conformance, BackToBackCalls) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    constexpr size_t kSizes[] = {0, 1, 4096, 70001, 333};
    auto bytesOfCall = [&](uint64_t c, int rank) {
      const size_t base = kSizes[c % 5];
      return base == 0 ? 0 : base + static_cast<size_t>(rank);
    };
    std::vector<std::byte> buffer(70001 + 64), got(70001 + 64);
    int64_t stamp = 0;
    for (uint64_t c = 0; c < 300; ++c) {
      const size_t n = bytesOfCall(c, me);
      fillPattern(seedOf(kBackToBack, c, me, 0), buffer.data(), n);
      stamp = static_cast<int64_t>(c) * 1000 + me;
      const CallHeader mine{kBackToBack, c, me};
      const Region regions[] = {{n ? buffer.data() : nullptr, n}, {&stamp, sizeof stamp}};
      const Status s = e.open(all, bytesOf(mine), std::span<const Region>(regions, c % 2 ? 2 : 1), in(20s));
      if (!s.ok()) {
        ctx.fail("call " + str(c) + ": open: " + s.toString());
        return;
      }
      for (int p : all) {
        const std::string who = "call " + str(c) + ", rank " + std::to_string(p);
        const auto h = e.peerHeader(p);
        CallHeader theirs{};
        if (h.size() == sizeof theirs) std::memcpy(&theirs, h.data(), sizeof theirs);
        ctx.check(h.size() == sizeof theirs && theirs.seq == c && theirs.rank == p,
                  who + ": published call " + str(theirs.seq) + " as rank " + std::to_string(theirs.rank));
        const size_t pn = bytesOfCall(c, p);
        ctx.check(e.peerRegionBytes(p, 0) == pn, who + ": region 0 has " + str(e.peerRegionBytes(p, 0)) + " bytes");
        const Status rs = e.read(p, 0, 0, got.data(), pn);
        if (rs.ok())
          checkPattern(ctx, who + " (read)", seedOf(kBackToBack, c, p, 0), got.data(), pn);
        else
          ctx.fail(who + ": read: " + rs.toString());
        if (const std::byte* base = e.peerRegion(p, 0))
          checkPattern(ctx, who + " (in place)", seedOf(kBackToBack, c, p, 0), base, pn);
        if (c % 2) {
          int64_t theirStamp = -1;
          const Status ss = e.read(p, 1, 0, &theirStamp, sizeof theirStamp);
          ctx.check(ss.ok() && theirStamp == static_cast<int64_t>(c) * 1000 + p,
                    who + ": stamp " + std::to_string(theirStamp) + " " + ss.toString());
        } else {
          ctx.check(e.peerRegionBytes(p, 1) == 0, who + ": region 1 left over from the previous call");
        }
      }
      if ((c + static_cast<uint64_t>(me)) % 7 == 0) std::this_thread::yield();  // skew the ranks a little
      const Status cs = e.close(in(20s));
      if (!cs.ok()) {
        ctx.fail("call " + str(c) + ": close: " + cs.toString());
        return;
      }
    }
  });
}

// A rank late to open (and one late to close): the others wait for it and the calls succeed.
TEST_P(Conformance, LateRank) {
  run(3, [](RankContext& ctx) {
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    ctx.barrier();
    CallOptions late;
    if (me == 2) late.lateOpen = 400ms;
    verifiedCall(ctx, all, kLate, 0, late);
    late = {};
    if (me == 0) late.lateClose = 400ms;
    verifiedCall(ctx, all, kLate, 1, late);
    late = {};
    if (me == 1) late.lateOpen = 200ms;
    if (me == 1) late.lateClose = 200ms;
    verifiedCall(ctx, all, kLate, 2, late);
  });
}

// A rank that never opens the call: the others fail with kTimeout at their deadline (2 s), naming it. When it
// opens that call later, it fails too (not a wrong result), and the next call works for everyone.
TEST_P(Conformance, MissingRankTimesOut) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    ctx.barrier();
    if (me != 2) {
      const auto t0 = Clock::now();
      const Status s = e.open(all, {}, {}, in(2s));
      checkFailure(ctx, s, secondsSince(t0), StatusCode::kTimeout, 0.5, 7.0, {2}, "open without rank 2");
      ctx.check(e.peerHeader(me).empty(), "a failed open left a call open");
      ctx.check(e.close(in(1s)).code() == StatusCode::kInvalidArgument, "close() after a failed open");
    }
    ctx.barrier();
    if (me == 2) {
      const auto t0 = Clock::now();
      const Status s = e.open(all, {}, {}, in(1s));
      checkFailure(ctx, s, secondsSince(t0), StatusCode::kTimeout, 0.0, 6.0, {}, "rank 2 opening the abandoned call");
    }
    verifiedCall(ctx, all, kMissing, 1);
  });
}

// A rank that opens but does not close in time: the others' close fails with kTimeout, naming it. Its own late close
// fails at once too (the others abandoned the call: all or nothing), and the next call works.
TEST_P(Conformance, MissingCloseTimesOut) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    if (!plainOpen(ctx, all, "call #0")) return;
    if (me != 2) {
      const auto t0 = Clock::now();
      const Status s = e.close(in(1s));
      checkFailure(ctx, s, secondsSince(t0), StatusCode::kTimeout, 0.25, 6.0, {2}, "close without rank 2");
    }
    ctx.barrier();
    if (me == 2) {
      const auto t0 = Clock::now();
      // The others gave up on the call, so it fails here too (all or nothing), at once.
      const Status s = e.close(in(3s));
      checkFailure(ctx, s, secondsSince(t0), StatusCode::kTimeout, 0.0, 2.0, {}, "the late close");
    }
    verifiedCall(ctx, all, kMissing, 1);
  });
}

// When one participant gives up at its (short) deadline, the others fail at once rather than at their own (30 s).
TEST_P(Conformance, OneRanksDeadlineFailsTheOthersFast) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    ctx.barrier();
    if (me != 2) {
      const auto t0 = Clock::now();
      const Status s = e.open(all, {}, {}, in(me == 0 ? 300ms : 30s));
      checkFailure(ctx, s, secondsSince(t0), StatusCode::kTimeout, 0.0, 5.0, {2},
                   me == 0 ? "open with a 300 ms deadline" : "open with a 30 s deadline after rank 0 gave up");
    }
    ctx.barrier();
    if (me == 2) {
      const auto t0 = Clock::now();
      const Status s = e.open(all, {}, {}, in(1s));
      checkFailure(ctx, s, secondsSince(t0), StatusCode::kTimeout, 0.0, 6.0, {}, "rank 2 opening the abandoned call");
    }
    verifiedCall(ctx, all, kMissing, 1);
  });
}

// A rank whose engine is destroyed with the call open while the others wait in close(): they fail at once (well
// before their 30 s deadline) naming it, and the survivors go on among themselves.
TEST_P(Conformance, DepartedRankWhileOthersClose) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    const bool opened = plainOpen(ctx, all, "call #0");
    ctx.barrier();
    if (me == 2) {
      std::this_thread::sleep_for(300ms);  // the others are in close() by now
      ctx.destroyEngine();
      return;
    }
    if (!opened) return;
    const auto t0 = Clock::now();
    const Status s = e.close(in(30s));
    checkFailure(ctx, s, secondsSince(t0), s.code(), 0.0, 5.0, {2}, "close after rank 2 departed");
    verifiedCall(ctx, {0, 1}, kDeparted, 0);
  });
}

// A rank that destroys its engine as soon as its open() returns: the others, in open() or coming to close() later,
// fail at once naming it, and the survivors go on among themselves.
TEST_P(Conformance, DepartedRankRightAfterOpen) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank();
    const auto all = ranksUpTo(ctx.ranks());
    ctx.barrier();
    if (me == 2) {
      const Status s = e.open(all, {}, {}, in(20s));
      ctx.check(s.ok(), "open: " + s.toString());
      ctx.destroyEngine();
      return;
    }
    auto t0 = Clock::now();
    Status s = e.open(all, {}, {}, in(30s));
    if (s.ok()) {
      std::this_thread::sleep_for(300ms);  // rank 2 is gone by now
      t0 = Clock::now();
      s = e.close(in(30s));
    }
    checkFailure(ctx, s, secondsSince(t0), s.code(), 0.0, 5.0, {2}, "the call after rank 2 departed");
    verifiedCall(ctx, {0, 1}, kDeparted, 0);
  });
}

// Bad participant lists, too many regions, open() while a call is open, close() and read() with no call:
// kInvalidArgument, and none of them counts as a call.
TEST_P(Conformance, BadArguments) {
  run(3, [](RankContext& ctx) {
    Engine& e = ctx.engine();
    const int me = ctx.rank(), n = ctx.ranks();
    const auto all = ranksUpTo(n);
    auto invalid = [&](const Status& s, const std::string& what) {
      ctx.check(s.code() == StatusCode::kInvalidArgument, what + ": expected kInvalidArgument, got " + s.toString());
    };
    std::vector<int> unsorted = all, duplicate = all, withoutMe, tooHigh = all, negative = all;
    std::swap(unsorted[0], unsorted[1]);
    duplicate.insert(duplicate.begin() + me, me);
    for (int r : all)
      if (r != me) withoutMe.push_back(r);
    tooHigh.push_back(n);
    negative.insert(negative.begin(), -1);
    const auto deadline = in(20s);
    invalid(e.open(unsorted, {}, {}, deadline), "participants not sorted");
    invalid(e.open(duplicate, {}, {}, deadline), "a participant twice");
    invalid(e.open(withoutMe, {}, {}, deadline), "participants without this rank");
    invalid(e.open(tooHigh, {}, {}, deadline), "participant size()");
    invalid(e.open(negative, {}, {}, deadline), "participant -1");
    invalid(e.open(std::vector<int>{}, {}, {}, deadline), "no participants");
    int x = 0;
    const std::vector<Region> nine(kMaxRegions + 1, Region{&x, sizeof x});
    invalid(e.open(all, {}, nine, deadline), "kMaxRegions + 1 regions");
    const Region nullWithBytes{nullptr, 4};
    invalid(e.open(all, {}, {&nullWithBytes, 1}, deadline), "a region with bytes and no address");
    invalid(e.close(deadline), "close() with no open call");
    int32_t value = 0;
    invalid(e.read(me, 0, 0, &value, sizeof value), "read() with no open call");

    // A call of this rank alone: open() while it is open is refused and leaves it open.
    const int32_t mine = 1000 + me;
    const Region region{&mine, sizeof mine};
    const std::vector<int> self = {me};
    if (!e.open(self, bytesOf(mine), {&region, 1}, deadline).ok()) {
      ctx.fail("open of this rank alone failed");
    } else {
      invalid(e.open(self, {}, {}, deadline), "open() while a call is open");
      invalid(e.open(all, {}, {}, deadline), "open() of another list while a call is open");
      ctx.check(e.read(me, 0, 0, &value, sizeof value).ok() && value == mine, "the first call stays open");
      ctx.check(e.peerHeader(me).size() == sizeof mine, "the first call's header");
      ctx.check(e.close(deadline).ok(), "close of the call of this rank alone");
    }
    // The rejected opens were no calls: everyone is at call #0 of the full list.
    verifiedCall(ctx, all, kBad, 0);
    verifiedCall(ctx, self, kBad + 1, 1);
  });
}

std::string kindName(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

#ifdef MOEDIST_CONFORMANCE_MPI
INSTANTIATE_TEST_SUITE_P(Mpi, Conformance, ::testing::Values("mpi_shm", "mpi_msg"), kindName);
#else
#ifdef MOEDIST_HAVE_SHM_ENGINE
INSTANTIATE_TEST_SUITE_P(Engines, Conformance, ::testing::Values("inproc", "inproc_copy", "shm"), kindName);
#else
INSTANTIATE_TEST_SUITE_P(Engines, Conformance, ::testing::Values("inproc", "inproc_copy"), kindName);
#endif
#endif

}  // namespace
