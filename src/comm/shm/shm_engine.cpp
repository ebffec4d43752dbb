// The shared-memory engine; shm_engine.h describes the bootstrap and the segments.
//
// Layout of a rank's segment (all offsets from its start):
//   0            SegmentHeader: magic, the owner's rank, process and sizes, the doorbell and the call generation
//   ringsOffset  one Ring per sender rank: single-producer, single-consumer queues of fixed-size Slots (events)
//   dataOffset   the data area: allocate()'s memory and the staging of calls (headers and regions)
// Each ring is written by one sender (head, slots) and read by the owner (tail), so no lock is needed anywhere; a
// sender bumps the owner's doorbell after it pushes and wakes it with FUTEX_WAKE when the owner said it sleeps.
//
// Headers are copied out of the sender's data area when the event is taken from the ring; the slot carries the
// sender's call generation (bumped whenever it leaves a call), and a copy made after the sender left (it gave up on
// the call, and may have reused the memory) is recognized and dropped: the sender posted kAbandon before it left.
#include "comm/shm/shm_engine.h"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/checks.h"
#include "comm/first_fit.h"
#include "comm/protocol.h"
#include "comm/shm/shm_os.h"
#include "util/check.h"

namespace moedist::comm::shm {

namespace {

constexpr char kIdPrefix[] = "moedist-shm1";
constexpr uint64_t kSegmentMagic = 0x6d6f656469737431ull;  // "moedist1"
constexpr uint64_t kRendezvousMagic = 0x6d6f656469737452ull;
constexpr int kRingDepth = 16;
constexpr size_t kAlign = 64;
constexpr size_t kPage = 4096;
constexpr int kMaxRanks = 1536;
constexpr auto kSpin = std::chrono::microseconds(20);
constexpr auto kLiveness = std::chrono::milliseconds(5);

size_t alignUp(size_t v, size_t a) {
  return (v + a - 1) / a * a;
}

struct Slot {
  uint32_t kind = 0;
  int32_t from = -1;
  uint64_t set = 0, seq = 0;
  uint64_t generation = 0;  // the sender's call generation when it posted
  int32_t numRegions = 0;
  uint32_t writable = 0;  // Event::writable
  uint32_t headerBytes = 0;
  uint64_t headerOffset = 0;  // in the sender's data area
  std::array<uint64_t, kMaxRegions> bytes{};
  std::array<int64_t, kMaxRegions> where{};  // offsets in the sender's data area
  std::array<char, 320> note{};
};

struct alignas(64) Ring {
  alignas(64) std::atomic<uint64_t> head;  // slots pushed (the sender)
  alignas(64) std::atomic<uint64_t> tail;  // slots taken (the owner)
  Slot slots[kRingDepth];
};

struct alignas(64) SegmentHeader {
  std::atomic<uint64_t> magic;  // set last, when the rest is valid
  int32_t rank, size;
  int32_t pid;
  int32_t pad;
  uint64_t startTime;
  uint64_t ringsOffset, dataOffset, dataBytes, totalBytes;
  alignas(64) std::atomic<uint32_t> doorbell;  // bumped by senders; the owner sleeps on it
  alignas(64) std::atomic<uint32_t> sleeping;  // the owner is about to sleep, or sleeps: wake it
  std::atomic<uint32_t> wakeAt;                // ... once the doorbell reaches this (Call::awaiting events)
  alignas(64) std::atomic<uint64_t> generation;
};
static_assert(sizeof(SegmentHeader) <= kPage);
static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free);

struct Member {
  std::atomic<uint32_t> state;  // 0 not yet, 1 registered (segment created), 2 attached (mapped every segment)
  int32_t pid;
  uint64_t startTime;
};

struct RendezvousHeader {
  std::atomic<uint64_t> magic;
  int32_t nRanks;
  std::atomic<int32_t> failedBy;  // -1, or the first member that gave up
  std::atomic<uint32_t> joined;   // futex words
  std::atomic<uint32_t> attached;
  std::array<char, 200> failure{};  // why it gave up
};
constexpr size_t kMembersOffset = (sizeof(RendezvousHeader) + kAlign - 1) / kAlign * kAlign;  // nRanks Members

size_t rendezvousBytes(int nRanks) {
  return kMembersOffset + sizeof(Member) * static_cast<size_t>(nRanks);
}

struct ParsedId {
  std::string token;
  HostIdentity creator;
};

std::string segmentName(const std::string& token, int rank) {
  return fmt::format("/moedist-{}-{}", token, rank);
}

std::string rendezvousName(const std::string& token) {
  return fmt::format("/moedist-{}", token);
}

bool parseId(const std::string& id, ParsedId* out) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t end = id.find(';', start);
    parts.push_back(id.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (parts.size() != 7 || parts[0] != kIdPrefix || parts[1].size() != 32) return false;
  if (parts[1].find_first_not_of("0123456789abcdef") != std::string::npos) return false;
  out->token = parts[1];
  out->creator.bootId = parts[2];
  try {
    out->creator.shmDev = std::stoull(parts[3]);
    out->creator.shmIno = std::stoull(parts[4]);
    out->creator.ipcNs = std::stoull(parts[5]);
    out->creator.pidNs = std::stoull(parts[6]);
  } catch (...) {
    return false;
  }
  return true;
}

// Mappings of segments shared by the ranks of this process (ranks that are threads map each segment once).
struct MappingCache {
  std::mutex mu;
  std::map<std::string, std::weak_ptr<Mapping>> live;
};

MappingCache& mappingCache() {
  static MappingCache* cache = new MappingCache;  // never destroyed: engines may outlive main()
  return *cache;
}

std::shared_ptr<Mapping> cached(const std::string& name) {
  MappingCache& c = mappingCache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.live.find(name);
  return it == c.live.end() ? nullptr : it->second.lock();
}

std::shared_ptr<Mapping> remember(const std::string& name, Mapping m) {
  auto p = std::make_shared<Mapping>(std::move(m));
  MappingCache& c = mappingCache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.live[name] = p;
  for (auto it = c.live.begin(); it != c.live.end();) it = it->second.expired() ? c.live.erase(it) : std::next(it);
  return p;
}

class ShmTransport final : public Transport {
 public:
  ShmTransport(std::string name, int rank, int size, std::vector<std::shared_ptr<Mapping>> segments,
               std::vector<ProcessId> processes)
      : name_(std::move(name)),
        rank_(rank),
        size_(size),
        segments_(std::move(segments)),
        processes_(std::move(processes)),
        alloc_(header(rank).dataBytes) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  const char* kind() const override { return "shm"; }
  std::string prefix() const override { return fmt::format("shared-memory communicator '{}' rank {}: ", name_, rank_); }

  Status post(Call& call, Event& event, Clock::time_point deadline) override;
  void poll(const Call* call, Clock::time_point until, const std::function<void(Event&&)>& deliver) override;
  Status map(const Call& call, Event& event) override;
  Status read(const Call&, const Event& peer, int, size_t, void*, size_t) override {
    return Status(StatusCode::kInternal, fmt::format("{}rank {}'s region is not mapped", prefix(), peer.from));
  }
  bool alive(int peer, std::string* why) override { return processAlive(processes_[static_cast<size_t>(peer)], why); }
  // Peers write into the staged copy of a writable region; landed() copies it back to the caller's memory.
  std::byte* writeTarget(const Call& call, int region) override;
  void landed(Call& call) override;
  void finish(Call& call) override;
  Clock::duration livenessInterval() const override { return kLiveness; }

  void* allocate(size_t bytes) override {
    const int64_t at = alloc_.allocate(bytes);
    return at < 0 ? nullptr : data(rank_) + at;
  }
  bool release(void* ptr) override {
    const int64_t at = offsetWithin(data(rank_), header(rank_).dataBytes, ptr, 1);
    return at >= 0 && alloc_.release(static_cast<size_t>(at));
  }

 private:
  SegmentHeader& header(int r) const {
    return *reinterpret_cast<SegmentHeader*>(segments_[static_cast<size_t>(r)]->data());
  }
  std::byte* data(int r) const { return segments_[static_cast<size_t>(r)]->data() + header(r).dataOffset; }
  // The ring in `owner`'s segment that `sender` writes.
  Ring& ring(int owner, int sender) const {
    return reinterpret_cast<Ring*>(segments_[static_cast<size_t>(owner)]->data() + header(owner).ringsOffset)[sender];
  }
  Status push(int dest, const Slot& slot, Clock::time_point deadline);
  bool drain(const std::function<void(Event&&)>& deliver);
  // The event of a slot; false for a kOpen whose header was torn (see the file comment): dropped, as the sender's
  // kAbandon of that call follows it in the ring.
  bool toEvent(const Slot& slot, Event* out) const;

  const std::string name_;
  const int rank_, size_;
  std::vector<std::shared_ptr<Mapping>> segments_;  // by rank, own included
  std::vector<ProcessId> processes_;
  FirstFit alloc_;       // over the data area
  int64_t staged_ = -1;  // the open call's staging block
};

Status ShmTransport::post(Call& call, Event& event, Clock::time_point deadline) {
  Slot slot;
  slot.kind = static_cast<uint32_t>(event.kind);
  slot.from = rank_;
  slot.set = event.id.set;
  slot.seq = event.id.seq;
  slot.generation = header(rank_).generation.load(std::memory_order_relaxed);
  if (event.kind == EventKind::kOpen) {
    // Stage what does not lie in the data area already: the header and the caller's regions, in one block.
    const std::byte* base = data(rank_);
    const size_t dataBytes = header(rank_).dataBytes;
    auto inPlace = [&](const Region& r) { return offsetWithin(base, dataBytes, r.data, r.bytes); };
    const size_t headerBytes = event.header ? event.header->size() : 0;
    size_t need = alignUp(headerBytes, kAlign);
    for (int i = 0; i < call.numOwn; ++i) {
      const Region& r = call.own[static_cast<size_t>(i)];
      if (r.bytes > 0 && inPlace(r) < 0) need += alignUp(r.bytes, kAlign);
    }
    staged_ = alloc_.allocate(need);
    if (staged_ < 0) {
      return Status(StatusCode::kInvalidValue,
                    fmt::format("HCCL_BUFFSIZE is too small: this rank publishes {} bytes in the call, but its "
                                "shared-memory segment has at most {} bytes free in one piece (of {} bytes); raise "
                                "HCCL_BUFFSIZE",
                                need, alloc_.largestFree(), dataBytes));
    }
    size_t at = static_cast<size_t>(staged_);
    slot.headerOffset = at;
    slot.headerBytes = static_cast<uint32_t>(headerBytes);
    if (headerBytes > 0) std::memcpy(data(rank_) + at, event.header->data(), headerBytes);
    at += alignUp(headerBytes, kAlign);
    slot.numRegions = call.numOwn;
    slot.writable = event.writable;
    for (int i = 0; i < call.numOwn; ++i) {
      const auto k = static_cast<size_t>(i);
      const Region& r = call.own[k];
      slot.bytes[k] = r.bytes;
      if (r.bytes == 0) {
        slot.where[k] = 0;
      } else if (const int64_t offset = inPlace(r); offset >= 0) {  // published in place: no copy
        slot.where[k] = offset;
      } else {
        std::memcpy(data(rank_) + at, r.data, r.bytes);
        slot.where[k] = static_cast<int64_t>(at);
        at += alignUp(r.bytes, kAlign);
      }
      event.where[k] = slot.where[k];
    }
  } else {
    event.note.copy(slot.note.data(), slot.note.size() - 1);
  }
  for (int p : call.participants) {
    if (p == rank_) continue;
    if (Status s = push(p, slot, deadline); !s.ok()) {
      if (event.kind == EventKind::kOpen) return s;  // closes and notices are best effort
    }
  }
  return okStatus();
}

Status ShmTransport::push(int dest, const Slot& slot, Clock::time_point deadline) {
  Ring& r = ring(dest, rank_);
  const uint64_t head = r.head.load(std::memory_order_relaxed);
  for (auto pause = std::chrono::microseconds(1); head - r.tail.load(std::memory_order_acquire) >= kRingDepth;) {
    // The receiver has not taken its events for a while (it is busy, stopped or dead).
    std::string why;
    if (!processAlive(processes_[static_cast<size_t>(dest)], &why))
      return Status(StatusCode::kTimeout, fmt::format("rank {} is gone ({})", dest, why));
    if (Clock::now() >= deadline)
      return Status(StatusCode::kTimeout,
                    fmt::format("rank {} has not taken the events sent to it before the deadline", dest));
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
  r.slots[head % kRingDepth] = slot;
  r.head.store(head + 1, std::memory_order_release);
  SegmentHeader& h = header(dest);
  const uint32_t rung = h.doorbell.fetch_add(1, std::memory_order_seq_cst) + 1;
  // Wake the owner once it has what it waits for (not once per event), and at once for an abandonment.
  if (h.sleeping.load(std::memory_order_seq_cst) != 0 &&
      (slot.kind == static_cast<uint32_t>(EventKind::kAbandon) ||
       static_cast<int32_t>(rung - h.wakeAt.load(std::memory_order_seq_cst)) >= 0))
    futexWakeAll(&h.doorbell);
  return okStatus();
}

bool ShmTransport::toEvent(const Slot& slot, Event* out) const {
  Event& e = *out;
  e.kind = static_cast<EventKind>(slot.kind);
  e.from = slot.from;
  e.id = {slot.set, slot.seq};
  if (e.kind != EventKind::kOpen) {
    e.note.assign(slot.note.data(), strnlen(slot.note.data(), slot.note.size()));
    return true;
  }
  const SegmentHeader& sender = header(slot.from);
  if (slot.numRegions < 0 || slot.numRegions > kMaxRegions || slot.headerOffset > sender.dataBytes ||
      slot.headerBytes > sender.dataBytes - slot.headerOffset) {
    e.kind = EventKind::kAbandon;
    e.note = fmt::format("rank {} sent an event that points outside its segment", slot.from);
    return true;
  }
  const std::byte* h = data(slot.from) + slot.headerOffset;
  e.header = std::make_shared<const std::vector<std::byte>>(h, h + slot.headerBytes);
  // A sender leaves a call (and may reuse its staging memory) only after every participant has taken its kOpen, unless
  // it gave up on the call; then the copy may be torn, and the sender's kAbandon is in the ring already.
  if (sender.generation.load(std::memory_order_acquire) != slot.generation) return false;
  e.numRegions = slot.numRegions;
  e.writable = slot.writable;
  e.bytes = slot.bytes;
  e.where = slot.where;
  return true;
}

bool ShmTransport::drain(const std::function<void(Event&&)>& deliver) {
  bool any = false;
  for (int s = 0; s < size_; ++s) {
    if (s == rank_) continue;
    Ring& r = ring(rank_, s);
    uint64_t tail = r.tail.load(std::memory_order_relaxed);
    const uint64_t head = r.head.load(std::memory_order_acquire);
    while (tail < head) {
      const Slot slot = r.slots[tail % kRingDepth];
      r.tail.store(++tail, std::memory_order_release);
      if (slot.from != s) continue;  // a sender writes only its own ring
      Event e;
      if (!toEvent(slot, &e)) continue;
      deliver(std::move(e));
      any = true;
    }
  }
  return any;
}

void ShmTransport::poll(const Call* call, Clock::time_point until, const std::function<void(Event&&)>& deliver) {
  if (drain(deliver)) return;
  // Spin briefly: a peer that is about to post is answered in microseconds.
  const Clock::time_point spinEnd = std::min(until, Clock::now() + kSpin);
  while (Clock::now() < spinEnd) {
    if (drain(deliver)) return;
    std::this_thread::yield();
  }
  SegmentHeader& h = header(rank_);
  for (;;) {
    const Clock::time_point now = Clock::now();
    if (now >= until) return;
    h.sleeping.store(1, std::memory_order_seq_cst);
    const uint32_t seen = h.doorbell.load(std::memory_order_seq_cst);
    h.wakeAt.store(seen + static_cast<uint32_t>(call != nullptr ? std::max(call->awaiting, 1) : 1),
                   std::memory_order_seq_cst);
    if (drain(deliver)) {
      h.sleeping.store(0, std::memory_order_relaxed);
      return;
    }
    futexWait(&h.doorbell, seen, until - now);
    h.sleeping.store(0, std::memory_order_relaxed);
    if (drain(deliver)) return;
  }
}

Status ShmTransport::map(const Call&, Event& event) {
  const size_t dataBytes = header(event.from).dataBytes;
  for (int i = 0; i < event.numRegions; ++i) {
    const auto k = static_cast<size_t>(i);
    if (event.bytes[k] == 0) continue;
    if (event.where[k] < 0 || static_cast<uint64_t>(event.where[k]) > dataBytes ||
        event.bytes[k] > dataBytes - static_cast<uint64_t>(event.where[k]))
      return Status(StatusCode::kInternal,
                    fmt::format("region {} ({} bytes at offset {}) lies outside rank {}'s segment", i, event.bytes[k],
                                event.where[k], event.from));
    event.mapped[k] = data(event.from) + event.where[k];
  }
  return okStatus();
}

std::byte* ShmTransport::writeTarget(const Call& call, int region) {
  const int64_t where = call.peers[static_cast<size_t>(call.slotOf(rank_))].where[static_cast<size_t>(region)];
  return data(rank_) + where;
}

void ShmTransport::landed(Call& call) {
  const Event& mine = call.peers[static_cast<size_t>(call.slotOf(rank_))];
  for (int i = 0; i < call.numOwn; ++i) {
    const auto k = static_cast<size_t>(i);
    auto* own = static_cast<std::byte*>(const_cast<void*>(call.own[k].data));
    const std::byte* staged = data(rank_) + mine.where[k];
    if ((mine.writable >> i & 1u) != 0 && call.own[k].bytes > 0 && staged != own)
      std::memcpy(own, staged, call.own[k].bytes);
  }
}

void ShmTransport::finish(Call&) {
  header(rank_).generation.fetch_add(1, std::memory_order_release);
  if (staged_ >= 0) alloc_.release(static_cast<size_t>(staged_));
  staged_ = -1;
}

// ---- Bootstrap ----

class Bootstrap {
 public:
  Bootstrap(const ParsedId& id, int nRanks, int rank, const Options& options)
      : id_(id), nRanks_(nRanks), rank_(rank), options_(options), deadline_(Clock::now() + options.connectTimeout) {}

  Status run(std::unique_ptr<Engine>* out);

 private:
  std::string fn() const { return fmt::format("createShmCommunicator (rank {} of {})", rank_, nRanks_); }
  Status fail(Status s);
  Status createSegment();
  Status joinRendezvous();
  // Waits until `counter` reaches nRanks, a member gave up or died, or the deadline.
  Status waitAll(std::atomic<uint32_t>& counter, uint32_t state, const char* what);
  RendezvousHeader& rv() const { return *reinterpret_cast<RendezvousHeader*>(rendezvous_.data()); }
  Member& member(int r) const { return reinterpret_cast<Member*>(rendezvous_.data() + kMembersOffset)[r]; }

  ParsedId id_;
  const int nRanks_, rank_;
  Options options_;
  const Clock::time_point deadline_;
  std::vector<std::shared_ptr<Mapping>> segments_;
  Mapping rendezvous_;
};

Status Bootstrap::fail(Status s) {
  // Tell the other members (they fail at once), and take every name of this communicator out of /dev/shm.
  if (rendezvous_) {
    int32_t none = -1;
    if (rv().failedBy.compare_exchange_strong(none, rank_)) {
      s.message().copy(rv().failure.data(), rv().failure.size() - 1);
    }
    rv().joined.fetch_add(1u << 24);  // wakes the waiters (the counts are checked below 2^24)
    rv().attached.fetch_add(1u << 24);
    futexWakeAll(&rv().joined);
    futexWakeAll(&rv().attached);
  }
  unlinkName(rendezvousName(id_.token));
  for (int p = 0; p < nRanks_; ++p) unlinkName(segmentName(id_.token, p));
  return Status(s.code(), fmt::format("{}: {}", fn(), s.message()));
}

Status Bootstrap::createSegment() {
  const size_t ringsOffset = kPage;
  const size_t dataOffset = alignUp(ringsOffset + sizeof(Ring) * static_cast<size_t>(nRanks_), kPage);
  size_t dataBytes = alignUp(options_.segmentBytes, kPage);
  // Every member's segment lives in /dev/shm: take at most half of its free space, so that writing the pages
  // later cannot run out of it (which would kill the process with SIGBUS).
  if (struct statvfs fs; ::statvfs("/dev/shm", &fs) == 0) {
    const size_t cap = static_cast<size_t>(fs.f_bavail) * fs.f_frsize / 2 / static_cast<size_t>(nRanks_);
    if (cap < dataBytes) {
      dataBytes = cap / kPage * kPage;
      if (rank_ == 0)
        fmt::print(stderr,
                   "moedist: shared-memory communicator '{}': each rank's segment holds {} MB, not HCCL_BUFFSIZE's {} "
                   "MB: /dev/shm has too little free space for {} ranks\n",
                   options_.name, dataBytes >> 20, options_.segmentBytes >> 20, nRanks_);
    }
  }
  const std::string name = segmentName(id_.token, rank_);
  Mapping m;
  if (Status s = Mapping::create(name, dataOffset + dataBytes, &m); !s.ok()) {
    if (s.code() == StatusCode::kInvalidArgument)  // EEXIST
      return Status(
          StatusCode::kInvalidArgument,
          fmt::format("rank {} of this unique id has joined already (each member passes its own rank)", rank_));
    return s;
  }
  auto* h = reinterpret_cast<SegmentHeader*>(m.data());
  const ProcessId self = selfProcess();
  h->rank = rank_;
  h->size = nRanks_;
  h->pid = self.pid;
  h->startTime = self.startTime;
  h->ringsOffset = ringsOffset;
  h->dataOffset = dataOffset;
  h->dataBytes = dataBytes;
  h->totalBytes = dataOffset + dataBytes;
  h->magic.store(kSegmentMagic, std::memory_order_release);
  segments_.assign(static_cast<size_t>(nRanks_), nullptr);
  segments_[static_cast<size_t>(rank_)] = remember(name, std::move(m));
  return okStatus();
}

Status Bootstrap::joinRendezvous() {
  const std::string name = rendezvousName(id_.token);
  const size_t bytes = rendezvousBytes(nRanks_);
  for (auto pause = std::chrono::microseconds(100);; pause = std::min(pause * 2, std::chrono::microseconds(5000))) {
    Mapping m;
    if (Status s = Mapping::create(name, bytes, &m); s.ok()) {  // the first member here
      auto* h = reinterpret_cast<RendezvousHeader*>(m.data());
      h->nRanks = nRanks_;
      h->failedBy.store(-1);
      h->magic.store(kRendezvousMagic, std::memory_order_release);
      rendezvous_ = std::move(m);
      break;
    }
    int err = 0;
    if (Status s = Mapping::open(name, &m, &err); s.ok()) {
      const auto* h = reinterpret_cast<const RendezvousHeader*>(m.data());
      if (m.size() >= sizeof(RendezvousHeader) && h->magic.load(std::memory_order_acquire) == kRendezvousMagic) {
        rendezvous_ = std::move(m);
        break;
      }
    } else if (err == EACCES) {
      return Status(StatusCode::kInvalidArgument,
                    "the communicator's shared memory belongs to another user (mode 0600): only processes of the "
                    "user that created it may join");
    }
    if (Clock::now() >= deadline_)
      return Status(StatusCode::kTimeout, fmt::format("no member could set up the rendezvous {} within {} ms", name,
                                                      options_.connectTimeout.count()));
    std::this_thread::sleep_for(pause);
  }
  RendezvousHeader& h = rv();
  if (rendezvous_.size() < rendezvousBytes(h.nRanks) || h.nRanks != nRanks_)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("nRanks is {}, but the member that came first gave {}", nRanks_, h.nRanks));
  if (int32_t by = h.failedBy.load(); by >= 0)
    return Status(StatusCode::kInvalidArgument, fmt::format("rank {} gave up joining already", by));
  Member& me = member(rank_);
  const ProcessId self = selfProcess();
  me.pid = self.pid;
  me.startTime = self.startTime;
  uint32_t expected = 0;
  if (!me.state.compare_exchange_strong(expected, 1))
    return Status(StatusCode::kInvalidArgument, fmt::format("rank {} of this unique id has joined already", rank_));
  h.joined.fetch_add(1);
  futexWakeAll(&h.joined);
  return okStatus();
}

Status Bootstrap::waitAll(std::atomic<uint32_t>& counter, uint32_t state, const char* what) {
  RendezvousHeader& h = rv();
  for (;;) {
    const uint32_t seen = counter.load(std::memory_order_acquire);
    if (int32_t by = h.failedBy.load(); by >= 0 && by != rank_) {
      const std::string why(h.failure.data(), strnlen(h.failure.data(), h.failure.size()));
      return Status(StatusCode::kTimeout, fmt::format("rank {} gave up: {}", by, why));
    }
    if (seen == static_cast<uint32_t>(nRanks_)) return okStatus();
    std::vector<int> missing;
    for (int p = 0; p < nRanks_; ++p) {
      const Member& m = member(p);
      if (m.state.load(std::memory_order_acquire) < state) {
        missing.push_back(p);
        continue;
      }
      std::string why;
      if (!processAlive({m.pid, m.startTime}, &why))
        return Status(StatusCode::kTimeout, fmt::format("rank {} died while the communicator was set up ({})", p, why));
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline_)
      return Status(StatusCode::kTimeout,
                    fmt::format("timed out after {} ms (HCCL_CONNECT_TIMEOUT) waiting for rank(s) {} to {}",
                                options_.connectTimeout.count(), joinRanks(missing), what));
    futexWait(&counter, seen, std::min<Clock::duration>(deadline_ - now, kLiveness));
  }
}

Status Bootstrap::run(std::unique_ptr<Engine>* out) {
  if (Status s = createSegment(); !s.ok()) return Status(s.code(), fmt::format("{}: {}", fn(), s.message()));
  if (Status s = joinRendezvous(); !s.ok()) return fail(s);
  if (Status s = waitAll(rv().joined, 1, "join"); !s.ok()) return fail(s);
  std::vector<ProcessId> processes(static_cast<size_t>(nRanks_));
  for (int p = 0; p < nRanks_; ++p) {
    processes[static_cast<size_t>(p)] = {member(p).pid, member(p).startTime};
    if (p == rank_) continue;
    const std::string name = segmentName(id_.token, p);
    std::shared_ptr<Mapping> m = cached(name);
    if (m == nullptr) {
      Mapping fresh;
      int err = 0;
      if (Status s = Mapping::open(name, &fresh, &err); !s.ok())
        return fail(
            Status(StatusCode::kInvalidArgument, fmt::format("cannot map rank {}'s segment: {}", p, s.message())));
      m = remember(name, std::move(fresh));
    }
    const auto* h = reinterpret_cast<const SegmentHeader*>(m->data());
    if (m->size() < kPage || h->magic.load(std::memory_order_acquire) != kSegmentMagic || h->rank != p ||
        h->size != nRanks_ || h->totalBytes != m->size())
      return fail(Status(StatusCode::kInternal, fmt::format("rank {}'s segment is not a valid segment", p)));
    segments_[static_cast<size_t>(p)] = std::move(m);
  }
  member(rank_).state.store(2, std::memory_order_release);
  rv().attached.fetch_add(1);
  futexWakeAll(&rv().attached);
  if (Status s = waitAll(rv().attached, 2, "map the others' segments"); !s.ok()) return fail(s);
  // Everyone has every segment mapped: no name is needed any more. Each member removes its own and the next rank's,
  // so that a member killed right now leaves no name behind either.
  unlinkName(segmentName(id_.token, rank_));
  unlinkName(segmentName(id_.token, (rank_ + 1) % nRanks_));
  if (rank_ <= 1) unlinkName(rendezvousName(id_.token));
  *out = std::make_unique<ProtocolEngine>(
      std::make_unique<ShmTransport>(options_.name, rank_, nRanks_, std::move(segments_), std::move(processes)));
  return okStatus();
}

}  // namespace

Status newUniqueId(std::string* id) {
  if (id == nullptr) return Status(StatusCode::kNullArgument, "getShmUniqueId: id is null");
  HostIdentity self;
  MOEDIST_RETURN_IF_ERROR(hostIdentity(&self));
  std::string token;
  MOEDIST_RETURN_IF_ERROR(randomHex(16, &token));
  *id = fmt::format("{};{};{};{};{};{};{}", kIdPrefix, token, self.bootId, self.shmDev, self.shmIno, self.ipcNs,
                    self.pidNs);
  return okStatus();
}

bool isUniqueId(const std::string& id) {
  ParsedId parsed;
  return parseId(id, &parsed);
}

Status createEngine(const std::string& id, int nRanks, int rank, const Options& options, std::unique_ptr<Engine>* out) {
  const std::string fn = fmt::format("createShmCommunicator (rank {} of {})", rank, nRanks);
  if (out == nullptr) return Status(StatusCode::kNullArgument, fn + ": out is null");
  ParsedId parsed;
  if (!parseId(id, &parsed))
    return Status(
        StatusCode::kInvalidArgument,
        fn + ": the unique id is not one from getShmUniqueId (pass all its bytes from the process that made it)");
  if (nRanks < 1 || nRanks > kMaxRanks)
    return Status(StatusCode::kInvalidValue, fmt::format("{}: nRanks is {}, expected 1..{}", fn, nRanks, kMaxRanks));
  if (rank < 0 || rank >= nRanks)
    return Status(StatusCode::kInvalidValue, fmt::format("{}: rank is {}, expected 0..{}", fn, rank, nRanks - 1));
  HostIdentity self;
  MOEDIST_RETURN_IF_ERROR(hostIdentity(&self));
  if (std::string why = identityMismatch(self, parsed.creator); !why.empty())
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{}: {}. The shared-memory engine joins processes of one host (one container) only; for "
                              "ranks on several hosts use the MPI engine (moedist/mpi.h, under mpirun)",
                              fn, why));
  Bootstrap bootstrap(parsed, nRanks, rank, options);
  return bootstrap.run(out);
}

}  // namespace moedist::comm::shm
