// The call protocol every engine shares (NCCL's generic layer over its transports): matching, arrival and close
// bookkeeping, abandonment, liveness and the deadline messages live here, once; an engine is a thin Transport that
// delivers four kinds of events between the ranks of a communicator and gives access to peers' regions.
//
// A call (engine.h) is identified by CallId: the hash of its participant list and how many calls this rank made
// before with that list. For each call a participant posts
//   kOpen     to every other participant when it opens the call: its header and how to reach its regions;
//   kFence    when it calls fence(), after its writes so far: the transport delivers it only once those writes have
//             landed in the receiver's regions;
//   kClose    when it has finished reading and writing (close()), after its writes, as kFence;
//   kAbandon  when it gives up (its deadline passed, a peer died, it could not publish, or it was destroyed with the
//             call open), with a note saying why; every participant that receives it fails the call at once.
// ProtocolEngine keeps the state of the open call, a list of events of calls this rank has not opened yet ("early")
// and drops events of calls it has left. open() returns when every participant's kOpen has arrived; fence() when
// every participant's kFence of that round has; close() when every kClose has arrived and the transport has nothing
// in flight that reads this rank's regions.
//
// Waits ask the transport to poll with a deadline; between polls the engine asks the transport whether the
// participants it still waits for are alive (shared memory: their process exists), so that a dead peer fails the
// call within milliseconds rather than at the deadline.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "comm/engine.h"
#include "moedist/status.h"

namespace moedist::comm {

// Which call an event belongs to: (participant list, calls the sender made before with that list).
struct CallId {
  uint64_t set = 0;  // hashRanks(participants)
  uint64_t seq = 0;
  bool operator==(const CallId&) const = default;
};

// FNV-1a over the list and its length: the same value in every process.
uint64_t hashRanks(std::span<const int> ranks);

enum class EventKind : uint8_t { kOpen = 1, kClose = 2, kAbandon = 3, kFence = 4 };

// What a wait of ProtocolEngine waits for from every participant.
enum class Wait : uint8_t { kOpen, kFence, kClose };

// A participant's announcement about one call.
struct Event {
  EventKind kind = EventKind::kOpen;
  int from = -1;  // the sender's rank
  CallId id;
  // kOpen: the sender's header (shared, never copied per peer by engines that can share it) and regions.
  std::shared_ptr<const std::vector<std::byte>> header;
  int numRegions = 0;
  std::array<uint64_t, kMaxRegions> bytes{};
  uint32_t writable = 0;  // bit i: region i is writable (Region::writable)
  // Where the receiver reaches each region in place (nullptr: through Transport::read). Filled by the transport on
  // the receiving side.
  std::array<const std::byte*, kMaxRegions> mapped{};
  // Transport-private locator of each region (the MPI engine's staging offset, the shared-memory engine's offset in
  // the sender's segment).
  std::array<int64_t, kMaxRegions> where{};
  // kAbandon: why ("rank 3 timed out waiting for rank(s) 5 to open it").
  std::string note;
};

// This rank's view of the open call, which the transport may read (and annotate) while serving it.
struct Call {
  std::vector<int> participants;  // sorted physical ranks
  CallId id;
  std::vector<Event> peers;      // per participant, in participant order: its kOpen once arrived
  std::vector<uint8_t> arrived;  // per participant
  std::vector<uint8_t> closed;   // per participant
  std::vector<int> fences;       // per participant: its kFence events so far
  std::vector<uint8_t> fenced;   // per participant: fences >= fenceTarget
  int fenceTarget = 0;           // fence() calls of this rank in this call
  std::array<Region, kMaxRegions> own{};
  int numOwn = 0;
  Clock::duration timeout{};  // the open's deadline minus its start: bounds the reads of the call
  int abandonedBy = -1;       // the first participant that gave up (this rank included), or -1
  std::string abandonNote;
  bool noticeSent = false;  // this rank has posted kAbandon (its own, or passing on a peer's)
  // How many events the engine still waits for (participants not yet arrived, or not yet closed) when it polls: a
  // transport may sleep until that many have arrived instead of waking for each (a kAbandon always wakes it).
  int awaiting = 1;

  // Index of `rank` among the participants, or -1.
  int slotOf(int rank) const;
  // Per participant, whether the event a wait needs has come: its kOpen, its kFence of this round or its kClose.
  const std::vector<uint8_t>& heardFrom(Wait wait) const {
    return wait == Wait::kOpen ? arrived : wait == Wait::kFence ? fenced : closed;
  }
};

// A transport: how the ranks of one communicator exchange events and reach each other's regions. Every method is
// called from the rank's calling thread only, except read() (see Engine::read).
class Transport {
 public:
  virtual ~Transport() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const std::string& name() const = 0;
  virtual const char* kind() const = 0;
  // "in-process communicator 'x' rank 3: ": starts every message of this rank.
  virtual std::string prefix() const = 0;

  // Sends `event` (of `call`, from this rank) to every other participant. For kOpen the transport first makes
  // `call.own` reachable (for example by staging it in shared memory) and fills event.where; an error (the regions do
  // not fit, a peer cannot be reached before `deadline`) fails the open and the engine abandons the call. The other
  // kinds are best effort. A kFence or kClose reaches a peer after every write() this rank made to it before.
  virtual Status post(Call& call, Event& event, Clock::time_point deadline) = 0;

  // Waits until at least one event has arrived for this rank or `until` passes, and hands every arrived event to
  // `deliver`. `call` is the open call or nullptr (the MPI engine answers peers' reads of it while it polls).
  // Returns promptly after `deliver`, and when busy() may have changed; spurious returns are allowed.
  virtual void poll(const Call* call, Clock::time_point until, const std::function<void(Event&&)>& deliver) = 0;

  // Engine::maps(): whether map() can address `peer`'s regions when they fit (threads and shared memory: always).
  virtual bool maps(int peer) const {
    (void)peer;
    return true;
  }

  // Called on each arrived kOpen of the open call: fills event.mapped for the regions this rank can address in place.
  // Returns an error when the event's locators are unusable (they point outside the sender's memory).
  virtual Status map(const Call& call, Event& event) {
    (void)call;
    (void)event;
    return okStatus();
  }

  // Copies bytes [offset, offset + bytes) of `peer`'s region `region` (bounds already checked) into dst, for regions
  // that map() left unmapped.
  virtual Status read(const Call& call, const Event& peer, int region, size_t offset, void* dst, size_t bytes) = 0;

  // Writes pieces into `peer`'s writable region `region` (bounds already checked), for regions that map() left
  // unmapped. The sources stay valid until close() (busy() says whether they are still being read).
  virtual Status write(const Call& call, const Event& peer, int region, std::span<const WritePiece> pieces) {
    (void)call;
    (void)pieces;
    return Status(StatusCode::kInternal, prefix() + "cannot write into rank " + std::to_string(peer.from) +
                                             "'s region " + std::to_string(region) + ": it is not mapped");
  }

  // Where writes into this rank's own writable region `region` of the open call go, and where this rank reads them
  // (peerRegion of its own rank): the caller's memory, or the copy post(kOpen) staged where peers write (then
  // landed() copies it back at the close).
  virtual std::byte* writeTarget(const Call& call, int region) {
    return static_cast<std::byte*>(const_cast<void*>(call.own[static_cast<size_t>(region)].data));
  }

  // Every participant has closed the call, so every write to this rank has arrived and no more will come: make them
  // visible in the caller's memory where the transport received them elsewhere (the shared-memory engine's staged
  // copy). Not at a fence: a peer past its fence may be writing again.
  virtual void landed(Call& call) { (void)call; }

  // Whether the transport still has work in flight that reads this rank's regions or write() sources (MPI: replies
  // and writes being sent); close() waits for it too.
  virtual bool busy() const { return false; }

  // Whether `peer` can still take part; when not, `why` says so ("its process 1234 has exited"). Checked between
  // polls for the participants the engine is waiting for.
  virtual bool alive(int peer, std::string* why) {
    (void)peer;
    (void)why;
    return true;
  }

  // The call has ended for this rank (closed or abandoned): release what post(kOpen) set up (staging memory).
  virtual void finish(Call& call) { (void)call; }

  // How long a wait may sleep in poll() before the engine checks liveness again.
  virtual Clock::duration livenessInterval() const { return std::chrono::hours(24); }

  // Engine::allocate() and Engine::release(): memory that post() publishes in place. Called from any thread.
  virtual void* allocate(size_t /*bytes*/) { return nullptr; }
  virtual bool release(void* /*ptr*/) { return false; }
};

// An Engine over a Transport: the protocol described at the top of this file.
class ProtocolEngine final : public Engine {
 public:
  explicit ProtocolEngine(std::unique_ptr<Transport> transport);
  ~ProtocolEngine() override;
  ProtocolEngine(const ProtocolEngine&) = delete;
  ProtocolEngine& operator=(const ProtocolEngine&) = delete;

  int rank() const override { return transport_->rank(); }
  int size() const override { return transport_->size(); }
  const std::string& name() const override { return transport_->name(); }
  const char* kind() const override { return transport_->kind(); }

  Status open(std::span<const int> participants, std::span<const std::byte> header, std::span<const Region> regions,
              Clock::time_point deadline) override;
  std::span<const std::byte> peerHeader(int peer) const override;
  bool mapped() const override { return mapped_; }
  bool maps(int peer) const override { return peer == rank() || transport_->maps(peer); }
  const std::byte* peerRegion(int peer, int region) const override;
  size_t peerRegionBytes(int peer, int region) const override;
  Status read(int peer, int region, size_t offset, void* dst, size_t bytes) override;
  Status write(int peer, int region, std::span<const WritePiece> pieces) override;
  Status fence(Clock::time_point deadline) override;
  Status close(Clock::time_point deadline) override;
  void* allocate(size_t bytes) override { return transport_->allocate(bytes); }
  bool release(void* ptr) override { return transport_->release(ptr); }

  // For tests: events kept for calls this rank has not opened yet.
  size_t earlyEvents() const { return early_.size(); }

 private:
  std::string what() const;
  const Event* peerOf(int rank) const;
  void deliver(Event&& event);
  // Polls until done() or the deadline (false), failing the wait early (false) when the call is abandoned or a
  // participant it waits for has died (then the call is marked abandoned by this rank with the reason).
  template <typename Done>
  bool waitFor(Clock::time_point deadline, Wait wait, Done done);
  // Abandons the open call for everyone (posts kAbandon) with `note` unless someone did already.
  void abandon(const std::string& note);
  // Posts kAbandon with the call's abandon note, once: a rank that leaves an abandoned call passes the notice on, so
  // every participant learns why even if the first notice did not reach it.
  void notifyAbandoned();
  // Posts an event of `kind` (kFence, kClose, kAbandon with its note) of the open call; best effort.
  void post(EventKind kind, Clock::time_point deadline, std::string note = {});
  // The error of a wait that did not complete, then the call is left.
  Status failure(Wait wait, Clock::time_point start);
  void leave();

  std::unique_ptr<Transport> transport_;
  std::map<uint64_t, uint64_t> nextSeq_;  // participant-list hash -> calls made with that list
  std::optional<Call> call_;
  bool mapped_ = false;
  std::vector<Event> early_;  // events of calls this rank has not opened yet
  std::string deathNote_;     // set when a wait stopped because a participant died
};

}  // namespace moedist::comm
