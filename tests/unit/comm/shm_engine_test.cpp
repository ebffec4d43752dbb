// Tests of what is particular to the shared-memory engine (src/comm/shm): the unique id, the bootstrap and its
// errors, the names in /dev/shm, the mode of the segments, publishing in place from allocate()'s memory, a full data
// area, and a peer process that dies. The behaviour every engine shares is in conformance/. Ranks are threads here
// (the engine treats them like processes), except where a process must die.
#include "comm/shm/shm_engine.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "comm/protocol.h"
#include "support/rank_launcher.h"

namespace {

using moedist::Status;
using moedist::StatusCode;
using moedist::comm::Clock;
using moedist::comm::Engine;
using moedist::comm::Region;
using moedist::testing::runRanks;
namespace shm = moedist::comm::shm;
using namespace std::chrono_literals;

using Engines = std::vector<std::unique_ptr<Engine>>;

std::string newId() {
  std::string id;
  Status s = shm::newUniqueId(&id);
  if (!s.ok()) throw std::runtime_error(s.toString());
  return id;
}

shm::Options options(size_t segmentBytes = size_t{4} << 20, std::chrono::milliseconds connect = 20s) {
  shm::Options o;
  o.name = "shm-test";
  o.segmentBytes = segmentBytes;
  o.connectTimeout = connect;
  return o;
}

// Every rank of a fresh communicator of n ranks, created from n threads at once.
Engines makeEngines(int n, const shm::Options& o = options(), std::string id = newId()) {
  Engines engines(static_cast<size_t>(n));
  std::vector<Status> statuses(static_cast<size_t>(n));
  runRanks(n, [&](int r) {
    statuses[static_cast<size_t>(r)] = shm::createEngine(id, n, r, o, &engines[static_cast<size_t>(r)]);
  });
  for (const Status& s : statuses)
    if (!s.ok()) throw std::runtime_error(s.toString());
  return engines;
}

// The entries of /dev/shm of the communicator of unique id `id` (other tests may run beside this one).
std::vector<std::string> namesOf(const std::string& id) {
  const size_t a = id.find(';') + 1;
  const std::string prefix = "moedist-" + id.substr(a, id.find(';', a) - a);
  std::vector<std::string> out;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d))
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) out.emplace_back(e->d_name);
    ::closedir(d);
  }
  return out;
}

std::vector<int> ranksUpTo(int n) {
  std::vector<int> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

TEST(ShmEngine, UniqueIdsAreRandomAndRecognized) {
  const std::string a = newId(), b = newId();
  EXPECT_NE(a, b);
  EXPECT_TRUE(shm::isUniqueId(a));
  EXPECT_LT(a.size(), 256u);
  EXPECT_FALSE(shm::isUniqueId(""));
  EXPECT_FALSE(shm::isUniqueId("moedist-root-12-0"));
  std::string tampered = a;
  tampered[14] = 'Z';  // inside the token, which is lowercase hex
  EXPECT_FALSE(shm::isUniqueId(tampered));
}

TEST(ShmEngine, NothingIsLeftInDevShmOnceEveryMemberAttached) {
  const std::string id = newId();
  {
    Engines engines = makeEngines(3, options(), id);
    EXPECT_TRUE(namesOf(id).empty()) << "names remain while the communicator lives";
    for (int r = 0; r < 3; ++r) {
      EXPECT_EQ(engines[static_cast<size_t>(r)]->rank(), r);
      EXPECT_EQ(engines[static_cast<size_t>(r)]->size(), 3);
      EXPECT_STREQ(engines[static_cast<size_t>(r)]->kind(), "shm");
    }
  }
  EXPECT_TRUE(namesOf(id).empty());
}

TEST(ShmEngine, RejectsBadArguments) {
  std::unique_ptr<Engine> e;
  const std::string id = newId();
  EXPECT_EQ(shm::createEngine(id, 2, 0, options(), nullptr).code(), StatusCode::kNullArgument);
  Status s = shm::createEngine("not an id", 2, 0, options(), &e);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("getShmUniqueId"), std::string::npos) << s.message();
  EXPECT_EQ(shm::createEngine(id, 0, 0, options(), &e).code(), StatusCode::kInvalidValue);
  s = shm::createEngine(id, 2, 2, options(), &e);
  EXPECT_EQ(s.code(), StatusCode::kInvalidValue);
  EXPECT_NE(s.message().find("rank is 2, expected 0..1"), std::string::npos) << s.message();
}

TEST(ShmEngine, AnIdFromAnotherHostOrContainerIsRefusedAtOnce) {
  const std::string id = newId();
  // Fields: prefix;token;boot id;/dev/shm device;/dev/shm inode;IPC namespace;PID namespace.
  std::vector<std::string> f;
  for (size_t start = 0;;) {
    const size_t end = id.find(';', start);
    f.push_back(id.substr(start, end == std::string::npos ? end : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  ASSERT_EQ(f.size(), 7u);
  auto with = [&](size_t field, const std::string& value) {
    std::vector<std::string> g = f;
    g[field] = value;
    std::string out;
    for (size_t i = 0; i < g.size(); ++i) out += (i ? ";" : "") + g[i];
    return out;
  };
  const struct {
    size_t field;
    std::string value, says;
  } cases[] = {{2, "00000000-0000-0000-0000-000000000000", "another host"},
               {4, "987654321", "another container"},
               {5, "987654322", "another container"},
               {6, "987654323", "PID namespace"}};
  for (const auto& c : cases) {
    std::unique_ptr<Engine> e;
    const auto start = Clock::now();
    Status s = shm::createEngine(with(c.field, c.value), 2, 1, options(size_t{1} << 20, 2s), &e);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "field " << c.field << ": " << s.toString();
    EXPECT_NE(s.message().find(c.says), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("MPI engine"), std::string::npos) << s.message();
    EXPECT_LT(Clock::now() - start, 1s);
  }
}

TEST(ShmEngine, MissingMemberTimesOutNamingItAndCleansUp) {
  const std::string id = newId();
  std::vector<Status> statuses(2);
  Engines engines(2);
  runRanks(2, [&](int r) {  // ranks 0 and 1 of 3; rank 2 never comes
    statuses[static_cast<size_t>(r)] = shm::createEngine(id, 3, r, options(size_t{1} << 20, 300ms), &engines[r]);
  });
  for (const Status& s : statuses) {
    EXPECT_EQ(s.code(), StatusCode::kTimeout) << s.toString();
    EXPECT_NE(s.message().find("rank(s) 2 to join"), std::string::npos) << s.message();
  }
  EXPECT_TRUE(namesOf(id).empty());
}

TEST(ShmEngine, TheSameRankTwiceIsRefused) {
  const std::string id = newId();
  std::unique_ptr<Engine> first, second;
  Status a;
  std::thread t([&] { a = shm::createEngine(id, 2, 0, options(size_t{1} << 20, 1s), &first); });
  std::this_thread::sleep_for(200ms);
  Status b = shm::createEngine(id, 2, 0, options(size_t{1} << 20, 1s), &second);
  t.join();
  EXPECT_EQ(b.code(), StatusCode::kInvalidArgument) << b.toString();
  EXPECT_NE(b.message().find("rank 0 of this unique id has joined already"), std::string::npos) << b.message();
  EXPECT_EQ(a.code(), StatusCode::kTimeout) << a.toString();  // rank 1 never came
  EXPECT_NE(a.message().find("rank(s) 1 to join"), std::string::npos) << a.message();
}

TEST(ShmEngine, DifferentSizesFailEveryMember) {
  const std::string id = newId();
  std::unique_ptr<Engine> e0, e1;
  Status a;
  std::thread t([&] { a = shm::createEngine(id, 2, 0, options(size_t{1} << 20, 20s), &e0); });
  std::this_thread::sleep_for(200ms);
  const auto start = Clock::now();
  Status b = shm::createEngine(id, 4, 1, options(size_t{1} << 20, 20s), &e1);
  t.join();
  EXPECT_EQ(b.code(), StatusCode::kInvalidArgument) << b.toString();
  EXPECT_NE(b.message().find("nRanks is 4, but the member that came first gave 2"), std::string::npos) << b.message();
  EXPECT_FALSE(a.ok());
  EXPECT_NE(a.message().find("rank 1 gave up"), std::string::npos) << a.message();
  EXPECT_LT(Clock::now() - start, 5s) << "rank 0 waited for its deadline";
  EXPECT_TRUE(namesOf(id).empty());
}

TEST(ShmEngine, SegmentsAreOnlyForTheirUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user (CI runs as root)";
  // While the bootstrap waits for rank 1, the names exist: a process of another user must not be able to join.
  const std::string id = newId();
  std::unique_ptr<Engine> e0;
  std::thread rank0([&] { (void)shm::createEngine(id, 2, 0, options(size_t{1} << 20, 3s), &e0); });
  std::this_thread::sleep_for(300ms);
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    std::unique_ptr<Engine> e1;
    Status s = shm::createEngine(id, 2, 1, options(size_t{1} << 20, 1s), &e1);
    ::_exit(s.ok() ? 0 : (s.message().find("another user") != std::string::npos ? 1 : 2));
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  rank0.join();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << "0: it joined; 2: it failed without saying why; 3: setuid failed";
}

TEST(ShmEngine, RegionsInAllocatedMemoryArePublishedInPlace) {
  Engines engines = makeEngines(2);
  Engine& e0 = *engines[0];
  constexpr size_t kBytes = 1 << 20;
  auto* mine = static_cast<uint8_t*>(e0.allocate(kBytes));
  ASSERT_NE(mine, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(mine) % 64, 0u);
  for (size_t i = 0; i < kBytes; ++i) mine[i] = static_cast<uint8_t>(i * 7);
  std::vector<uint8_t> copy(kBytes);
  for (size_t i = 0; i < kBytes; ++i) copy[i] = static_cast<uint8_t>(i * 3);
  runRanks(2, [&](int r) {
    Engine& e = *engines[static_cast<size_t>(r)];
    const Region regions[] = {{r == 0 ? static_cast<void*>(mine) : copy.data(), kBytes}};
    Status s = e.open(ranksUpTo(2), {}, regions, Clock::now() + 20s);
    ASSERT_TRUE(s.ok()) << s.toString();
    ASSERT_TRUE(e.mapped());
    const std::byte* peer = e.peerRegion(1 - r, 0);
    ASSERT_NE(peer, nullptr);
    for (size_t i = 0; i < kBytes; i += 4099)
      ASSERT_EQ(static_cast<uint8_t>(peer[i]), static_cast<uint8_t>(i * (r == 0 ? 3 : 7))) << "offset " << i;
    // Rank 1 sees rank 0's allocated memory itself (no staging copy): a change made now shows through.
    if (r == 0) mine[5] = 0xAB;
    ASSERT_TRUE(e.close(Clock::now() + 20s).ok());
  });
  EXPECT_TRUE(e0.release(mine));
  EXPECT_FALSE(e0.release(mine)) << "released twice";
  EXPECT_FALSE(e0.release(copy.data())) << "not from the segment";
  EXPECT_EQ(e0.allocate(size_t{1} << 40), nullptr);
}

TEST(ShmEngine, AFullDataAreaFailsEveryRankAtOnce) {
  Engines engines = makeEngines(2, options(size_t{1} << 20));  // 1 MB data areas
  std::vector<uint8_t> big(size_t{2} << 20, 1), small(64, 2);
  runRanks(2, [&](int r) {
    Engine& e = *engines[static_cast<size_t>(r)];
    const Region regions[] = {{r == 0 ? big.data() : small.data(), r == 0 ? big.size() : small.size()}};
    const auto start = Clock::now();
    Status s = e.open(ranksUpTo(2), {}, regions, Clock::now() + 30s);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("HCCL_BUFFSIZE"), std::string::npos) << s.message();
    EXPECT_LT(Clock::now() - start, 5s) << "rank " << r << " waited for its deadline";
  });
  // The failed call left both ranks able to make the next one.
  runRanks(2, [&](int r) {
    Engine& e = *engines[static_cast<size_t>(r)];
    ASSERT_TRUE(e.open(ranksUpTo(2), {}, {}, Clock::now() + 20s).ok());
    ASSERT_TRUE(e.close(Clock::now() + 20s).ok());
  });
}

// A member process killed while the others wait in a call: they fail within milliseconds, naming it, and go on
// without it (a call over the survivors works).
TEST(ShmEngine, ADeadMemberFailsTheCallAtOnceAndTheSurvivorsGoOn) {
  const std::string id = newId();
  const pid_t child = ::fork();
  if (child == 0) {  // rank 2: joins, then sleeps until it is killed
    std::unique_ptr<Engine> e;
    Status s = shm::createEngine(id, 3, 2, options(), &e);
    if (!s.ok()) ::_exit(2);
    ::pause();
    ::_exit(0);
  }
  Engines engines(2);
  runRanks(2, [&](int r) { ASSERT_TRUE(shm::createEngine(id, 3, r, options(), &engines[r]).ok()); });
  EXPECT_TRUE(namesOf(id).empty());
  std::vector<double> ms(2);
  std::atomic<int64_t> killedAt{0};
  runRanks(2, [&](int r) {
    Engine& e = *engines[static_cast<size_t>(r)];
    if (r == 0) {
      std::this_thread::sleep_for(200ms);
      killedAt = Clock::now().time_since_epoch().count();
      ::kill(child, SIGKILL);
    }
    Status s = e.open(ranksUpTo(3), {}, {}, Clock::now() + 30s);
    ms[static_cast<size_t>(r)] =
        std::chrono::duration<double, std::milli>(Clock::now().time_since_epoch() - Clock::duration(killedAt.load()))
            .count();
    EXPECT_EQ(s.code(), StatusCode::kTimeout) << s.toString();
    EXPECT_NE(s.message().find("rank 2"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("exited"), std::string::npos) << s.message();
    // The survivors go on: a call over ranks 0 and 1.
    ASSERT_TRUE(e.open(ranksUpTo(2), {}, {}, Clock::now() + 20s).ok());
    ASSERT_TRUE(e.close(Clock::now() + 20s).ok());
  });
  int status = 0;
  ::waitpid(child, &status, 0);
  std::printf("[ info     ] from kill -9 to the error: rank 0 %.1f ms, rank 1 %.1f ms\n", ms[0], ms[1]);
  for (double m : ms) EXPECT_LT(m, 2000.0);
  EXPECT_TRUE(namesOf(id).empty());
}

}  // namespace
