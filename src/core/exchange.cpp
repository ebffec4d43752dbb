#include "core/exchange.h"

#include <fmt/format.h>

#include <cstring>
#include <functional>
#include <string_view>

#include "util/check.h"

namespace moedist::core {

namespace {

constexpr const char* kFieldNames[] = {"operator",
                                       "epWorldSize",
                                       "moeExpertNum",
                                       "sharedExpertNum",
                                       "sharedExpertRankNum",
                                       "expertShardType",
                                       "globalBs",
                                       "zeroExpertNum",
                                       "copyExpertNum",
                                       "constExpertNum",
                                       "expertIds.dim1 (K)",
                                       "hidden size H",
                                       "tpWorldSize",
                                       "x dtype",
                                       "quantMode",
                                       "commQuantMode",
                                       "xActiveMask dims",
                                       "elasticInfo (contents)",
                                       "commAlg",
                                       "Bs (with globalBs 0 every rank needs the same Bs)"};
static_assert(std::size(kFieldNames) == static_cast<size_t>(SigField::kCount));

struct Prefix {
  Signature sig;
  int32_t errorCode;
  int32_t errorBytes;
  int64_t payloadBytes;
};

Prefix readPrefix(std::span<const std::byte> header) {
  Prefix p{};
  MOEDIST_CHECK(header.size() >= sizeof(Prefix));
  std::memcpy(&p, header.data(), sizeof(Prefix));
  return p;
}

int64_t fnv1a(std::span<const std::byte> bytes) {
  uint64_t h = 1469598103934665603ull;
  for (std::byte b : bytes) h = (h ^ static_cast<uint64_t>(b)) * 1099511628211ull;
  return static_cast<int64_t>(h >> 1);
}

}  // namespace

Signature baseSignature(Operator op, const Geometry& geo, const MoeAttrs& attrs, std::span<const int32_t> elasticInfo) {
  Signature s;
  s[SigField::kOp] = static_cast<int64_t>(op);
  s[SigField::kEpWorldSize] = geo.W;
  s[SigField::kMoeExpertNum] = geo.M;
  s[SigField::kSharedExpertNum] = geo.S;
  s[SigField::kSharedExpertRankNum] = geo.Srank;
  s[SigField::kExpertShardType] = attrs.expertShardType;
  s[SigField::kGlobalBs] = attrs.globalBs;
  s[SigField::kZeroExpertNum] = geo.Z;
  s[SigField::kCopyExpertNum] = geo.C;
  s[SigField::kConstExpertNum] = geo.Q;
  s[SigField::kTopK] = geo.K;
  s[SigField::kHidden] = geo.H;
  s[SigField::kTpWorldSize] = geo.tp;
  s[SigField::kElasticInfo] = elasticInfo.empty() ? 0 : fnv1a(std::as_bytes(elasticInfo));
  s[SigField::kCommAlg] = fnv1a(std::as_bytes(std::span(attrs.commAlg.data(), attrs.commAlg.size())));
  s[SigField::kBatchSize] = attrs.globalBs == 0 ? geo.Bs : 0;
  return s;
}

Header::Header(const Signature& sig, const Status& localError)
    : sig_(sig), errorCode_(static_cast<int32_t>(localError.code())), error_(localError.message()) {}

std::span<const std::byte> Header::bytes() {
  Prefix p{sig_, errorCode_, static_cast<int32_t>(error_.size()), static_cast<int64_t>(payload_.size())};
  bytes_.resize(sizeof(Prefix) + payload_.size() + error_.size());
  std::memcpy(bytes_.data(), &p, sizeof(Prefix));
  if (!payload_.empty()) std::memcpy(bytes_.data() + sizeof(Prefix), payload_.data(), payload_.size());
  if (!error_.empty()) std::memcpy(bytes_.data() + sizeof(Prefix) + payload_.size(), error_.data(), error_.size());
  return bytes_;
}

std::span<const std::byte> headerPayload(std::span<const std::byte> header) {
  const Prefix p = readPrefix(header);
  return header.subspan(sizeof(Prefix), static_cast<size_t>(p.payloadBytes));
}

Status agree(Operator op, const comm::Engine& engine, std::span<const int> participants, const Status& self) {
  // 1. The lowest-numbered participant that failed locally decides.
  for (int p : participants) {
    auto header = engine.peerHeader(p);
    const Prefix pre = readPrefix(header);
    if (pre.errorCode == 0) continue;
    if (p == engine.rank()) return self;
    std::string_view msg(reinterpret_cast<const char*>(header.data()) + sizeof(Prefix) + pre.payloadBytes,
                         static_cast<size_t>(pre.errorBytes));
    return Status(static_cast<StatusCode>(pre.errorCode),
                  fmt::format("{}: rank {} of communicator '{}' failed, so this call fails on every rank: {}",
                              toString(op), p, engine.name(), msg));
  }
  // 2. Every participant must agree with the lowest one on the signature.
  const int first = participants.front();
  const Prefix ref = readPrefix(engine.peerHeader(first));
  for (int p : participants) {
    const Prefix other = readPrefix(engine.peerHeader(p));
    for (size_t f = 0; f < ref.sig.v.size(); ++f) {
      if (ref.sig.v[f] == other.sig.v[f]) continue;
      const bool hashed =
          f == static_cast<size_t>(SigField::kElasticInfo) || f == static_cast<size_t>(SigField::kCommAlg);
      const std::string detail =
          hashed ? std::string("different values")
                 : fmt::format("rank {} has {}, rank {} has {}", first, ref.sig.v[f], p, other.sig.v[f]);
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("{}: {} must be equal on all ranks of communicator '{}': {}", toString(op),
                                kFieldNames[f], engine.name(), detail));
    }
  }
  return okStatus();
}

OpenCall::~OpenCall() {
  if (open_) (void)engine_.close(comm::Clock::now() + timeout_);
}

Status OpenCall::open(std::span<const int> participants, std::span<const std::byte> header,
                      std::span<const comm::Region> regions) {
  Status s = engine_.open(participants, header, regions, comm::Clock::now() + timeout_);
  open_ = s.ok();
  return named(std::move(s));
}

Status OpenCall::close(Status status) {
  if (!open_) return status;
  open_ = false;
  Status c = named(engine_.close(comm::Clock::now() + timeout_));
  return status.ok() ? c : named(std::move(status));  // e.g. a failed engine read() during the call
}

Status OpenCall::named(Status s) const {
  const std::string prefix = fmt::format("{}: ", toString(op_));
  if (s.ok() || s.message().rfind(prefix, 0) == 0) return s;
  return Status(s.code(), prefix + s.message());
}

}  // namespace moedist::core
