// SPEC decisions 2 and 3: bad data gives a clear error on every participating rank with nothing half-written,
// attributes that differ between ranks give an error, and every cross-rank wait has a deadline that names the
// ranks not heard from.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "harness/pipeline.h"

namespace moedist::testing {
namespace {

Scenario small() {
  Scenario sc;
  sc.cfg.W = 4;
  sc.cfg.M = 8;
  sc.cfg.K = 3;
  sc.cfg.H = 1024;
  sc.bs.assign(4, 5);
  sc.seed = 5;
  return sc;
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

void expectNothingHalfWritten(const RunResult& r) {
  for (const std::string& f : r.failures) EXPECT_FALSE(contains(f, "half-written")) << f;
}

// Every participating rank's dispatch failed with `code`; the culprit's message contains `detail`; the others'
// name the culprit rank and carry the same detail.
void expectDispatchFailsEverywhere(const RunResult& r, StatusCode code, int culprit, const std::string& detail) {
  ASSERT_FALSE(r.ok());
  for (const RankResult& rank : r.ranks) {
    if (!rank.participates) continue;
    const Status& s = rank.dispatchStatus;
    EXPECT_EQ(s.code(), code) << "rank " << rank.epRank << ": " << s.toString();
    EXPECT_TRUE(contains(s.message(), detail)) << s.message();
    if (rank.epRank != culprit) EXPECT_TRUE(contains(s.message(), "rank " + std::to_string(culprit))) << s.message();
  }
  expectNothingHalfWritten(r);
}

// Edits expertIds[t][k] of one rank's dispatch (and combine) input to `id`.
struct IdEdit {
  int rank, t, k, id;
  std::vector<int32_t> ids;  // the edited copy
};

RunOptions editIds(IdEdit& e) {
  RunOptions o;
  o.editDispatch = [&e](int, int epRank, DispatchArgs& d) {
    if (epRank != e.rank) return;
    const int64_t Bs = d.expertIds.dim(0), K = d.expertIds.dim(1);
    e.ids.assign(static_cast<size_t>(Bs * K), 0);
    for (int64_t t = 0; t < Bs; ++t)
      for (int64_t k = 0; k < K; ++k)
        e.ids[static_cast<size_t>(t * K + k)] =
            d.expertIds.ptr<int32_t>()[t * d.expertIds.stride(0) + k * d.expertIds.stride(1)];
    e.ids[static_cast<size_t>(e.t * K + e.k)] = e.id;
    d.expertIds = TensorView(e.ids.data(), DType::kInt32, {Bs, K});
  };
  return o;
}

TEST(DataErrors, NegativeExpertId) {
  IdEdit e{2, 1, 0, -1, {}};
  expectDispatchFailsEverywhere(runScenario(small(), editIds(e)), StatusCode::kInvalidArgument, 2,
                                "expertIds[1][0] is -1");
}

TEST(DataErrors, ExpertIdBeyondEveryRange) {
  Scenario sc = small();
  sc.cfg.Z = 1, sc.cfg.C = 1, sc.oriX = true;
  IdEdit e{0, 4, 2, 10, {}};  // M + Z + C = 10
  expectDispatchFailsEverywhere(runScenario(sc, editIds(e)), StatusCode::kInvalidArgument, 0,
                                "expertIds[4][2] is 10, expected an id in [0, 10)");
}

TEST(DataErrors, MoeIdBeyondMWithoutSpecialExperts) {
  IdEdit e{3, 0, 1, 8, {}};
  expectDispatchFailsEverywhere(runScenario(small(), editIds(e)), StatusCode::kInvalidArgument, 3,
                                "expertIds[0][1] is 8, expected a MoE expert id in [0, 8)");
}

TEST(DataErrors, RepeatedExpertIdInOneToken) {
  Scenario sc = small();
  sc.routing = Routing::kOneExpert;
  sc.hotExpert = 6;
  IdEdit e{1, 2, 0, 6, {}};
  RunOptions o = editIds(e);
  // Every token of the scenario holds expert 6 once; writing 6 into another slot of token 2 repeats it (unless that
  // slot already holds it, so use the first slot that does not).
  auto base = o.editDispatch;
  o.editDispatch = [&e, base](int tpIdx, int epRank, DispatchArgs& d) {
    if (epRank == e.rank) {
      for (int k = 0; k < 3; ++k) {
        const int32_t id = d.expertIds.ptr<int32_t>()[2 * d.expertIds.stride(0) + k * d.expertIds.stride(1)];
        if (id != 6) {
          e.k = k;
          break;
        }
      }
    }
    base(tpIdx, epRank, d);
  };
  expectDispatchFailsEverywhere(runScenario(sc, o), StatusCode::kInvalidArgument, 1, "not already chosen");
}

TEST(DataErrors, IdOfAnExpertRemovedByScaleIn) {
  Scenario sc = small();
  sc.cfg.Z = 2, sc.specialFraction = 0.2;
  sc.removedRanks = {1};  // M' = 6: ids 6 and 7 are gone
  IdEdit e{3, 0, 0, 7, {}};
  expectDispatchFailsEverywhere(runScenario(sc, editIds(e)), StatusCode::kInvalidArgument, 3,
                                "after scale-in the MoE experts are [0, 6)");
}

TEST(DataErrors, OneDimMaskNotPrefix) {
  Scenario sc = small();
  sc.cfg.maskDims = 1;
  sc.activeTokens = 5;
  std::vector<uint8_t> mask = {1, 0, 1, 1, 1};
  RunOptions o;
  o.editDispatch = [&](int, int epRank, DispatchArgs& d) {
    if (epRank == 2) d.xActiveMask = TensorView(mask.data(), DType::kBool, {5});
  };
  expectDispatchFailsEverywhere(runScenario(sc, o), StatusCode::kInvalidArgument, 2,
                                "xActiveMask: expected all trues before all falses");
}

// Attributes every rank accepts on its own, but that differ between ranks.
TEST(DataErrors, AttributeDiffersBetweenRanks) {
  RunOptions o2;
  o2.timeout = std::chrono::milliseconds(20000);
  o2.editDispatch = [](int, int epRank, DispatchArgs& d) {
    if (epRank == 1) d.expertTokenNumsType = 0, d.globalBs = 4 * 6;  // globalBs 24 is valid on its own
  };
  const RunResult r2 = runScenario(small(), o2);
  ASSERT_FALSE(r2.ok());
  for (const RankResult& rank : r2.ranks) {
    EXPECT_EQ(rank.dispatchStatus.code(), StatusCode::kInvalidArgument) << rank.dispatchStatus.toString();
    EXPECT_TRUE(contains(rank.dispatchStatus.message(), "globalBs must be equal on all ranks"))
        << rank.dispatchStatus.message();
  }
  expectNothingHalfWritten(r2);
}

// Every survivor passes the same elasticInfo, edited by `edit`; every survivor must reject it (without an
// exchange: the participants themselves are in question) with a message containing `detail`.
void expectElasticInfoRejected(const std::function<void(std::vector<int32_t>&)>& edit, const std::string& detail) {
  Scenario sc = small();
  sc.removedRanks = {2};
  std::vector<std::vector<int32_t>> info(4);  // one copy per rank: the edit runs on the ranks' threads
  RunOptions o;
  o.editDispatch = [&](int, int epRank, DispatchArgs& d) {
    auto& mine = info[static_cast<size_t>(epRank)];
    mine.assign(d.elasticInfo.ptr<int32_t>(), d.elasticInfo.ptr<int32_t>() + d.elasticInfo.numel());
    edit(mine);
    d.elasticInfo = TensorView(mine.data(), DType::kInt32, {static_cast<int64_t>(mine.size())});
  };
  const RunResult r = runScenario(sc, o);
  ASSERT_FALSE(r.ok());
  for (const RankResult& rank : r.ranks) {
    if (!rank.participates) continue;
    EXPECT_EQ(rank.dispatchStatus.code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(contains(rank.dispatchStatus.message(), detail)) << rank.dispatchStatus.message();
  }
  expectNothingHalfWritten(r);
}

TEST(DataErrors, ElasticTablesNotInverse) {
  // W = 4: table2 starts at index 4 + W; swap the old ranks of new ids 0 and 1.
  expectElasticInfoRejected([](std::vector<int32_t>& e) { std::swap(e[8], e[9]); },
                            "elasticInfo: tables are not inverse");
}

TEST(DataErrors, ElasticChangesExpertsPerRank) {
  // M' = 3 over 3 MoE ranks: one expert per rank instead of two.
  expectElasticInfoRejected([](std::vector<int32_t>& e) { e[3] = 3; }, "keeps its 2 experts");
}

TEST(DataErrors, RemovedRankThatCallsAnywayFailsAlone) {
  Scenario sc = small();
  sc.removedRanks = {1};
  RunOptions o;
  o.removedRanksCall = true;
  const RunResult r = runScenario(sc, o);
  for (const RankResult& rank : r.ranks) {
    if (rank.epRank == 1) {
      EXPECT_EQ(rank.dispatchStatus.code(), StatusCode::kInvalidArgument);
      EXPECT_TRUE(contains(rank.dispatchStatus.message(), "was removed by the scale-in"))
          << rank.dispatchStatus.message();
    } else {
      EXPECT_TRUE(rank.dispatchStatus.ok()) << rank.dispatchStatus.toString();
      EXPECT_TRUE(rank.combineStatus.ok()) << rank.combineStatus.toString();
    }
  }
}

// Combine given other expert ids than dispatch: slot 0 of token 0 now names a zero expert, which expects no row,
// but the expert rank returns one. (Ids that move a slot to another MoE expert are not detectable: rows come back
// by slot, exactly as on CANN.)
TEST(DataErrors, CombineWithOtherExpertIdsThanDispatch) {
  Scenario sc = small();
  sc.cfg.Z = 1;
  std::vector<int32_t> ids;
  RunOptions o;
  o.editCombine = [&](int, int epRank, CombineArgs& c) {
    if (epRank != 0) return;
    const int64_t Bs = c.expertIds.dim(0), K = c.expertIds.dim(1);
    ids.assign(c.expertIds.ptr<int32_t>(), c.expertIds.ptr<int32_t>() + Bs * K);
    ids[0] = 8;  // the zero expert
    c.expertIds = TensorView(ids.data(), DType::kInt32, {Bs, K});
  };
  const RunResult r = runScenario(sc, o);
  ASSERT_FALSE(r.ok());
  const Status& s = r.ranks[0].combineStatus;
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.toString();
  EXPECT_TRUE(contains(s.message(), "token 0 slot 0, which this rank does not expect")) << s.message();
  EXPECT_TRUE(contains(s.message(), "must be the ones given to dispatch")) << s.message();
  expectNothingHalfWritten(r);
}

// An argument error on one rank (phase-1 validation) still reaches every rank at once, not after a timeout.
TEST(ArgumentErrors, OneRankBadArgumentFailsEveryRankAtOnce) {
  std::vector<float> wrongType(5 * 3, 0.0f);
  RunOptions o;
  o.timeout = std::chrono::milliseconds(60000);
  o.editDispatch = [&](int, int epRank, DispatchArgs& d) {
    if (epRank == 3) d.expertIds = TensorView(wrongType.data(), DType::kFloat32, {5, 3});
  };
  const auto t0 = std::chrono::steady_clock::now();
  const RunResult r = runScenario(small(), o);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  expectDispatchFailsEverywhere(r, StatusCode::kInvalidArgument, 3, "expertIds");
}

TEST(ArgumentErrors, CombineBadArgumentFailsEveryRankAtOnce) {
  std::vector<uint16_t> shortGamma(100, 0);
  RunOptions o;
  o.timeout = std::chrono::milliseconds(60000);
  o.editCombine = [&](int, int epRank, CombineArgs& c) {
    if (epRank == 0) c.gamma = TensorView(shortGamma.data(), DType::kBFloat16, {100});
  };
  const auto t0 = std::chrono::steady_clock::now();
  const RunResult r = runScenario(small(), o);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  for (const RankResult& rank : r.ranks) {
    EXPECT_EQ(rank.combineStatus.code(), StatusCode::kInvalidValue) << rank.combineStatus.toString();
    EXPECT_TRUE(contains(rank.combineStatus.message(), "gamma")) << rank.combineStatus.message();
  }
  expectNothingHalfWritten(r);
}

// With tpWorldSize 0 SPEC does not check expandX's rows; moedist checks every receiver's room on every rank.
TEST(DataErrors, ReceiverWithoutRoomFailsEveryRank) {
  std::vector<uint16_t> tiny(2 * 1024);
  RunOptions o;
  o.editDispatch = [&](int, int epRank, DispatchArgs& d) {
    if (epRank == 2) d.expandX = TensorView(tiny.data(), DType::kBFloat16, {2, 1024});
  };
  expectDispatchFailsEverywhere(runScenario(small(), o), StatusCode::kInvalidArgument, 2, "rank 2 receives");
}

// The other side of the check: an expandX below the capacity A that still holds every row the rank receives is
// accepted (every rank counts that receiver's rows exactly), and the outputs are the reference model's.
TEST(DataErrors, ReceiverWithJustEnoughRoomSucceeds) {
  const Scenario sc = small();
  ref::DispatchOutputs want;
  ASSERT_FALSE(ref::dispatch(sc.config(), sc.makeDispatchInputs(), &want).has_value());
  const int64_t rows = want[0][2].numRows;
  RunOptions o;
  o.editDispatch = [&](int, int epRank, DispatchArgs& d) {
    if (epRank != 2) return;
    ASSERT_LT(rows, d.expandX.dim(0));  // below A, so that the exact count decides
    d.expandX = TensorView(d.expandX.data(), d.expandX.dtype(), {rows, d.expandX.dim(1)});
  };
  const RunResult r = runScenario(sc, o);
  EXPECT_TRUE(r.ok()) << r.summary();
}

TEST(Deadlines, RankThatNeverArrivesIsNamed) {
  RunOptions o;
  o.timeout = std::chrono::milliseconds(1000);  // generous: the other calls must still meet under sanitizers
  o.skipDispatch = [](int, int epRank) { return epRank == 3; };
  const auto t0 = std::chrono::steady_clock::now();
  const RunResult r = runScenario(small(), o);
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(elapsed, std::chrono::seconds(10));
  for (const RankResult& rank : r.ranks) {
    if (rank.epRank == 3) continue;
    EXPECT_EQ(rank.dispatchStatus.code(), StatusCode::kTimeout) << rank.dispatchStatus.toString();
    EXPECT_TRUE(contains(rank.dispatchStatus.message(), "rank(s) 3")) << rank.dispatchStatus.message();
    EXPECT_TRUE(contains(rank.dispatchStatus.message(), "DispatchV3")) << rank.dispatchStatus.message();
  }
  expectNothingHalfWritten(r);
}

TEST(Deadlines, CombineRankThatNeverArrivesIsNamed) {
  RunOptions o;
  o.timeout = std::chrono::milliseconds(1000);  // generous: the other calls must still meet under sanitizers
  o.skipCombine = [](int, int epRank) { return epRank == 0; };
  const RunResult r = runScenario(small(), o);
  for (const RankResult& rank : r.ranks) {
    if (rank.epRank == 0) continue;
    EXPECT_EQ(rank.combineStatus.code(), StatusCode::kTimeout) << rank.combineStatus.toString();
    EXPECT_TRUE(contains(rank.combineStatus.message(), "rank(s) 0")) << rank.combineStatus.message();
    EXPECT_TRUE(contains(rank.combineStatus.message(), "CombineAddRmsNormV2")) << rank.combineStatus.message();
  }
  expectNothingHalfWritten(r);
}

}  // namespace
}  // namespace moedist::testing

namespace moedist::testing {
namespace {

// Through the CANN C API the same argument error comes back as GetWorkspaceSize's aclnn code (561002 for an
// attribute out of range), with aclGetRecentErrMsg() naming the argument.
TEST(CannApiErrors, GetWorkspaceSizeCodeAndMessage) {
  RunOptions o;
  o.api = Api::kCann;
  o.timeout = std::chrono::milliseconds(1000);  // as on CANN, the other ranks wait for rank 1 until their deadline
  o.editDispatch = [](int, int epRank, DispatchArgs& d) {
    if (epRank == 1) d.moeExpertNum = 6;  // not a multiple of the 4 MoE ranks
  };
  const RunResult r = runScenario(small(), o);
  ASSERT_FALSE(r.ok());
  const Status& s = r.ranks[1].dispatchStatus;
  EXPECT_EQ(s.code(), StatusCode::kInvalidValue) << s.toString();
  EXPECT_TRUE(contains(s.message(), "aclnnMoeDistributeDispatchV3GetWorkspaceSize returned 561002")) << s.message();
  EXPECT_TRUE(contains(s.message(), "moeExpertNum")) << s.message();
}

}  // namespace
}  // namespace moedist::testing

namespace moedist::testing {
namespace {

// A data error found while the operator runs on the stream: every rank's aclrtSynchronizeStream fails, and
// aclGetRecentErrMsg names the expert id (on the culprit) or the culprit rank (on the others).
TEST(CannApiErrors, DataErrorReachesEveryRanksSynchronize) {
  IdEdit e{2, 1, 0, -1, {}};
  RunOptions o = editIds(e);
  o.api = Api::kCann;
  o.timeout = std::chrono::milliseconds(20000);
  const RunResult r = runScenario(small(), o);
  ASSERT_FALSE(r.ok());
  for (const RankResult& rank : r.ranks) {
    const Status& s = rank.dispatchStatus;
    EXPECT_FALSE(s.ok());
    // SPEC decision 2: bad data found while running is ACLNN_ERR_PARAM_INVALID, here from the stream's sync.
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.toString();
    EXPECT_TRUE(contains(s.message(), "aclrtSynchronizeStream returned 161002")) << s.message();
    EXPECT_TRUE(contains(s.message(), "expertIds[1][0] is -1")) << s.message();
    if (rank.epRank != 2) EXPECT_TRUE(contains(s.message(), "rank 2")) << s.message();
  }
  expectNothingHalfWritten(r);
}

}  // namespace
}  // namespace moedist::testing
