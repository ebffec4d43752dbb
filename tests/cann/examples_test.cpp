// Runs the CANN example programs (examples/cann) and compares the digest lines they print with the ones computed
// from the reference model, on the same inputs (examples/cann/common.h) and the same identity expert FFN.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../../examples/cann/common.h"
#include <moedist_ref/reference.h>

namespace {

namespace ref = moedist::ref;
using namespace moedist_examples;

// The expected output of one example: its digest lines, then "example ok".
struct Scenario {
  ExampleConfig cfg;
  int64_t moeIds;                  // the MoE ids in use (M, or M' after scale-in)
  std::vector<bool> participates;  // per device
};

ref::Config refConfig(const ExampleConfig& c) {
  ref::Config rc;
  rc.W = static_cast<int>(c.W);
  rc.M = static_cast<int>(c.M);
  rc.K = static_cast<int>(c.K);
  rc.H = static_cast<int>(c.H);
  rc.Z = static_cast<int>(c.Z);
  rc.C = static_cast<int>(c.C);
  rc.Q = static_cast<int>(c.Q);
  rc.globalBs = static_cast<int>(c.globalBs());
  rc.tp = static_cast<int>(c.tp);
  rc.expertTokenNumsType = 1;
  rc.normEps = 1e-6f;
  rc.elasticInfo = c.elasticInfo;
  return rc;
}

std::vector<std::string> expectedLines(const Scenario& s) {
  const ExampleConfig& c = s.cfg;
  const ref::Config rc = refConfig(c);
  const int64_t groups = c.tp == 2 ? 2 : 1;
  // Device of [tpIdx][epRank]: ep*2 + tp with TP, else the EP rank.
  auto device = [&](int64_t tpIdx, int64_t ep) { return ep * groups + tpIdx; };

  ref::DispatchInputs din(groups, std::vector<ref::DispatchInput>(c.W));
  std::vector<std::vector<RankInputs>> inputs(groups, std::vector<RankInputs>(c.W));
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t e = 0; e < c.W; ++e) {
      inputs[g][e] = makeRankInputs(c, device(g, e), s.moeIds);
      din[g][e].Bs = static_cast<int>(c.Bs);
      din[g][e].x = inputs[g][e].x;
      din[g][e].expertIds = inputs[g][e].expertIds;
    }
  }
  ref::DispatchOutputs dout;
  auto err = ref::dispatch(rc, din, &dout);
  EXPECT_FALSE(err.has_value()) << *err;
  if (err) return {};

  // The identity expert FFN: combine's expandX is dispatch's expandX (own rows, then the TP peer's).
  ref::CombineInputs cin(groups, std::vector<ref::CombineInput>(c.W));
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t e = 0; e < c.W; ++e) {
      const ref::DispatchOutput& o = dout[g][e];
      const RankInputs& in = inputs[g][e];
      ref::CombineInput& ci = cin[g][e];
      ci.expandX.resize(o.expandX.size() / 2);
      if (!o.expandX.empty()) std::memcpy(ci.expandX.data(), o.expandX.data(), o.expandX.size());
      ci.assistInfo = o.assistInfo;
      ci.epSendCounts = o.epRecvCounts;
      ci.tpSendCounts = o.tpRecvCounts;
      ci.expertScales = in.expertScales;
      ci.residualX = in.residualX;
      ci.gamma = in.gamma;
      if (c.Z + c.C + c.Q > 0) {
        ci.oriX = in.oriX;
        ci.alpha1 = in.alpha1;
        ci.alpha2 = in.alpha2;
        ci.constV = in.constV;
      }
    }
  }
  ref::CombineOutputs cout;
  err = ref::combine(rc, din, cin, &cout);
  EXPECT_FALSE(err.has_value()) << *err;
  if (err) return {};

  std::vector<std::string> lines;
  for (int64_t d = 0; d < c.W * groups; ++d) {
    const int64_t g = d % groups, e = d / groups;
    const ref::DispatchOutput& o = dout[g][e];
    const ref::CombineOutput& co = cout[g][e];
    EXPECT_EQ(o.participates, static_cast<bool>(s.participates[d])) << "device " << d;
    if (!s.participates[d]) continue;
    for (int64_t t = 0; t < c.Bs; ++t) EXPECT_TRUE(co.written[t]) << "device " << d << " token " << t;
    const RankDigests dg =
        digestOutputs(c, reinterpret_cast<const uint16_t*>(o.expandX.data()), o.numRows, o.assistInfo.data(),
                      o.numOwnRows, o.epRecvCounts.data(), static_cast<int64_t>(o.epRecvCounts.size()), co.xOut.data(),
                      co.yOut.data(), co.rstdOut.data());
    EXPECT_EQ(o.assistInfo.size(), static_cast<size_t>(3 * o.numOwnRows));
    EXPECT_GT(o.numOwnRows, 0) << "device " << d;  // the example exercises every rank
    if (c.tp == 2) {
      EXPECT_GT(o.numRows, o.numOwnRows) << "device " << d;
    }
    lines.push_back(digestLine(d, dg));
  }
  lines.push_back("example ok");
  return lines;
}

// Runs the program and returns its stdout lines and exit status.
std::vector<std::string> runProgram(const std::string& path, int* status) {
  std::vector<std::string> lines;
  FILE* p = popen(path.c_str(), "r");
  if (p == nullptr) {
    *status = -1;
    return lines;
  }
  std::string cur;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) cur.append(buf, n);
  *status = pclose(p);
  size_t start = 0;
  while (start < cur.size()) {
    size_t end = cur.find('\n', start);
    if (end == std::string::npos) end = cur.size();
    lines.push_back(cur.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// Runs `command` and compares its stdout lines with the expected ones; in any order when `anyOrder` (the processes
// of an MPI job print their own lines).
void checkExample(const std::string& command, const Scenario& s, bool anyOrder = false) {
  std::vector<std::string> expected = expectedLines(s);
  ASSERT_FALSE(expected.empty());
  int status = 0;
  std::vector<std::string> actual = runProgram(command, &status);
  EXPECT_EQ(status, 0) << command;
  if (anyOrder) {
    std::sort(expected.begin(), expected.end());
    std::sort(actual.begin(), actual.end());
  }
  EXPECT_EQ(actual, expected) << command;
}

TEST(CannExamples, BasicPipeline) {
  const ExampleConfig c = basicPipelineConfig();
  checkExample(MOEDIST_EXAMPLE_BASIC_PIPELINE, Scenario{c, c.M, std::vector<bool>(8, true)});
}

TEST(CannExamples, ElasticScaleIn) {
  const ExampleConfig c = elasticScaleInConfig();
  std::vector<bool> participates;
  for (int d = 0; d < 8; ++d) participates.push_back(elasticSurvivor(d));
  checkExample(MOEDIST_EXAMPLE_ELASTIC_SCALE_IN, Scenario{c, c.Mafter, participates});
}

TEST(CannExamples, Tp2) {
  const ExampleConfig c = tp2Config();
  checkExample(MOEDIST_EXAMPLE_TP2, Scenario{c, c.M, std::vector<bool>(8, true)});
}

// The names in /dev/shm that moedist's shared-memory engine may have made ("moedist..."; none when /dev/shm is
// absent).
std::set<std::string> moedistShmNames() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("moedist", 0) == 0) names.insert(name);
  }
  return names;
}

// examples/cann/fork_pipeline.cpp: the parent forks W * tp processes, which make their communicators from root infos
// passed through pipes (shared memory, no MPI); the parent prints their lines in device order. Afterwards nothing of
// theirs is left in /dev/shm. (Tests running at the same time may own names for a moment, so a name that was not
// there before must be gone within a few seconds.)
void checkForkPipeline(int64_t W, int64_t tp) {
  const ExampleConfig c = mpiPipelineConfig(W, tp);
  const std::set<std::string> before = moedistShmNames();
  const std::string command = std::string(MOEDIST_EXAMPLE_FORK_PIPELINE) + " --tp " + std::to_string(tp) +
                              " --processes " + std::to_string(W * tp);
  checkExample(command, Scenario{c, c.M, std::vector<bool>(static_cast<size_t>(W * tp), true)});
  std::vector<std::string> left;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);;) {
    left.clear();
    for (const std::string& name : moedistShmNames())
      if (before.count(name) == 0) left.push_back(name);
    if (left.empty() || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(left.empty()) << "left in /dev/shm: " << ::testing::PrintToString(left);
}

TEST(CannExamples, ForkPipeline) {  // 4 processes: 4 EP ranks
  checkForkPipeline(4, 1);
}

TEST(CannExamples, ForkPipelineTp2) {  // 4 processes: 2 EP ranks x 2 TP ranks
  checkForkPipeline(2, 2);
}

#ifdef MOEDIST_EXAMPLE_MPI_PIPELINE
// examples/cann/mpi_pipeline.cpp under mpirun, one process per rank (tests/CMakeLists.txt gives these cases the
// labels cann and mpi): `mpiexec -n <W*tp> [flags] mpi_pipeline --tp <tp>`.
void checkMpiPipeline(int64_t W, int64_t tp) {
  const ExampleConfig c = mpiPipelineConfig(W, tp);
  const std::string command = std::string(MOEDIST_MPIEXEC) + " " + MOEDIST_MPIEXEC_NUMPROC_FLAG + " " +
                              std::to_string(W * tp) + " " + MOEDIST_MPIEXEC_PREFLAGS + " " +
                              MOEDIST_EXAMPLE_MPI_PIPELINE + " " + MOEDIST_MPIEXEC_POSTFLAGS + " --tp " +
                              std::to_string(tp);
  checkExample(command, Scenario{c, c.M, std::vector<bool>(static_cast<size_t>(W * tp), true)}, /*anyOrder=*/true);
}

TEST(CannExamplesMpi, Tp2) {  // 4 processes: 2 EP ranks x 2 TP ranks
  checkMpiPipeline(2, 2);
}

TEST(CannExamplesMpi, NoTp) {  // 4 processes: 4 EP ranks
  checkMpiPipeline(4, 1);
}
#endif

}  // namespace
