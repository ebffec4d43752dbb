// CopyingEngine: wraps an engine and hides its peer mappings (peerRegion() of a peer returns nullptr), so that every
// access to peer memory goes through read() or write(), as it must on an engine that cannot map peer memory (MPI
// across hosts).
// Selected for in-process communicators with MOEDIST_INPROC_COPY=1, to test core's copy path with the whole suite.
// Tests derive from it to watch the reads (core's PeerRows test counts them).
#pragma once

#include <memory>

#include "comm/engine.h"

namespace moedist::comm {

class CopyingEngine : public Engine {
 public:
  explicit CopyingEngine(std::unique_ptr<Engine> inner) : inner_(std::move(inner)) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  const std::string& name() const override { return inner_->name(); }
  const char* kind() const override { return "inproc-copy"; }
  Status open(std::span<const int> participants, std::span<const std::byte> header, std::span<const Region> regions,
              Clock::time_point deadline) override {
    return inner_->open(participants, header, regions, deadline);
  }
  std::span<const std::byte> peerHeader(int peer) const override { return inner_->peerHeader(peer); }
  bool mapped() const override { return false; }
  bool maps(int peer) const override { return peer == rank(); }
  // A rank's own regions stay addressable (its inbox is read there after a fence); its peers' are hidden.
  const std::byte* peerRegion(int peer, int region) const override {
    return peer == rank() ? inner_->peerRegion(peer, region) : nullptr;
  }
  size_t peerRegionBytes(int peer, int region) const override { return inner_->peerRegionBytes(peer, region); }
  Status read(int peer, int region, size_t offset, void* dst, size_t bytes) override {
    return inner_->read(peer, region, offset, dst, bytes);
  }
  Status write(int peer, int region, std::span<const WritePiece> pieces) override {
    return inner_->write(peer, region, pieces);
  }
  Status fence(Clock::time_point deadline) override { return inner_->fence(deadline); }
  Status close(Clock::time_point deadline) override { return inner_->close(deadline); }
  void* allocate(size_t bytes) override { return inner_->allocate(bytes); }
  bool release(void* ptr) override { return inner_->release(ptr); }

 private:
  std::unique_ptr<Engine> inner_;
};

}  // namespace moedist::comm
