// The in-process engine: the ranks of a communicator are threads of one process and share its memory.
//
// All rank engines of one communicator share a Group: a mutex and a table of the calls in flight, keyed by
// (participant list, number of calls this rank made before with that list). open() finds or creates the call's
// entry, stores a copy of the header and the region pointers there, and sleeps on the entry's condition variable
// until every participant has arrived; close() does the same for departures, and the last rank to leave erases
// the entry. Peers read each other's regions in place (peerRegion() never returns nullptr for a valid region), so
// a row crosses memory once.
//
// Failure is all-or-nothing per call: when one participant reaches its deadline, it marks the call abandoned and
// every other participant of that call returns kTimeout as well (at once, not at its own deadline), with a
// message that names the ranks not heard from. A rank that arrives at an abandoned call fails the same way; one
// that arrives after all others left finds a fresh entry and times out on its own. Either way no entry outlives
// the ranks that arrived at it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "comm/engine.h"
#include "moedist/status.h"

namespace moedist::comm::inproc {

struct Group;
struct CallState;

class InprocEngine final : public Engine {
 public:
  InprocEngine(std::shared_ptr<Group> group, int rank);
  ~InprocEngine() override;
  InprocEngine(const InprocEngine&) = delete;
  InprocEngine& operator=(const InprocEngine&) = delete;

  int rank() const override { return rank_; }
  int size() const override;
  const std::string& name() const override;
  const char* kind() const override { return "inproc"; }

  Status open(std::span<const int> participants, std::span<const std::byte> header, std::span<const Region> regions,
              Clock::time_point deadline) override;
  std::span<const std::byte> peerHeader(int peer) const override;
  bool mapped() const override { return true; }
  const std::byte* peerRegion(int peer, int region) const override;
  size_t peerRegionBytes(int peer, int region) const override;
  Status read(int peer, int region, size_t offset, void* dst, size_t bytes) override;
  Status close(Clock::time_point deadline) override;

  // For tests: the number of calls of this communicator that still have an entry in the shared table (0 once
  // every rank that arrived at a call has left it).
  size_t liveCalls() const;

 private:
  // Index of `peer` in the open call's participant list, or -1 when no call is open or peer is not in it.
  int slotOf(int peer) const;
  std::string prefix() const;
  // The kTimeout status of a failed open (opening) or close, naming the ranks not heard from; abandons the call
  // for everyone if nobody did yet. Needs the group's mutex.
  Status fail(CallState& call, bool opening, Clock::time_point start);

  std::shared_ptr<Group> group_;
  const int rank_;
  // Calls this rank has made per participant list; only this rank's thread touches it.
  std::map<std::vector<int>, uint64_t> callsPerSet_;
  // The open call (null when none) and this rank's index in its participant list.
  std::shared_ptr<CallState> call_;
  int slot_ = -1;
};

// Creates the engines of a new in-process communicator; see createInprocEngines() in comm/registry.h.
Status createEngines(const std::string& name, int worldSize, std::vector<std::unique_ptr<Engine>>* engines);

}  // namespace moedist::comm::inproc
