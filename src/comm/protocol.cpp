// The call protocol; protocol.h describes it.
#include "comm/protocol.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "comm/checks.h"
#include "util/check.h"

namespace moedist::comm {

namespace {

Status invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

}  // namespace

uint64_t hashRanks(std::span<const int> ranks) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xFF;
      h *= 1099511628211ull;
    }
  };
  mix(ranks.size());
  for (int r : ranks) mix(static_cast<uint64_t>(r));
  return h;
}

int Call::slotOf(int rank) const {
  // Sorted and unique (checkOpen): when they run from 0 to n - 1, every rank takes part and its slot is its rank.
  // That is the common case, and core looks slots up per peer and per event, so it takes no search.
  const int n = static_cast<int>(participants.size());
  if (n > 0 && participants.front() == 0 && participants.back() == n - 1) return rank >= 0 && rank < n ? rank : -1;
  auto it = std::lower_bound(participants.begin(), participants.end(), rank);
  if (it == participants.end() || *it != rank) return -1;
  return static_cast<int>(it - participants.begin());
}

ProtocolEngine::ProtocolEngine(std::unique_ptr<Transport> transport) : transport_(std::move(transport)) {}

ProtocolEngine::~ProtocolEngine() {
  if (!call_) return;
  // Destroyed with a call open (a caller bug, or a rank that gives up): let the peers fail now, not at their
  // deadlines.
  abandon(fmt::format("rank {} was destroyed with the call open", rank()));
  leave();
}

std::string ProtocolEngine::what() const {
  return describeCall(call_->id.seq, call_->participants, size());
}

const Event* ProtocolEngine::peerOf(int rank) const {
  if (!call_) return nullptr;
  const int slot = call_->slotOf(rank);
  if (slot < 0 || !call_->arrived[static_cast<size_t>(slot)]) return nullptr;
  return &call_->peers[static_cast<size_t>(slot)];
}

void ProtocolEngine::deliver(Event&& event) {
  const int slot = call_ && call_->id == event.id ? call_->slotOf(event.from) : -1;
  if (slot < 0) {
    // Not the open call: keep it when it belongs to a call this rank has not made yet, else drop it (a call this
    // rank has left, abandoned by someone).
    auto next = nextSeq_.find(event.id.set);
    if (next == nextSeq_.end() || event.id.seq >= next->second) early_.push_back(std::move(event));
    return;
  }
  Call& call = *call_;
  const auto i = static_cast<size_t>(slot);
  switch (event.kind) {
    case EventKind::kOpen:
      if (call.arrived[i]) return;
      if (Status s = transport_->map(call, event); !s.ok()) {
        abandon(fmt::format("rank {} could not reach rank {}'s regions: {}", rank(), event.from, s.message()));
        return;
      }
      call.peers[i] = std::move(event);
      call.arrived[i] = 1;
      return;
    case EventKind::kFence:
      if (++call.fences[i] >= call.fenceTarget) call.fenced[i] = 1;
      return;
    case EventKind::kClose:
      call.closed[i] = 1;
      return;
    case EventKind::kAbandon:
      call.closed[i] = 1;  // it reads nothing more
      if (call.abandonedBy < 0) {
        call.abandonedBy = event.from;
        call.abandonNote = std::move(event.note);
      }
      return;
  }
}

void ProtocolEngine::abandon(const std::string& note) {
  Call& call = *call_;
  if (call.abandonedBy >= 0) return;
  call.abandonedBy = rank();
  call.abandonNote = note;
  notifyAbandoned();
}

void ProtocolEngine::notifyAbandoned() {
  Call& call = *call_;
  if (call.noticeSent || call.abandonedBy < 0) return;
  call.noticeSent = true;
  post(EventKind::kAbandon, Clock::now(), call.abandonNote);
}

void ProtocolEngine::post(EventKind kind, Clock::time_point deadline, std::string note) {
  Event notice;
  notice.kind = kind;
  notice.from = rank();
  notice.id = call_->id;
  notice.note = std::move(note);
  (void)transport_->post(*call_, notice, deadline);
}

template <typename Done>
bool ProtocolEngine::waitFor(Clock::time_point deadline, Wait wait, Done done) {
  const auto deliverFn = [this](Event&& e) { deliver(std::move(e)); };
  const Clock::duration interval = transport_->livenessInterval();
  Clock::time_point nextCheck = Clock::now() + interval;
  // What has arrived already counts first: an abandonment that is waiting must win over flags set earlier.
  transport_->poll(&*call_, Clock::now(), deliverFn);
  for (bool last = false;;) {
    if (call_->abandonedBy >= 0) return false;
    if (done()) return true;
    if (last) return false;
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {  // one more look, without waiting, at what arrived meanwhile
      transport_->poll(&*call_, now, deliverFn);
      last = true;
      continue;
    }
    if (now >= nextCheck) {
      const auto& flags = call_->heardFrom(wait);
      for (size_t i = 0; i < flags.size(); ++i) {
        const int peer = call_->participants[i];
        std::string why;
        if (flags[i] || peer == rank() || transport_->alive(peer, &why)) continue;
        // What it posted before it exited counts: a peer may close, leave the call (everyone else had closed) and
        // exit between this rank's last poll and now.
        transport_->poll(&*call_, Clock::now(), deliverFn);
        if (flags[i] || call_->abandonedBy >= 0) continue;
        deathNote_ = fmt::format("rank {} is gone ({})", peer, why);
        abandon(fmt::format("rank {} found that rank {} is gone ({})", rank(), peer, why));
        return false;
      }
      nextCheck = now + interval;
    }
    const auto& flags = call_->heardFrom(wait);
    call_->awaiting = static_cast<int>(std::count(flags.begin(), flags.end(), uint8_t{0}));
    transport_->poll(&*call_, std::min(deadline, nextCheck), deliverFn);
    call_->awaiting = 1;
  }
}

Status ProtocolEngine::failure(Wait wait, Clock::time_point start) {
  Call& call = *call_;
  const std::string verb = wait == Wait::kOpen ? "open" : wait == Wait::kFence ? "fence" : "close";
  const auto& flags = call.heardFrom(wait);
  std::vector<int> missing;
  for (size_t i = 0; i < flags.size(); ++i)
    if (!flags[i]) missing.push_back(call.participants[i]);
  std::string message;
  if (!deathNote_.empty()) {
    message = fmt::format("{}{} while waiting {} ms for it to {} the call ({})", transport_->prefix(), deathNote_,
                          msSince(start), verb, what());
  } else if (call.abandonedBy >= 0 && call.abandonedBy != rank()) {
    message = missing.empty() ? fmt::format("{}the call ({}) failed after {} ms because {}", transport_->prefix(),
                                            what(), msSince(start), call.abandonNote)
                              : fmt::format("{}gave up after {} ms waiting for rank(s) {} to {} the call ({}): {}",
                                            transport_->prefix(), msSince(start), joinRanks(missing), verb, what(),
                                            call.abandonNote);
  } else if (call.abandonedBy == rank()) {
    message = fmt::format("{}{} ({})", transport_->prefix(), call.abandonNote, what());
  } else if (missing.empty()) {  // everyone closed, but the transport still serves reads of this rank's regions
    message = fmt::format("{}timed out after {} ms waiting for peers to finish reading this rank's regions ({})",
                          transport_->prefix(), msSince(start), what());
    abandon(fmt::format("rank {} timed out waiting for its regions to be read", rank()));
  } else {
    message = fmt::format("{}timed out after {} ms waiting for rank(s) {} to {} the call ({})", transport_->prefix(),
                          msSince(start), joinRanks(missing), verb, what());
    abandon(fmt::format("rank {} timed out waiting for rank(s) {} to {} it", rank(), joinRanks(missing), verb));
  }
  notifyAbandoned();  // pass a peer's notice on
  deathNote_.clear();
  return Status(StatusCode::kTimeout, std::move(message));
}

void ProtocolEngine::leave() {
  transport_->finish(*call_);
  call_.reset();
  mapped_ = false;
}

Status ProtocolEngine::open(std::span<const int> participants, std::span<const std::byte> header,
                            std::span<const Region> regions, Clock::time_point deadline) {
  const Clock::time_point start = Clock::now();
  const std::string prefix = transport_->prefix();
  if (call_) return invalid(prefix + "open() called while a call is still open; close() it first");
  MOEDIST_RETURN_IF_ERROR(checkOpen(prefix, participants, rank(), size(), regions));

  // From here on the attempt counts as a call with this participant list, whether it succeeds or not.
  Call& call = call_.emplace();
  call.participants.assign(participants.begin(), participants.end());
  call.id.set = hashRanks(participants);
  call.id.seq = nextSeq_[call.id.set]++;
  // Bounded, so that a far deadline (time_point::max()) added to a later start cannot overflow.
  call.timeout = std::min<Clock::duration>(deadline - start, std::chrono::hours(24 * 365));
  call.peers.resize(participants.size());
  call.arrived.assign(participants.size(), 0);
  call.closed.assign(participants.size(), 0);
  call.fences.assign(participants.size(), 0);
  call.fenced.assign(participants.size(), 0);
  call.numOwn = static_cast<int>(regions.size());
  std::copy(regions.begin(), regions.end(), call.own.begin());

  Event mine;
  mine.kind = EventKind::kOpen;
  mine.from = rank();
  mine.id = call.id;
  mine.header = std::make_shared<const std::vector<std::byte>>(header.begin(), header.end());
  mine.numRegions = call.numOwn;
  for (int i = 0; i < call.numOwn; ++i) {
    mine.bytes[static_cast<size_t>(i)] = regions[static_cast<size_t>(i)].bytes;
    if (regions[static_cast<size_t>(i)].writable) mine.writable |= 1u << i;
    mine.mapped[static_cast<size_t>(i)] = static_cast<const std::byte*>(regions[static_cast<size_t>(i)].data);
  }
  if (Status s = transport_->post(call, mine, deadline); !s.ok()) {
    // Tell the others at once, so that they do not wait for this rank until their deadlines.
    abandon(fmt::format("rank {} could not publish its part of the call: {}", rank(), s.message()));
    leave();
    return Status(s.code(), fmt::format("{}could not publish this rank's part of the call ({}): {}", prefix,
                                        describeCall(mine.id.seq, participants, size()), s.message()));
  }
  // Own regions are read in place, whatever the transport did to publish them.
  for (int i = 0; i < call.numOwn; ++i)
    mine.mapped[static_cast<size_t>(i)] = static_cast<const std::byte*>(regions[static_cast<size_t>(i)].data);
  const auto self = static_cast<size_t>(call.slotOf(rank()));
  call.peers[self] = std::move(mine);
  call.arrived[self] = 1;
  // ... except the writable ones, which this rank reads where its peers write them.
  for (int i = 0; i < call.numOwn; ++i)
    if (call.own[static_cast<size_t>(i)].writable && call.own[static_cast<size_t>(i)].bytes > 0)
      call.peers[self].mapped[static_cast<size_t>(i)] = transport_->writeTarget(call, i);

  // Events of this call that came before it was opened here.
  std::vector<Event> early;
  early.swap(early_);
  for (Event& e : early) deliver(std::move(e));

  const bool all = waitFor(deadline, Wait::kOpen, [&] {
    return std::all_of(call_->arrived.begin(), call_->arrived.end(), [](uint8_t a) { return a != 0; });
  });
  if (all) {
    // Peers read every region in place (writable ones are written, not read).
    mapped_ = true;
    for (const Event& p : call_->peers)
      for (int i = 0; i < p.numRegions; ++i)
        if (p.bytes[static_cast<size_t>(i)] > 0 && p.mapped[static_cast<size_t>(i)] == nullptr &&
            (p.writable >> i & 1u) == 0)
          mapped_ = false;
    return okStatus();
  }
  Status result = failure(Wait::kOpen, start);
  leave();
  return result;
}

std::span<const std::byte> ProtocolEngine::peerHeader(int peer) const {
  const Event* p = peerOf(peer);
  if (p == nullptr || !p->header) return {};
  return {p->header->data(), p->header->size()};
}

const std::byte* ProtocolEngine::peerRegion(int peer, int region) const {
  const Event* p = peerOf(peer);
  if (p == nullptr || region < 0 || region >= p->numRegions) return nullptr;
  return p->mapped[static_cast<size_t>(region)];
}

size_t ProtocolEngine::peerRegionBytes(int peer, int region) const {
  const Event* p = peerOf(peer);
  if (p == nullptr || region < 0 || region >= p->numRegions) return 0;
  return p->bytes[static_cast<size_t>(region)];
}

Status ProtocolEngine::read(int peer, int region, size_t offset, void* dst, size_t bytes) {
  const std::string prefix = transport_->prefix();
  if (!call_) return invalid(prefix + "read() called with no open call");
  const Event* p = peerOf(peer);
  if (p == nullptr)
    return invalid(fmt::format("{}read() from rank {}, which is not a participant of the {}", prefix, peer, what()));
  const size_t regionBytes = region >= 0 && region < p->numRegions ? p->bytes[static_cast<size_t>(region)] : 0;
  MOEDIST_RETURN_IF_ERROR(checkRead(prefix, peer, region, p->numRegions, regionBytes, offset, dst, bytes));
  if (bytes == 0) return okStatus();
  if (const std::byte* base = p->mapped[static_cast<size_t>(region)]) {
    std::memcpy(dst, base + offset, bytes);
    return okStatus();
  }
  return transport_->read(*call_, *p, region, offset, dst, bytes);
}

Status ProtocolEngine::write(int peer, int region, std::span<const WritePiece> pieces) {
  const std::string prefix = transport_->prefix();
  if (!call_) return invalid(prefix + "write() called with no open call");
  const Event* p = peerOf(peer);
  if (p == nullptr)
    return invalid(fmt::format("{}write() to rank {}, which is not a participant of the {}", prefix, peer, what()));
  if (region < 0 || region >= p->numRegions || (p->writable >> region & 1u) == 0)
    return invalid(fmt::format("{}write() to region {} of rank {}, which published {} region(s) and this one {}",
                               prefix, region, peer, p->numRegions,
                               region < 0 || region >= p->numRegions ? "not at all" : "read-only"));
  const size_t regionBytes = p->bytes[static_cast<size_t>(region)];
  for (size_t i = 0; i < pieces.size(); ++i) {
    const WritePiece& w = pieces[i];
    if (w.offset > regionBytes || w.bytes > regionBytes - w.offset || (w.src == nullptr && w.bytes > 0))
      return invalid(fmt::format(
          "{}write() piece {} ({} bytes at offset {}{}) does not fit rank {}'s region {} of {} "
          "bytes",
          prefix, i, w.bytes, w.offset, w.src == nullptr ? ", from a null source" : "", peer, region, regionBytes));
  }
  // In place when this rank can address the region (own memory, threads, a shared-memory segment).
  std::byte* base = peer == rank() ? transport_->writeTarget(*call_, region)
                                   : const_cast<std::byte*>(p->mapped[static_cast<size_t>(region)]);  // writable
  if (base == nullptr) return transport_->write(*call_, *p, region, pieces);
  for (const WritePiece& w : pieces)
    if (w.bytes > 0) std::memcpy(base + w.offset, w.src, w.bytes);
  return okStatus();
}

Status ProtocolEngine::fence(Clock::time_point deadline) {
  const Clock::time_point start = Clock::now();
  if (!call_) return invalid(transport_->prefix() + "fence() called with no open call");
  Call& call = *call_;
  ++call.fenceTarget;
  if (call.abandonedBy < 0) post(EventKind::kFence, deadline);
  const auto self = static_cast<size_t>(call.slotOf(rank()));
  call.fences[self] = call.fenceTarget;
  for (size_t i = 0; i < call.fences.size(); ++i) call.fenced[i] = call.fences[i] >= call.fenceTarget ? 1 : 0;
  const bool all = waitFor(deadline, Wait::kFence, [&] {
    return std::all_of(call_->fenced.begin(), call_->fenced.end(), [](uint8_t f) { return f != 0; });
  });
  if (!all) return failure(Wait::kFence, start);  // the call stays open: close() it
  return okStatus();
}

Status ProtocolEngine::close(Clock::time_point deadline) {
  const Clock::time_point start = Clock::now();
  if (!call_) return invalid(transport_->prefix() + "close() called with no open call");
  Call& call = *call_;
  const auto self = static_cast<size_t>(call.slotOf(rank()));
  if (call.abandonedBy < 0) post(EventKind::kClose, deadline);
  call.closed[self] = 1;
  const bool all = waitFor(deadline, Wait::kClose, [&] {
    return !transport_->busy() &&
           std::all_of(call_->closed.begin(), call_->closed.end(), [](uint8_t c) { return c != 0; });
  });
  if (all) transport_->landed(call);
  Status result = all ? okStatus() : failure(Wait::kClose, start);
  leave();
  return result;
}

}  // namespace moedist::comm
