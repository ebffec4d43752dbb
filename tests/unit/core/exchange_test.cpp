// The count exchange (exchange.h): Header bytes and payload round trip, baseSignature, and agree() over a real
// in-process communicator of 3 ranks run as threads: every rank reaches the same verdict (the lowest failing
// rank's error, else the first differing signature field, else ok).
#include "core/exchange.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/registry.h"
#include "support/rank_launcher.h"

namespace moedist::core {
namespace {

using namespace std::chrono_literals;
using Engines = std::vector<std::unique_ptr<comm::Engine>>;

// A communicator name unique to the running test.
std::string testName() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string("core.") + info->test_suite_name() + "." + info->name();
}

Engines makeEngines(int worldSize) {
  Engines engines;
  const Status s = comm::createInprocEngines(testName(), worldSize, &engines);
  if (!s.ok()) throw std::runtime_error("createInprocEngines: " + s.toString());
  return engines;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

Signature sampleSignature() {
  Signature s;
  s[SigField::kOp] = static_cast<int64_t>(Operator::kDispatchV3);
  s[SigField::kEpWorldSize] = 3;
  s[SigField::kMoeExpertNum] = 6;
  s[SigField::kTopK] = 2;
  s[SigField::kHidden] = 1024;
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// Header.

TEST(ExchangeHeader, Int32PayloadRoundTrip) {
  Header h(sampleSignature(), okStatus());
  const std::vector<int32_t> words = {7, -1, 0, 123456789};
  h.append(std::span<const int32_t>(words));
  const auto bytes = h.bytes();
  EXPECT_EQ(headerPayload(bytes).size(), 16u);
  const auto back = headerWords<int32_t>(bytes);
  EXPECT_EQ(std::vector<int32_t>(back.begin(), back.end()), words);
}

TEST(ExchangeHeader, Int64PayloadRoundTripAcrossAppends) {
  Header h(sampleSignature(), okStatus());
  const std::vector<int64_t> a = {int64_t{1} << 40, -5};
  const std::vector<int64_t> b = {42};
  h.append(std::span<const int64_t>(a));
  h.append(std::span<const int64_t>(b));
  const auto bytes = h.bytes();
  EXPECT_EQ(headerPayload(bytes).size(), 24u);
  const auto back = headerWords<int64_t>(bytes);
  EXPECT_EQ(std::vector<int64_t>(back.begin(), back.end()), (std::vector<int64_t>{int64_t{1} << 40, -5, 42}));
}

TEST(ExchangeHeader, BytesReflectLaterAppends) {
  Header h(sampleSignature(), okStatus());
  const std::vector<int32_t> a = {1, 2};
  h.append(std::span<const int32_t>(a));
  const size_t before = h.bytes().size();
  const std::vector<int32_t> b = {3};
  h.append(std::span<const int32_t>(b));
  const auto bytes = h.bytes();
  EXPECT_EQ(bytes.size(), before + sizeof(int32_t));
  const auto back = headerWords<int32_t>(bytes);
  EXPECT_EQ(std::vector<int32_t>(back.begin(), back.end()), (std::vector<int32_t>{1, 2, 3}));
}

TEST(ExchangeHeader, EmptyPayload) {
  Header h(sampleSignature(), okStatus());
  const auto bytes = h.bytes();
  EXPECT_TRUE(headerPayload(bytes).empty());
  EXPECT_TRUE(headerWords<int32_t>(bytes).empty());
}

TEST(ExchangeHeader, ErrorTextDoesNotLeakIntoThePayload) {
  Header h(sampleSignature(), Status(StatusCode::kInvalidValue, "DispatchV3: something is wrong"));
  const std::vector<int32_t> words = {9, 8, 7};
  h.append(std::span<const int32_t>(words));
  const auto bytes = h.bytes();
  const auto back = headerWords<int32_t>(bytes);
  EXPECT_EQ(std::vector<int32_t>(back.begin(), back.end()), words);
  // The error text travels with the header too.
  const std::string all(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  EXPECT_TRUE(contains(all, "DispatchV3: something is wrong"));
  // A header with an error is larger than the same header without one by exactly the message.
  Header plain(sampleSignature(), okStatus());
  plain.append(std::span<const int32_t>(words));
  EXPECT_EQ(bytes.size(), plain.bytes().size() + std::string("DispatchV3: something is wrong").size());
}

// ---------------------------------------------------------------------------------------------------------------
// baseSignature.

TEST(ExchangeSignature, BaseSignatureTakesTheGeometryAndAttributes) {
  Geometry g;
  g.W = 4;
  g.M = 8;
  g.S = 1;
  g.Srank = 2;
  g.Z = 1;
  g.C = 2;
  g.Q = 3;
  g.K = 5;
  g.H = 2048;
  g.tp = 1;
  g.Bs = 7;
  MoeAttrs a;
  a.globalBs = 0;
  const Signature s = baseSignature(Operator::kCombineV3, g, a, {});
  EXPECT_EQ(s[SigField::kOp], static_cast<int64_t>(Operator::kCombineV3));
  EXPECT_EQ(s[SigField::kEpWorldSize], 4);
  EXPECT_EQ(s[SigField::kMoeExpertNum], 8);
  EXPECT_EQ(s[SigField::kSharedExpertNum], 1);
  EXPECT_EQ(s[SigField::kSharedExpertRankNum], 2);
  EXPECT_EQ(s[SigField::kZeroExpertNum], 1);
  EXPECT_EQ(s[SigField::kCopyExpertNum], 2);
  EXPECT_EQ(s[SigField::kConstExpertNum], 3);
  EXPECT_EQ(s[SigField::kTopK], 5);
  EXPECT_EQ(s[SigField::kHidden], 2048);
  EXPECT_EQ(s[SigField::kTpWorldSize], 1);
  EXPECT_EQ(s[SigField::kGlobalBs], 0);
  EXPECT_EQ(s[SigField::kElasticInfo], 0);
  // globalBs 0: every rank must have the same Bs, so Bs is part of the signature.
  EXPECT_EQ(s[SigField::kBatchSize], 7);

  // With a globalBs, Bs may differ per rank and is left out; elasticInfo contents are part of the signature.
  a.globalBs = 32;
  const std::vector<int32_t> e1 = {1, 2, 0, 4, 0, 1, -1, -1, 0, 1, -1, -1};
  std::vector<int32_t> e2 = e1;
  e2[3] = 5;
  const Signature s1 = baseSignature(Operator::kCombineV3, g, a, e1);
  const Signature s2 = baseSignature(Operator::kCombineV3, g, a, e2);
  EXPECT_EQ(s1[SigField::kGlobalBs], 32);
  EXPECT_EQ(s1[SigField::kBatchSize], 0);
  EXPECT_NE(s1[SigField::kElasticInfo], 0);
  EXPECT_NE(s1[SigField::kElasticInfo], s2[SigField::kElasticInfo]);
  EXPECT_EQ(s1[SigField::kElasticInfo], baseSignature(Operator::kCombineV3, g, a, e1)[SigField::kElasticInfo]);

  // commAlg is part of the signature.
  MoeAttrs b = a;
  b.commAlg = "fullmesh_v2";
  EXPECT_NE(baseSignature(Operator::kCombineV3, g, a, e1)[SigField::kCommAlg],
            baseSignature(Operator::kCombineV3, g, b, e1)[SigField::kCommAlg]);
}

// ---------------------------------------------------------------------------------------------------------------
// agree() over 3 in-process ranks.

// One call per rank: publish (signature, local error), open over `participants`, agree, close.
// Returns the verdict of every rank that took part.
std::vector<Status> agreeOnAll(int worldSize, const std::vector<int>& participants, const std::vector<Signature>& sigs,
                               const std::vector<Status>& locals) {
  Engines engines = makeEngines(worldSize);
  std::vector<Status> verdicts(static_cast<size_t>(worldSize));
  const auto errors = moedist::testing::runRanks(worldSize, [&](int rank) {
    if (std::find(participants.begin(), participants.end(), rank) == participants.end()) return;
    const auto r = static_cast<size_t>(rank);
    comm::Engine& engine = *engines[r];
    Header header(sigs[r], locals[r]);
    const std::vector<int32_t> counts = {rank, 10 * rank};
    header.append(std::span<const int32_t>(counts));
    OpenCall call(Operator::kDispatchV3, engine, 20s);
    const Status opened = call.open(participants, header.bytes(), {});
    if (!opened.ok()) throw std::runtime_error("open: " + opened.toString());
    Status verdict = agree(Operator::kDispatchV3, engine, participants, locals[r]);
    // The payloads stay readable whatever the verdict.
    for (int p : participants) {
      const auto words = headerWords<int32_t>(engine.peerHeader(p));
      if (words.size() != 2 || words[0] != p || words[1] != 10 * p)
        throw std::runtime_error("rank " + std::to_string(rank) + " read a bad payload from rank " + std::to_string(p));
    }
    verdicts[r] = call.close(verdict);
  });
  for (size_t r = 0; r < errors.size(); ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  return verdicts;
}

const std::vector<int> kAll = {0, 1, 2};

TEST(ExchangeAgree, AllOk) {
  const std::vector<Signature> sigs(3, sampleSignature());
  const auto verdicts = agreeOnAll(3, kAll, sigs, std::vector<Status>(3));
  for (int r = 0; r < 3; ++r) EXPECT_TRUE(verdicts[static_cast<size_t>(r)].ok()) << "rank " << r;
}

TEST(ExchangeAgree, OneLocalErrorFailsEveryRank) {
  const std::vector<Signature> sigs(3, sampleSignature());
  std::vector<Status> locals(3);
  const Status mine(StatusCode::kInvalidValue, "DispatchV3: x.dim1 (H) is 7, expected 1024..8192");
  locals[1] = mine;
  const auto verdicts = agreeOnAll(3, kAll, sigs, locals);
  // The failing rank keeps its own status unchanged.
  EXPECT_EQ(verdicts[1].code(), StatusCode::kInvalidValue);
  EXPECT_EQ(verdicts[1].message(), mine.message());
  // The others get the same code and a message naming rank 1, the communicator and rank 1's message.
  for (size_t r : {0u, 2u}) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_EQ(verdicts[r].code(), StatusCode::kInvalidValue);
    const std::string& m = verdicts[r].message();
    EXPECT_EQ(m.rfind("DispatchV3: ", 0), 0u) << m;
    EXPECT_TRUE(contains(m, "rank 1 ")) << m;
    EXPECT_TRUE(contains(m, "'" + testName() + "'")) << m;
    EXPECT_TRUE(contains(m, mine.message())) << m;
  }
}

TEST(ExchangeAgree, LocalErrorKeepsItsCode) {
  const std::vector<Signature> sigs(3, sampleSignature());
  std::vector<Status> locals(3);
  locals[0] = Status(StatusCode::kNullArgument, "DispatchV3: x: expected a tensor, got none");
  const auto verdicts = agreeOnAll(3, kAll, sigs, locals);
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(verdicts[r].code(), StatusCode::kNullArgument) << "rank " << r;
    EXPECT_TRUE(contains(verdicts[r].message(), "x: expected a tensor, got none")) << verdicts[r].message();
  }
  EXPECT_TRUE(contains(verdicts[2].message(), "rank 0 ")) << verdicts[2].message();
}

TEST(ExchangeAgree, DifferingSignatureFieldIsNamedOnEveryRank) {
  std::vector<Signature> sigs(3, sampleSignature());
  sigs[2][SigField::kMoeExpertNum] = 12;
  const auto verdicts = agreeOnAll(3, kAll, sigs, std::vector<Status>(3));
  for (size_t r = 0; r < 3; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_EQ(verdicts[r].code(), StatusCode::kInvalidArgument);
    const std::string& m = verdicts[r].message();
    EXPECT_EQ(m.rfind("DispatchV3: moeExpertNum must be equal on all ranks", 0), 0u) << m;
    EXPECT_TRUE(contains(m, "rank 0 has 6, rank 2 has 12")) << m;
    EXPECT_EQ(m, verdicts[0].message());
  }
}

TEST(ExchangeAgree, FirstDifferingFieldIsReported) {
  // Rank 2 differs in topK and in the hidden size: the first of the two fields is reported.
  std::vector<Signature> sigs(3, sampleSignature());
  sigs[2][SigField::kTopK] = 3;
  sigs[2][SigField::kHidden] = 2048;
  const auto verdicts = agreeOnAll(3, kAll, sigs, std::vector<Status>(3));
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(verdicts[r].code(), StatusCode::kInvalidArgument) << "rank " << r;
    EXPECT_TRUE(contains(verdicts[r].message(), "expertIds.dim1 (K) must be equal")) << verdicts[r].message();
    EXPECT_TRUE(contains(verdicts[r].message(), "rank 0 has 2, rank 2 has 3")) << verdicts[r].message();
  }
}

TEST(ExchangeAgree, HashedFieldsSayDifferentValues) {
  std::vector<Signature> sigs(3, sampleSignature());
  sigs[1][SigField::kElasticInfo] = 1234;
  const auto verdicts = agreeOnAll(3, kAll, sigs, std::vector<Status>(3));
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(verdicts[r].code(), StatusCode::kInvalidArgument) << "rank " << r;
    EXPECT_TRUE(contains(verdicts[r].message(), "elasticInfo (contents) must be equal")) << verdicts[r].message();
    EXPECT_TRUE(contains(verdicts[r].message(), "different values")) << verdicts[r].message();
  }
}

TEST(ExchangeAgree, LowestFailingRankWins) {
  const std::vector<Signature> sigs(3, sampleSignature());
  std::vector<Status> locals(3);
  locals[1] = Status(StatusCode::kInvalidArgument, "DispatchV3: expertIds[0][0] is -1, expected something");
  locals[2] = Status(StatusCode::kInvalidValue, "DispatchV3: rank two's problem");
  const auto verdicts = agreeOnAll(3, kAll, sigs, locals);
  for (size_t r = 0; r < 3; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_EQ(verdicts[r].code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(contains(verdicts[r].message(), "expertIds[0][0] is -1")) << verdicts[r].message();
    EXPECT_FALSE(contains(verdicts[r].message(), "rank two's problem")) << verdicts[r].message();
  }
  EXPECT_EQ(verdicts[1].message(), locals[1].message());
  EXPECT_TRUE(contains(verdicts[0].message(), "rank 1 ")) << verdicts[0].message();
  EXPECT_TRUE(contains(verdicts[2].message(), "rank 1 ")) << verdicts[2].message();
}

TEST(ExchangeAgree, LocalErrorBeatsSignatureMismatch) {
  std::vector<Signature> sigs(3, sampleSignature());
  sigs[0][SigField::kMoeExpertNum] = 99;
  std::vector<Status> locals(3);
  locals[2] = Status(StatusCode::kInvalidValue, "DispatchV3: a local problem");
  const auto verdicts = agreeOnAll(3, kAll, sigs, locals);
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(verdicts[r].code(), StatusCode::kInvalidValue) << "rank " << r;
    EXPECT_TRUE(contains(verdicts[r].message(), "a local problem")) << verdicts[r].message();
  }
}

TEST(ExchangeAgree, SubsetOfParticipants) {
  // Under scale-in only the survivors take part: ranks 0 and 2; rank 1 does not call at all.
  const std::vector<Signature> sigs(3, sampleSignature());
  std::vector<Status> locals(3);
  locals[2] = Status(StatusCode::kInvalidArgument, "DispatchV3: survivor problem");
  const auto verdicts = agreeOnAll(3, {0, 2}, sigs, locals);
  EXPECT_EQ(verdicts[0].code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(verdicts[0].message(), "rank 2 ")) << verdicts[0].message();
  EXPECT_TRUE(contains(verdicts[0].message(), "survivor problem")) << verdicts[0].message();
  EXPECT_EQ(verdicts[2].message(), locals[2].message());
  EXPECT_TRUE(verdicts[1].ok());  // never called
}

}  // namespace
}  // namespace moedist::core
