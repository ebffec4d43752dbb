// The public C++ API beyond the main pair: outputShapes() against the closed forms of SPEC section 1, the general
// two-phase forms (RankAttrs, workspaceBytes, a caller workspace), the variants' argument rules, aclnnCode, and the
// catch-all guard of the exported functions. The six named operators against the reference model are in
// features_test.cpp (Features through every API, Siblings through every API).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "harness/pipeline.h"
#include "moedist/moedist.h"

// ---------------------------------------------------------------------------------------------------------------
// Allocation failure on demand, for the guard tests: after failNextAllocation(), the next operator new of this
// thread throws std::bad_alloc (libmoedist's allocations included: they resolve to these replacements). Every
// unaligned form is replaced, so that each allocation is freed by its own kind (sanitizers check that).

namespace {
thread_local long allocationsBeforeFailure = 0;  // > 0: counts down; the allocation that reaches 0 throws

void* allocate(std::size_t n) {
  if (allocationsBeforeFailure > 0 && --allocationsBeforeFailure == 0) throw std::bad_alloc();
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) {
  return allocate(n);
}
void* operator new[](std::size_t n) {
  return allocate(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

namespace moedist::testing {
namespace {

void failNextAllocation() {
  allocationsBeforeFailure = 1;
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

// ---------------------------------------------------------------------------------------------------------------
// outputShapes: every length from the closed forms of SPEC section 1, worked out by hand in the comments.

struct Expected {
  int64_t A, localExpertNum, tpFactorRows, epRecvCounts;
};

void expectShapes(const OutputShapes& s, const Expected& e, int64_t tp, int64_t H, int64_t Bs) {
  EXPECT_EQ(s.A, e.A);
  EXPECT_EQ(s.localExpertNum, e.localExpertNum);
  EXPECT_EQ(s.expandXRows, e.tpFactorRows * e.A);
  EXPECT_EQ(s.assistInfoForCombine, e.A * 128);
  EXPECT_EQ(s.expertTokenNums, e.localExpertNum);
  EXPECT_EQ(s.epRecvCounts, e.epRecvCounts);
  EXPECT_EQ(s.tpRecvCounts, tp);
  EXPECT_EQ(s.expandScales, e.A);
  EXPECT_EQ(s.H, H);
  EXPECT_EQ(s.Bs, Bs);
}

MoeAttrs attrs(int64_t M, int64_t S = 1, int64_t Srank = 0, int64_t globalBs = 0) {
  MoeAttrs a;
  a.moeExpertNum = M;
  a.sharedExpertNum = S;
  a.sharedExpertRankNum = Srank;
  a.globalBs = globalBs;
  return a;
}

TEST(OutputShapes, MoeRank) {
  // W 4, M 8: L = 2; Bs 7: globalBs = 28; K 3: A = 28 * min(2, 3) = 56; epRecvCounts W * L = 8.
  OutputShapes s;
  ASSERT_TRUE(outputShapes({4, 1, 0, 0}, attrs(8), {7, 1056, 3, false}, &s).ok());
  expectShapes(s, {56, 2, 1, 8}, 0, 1056, 7);
  // K 1: A = 28 * min(2, 1) = 28. sharedExpertNum 1 without shared-expert ranks means none (S = 0).
  ASSERT_TRUE(outputShapes({4, 3, 0, 0}, attrs(8), {7, 2048, 1, false}, &s).ok());
  expectShapes(s, {28, 2, 1, 8}, 0, 2048, 7);
  // tpWorldSize 1 is no TP, but tpRecvCounts has one entry.
  ASSERT_TRUE(outputShapes({4, 1, 1, 0}, attrs(8), {7, 1056, 3, false}, &s).ok());
  expectShapes(s, {56, 2, 1, 8}, 1, 1056, 7);
}

TEST(OutputShapes, WindowBytes) {
  // W 8, M 256: L 32; Bs 128 = maxBs; H 7168; K 8; S 0. A slot is Align512(Align32(2 * 7168) + 44) = Align512(14380)
  // = 14848 bytes, a combine row Align512(14336) = 14336: 2 * (128 * 8 * 32 * 14848 + 128 * 8 * 14336) = 1002438656.
  OutputShapes s;
  ASSERT_TRUE(outputShapes({8, 0, 0, 0}, attrs(256), {128, 7168, 8, false}, &s).ok());
  EXPECT_EQ(s.windowBytes, 1002438656);
  // fullmesh_v2 rounds y up to whole 480-byte blocks of 512: ceil(14380 / 480) = ceil(14336 / 480) = 30, 15360 bytes:
  // 2 * (128 * 8 * 32 * 15360 + 128 * 8 * 15360) = 1038090240.
  MoeAttrs fullmesh = attrs(256);
  fullmesh.commAlg = "fullmesh_v2";
  ASSERT_TRUE(outputShapes({8, 0, 0, 0}, fullmesh, {128, 7168, 8, false}, &s).ok());
  EXPECT_EQ(s.windowBytes, 1038090240);
}

TEST(OutputShapes, SharedExpertRanks) {
  // W 6, S 1 on Srank 2: R = 2, L = 8 / (6 - 2) = 2, Bs 7, globalBs 42, maxBs 7.
  // Shared rank: A = maxBs * ceil(W / R) = 7 * 3 = 21, one local expert, epRecvCounts W = 6.
  OutputShapes s;
  ASSERT_TRUE(outputShapes({6, 1, 0, 0}, attrs(8, 1, 2), {7, 1024, 3, false}, &s).ok());
  expectShapes(s, {21, 1, 1, 6}, 0, 1024, 7);
  // MoE rank: A = globalBs * min(L, K) = 42 * 2 = 84, epRecvCounts W * L = 12.
  ASSERT_TRUE(outputShapes({6, 2, 0, 0}, attrs(8, 1, 2), {7, 1024, 3, false}, &s).ok());
  expectShapes(s, {84, 2, 1, 12}, 0, 1024, 7);
  // S 2 on Srank 2: R = 1, A = 7 * ceil(6 / 1) = 42.
  ASSERT_TRUE(outputShapes({6, 1, 0, 0}, attrs(8, 2, 2), {7, 1024, 3, false}, &s).ok());
  expectShapes(s, {42, 1, 1, 6}, 0, 1024, 7);
}

TEST(OutputShapes, WithElasticInfo) {
  // As SharedExpertRanks, with elasticInfo: every rank has A = max(21, 84) = 84, L = 2 local experts and
  // epRecvCounts max(W, W * L) = 12.
  OutputShapes s;
  for (int64_t r : {0, 1, 2, 5}) {
    ASSERT_TRUE(outputShapes({6, r, 0, 0}, attrs(8, 1, 2), {7, 1024, 3, true}, &s).ok());
    expectShapes(s, {84, 2, 1, 12}, 0, 1024, 7);
  }
  // Without shared experts the first term is 0: A = 28 * min(2, 3) = 56.
  ASSERT_TRUE(outputShapes({4, 0, 0, 0}, attrs(8), {7, 1056, 3, true}, &s).ok());
  expectShapes(s, {56, 2, 1, 8}, 0, 1056, 7);
}

TEST(OutputShapes, TpPair) {
  // W 4, M 4: L = 1 (TP needs it); Bs 7, K 3: A = 28 * min(1, 3) = 28; expandX 2 * A rows; epRecvCounts W * L * 2.
  OutputShapes s;
  ASSERT_TRUE(outputShapes({4, 2, 2, 1}, attrs(4), {7, 1056, 3, false}, &s).ok());
  expectShapes(s, {28, 1, 2, 8}, 2, 1056, 7);
}

TEST(OutputShapes, GlobalBsGiven) {
  // W 4, Bs 5, globalBs 32: maxBs 8, A = 32 * min(2, 3) = 64.
  OutputShapes s;
  ASSERT_TRUE(outputShapes({4, 1, 0, 0}, attrs(8, 1, 0, 32), {5, 1024, 3, false}, &s).ok());
  expectShapes(s, {64, 2, 1, 8}, 0, 1024, 5);
  // Shared rank of W 6, S 1, Srank 2 (R 2), Bs 5, globalBs 48: maxBs 8, A = 8 * ceil(6 / 2) = 24.
  ASSERT_TRUE(outputShapes({6, 0, 0, 0}, attrs(8, 1, 2, 48), {5, 1024, 3, false}, &s).ok());
  expectShapes(s, {24, 1, 1, 6}, 0, 1024, 5);
}

// One invalid field at a time on a valid baseline: the exact code, and the message names the argument.
struct ShapeError {
  const char* name;
  RankAttrs ranks;
  MoeAttrs attrs;
  ShapeQuery query;
  const char* argument;
};

TEST(OutputShapes, Errors) {
  const RankAttrs rk{4, 1, 0, 0};
  const MoeAttrs a = attrs(8);
  const ShapeQuery q{7, 1056, 3, false};
  auto with = [](MoeAttrs m, auto edit) {
    edit(m);
    return m;
  };
  const std::vector<ShapeError> cases = {
      {"W1", {1, 0, 0, 0}, a, q, "epWorldSize"},
      {"W769", {769, 0, 0, 0}, a, q, "epWorldSize"},
      {"Tp3", {4, 1, 3, 0}, a, q, "tpWorldSize"},
      {"RankBeyondWorld", {4, 4, 0, 0}, a, q, "epRankId"},
      {"TpRankWithoutTp", {4, 1, 0, 1}, a, q, "tpRankId"},
      {"TpRankBeyondPair", {4, 1, 2, 2}, attrs(4), q, "tpRankId"},
      {"ShardType", rk, with(a, [](MoeAttrs& m) { m.expertShardType = 1; }), q, "expertShardType"},
      {"SharedNum5", rk, with(a, [](MoeAttrs& m) { m.sharedExpertNum = 5; }), q, "sharedExpertNum"},
      {"SharedRanksAll", rk, with(a, [](MoeAttrs& m) { m.sharedExpertRankNum = 4; }), q, "sharedExpertRankNum"},
      {"M0", rk, attrs(0), q, "moeExpertNum"},
      {"M1025", rk, attrs(1025), q, "moeExpertNum"},
      {"NegativeZeroExperts", rk, with(a, [](MoeAttrs& m) { m.zeroExpertNum = -1; }), q, "zeroExpertNum"},
      {"SharedNum0WithSharedRanks", {6, 1, 0, 0}, attrs(8, 0, 2), q, "sharedExpertNum"},
      {"SharedRanksNotMultiple", {7, 1, 0, 0}, attrs(8, 2, 3), q, "sharedExpertRankNum"},
      {"MoeSplit", rk, attrs(6), q, "moeExpertNum"},
      {"TpWithTwoExperts", {4, 1, 2, 0}, a, q, "tpWorldSize"},
      {"TpWithElastic", {4, 1, 2, 0}, attrs(4), {7, 1056, 3, true}, "elastic"},
      {"Bs0", rk, a, {0, 1056, 3, false}, "Bs"},
      {"Bs513", rk, a, {513, 1056, 3, false}, "Bs"},
      {"GlobalBsNotMultiple", rk, attrs(8, 1, 0, 30), q, "globalBs"},
      {"GlobalBsBelowBsTimesW", rk, attrs(8, 1, 0, 24), q, "globalBs"},
      {"H1023", rk, a, {7, 1023, 3, false}, "H"},
      {"H8193", rk, a, {7, 8193, 3, false}, "H"},
      {"K0", rk, a, {7, 1056, 0, false}, "K"},
      {"K17", rk, with(attrs(16), [](MoeAttrs& m) { m.zeroExpertNum = 4; }), {7, 1056, 17, false}, "K"},
      {"KBeyondExperts", rk, a, {7, 1056, 9, false}, "K"},
  };
  for (const ShapeError& c : cases) {
    OutputShapes s;
    s.A = -7;
    const Status st = outputShapes(c.ranks, c.attrs, c.query, &s);
    EXPECT_EQ(st.code(), StatusCode::kInvalidValue) << c.name << ": " << st.toString();
    EXPECT_EQ(st.message().rfind(std::string("outputShapes: ") + c.argument + ": expected ", 0), 0u)
        << c.name << ": " << st.message();
    EXPECT_EQ(s.A, -7) << c.name << ": *out was written";
  }
  const Status st = outputShapes(rk, a, q, nullptr);
  EXPECT_EQ(st.code(), StatusCode::kNullArgument) << st.toString();
  EXPECT_TRUE(contains(st.message(), "outputShapes: out:")) << st.message();
}

// Tensors sized by outputShapes() are what phase 1 accepts: workspaceBytes() takes them, and one entry less of
// epRecvCounts or expertTokenNums (or, with the TP pair, one row less of expandX) is refused naming that tensor.
// (SPEC's expandX rule is tpWorldSize * A, vacuous without TP, and assistInfoForCombine needs only 3 * A there: the
// operator checks at run time that the rows received fit.)
TEST(OutputShapes, SizesWhatValidationAccepts) {
  struct Case {
    RankAttrs ranks;
    MoeAttrs attrs;
    int64_t Bs;
  };
  constexpr int64_t H = 1024, K = 3;
  for (const Case& c : {Case{{4, 1, 0, 0}, attrs(8), 7}, Case{{6, 0, 0, 0}, attrs(8, 1, 2), 7},
                        Case{{6, 4, 0, 0}, attrs(8, 2, 2, 48), 5}, Case{{4, 2, 2, 1}, attrs(4), 7}}) {
    OutputShapes s;
    ASSERT_TRUE(outputShapes(c.ranks, c.attrs, {c.Bs, H, K, false}, &s).ok());
    std::vector<uint16_t> x(static_cast<size_t>(c.Bs * H)), expandX(static_cast<size_t>(s.expandXRows * H));
    std::vector<int32_t> ids(static_cast<size_t>(c.Bs * K)), assist(static_cast<size_t>(s.assistInfoForCombine)),
        epRecv(static_cast<size_t>(s.epRecvCounts)), tpRecv(static_cast<size_t>(s.tpRecvCounts));
    std::vector<float> dyn(static_cast<size_t>(s.expandXRows)), expandScales(static_cast<size_t>(s.expandScales));
    std::vector<int64_t> tokenNums(static_cast<size_t>(s.expertTokenNums));
    DispatchArgs d;
    static_cast<MoeAttrs&>(d) = c.attrs;
    d.x = TensorView(x.data(), DType::kBFloat16, {c.Bs, H});
    d.expertIds = TensorView(ids.data(), DType::kInt32, {c.Bs, K});
    d.expandX = TensorView(expandX.data(), DType::kBFloat16, {s.expandXRows, H});
    d.dynamicScales = TensorView(dyn.data(), DType::kFloat32, {s.expandXRows});
    d.assistInfoForCombine = TensorView(assist.data(), DType::kInt32, {s.assistInfoForCombine});
    d.expertTokenNums = TensorView(tokenNums.data(), DType::kInt64, {s.expertTokenNums});
    d.epRecvCounts = TensorView(epRecv.data(), DType::kInt32, {s.epRecvCounts});
    d.tpRecvCounts = TensorView(tpRecv.data(), DType::kInt32, {s.tpRecvCounts});
    d.expandScales = TensorView(expandScales.data(), DType::kFloat32, {s.expandScales});
    size_t bytes = 0;
    const Status ok = workspaceBytes(Operator::kDispatchV3, c.ranks, d, &bytes);
    EXPECT_TRUE(ok.ok()) << ok.toString();
    auto refused = [&](const DispatchArgs& a, const std::string& argument) {
      const Status st = workspaceBytes(Operator::kDispatchV3, c.ranks, a, &bytes);
      EXPECT_EQ(st.code(), StatusCode::kInvalidValue) << st.toString();
      EXPECT_TRUE(contains(st.message(), "DispatchV3: " + argument + ": ")) << st.message();
    };
    DispatchArgs small = d;
    small.epRecvCounts = TensorView(epRecv.data(), DType::kInt32, {s.epRecvCounts - 1});
    refused(small, "epRecvCounts.dim0");
    small = d;
    small.expertTokenNums = TensorView(tokenNums.data(), DType::kInt64, {s.expertTokenNums - 1});
    refused(small, "expertTokenNums.dim0");
    if (c.ranks.tpWorldSize == 2) {
      small = d;
      small.expandX = TensorView(expandX.data(), DType::kBFloat16, {s.expandXRows - 1, H});
      refused(small, "expandX.dim0");
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Small pieces of the vocabulary.

TEST(Vocabulary, AclnnCodes) {
  EXPECT_EQ(aclnnCode(StatusCode::kOk), 0);
  EXPECT_EQ(aclnnCode(StatusCode::kNullArgument), 161001);
  EXPECT_EQ(aclnnCode(StatusCode::kInvalidArgument), 161002);
  EXPECT_EQ(aclnnCode(StatusCode::kInvalidValue), 561002);
  EXPECT_EQ(aclnnCode(StatusCode::kTimeout), 361001);
  EXPECT_EQ(aclnnCode(StatusCode::kInternal), 561000);
}

TEST(Vocabulary, OperatorNames) {
  EXPECT_STREQ(toString(Operator::kDispatchV3), "DispatchV3");
  EXPECT_STREQ(toString(Operator::kDispatchV2), "DispatchV2");
  EXPECT_STREQ(toString(Operator::kCombineAddRmsNormV2), "CombineAddRmsNormV2");
  EXPECT_STREQ(toString(Operator::kCombineAddRmsNorm), "CombineAddRmsNorm");
  EXPECT_STREQ(toString(Operator::kCombineV3), "CombineV3");
  EXPECT_STREQ(toString(Operator::kCombineV2), "CombineV2");
  EXPECT_TRUE(isDispatch(Operator::kDispatchV3));
  EXPECT_TRUE(isDispatch(Operator::kDispatchV2));
  for (Operator op :
       {Operator::kCombineAddRmsNormV2, Operator::kCombineAddRmsNorm, Operator::kCombineV3, Operator::kCombineV2})
    EXPECT_FALSE(isDispatch(op)) << toString(op);
}

TEST(Vocabulary, RankAttrsFromCommunicators) {
  std::vector<Communicator> ep, tp;
  ASSERT_TRUE(Communicator::createInProcess(3, {}, &ep).ok());
  ASSERT_TRUE(Communicator::createInProcess(2, {}, &tp).ok());
  RankAttrs r;
  ASSERT_TRUE(rankAttrs(ep[2], &tp[1], &r).ok());
  EXPECT_EQ(r.epWorldSize, 3);
  EXPECT_EQ(r.epRankId, 2);
  EXPECT_EQ(r.tpWorldSize, 2);
  EXPECT_EQ(r.tpRankId, 1);
  ASSERT_TRUE(rankAttrs(ep[1], nullptr, &r).ok());
  EXPECT_EQ(r.epRankId, 1);
  EXPECT_EQ(r.tpWorldSize, 0);
  EXPECT_EQ(r.tpRankId, 0);
  EXPECT_EQ(rankAttrs(ep[0], nullptr, nullptr).code(), StatusCode::kNullArgument);
  EXPECT_EQ(rankAttrs(Communicator(), nullptr, &r).code(), StatusCode::kNullArgument);
  const Communicator empty;
  EXPECT_EQ(rankAttrs(ep[0], &empty, &r).code(), StatusCode::kNullArgument);
}

// memAlloc on an in-process communicator: ordinary memory (threads read any memory in place), 64-byte aligned, on a
// page from 4096 bytes up, and writable to its last byte; memFree takes back only its own, once; nothing for 0 bytes or
// an empty handle. (The shared-memory and MPI engines' memory is published in place: the engine conformance suite.)
TEST(MemAlloc, InProcessGivesAlignedOrdinaryMemory) {
  std::vector<Communicator> ep;
  ASSERT_TRUE(Communicator::createInProcess(2, {}, &ep).ok());
  std::vector<void*> blocks;
  for (size_t bytes : {size_t{1}, size_t{63}, size_t{4095}, size_t{4096}, size_t{3} << 20, (size_t{3} << 20) + 64}) {
    auto* p = static_cast<unsigned char*>(memAlloc(ep[1], bytes));
    ASSERT_NE(p, nullptr) << bytes << " bytes";
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (bytes >= 4096 ? 4096 : 64), 0u) << bytes << " bytes";
    p[0] = 1;
    p[bytes - 1] = 2;
    blocks.push_back(p);
  }
  EXPECT_EQ(memAlloc(ep[1], 0), nullptr);
  EXPECT_EQ(memAlloc(Communicator(), 64), nullptr);
  int notOurs = 0;
  memFree(ep[1], &notOurs);   // ignored
  memFree(ep[0], blocks[0]);  // another rank's: ignored
  for (void* p : blocks) memFree(ep[1], p);
  memFree(ep[1], blocks[0]);  // twice: ignored
  memFree(ep[1], nullptr);
  void* kept = memAlloc(ep[0], 128);  // never freed: goes with the communicator (ASan's leak check sees it)
  EXPECT_NE(kept, nullptr);
}

// An operator of the wrong kind for the argument struct, and empty handles, are refused at once (on the calling
// rank alone: no exchange is possible without a valid operator and communicator).
TEST(GeneralForm, WrongOperatorKindAndEmptyHandles) {
  std::vector<Communicator> ep;
  ASSERT_TRUE(Communicator::createInProcess(2, {}, &ep).ok());
  const DispatchArgs d;
  const CombineArgs c;
  const RankAttrs r{2, 0, 0, 0};
  size_t bytes = 0;
  Status s = workspaceBytes(Operator::kCombineV3, r, d, &bytes);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "workspaceBytes: op: expected a dispatch operator")) << s.message();
  EXPECT_TRUE(contains(s.message(), "got CombineV3")) << s.message();
  s = workspaceBytes(Operator::kDispatchV2, r, c, &bytes);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "workspaceBytes: op: expected a combine operator")) << s.message();
  s = workspaceBytes(static_cast<Operator>(42), r, c, &bytes);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "got Operator value 42")) << s.message();
  s = dispatch(Operator::kCombineAddRmsNormV2, ep[0], nullptr, r, d);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "dispatch: op: expected a dispatch operator")) << s.message();
  s = combine(Operator::kDispatchV3, ep[0], nullptr, r, c);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "combine: op: expected a combine operator")) << s.message();
  s = workspaceBytes(Operator::kDispatchV3, r, d, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kNullArgument);
  EXPECT_TRUE(contains(s.message(), "workspaceBytes: bytes:")) << s.message();
  s = dispatchV2(Communicator(), nullptr, d);
  EXPECT_EQ(s.code(), StatusCode::kNullArgument);
  EXPECT_EQ(s.message(), "DispatchV2: the EP communicator handle is empty");
  const Communicator empty;
  s = combineV2(ep[0], &empty, c);
  EXPECT_EQ(s.code(), StatusCode::kNullArgument);
  EXPECT_EQ(s.message(), "CombineV2: the TP communicator handle is empty");
}

// ---------------------------------------------------------------------------------------------------------------
// The general forms end to end (harness Api::kCppGeneral): rankAttrs(), workspaceBytes(), a caller workspace.

Scenario small() {
  Scenario sc;
  sc.cfg.W = 4;
  sc.cfg.M = 4;
  sc.cfg.K = 2;
  sc.cfg.H = 1024;
  sc.bs.assign(4, 5);
  sc.seed = 23;
  return sc;
}

// Strided inputs and a TP pair make both operators book scratch (dense copies, TP-reduced rows), so the caller's
// workspace is really used: the calls write into it, and the outputs match the reference model.
TEST(GeneralForm, CallerWorkspaceOfWorkspaceBytes) {
  Scenario sc = small();
  sc.cfg.tp = 2;
  RunOptions o;
  o.api = Api::kCppGeneral;
  o.stridedInputs = true;
  const RunResult r = runScenario(sc, o);
  ASSERT_TRUE(r.ok()) << sc.describe() << "\n" << r.summary();
  ASSERT_EQ(r.ranks.size(), 8u);
  for (const RankResult& rank : r.ranks) {
    EXPECT_GT(rank.dispatchWorkspaceBytes, 0u) << "tp " << rank.tpIdx << " ep " << rank.epRank;
    EXPECT_GT(rank.combineWorkspaceBytes, 0u) << "tp " << rank.tpIdx << " ep " << rank.epRank;
    EXPECT_TRUE(rank.workspaceWritten) << "tp " << rank.tpIdx << " ep " << rank.epRank;
  }
}

// Without scratch (dense inputs, no TP) workspaceBytes() is 0 and the empty span means the rank's own arena.
TEST(GeneralForm, NoScratchNeeded) {
  RunOptions o;
  o.api = Api::kCppGeneral;
  const RunResult r = runScenario(small(), o);
  ASSERT_TRUE(r.ok()) << r.summary();
  for (const RankResult& rank : r.ranks) {
    EXPECT_EQ(rank.dispatchWorkspaceBytes, 0u);
    EXPECT_EQ(rank.combineWorkspaceBytes, 0u);
  }
}

// A workspace one byte short on one rank: that rank's dispatch is refused, and every rank fails with it at once.
TEST(GeneralForm, WorkspaceTooSmall) {
  RunOptions o;
  o.api = Api::kCppGeneral;
  o.stridedInputs = true;
  o.timeout = std::chrono::milliseconds(20000);
  o.workspaceSize = [](int, int epRank, size_t bytes) { return epRank == 2 && bytes > 0 ? bytes - 1 : bytes; };
  const auto t0 = std::chrono::steady_clock::now();
  const RunResult r = runScenario(small(), o);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10)) << "the peers waited for a deadline";
  ASSERT_FALSE(r.ok());
  for (const RankResult& rank : r.ranks) {
    const Status& s = rank.dispatchStatus;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "rank " << rank.epRank << ": " << s.toString();
    EXPECT_TRUE(contains(s.message(), "DispatchV3: workspace has")) << s.message();
    if (rank.epRank != 2) EXPECT_TRUE(contains(s.message(), "rank 2")) << s.message();
  }
  ASSERT_GT(r.ranks[2].dispatchWorkspaceBytes, 0u);
  for (const std::string& f : r.failures) EXPECT_FALSE(contains(f, "half-written")) << f;
}

// RankAttrs that contradict the communicators are refused on every rank, naming epWorldSize/epRankId (or
// tpWorldSize/tpRankId): here rank 1 passes valid arguments that describe another rank.
TEST(GeneralForm, RankAttrsMustMatchTheCommunicators) {
  for (const bool tpPair : {false, true}) {
    RunOptions o;
    o.api = Api::kCppGeneral;
    o.timeout = std::chrono::milliseconds(20000);
    o.editRanks = [tpPair](int tpIdx, int epRank, RankAttrs& r) {
      if (tpIdx != 0 || epRank != 1) return;
      if (tpPair) {
        r.tpRankId = 1;
      } else {
        r.epRankId = 3;
      }
    };
    Scenario sc = small();
    if (tpPair) sc.cfg.tp = 2;
    const RunResult r = runScenario(sc, o);
    ASSERT_FALSE(r.ok());
    for (const RankResult& rank : r.ranks) {
      const Status& s = rank.dispatchStatus;
      EXPECT_FALSE(s.ok()) << "tp " << rank.tpIdx << " ep " << rank.epRank;
      if (rank.tpIdx != 0 || rank.epRank != 1) continue;
      EXPECT_EQ(s.code(), StatusCode::kInvalidValue) << s.toString();
      const std::string want =
          tpPair ? "DispatchV3: tpWorldSize/tpRankId are 2/1, but" : "DispatchV3: epWorldSize/epRankId are 4/3, but";
      EXPECT_TRUE(contains(s.message(), want)) << s.message();
    }
    // The culprit's EP group writes nothing. With the TP pair, the other EP group (tp 1) has finished its EP phase
    // and written its rows when the TP phase reports the error: dispatch talks to its TP pair after its EP group.
    for (const std::string& f : r.failures)
      if (contains(f, "half-written")) EXPECT_TRUE(tpPair && f.rfind("tp 1 ", 0) == 0) << f;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// DispatchV2, CombineAddRmsNorm and CombineV2 have no elasticInfo and no special experts (SPEC decision 5): the
// named C++ operators refuse them on every rank, naming the argument.

struct VariantCase {
  std::string name;
  Ops ops;
  bool inDispatch;
  std::string field;
};

void PrintTo(const VariantCase& c, std::ostream* os) {
  *os << c.name;
}

class VariantRules : public ::testing::TestWithParam<VariantCase> {};

TEST_P(VariantRules, RefusedOnEveryRank) {
  const VariantCase& c = GetParam();
  const Scenario sc = small();
  std::vector<int32_t> elastic(static_cast<size_t>(4 + 2 * sc.cfg.W), 0);  // flag 0: given, but "not elastic"
  auto edit = [&](MoeAttrs& a, TensorView& elasticInfo) {
    if (c.field == "elasticInfo") elasticInfo = TensorView(elastic.data(), DType::kInt32, {4 + 2 * sc.cfg.W});
    if (c.field == "zeroExpertNum") a.zeroExpertNum = 1;
    if (c.field == "copyExpertNum") a.copyExpertNum = 1;
    if (c.field == "constExpertNum") a.constExpertNum = 1;
  };
  RunOptions o;
  o.api = Api::kCpp;
  o.ops = c.ops;
  o.timeout = std::chrono::milliseconds(20000);
  if (c.inDispatch) {
    o.editDispatch = [&](int, int, DispatchArgs& d) { edit(d, d.elasticInfo); };
  } else {
    o.editCombine = [&](int, int, CombineArgs& a) { edit(a, a.elasticInfo); };
  }
  const RunResult r = runScenario(sc, o);
  ASSERT_FALSE(r.ok());
  const Operator op = c.inDispatch ? dispatchOperator(c.ops) : combineOperator(c.ops);
  for (const RankResult& rank : r.ranks) {
    const Status& s = c.inDispatch ? rank.dispatchStatus : rank.combineStatus;
    EXPECT_EQ(s.code(), StatusCode::kInvalidValue) << "rank " << rank.epRank << ": " << s.toString();
    EXPECT_TRUE(contains(s.message(), std::string(toString(op)) + ": " + c.field + ": expected ")) << s.message();
    if (!c.inDispatch) EXPECT_TRUE(rank.dispatchStatus.ok()) << rank.dispatchStatus.toString();
  }
  for (const std::string& f : r.failures) EXPECT_FALSE(contains(f, "half-written")) << f;
}

INSTANTIATE_TEST_SUITE_P(CppApi, VariantRules,
                         ::testing::ValuesIn(std::vector<VariantCase>{
                             {"DispatchV2Elastic", Ops::kDispatchV2CombineAddRmsNorm, true, "elasticInfo"},
                             {"DispatchV2ZeroExperts", Ops::kDispatchV2CombineV2, true, "zeroExpertNum"},
                             {"DispatchV2CopyExperts", Ops::kDispatchV2CombineAddRmsNorm, true, "copyExpertNum"},
                             {"CombineAddRmsNormElastic", Ops::kDispatchV2CombineAddRmsNorm, false, "elasticInfo"},
                             {"CombineAddRmsNormConstExperts", Ops::kDispatchV2CombineAddRmsNorm, false,
                              "constExpertNum"},
                             {"CombineV2Elastic", Ops::kDispatchV2CombineV2, false, "elasticInfo"},
                             {"CombineV2ZeroExperts", Ops::kDispatchV2CombineV2, false, "zeroExpertNum"},
                         }),
                         [](const ::testing::TestParamInfo<VariantCase>& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------------------------
// The catch-all guard: an exception inside an exported function (here std::bad_alloc from the allocation of an
// error message, or of a communicator) comes back as kInternal naming the function, never as a throw.

TEST(Guard, BadAllocBecomesInternalStatus) {
  OutputShapes s;
  failNextAllocation();
  Status st = outputShapes({1, 0, 0, 0}, attrs(8), {7, 1056, 3, false}, &s);  // the error message's allocation
  EXPECT_EQ(st.code(), StatusCode::kInternal) << st.toString();
  EXPECT_EQ(st.message(), "outputShapes: out of memory (std::bad_alloc)");

  const DispatchArgs d;
  failNextAllocation();
  st = dispatchV3(Communicator(), nullptr, d);
  EXPECT_EQ(st.code(), StatusCode::kInternal) << st.toString();
  EXPECT_EQ(st.message(), "dispatchV3: out of memory (std::bad_alloc)");

  std::vector<Communicator> ranks;
  failNextAllocation();
  st = Communicator::createInProcess(2, {}, &ranks);
  EXPECT_EQ(st.code(), StatusCode::kInternal) << st.toString();
  EXPECT_EQ(st.message(), "createInProcess: out of memory (std::bad_alloc)");

  Communicator found;
  failNextAllocation();
  st = Communicator::find("no_such_communicator_anywhere", 0, &found);
  EXPECT_EQ(st.code(), StatusCode::kInternal) << st.toString();
  EXPECT_EQ(st.message(), "find: out of memory (std::bad_alloc)");

  // Afterwards everything works as before.
  ASSERT_TRUE(Communicator::createInProcess(2, {}, &ranks).ok());
  EXPECT_EQ(ranks[1].rank(), 1);
}

}  // namespace
}  // namespace moedist::testing
