// The count exchange of every operator call (DESIGN step 3): each participant publishes a header holding the
// call's signature (the attributes that must be equal on all ranks), its local error if it has one, and a small
// payload (its counts). After open(), agree() makes every participant reach the same verdict before any payload
// moves: the lowest-numbered failing rank's error, else the first attribute that differs, else ok.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "comm/engine.h"
#include "core/problem.h"
#include "moedist/status.h"

namespace moedist::core {

enum class SigField : int {
  kOp,
  kEpWorldSize,
  kMoeExpertNum,
  kSharedExpertNum,
  kSharedExpertRankNum,
  kExpertShardType,
  kGlobalBs,
  kZeroExpertNum,
  kCopyExpertNum,
  kConstExpertNum,
  kTopK,
  kHidden,
  kTpWorldSize,
  kDType,
  kQuantMode,
  kCommQuantMode,
  kMaskDims,
  kElasticInfo,
  kCommAlg,
  kBatchSize,
  kCount
};

struct Signature {
  std::array<int64_t, static_cast<size_t>(SigField::kCount)> v{};
  int64_t& operator[](SigField f) { return v[static_cast<size_t>(f)]; }
  int64_t operator[](SigField f) const { return v[static_cast<size_t>(f)]; }
};

// Fields every call fills the same way (everything but dtype, quant modes and mask kind).
Signature baseSignature(Operator op, const Geometry& geo, const MoeAttrs& attrs, std::span<const int32_t> elasticInfo);

// A header under construction: signature, error, payload of int32 or int64 words.
class Header {
 public:
  Header(const Signature& sig, const Status& localError);
  template <class T>
  void append(std::span<const T> words) {
    const auto* p = reinterpret_cast<const std::byte*>(words.data());
    payload_.insert(payload_.end(), p, p + words.size_bytes());
  }
  // The bytes to publish (valid until the next append).
  std::span<const std::byte> bytes();

 private:
  Signature sig_;
  int32_t errorCode_;
  std::string error_;
  std::vector<std::byte> payload_;
  std::vector<std::byte> bytes_;
};

// A participant's payload words, read from its published header.
std::span<const std::byte> headerPayload(std::span<const std::byte> header);
template <class T>
std::span<const T> headerWords(std::span<const std::byte> header) {
  auto p = headerPayload(header);
  return {reinterpret_cast<const T*>(p.data()), p.size() / sizeof(T)};
}

// The common verdict after open(); see the file comment. `self` is this rank's local status.
Status agree(Operator op, const comm::Engine& engine, std::span<const int> participants, const Status& self);

// RAII for one open call: close() on every path, with the deadline of the rank's timeout.
class OpenCall {
 public:
  OpenCall(Operator op, comm::Engine& engine, std::chrono::milliseconds timeout)
      : op_(op), engine_(engine), timeout_(timeout) {}
  ~OpenCall();
  Status open(std::span<const int> participants, std::span<const std::byte> header,
              std::span<const comm::Region> regions);
  // Closes now; returns the first error among `status` and the close's own.
  Status close(Status status);

 private:
  Status named(Status s) const;  // prefixes the engine's errors with the operator's name

  Operator op_;
  comm::Engine& engine_;
  std::chrono::milliseconds timeout_;
  bool open_ = false;
};

}  // namespace moedist::core
