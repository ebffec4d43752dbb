// The MPI engine: MpiTransport, a Transport (comm/protocol.h) that ProtocolEngine drives; mpi_engine.h describes
// the design. The protocol (call matching, arrival, close, abandonment, deadlines) lives in ProtocolEngine; this file
// only moves its events and the regions' bytes.
//
// Messages on the engine's own duplicate of the communicator:
//   kTagEvent    EventMsg + the sender's header (kOpen) or note (kAbandon)
//   kTagRequest  RequestMsg                                 (read of a region that map() could not address)
//   reply tags   the requested bytes, or none when the request cannot be served (then the reader fails)
//   kTagWrite    WriteMsg + its pieces' places               (write into a peer's writable region)
// and on a second duplicate, which nothing probes, the bytes of each write (kTagData), sent as one message straight
// from the writer's pieces (an MPI_Type_create_hindexed datatype) and received straight into the pieces' places.
// progress() drains messages whatever the caller waits for: events are queued for the next poll() (in the order each
// sender sent them), requests for the open call are answered, others refused, and a WriteMsg posts the receive of its
// bytes, which later messages of that writer wait for (so its kFence and kClose come after its writes). Each read uses
// a fresh reply tag, so the answer to a read that timed out never meets a later one.
#include "comm/mpi/mpi_engine.h"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <list>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "comm/checks.h"
#include "comm/first_fit.h"
#include "comm/protocol.h"
#include "util/check.h"

namespace moedist::comm::mpi {

namespace {

constexpr int kTagEvent = 1;
constexpr int kTagWrite = 2;
constexpr int kTagRequest = 3;
constexpr int kTagData = 4;       // on data_
constexpr int kDataReceive = -1;  // Received::tag of the receive of a write's bytes
constexpr int kTagReplyBase = 16;
constexpr size_t kMaxChunk = size_t{1} << 30;  // bytes per reply message (MPI counts are int)
constexpr size_t kStageAlign = 64;

struct EventMsg {  // followed by the header (kOpen) or the note (kAbandon)
  CallId id;
  uint8_t kind = 0;  // EventKind
  uint8_t pad[3] = {};
  int32_t numRegions = 0;
  uint32_t writable = 0;  // Event::writable
  std::array<uint64_t, kMaxRegions> bytes{};
  std::array<int64_t, kMaxRegions> where{};  // offset in the sender's shared window, or -1: read() it
};

struct WriteMsg {  // followed by `pieces` WritePlace
  CallId id;
  int32_t region = 0;
  int32_t pieces = 0;
};

struct WritePlace {
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

struct RequestMsg {
  CallId id;
  int32_t region = 0;
  int32_t replyTag = 0;
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

template <typename T>
std::vector<std::byte> bytesOf(const T& msg, std::span<const std::byte> tail = {}) {
  std::vector<std::byte> out(sizeof(T) + tail.size());
  std::memcpy(out.data(), &msg, sizeof(T));
  if (!tail.empty()) std::memcpy(out.data() + sizeof(T), tail.data(), tail.size());
  return out;
}

// Runs of bytes, run i places[i].bytes long at address at(i), as one committed datatype for use with MPI_BOTTOM (free
// it once the operation that uses it is posted): a write's pieces, sent and received without packing.
template <typename At>
int runsType(std::span<const WritePlace> places, At at, MPI_Datatype* type) {
  std::vector<int> lengths(places.size());
  std::vector<MPI_Aint> addresses(places.size());
  for (size_t i = 0; i < places.size(); ++i) {
    lengths[i] = static_cast<int>(places[i].bytes);
    MPI_Get_address(at(i), &addresses[i]);
  }
  const int rc =
      MPI_Type_create_hindexed(static_cast<int>(places.size()), lengths.data(), addresses.data(), MPI_BYTE, type);
  return rc == MPI_SUCCESS ? MPI_Type_commit(type) : rc;
}

template <typename T>
bool parse(const std::vector<std::byte>& bytes, T* msg) {
  if (bytes.size() < sizeof(T)) return false;
  std::memcpy(msg, bytes.data(), sizeof(T));
  return true;
}

size_t alignUp(size_t bytes) {
  return (bytes + kStageAlign - 1) / kStageAlign * kStageAlign;
}

Status mpiError(const std::string& what, int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(code, text, &len);
  return Status(StatusCode::kInternal, fmt::format("{} failed: {}", what, std::string(text, static_cast<size_t>(len))));
}

// Communicators of destroyed engines. They are not freed until MPI_Finalize: freeing one lets MPI give its context id
// to a later communicator, and messages still in flight to the old one (a peer's notice that it gave up, an answer
// nobody waits for any more) would then arrive in the new one. MPI_Finalize deletes MPI_COMM_SELF's attributes
// first, and the callback below frees them then.
struct Retired {
  std::mutex mu;
  std::vector<MPI_Comm> comms;
  int keyval = MPI_KEYVAL_INVALID;
};

Retired& retired() {
  static Retired* r = new Retired;  // never destroyed: used until MPI_Finalize, after main() may have returned
  return *r;
}

int freeRetired(MPI_Comm, int, void*, void*) {
  Retired& r = retired();
  std::lock_guard<std::mutex> lock(r.mu);
  for (MPI_Comm& c : r.comms) MPI_Comm_free(&c);
  r.comms.clear();
  return MPI_SUCCESS;
}

void retire(MPI_Comm comm) {
  Retired& r = retired();
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.keyval == MPI_KEYVAL_INVALID) {
    MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, freeRetired, &r.keyval, nullptr);
    MPI_Comm_set_attr(MPI_COMM_SELF, r.keyval, nullptr);
  }
  r.comms.push_back(comm);
}

#define MOEDIST_MPI(call)                                                           \
  do {                                                                              \
    if (int mpiRc_ = (call); mpiRc_ != MPI_SUCCESS) return mpiError(#call, mpiRc_); \
  } while (0)

class MpiTransport final : public Transport {
 public:
  MpiTransport(MPI_Comm comm, MPI_Comm data, std::string name) : comm_(comm), data_(data), name_(std::move(name)) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    windows_.assign(static_cast<size_t>(size_), nullptr);
    windowSizes_.assign(static_cast<size_t>(size_), 0);
    int* ub = nullptr;
    int flag = 0;
    MPI_Comm_get_attr(comm_, MPI_TAG_UB, &ub, &flag);
    replyTags_ = std::min(flag ? *ub - kTagReplyBase : 32767 - kTagReplyBase, 1 << 20);
  }
  ~MpiTransport() override;
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  // The shared window of this host's ranks (collective over comm_). windowBytes 0: none.
  Status attachWindow(size_t windowBytes);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  const char* kind() const override { return "mpi"; }
  std::string prefix() const override { return fmt::format("MPI communicator '{}' rank {}: ", name_, rank_); }

  Status post(Call& call, Event& event, Clock::time_point deadline) override;
  void poll(const Call* call, Clock::time_point until, const std::function<void(Event&&)>& deliver) override;
  bool maps(int peer) const override { return peer >= 0 && peer < size_ && windowOf(peer) != nullptr; }
  Status map(const Call& call, Event& event) override;
  Status read(const Call& call, const Event& peer, int region, size_t offset, void* dst, size_t bytes) override;
  Status write(const Call& call, const Event& peer, int region, std::span<const WritePiece> pieces) override;
  bool busy() const override;
  void finish(Call& call) override;
  void* allocate(size_t bytes) override;
  bool release(void* ptr) override;

 private:
  struct Send {
    MPI_Request request = MPI_REQUEST_NULL;
    std::vector<std::byte> buffer;  // empty when the data is a caller's region (a reply)
  };
  struct Received {
    int source = -1;
    int tag = 0;
    std::vector<std::byte> bytes;
  };
  struct Incoming {
    MPI_Request request = MPI_REQUEST_NULL;
    Received message;
  };

  const std::byte* windowOf(int rank) const { return windows_[static_cast<size_t>(rank)]; }
  // When a participant on this host will read call.own: publishes the regions in this rank's window (in place, or
  // copied into a block of it) and sets event.where.
  void stage(const Call& call, Event& event);
  void send(int dest, int tag, std::vector<std::byte> buffer);
  // Completes sends, receives messages (events into queue_), answers read requests for `call` and posts the
  // receives of writes into it; never blocks. Returns whether a reply send completed.
  bool progress(const Call* call);
  // Handles a received message; a write's receive goes into incoming_ at `next`, ahead of its writer's later
  // messages. Returns where progress() goes on.
  std::list<Incoming>::iterator handle(Received message, const Call* call, std::list<Incoming>::iterator next);
  // Posts the receive of a write's bytes: into `call`'s writable region when the write is for it and fits, else
  // into a buffer that is thrown away (the call was left).
  std::list<Incoming>::iterator receiveWrite(int source, const std::vector<std::byte>& message, const Call* call,
                                             std::list<Incoming>::iterator next);
  void serve(int source, const RequestMsg& request, const Call* call);
  // A queued kAbandon of `call`, or nullptr.
  const Event* abandonOf(const Call& call) const;
  Status abandoned(const Call& call, Clock::time_point start, const std::string& note) const;
  Status readChunk(const Call& call, int peer, RequestMsg request, void* dst);

  MPI_Comm comm_ = MPI_COMM_NULL;  // owned duplicate
  MPI_Comm data_ = MPI_COMM_NULL;  // owned duplicate: the bytes of writes
  std::string name_;
  int rank_ = 0, size_ = 0;
  int replyTags_ = 0;
  uint32_t nextReply_ = 0;
  MPI_Comm node_ = MPI_COMM_NULL;
  MPI_Win win_ = MPI_WIN_NULL;
  std::byte* window_ = nullptr;
  size_t windowBytes_ = 0;
  FirstFit alloc_;        // over the window from allocBase_: allocate()'s memory and the staging of calls
  size_t allocBase_ = 0;  // offset of alloc_'s 0 in the window
  int64_t staged_ = -1;   // the open call's staging block, an offset of alloc_
  bool warnedWindow_ = false;
  std::vector<std::byte*> windows_;  // by rank: its window as mapped here (same host), or nullptr
  std::vector<size_t> windowSizes_;  // by rank: the size of that window

  std::list<Send> sends_;
  std::list<Incoming> incoming_;  // in the order MPI matched them
  std::vector<Event> queue_;      // received events not yet handed to poll()'s deliver
};

MpiTransport::~MpiTransport() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;  // nothing can be released any more
  // Sends nobody will receive (peers that gave up) are cancelled; their buffers must outlive MPI's bookkeeping.
  for (Send& s : sends_) {
    int done = 0;
    MPI_Test(&s.request, &done, MPI_STATUS_IGNORE);
    if (!done) {
      MPI_Cancel(&s.request);
      MPI_Request_free(&s.request);
      new std::vector<std::byte>(std::move(s.buffer));  // deliberately leaked
    }
  }
  for (Incoming& in : incoming_) {
    MPI_Cancel(&in.request);
    MPI_Request_free(&in.request);
    new Received(std::move(in.message));  // deliberately leaked, as above
  }
  if (win_ != MPI_WIN_NULL) {
    MPI_Win_unlock_all(win_);
    MPI_Win_free(&win_);  // collective over this host's ranks
  }
  if (node_ != MPI_COMM_NULL) MPI_Comm_free(&node_);  // carries collectives only, never a stray message
  retire(comm_);
  retire(data_);
}

Status MpiTransport::attachWindow(size_t windowBytes) {
  if (windowBytes == 0) return okStatus();
  MOEDIST_MPI(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_));
  // The windows of all ranks of this host live in /dev/shm: take at most half of its free space, so that a large
  // HCCL_BUFFSIZE cannot make the allocation fail on some ranks only (which would leave the others waiting in it).
  int nodeRank = 0, nodeSize = 1;
  MPI_Comm_rank(node_, &nodeRank);
  MPI_Comm_size(node_, &nodeSize);
  unsigned long long mine = windowBytes, agreed = 0;
  if (struct statvfs fs; ::statvfs("/dev/shm", &fs) == 0)
    mine = std::min<unsigned long long>(mine, fs.f_bavail * fs.f_frsize / 2 / static_cast<unsigned>(nodeSize));
  mine &= ~((1ull << 20) - 1);  // whole MB
  MOEDIST_MPI(MPI_Allreduce(&mine, &agreed, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, node_));
  if (agreed < windowBytes && nodeRank == 0)
    fmt::print(stderr,
               "moedist: {}the shared-memory window is {} MB per rank, not HCCL_BUFFSIZE's {} MB: /dev/shm has too "
               "little free space for {} ranks; calls that publish more go through messages\n",
               prefix(), agreed >> 20, windowBytes >> 20, nodeSize);
  if (agreed == 0) {  // no window at all: every peer through messages
    MPI_Comm_free(&node_);
    return okStatus();
  }
  windowBytes = agreed;
  MPI_Info info;
  MOEDIST_MPI(MPI_Info_create(&info));
  MPI_Info_set(info, "alloc_shared_noncontig", "true");
  void* base = nullptr;
  const int rc = MPI_Win_allocate_shared(static_cast<MPI_Aint>(windowBytes), 1, info, node_, &base, &win_);
  MPI_Info_free(&info);
  if (rc != MPI_SUCCESS) return mpiError("MPI_Win_allocate_shared", rc);
  MOEDIST_MPI(MPI_Win_lock_all(MPI_MODE_NOCHECK, win_));
  window_ = static_cast<std::byte*>(base);
  windowBytes_ = windowBytes;
  // The allocator hands out offsets from the first 64-byte boundary of the window (MPI aligns it less).
  allocBase_ = alignUp(reinterpret_cast<uintptr_t>(window_)) - reinterpret_cast<uintptr_t>(window_);
  alloc_.reset(windowBytes > allocBase_ ? windowBytes - allocBase_ : 0);
  // Where each rank of this host has its window in this process.
  MPI_Group nodeGroup, group;
  MPI_Comm_group(node_, &nodeGroup);
  MPI_Comm_group(comm_, &group);
  std::vector<int> nodeRanks(static_cast<size_t>(nodeSize)), ranks(static_cast<size_t>(nodeSize));
  for (int i = 0; i < nodeSize; ++i) nodeRanks[static_cast<size_t>(i)] = i;
  MPI_Group_translate_ranks(nodeGroup, nodeSize, nodeRanks.data(), group, ranks.data());
  MPI_Group_free(&nodeGroup);
  MPI_Group_free(&group);
  for (int i = 0; i < nodeSize; ++i) {
    MPI_Aint bytes = 0;
    int unit = 0;
    void* peerBase = nullptr;
    MOEDIST_MPI(MPI_Win_shared_query(win_, i, &bytes, &unit, &peerBase));
    const auto r = static_cast<size_t>(ranks[static_cast<size_t>(i)]);
    windows_[r] = static_cast<std::byte*>(peerBase);
    windowSizes_[r] = static_cast<size_t>(bytes);
  }
  return okStatus();
}

void MpiTransport::send(int dest, int tag, std::vector<std::byte> buffer) {
  Send& s = sends_.emplace_back();
  s.buffer = std::move(buffer);
  MPI_Isend(s.buffer.data(), static_cast<int>(s.buffer.size()), MPI_BYTE, dest, tag, comm_, &s.request);
}

void MpiTransport::stage(const Call& call, Event& event) {
  event.where.fill(-1);
  const bool hostPeers = std::any_of(call.participants.begin(), call.participants.end(),
                                     [&](int p) { return p != rank_ && windowOf(p) != nullptr; });
  if (!hostPeers) return;
  // A region from allocate() lies in the window already and is published where it is; the others are copied into
  // one block of the window.
  auto inPlace = [&](const Region& r) { return offsetWithin(window_, windowBytes_, r.data, r.bytes); };
  size_t need = 0;
  // Writable regions are never staged: peers write into them through messages, straight into the caller's memory.
  for (int i = 0; i < call.numOwn; ++i) {
    const Region& r = call.own[static_cast<size_t>(i)];
    if (r.bytes > 0 && !r.writable && inPlace(r) < 0) need += alignUp(r.bytes);
  }
  if (need > 0) staged_ = alloc_.allocate(need);
  if (need > 0 && staged_ < 0 && !warnedWindow_) {  // correct, but slow: say so once
    warnedWindow_ = true;
    fmt::print(stderr,
               "moedist: {}a call publishes {} bytes of memory outside the shared-memory window, more than the {} "
               "bytes free in one piece of the window (HCCL_BUFFSIZE MB: {} bytes, less what allocate() gave out); "
               "peers on this host read them through messages, which is slower. Raise HCCL_BUFFSIZE.\n",
               prefix(), need, alloc_.largestFree(), windowBytes_);
  }
  size_t at = staged_ < 0 ? 0 : allocBase_ + static_cast<size_t>(staged_);
  for (int i = 0; i < call.numOwn; ++i) {
    const Region& r = call.own[static_cast<size_t>(i)];
    int64_t& where = event.where[static_cast<size_t>(i)];
    if (r.writable) {
      where = -1;
    } else if (r.bytes == 0) {
      where = 0;
    } else if (const int64_t offset = inPlace(r); offset >= 0) {
      where = offset;
    } else if (staged_ >= 0) {
      std::memcpy(window_ + at, r.data, r.bytes);
      where = static_cast<int64_t>(at);
      at += alignUp(r.bytes);
    }
  }
  MPI_Win_sync(win_);  // the copies and the caller's writes to window memory are visible before the event
}

void MpiTransport::finish(Call& call) {
  (void)call;
  // A call left before every write into it landed (it was abandoned): its receives must not write into the caller's
  // memory after close() returns. A receive MPI has not matched yet is cancelled; one it has matched completes.
  for (auto it = incoming_.begin(); it != incoming_.end();) {
    if (it->message.tag != kDataReceive || !it->message.bytes.empty()) {
      ++it;
      continue;
    }
    int done = 0;
    MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
    if (!done) {
      MPI_Cancel(&it->request);
      MPI_Wait(&it->request, MPI_STATUS_IGNORE);
    }
    it = incoming_.erase(it);
  }
  if (staged_ >= 0) alloc_.release(static_cast<size_t>(staged_));
  staged_ = -1;
}

void* MpiTransport::allocate(size_t bytes) {
  const int64_t at = window_ == nullptr ? -1 : alloc_.allocate(bytes);
  return at < 0 ? nullptr : window_ + allocBase_ + at;
}

bool MpiTransport::release(void* ptr) {
  const int64_t at = window_ == nullptr ? -1 : offsetWithin(window_ + allocBase_, windowBytes_ - allocBase_, ptr, 1);
  return at >= 0 && alloc_.release(static_cast<size_t>(at));
}

Status MpiTransport::post(Call& call, Event& event, Clock::time_point deadline) {
  (void)deadline;  // sends never block
  EventMsg msg;
  msg.id = event.id;
  msg.kind = static_cast<uint8_t>(event.kind);
  std::span<const std::byte> tail;
  if (event.kind == EventKind::kOpen) {
    stage(call, event);
    msg.numRegions = event.numRegions;
    msg.writable = event.writable;
    msg.bytes = event.bytes;
    msg.where = event.where;
    if (event.header) tail = {event.header->data(), event.header->size()};
  } else if (event.kind == EventKind::kAbandon) {
    tail = {reinterpret_cast<const std::byte*>(event.note.data()), event.note.size()};
  }
  const auto wire = bytesOf(msg, tail);
  for (int p : call.participants)
    if (p != rank_) send(p, kTagEvent, wire);
  return okStatus();
}

bool MpiTransport::progress(const Call* call) {
  bool replied = false;
  for (auto it = sends_.begin(); it != sends_.end();) {
    int done = 0;
    MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
    if (done && it->buffer.empty()) replied = true;
    it = done ? sends_.erase(it) : std::next(it);
  }
  // New messages; posted reply receives take theirs before they can be seen here. An unsuccessful MPI_Improbe may
  // have pulled in more messages as it progressed (Open MPI progresses after it looks), so two misses end the loop:
  // then a peer's kClose and the kAbandon it sent right after are delivered together.
  for (int misses = 0; misses < 2;) {
    int found = 0;
    MPI_Message handle;
    MPI_Status status;
    MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &found, &handle, &status);
    if (!found) {
      ++misses;
      continue;
    }
    misses = 0;
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    Incoming& in = incoming_.emplace_back();
    in.message.source = status.MPI_SOURCE;
    in.message.tag = status.MPI_TAG;
    in.message.bytes.resize(static_cast<size_t>(count));
    MPI_Imrecv(in.message.bytes.data(), count, MPI_BYTE, &handle, &in.request);
  }
  // Completed receives are handled in the order each sender sent them: one behind an unfinished (large) message of
  // the same sender waits, so that a peer's kOpen is never overtaken by its kClose.
  std::set<int> waiting;
  for (auto it = incoming_.begin(); it != incoming_.end();) {
    int done = 0;
    if (!waiting.contains(it->message.source)) MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
    if (!done) {
      waiting.insert(it->message.source);
      ++it;
      continue;
    }
    Received message = std::move(it->message);
    it = incoming_.erase(it);
    it = handle(std::move(message), call, it);
  }
  return replied;
}

std::list<MpiTransport::Incoming>::iterator MpiTransport::handle(Received message, const Call* call,
                                                                 std::list<Incoming>::iterator next) {
  if (message.tag >= kTagReplyBase || message.tag == kDataReceive) return next;  // a late answer; a write landed
  if (message.tag == kTagRequest) {
    RequestMsg request;
    if (parse(message.bytes, &request)) serve(message.source, request, call);
    return next;
  }
  if (message.tag == kTagWrite) return receiveWrite(message.source, message.bytes, call, next);
  EventMsg msg;
  if (message.tag != kTagEvent || !parse(message.bytes, &msg)) return next;
  if (msg.kind < static_cast<uint8_t>(EventKind::kOpen) || msg.kind > static_cast<uint8_t>(EventKind::kFence) ||
      msg.numRegions < 0 || msg.numRegions > kMaxRegions)
    return next;  // not from this engine
  Event& event = queue_.emplace_back();
  event.kind = static_cast<EventKind>(msg.kind);
  event.from = message.source;
  event.id = msg.id;
  const auto tail = message.bytes.begin() + sizeof(EventMsg);
  if (event.kind == EventKind::kOpen) {
    event.header = std::make_shared<const std::vector<std::byte>>(tail, message.bytes.end());
    event.numRegions = msg.numRegions;
    event.writable = msg.writable;
    event.bytes = msg.bytes;
    event.where = msg.where;
  } else if (event.kind == EventKind::kAbandon) {
    event.note.assign(reinterpret_cast<const char*>(message.bytes.data()) + sizeof(EventMsg),
                      message.bytes.size() - sizeof(EventMsg));
  }
  return next;
}

std::list<MpiTransport::Incoming>::iterator MpiTransport::receiveWrite(int source,
                                                                       const std::vector<std::byte>& message,
                                                                       const Call* call,
                                                                       std::list<Incoming>::iterator next) {
  WriteMsg msg;
  if (!parse(message, &msg) || msg.pieces < 0 ||
      (message.size() - sizeof(WriteMsg)) / sizeof(WritePlace) != static_cast<size_t>(msg.pieces))
    return next;  // not from this engine
  std::vector<WritePlace> places(static_cast<size_t>(msg.pieces));
  if (!places.empty())
    std::memcpy(places.data(), message.data() + sizeof(WriteMsg), places.size() * sizeof(WritePlace));
  uint64_t total = 0;
  for (const WritePlace& p : places) total += p.bytes;
  // Into the region when the write belongs to the open call and fits it (the writer checked it against the size
  // this rank published); else into a buffer thrown away, so that the writer's bytes never wait in MPI for ever.
  const Region* region = nullptr;
  if (call != nullptr && call->id == msg.id && call->slotOf(source) >= 0 && msg.region >= 0 &&
      msg.region < call->numOwn && call->own[static_cast<size_t>(msg.region)].writable) {
    region = &call->own[static_cast<size_t>(msg.region)];
    for (const WritePlace& p : places)
      if (p.offset > region->bytes || p.bytes > region->bytes - p.offset) region = nullptr;
  }
  Incoming& in = *incoming_.emplace(next);
  in.message.source = source;
  in.message.tag = kDataReceive;
  if (region == nullptr) {
    in.message.bytes.resize(total);
    MPI_Irecv(in.message.bytes.data(), static_cast<int>(total), MPI_BYTE, source, kTagData, data_, &in.request);
    return std::prev(next);
  }
  auto* base = static_cast<std::byte*>(const_cast<void*>(region->data));  // writable
  MPI_Datatype type = MPI_DATATYPE_NULL;
  runsType(
      places, [&](size_t i) { return base + places[i].offset; }, &type);
  MPI_Irecv(MPI_BOTTOM, 1, type, source, kTagData, data_, &in.request);
  MPI_Type_free(&type);  // freed when the receive completes
  return std::prev(next);
}

void MpiTransport::serve(int source, const RequestMsg& request, const Call* call) {
  const std::byte* data = nullptr;
  uint64_t bytes = 0;
  if (call != nullptr && call->id == request.id && call->slotOf(source) >= 0 && request.region >= 0 &&
      request.region < call->numOwn) {
    const Region& r = call->own[static_cast<size_t>(request.region)];
    if (request.offset <= r.bytes && request.bytes <= r.bytes - request.offset && request.bytes <= kMaxChunk) {
      data = static_cast<const std::byte*>(r.data) + request.offset;
      bytes = request.bytes;
    }
  }
  // A refused request (a call this rank has left) is answered with no bytes, so the reader fails at once.
  Send& s = sends_.emplace_back();
  MPI_Isend(data, static_cast<int>(bytes), MPI_BYTE, source, request.replyTag, comm_, &s.request);
}

void MpiTransport::poll(const Call* call, Clock::time_point until, const std::function<void(Event&&)>& deliver) {
  // Spin briefly, then sleep a little between polls: ranks are often oversubscribed (more processes than cores).
  auto pause = std::chrono::microseconds(0);
  for (;;) {
    // A completed reply may be what close() waits for (busy()), so it ends the poll too.
    const bool replied = progress(call);
    if (!queue_.empty()) {
      std::vector<Event> events;
      events.swap(queue_);  // deliver() may make this transport queue more
      for (Event& e : events) deliver(std::move(e));
      return;
    }
    if (replied || Clock::now() >= until) return;
    if (pause.count() == 0) {
      std::this_thread::yield();
      pause = std::chrono::microseconds(1);
    } else {
      std::this_thread::sleep_for(std::min<Clock::duration>(pause, until - Clock::now()));
      pause = std::min(pause * 2, std::chrono::microseconds(100));
    }
  }
}

Status MpiTransport::map(const Call& call, Event& event) {
  event.mapped.fill(nullptr);
  if (event.from == rank_) {
    for (int i = 0; i < call.numOwn; ++i)
      event.mapped[static_cast<size_t>(i)] = static_cast<const std::byte*>(call.own[static_cast<size_t>(i)].data);
    return okStatus();
  }
  if (event.from < 0 || event.from >= size_ || windowOf(event.from) == nullptr) return okStatus();
  const size_t windowSize = windowSizes_[static_cast<size_t>(event.from)];
  bool synced = false;
  for (int i = 0; i < event.numRegions; ++i) {
    const auto k = static_cast<size_t>(i);
    if (event.where[k] < 0) continue;  // not staged: read() it
    const auto at = static_cast<uint64_t>(event.where[k]);
    if (at > windowSize || event.bytes[k] > windowSize - at)
      return Status(StatusCode::kInternal,
                    fmt::format("{}rank {} announced region {} at [{}, {}) of its shared window, which has {} bytes "
                                "({})",
                                prefix(), event.from, i, at, at + event.bytes[k], windowSize,
                                describeCall(call.id.seq, call.participants, size_)));
    if (!synced) {
      MPI_Win_sync(win_);  // see the sender's staging copies, made before it sent this event
      synced = true;
    }
    event.mapped[k] = windowOf(event.from) + at;
  }
  return okStatus();
}

Status MpiTransport::write(const Call& call, const Event& peer, int region, std::span<const WritePiece> pieces) {
  // One message per run of pieces of at most kMaxChunk bytes (MPI counts are int), each piece at most that long.
  std::vector<WritePlace> places;
  std::vector<const std::byte*> from;  // each place's source
  size_t bytes = 0;
  auto flush = [&]() -> Status {
    if (places.empty()) return okStatus();
    WriteMsg msg;
    msg.id = call.id;
    msg.region = region;
    msg.pieces = static_cast<int32_t>(places.size());
    send(peer.from, kTagWrite,
         bytesOf(msg, {reinterpret_cast<const std::byte*>(places.data()), places.size() * sizeof(WritePlace)}));
    MPI_Datatype type = MPI_DATATYPE_NULL;
    MOEDIST_MPI(runsType(
        places, [&](size_t i) { return from[i]; }, &type));
    Send& s = sends_.emplace_back();  // no buffer: busy() until sent, as the sources are the caller's
    const int rc = MPI_Isend(MPI_BOTTOM, 1, type, peer.from, kTagData, data_, &s.request);
    MPI_Type_free(&type);
    if (rc != MPI_SUCCESS) return mpiError("MPI_Isend", rc);
    places.clear();
    from.clear();
    bytes = 0;
    return okStatus();
  };
  for (const WritePiece& w : pieces) {
    for (size_t done = 0; done < w.bytes;) {
      if (bytes == kMaxChunk || places.size() == (size_t{1} << 16)) MOEDIST_RETURN_IF_ERROR(flush());
      const size_t n = std::min(w.bytes - done, kMaxChunk - bytes);
      places.push_back({w.offset + done, n});
      from.push_back(static_cast<const std::byte*>(w.src) + done);
      bytes += n;
      done += n;
    }
  }
  return flush();
}

bool MpiTransport::busy() const {
  return std::any_of(sends_.begin(), sends_.end(), [](const Send& s) { return s.buffer.empty(); });
}

const Event* MpiTransport::abandonOf(const Call& call) const {
  for (const Event& e : queue_)
    if (e.kind == EventKind::kAbandon && e.id == call.id) return &e;
  return nullptr;
}

Status MpiTransport::abandoned(const Call& call, Clock::time_point start, const std::string& note) const {
  return Status(StatusCode::kTimeout,
                fmt::format("{}the call ({}) failed after {} ms because {}", prefix(),
                            describeCall(call.id.seq, call.participants, size_), msSince(start), note));
}

Status MpiTransport::read(const Call& call, const Event& peer, int region, size_t offset, void* dst, size_t bytes) {
  if (bytes == 0) return okStatus();
  if (peer.from == rank_) {  // never asked of a mapping transport, but cheap
    std::memcpy(dst, static_cast<const std::byte*>(call.own[static_cast<size_t>(region)].data) + offset, bytes);
    return okStatus();
  }
  for (size_t done = 0; done < bytes; done += kMaxChunk) {
    RequestMsg request;
    request.id = call.id;
    request.region = region;
    request.offset = offset + done;
    request.bytes = std::min(kMaxChunk, bytes - done);
    MOEDIST_RETURN_IF_ERROR(readChunk(call, peer.from, request, static_cast<std::byte*>(dst) + done));
  }
  return okStatus();
}

// One request for up to kMaxChunk bytes and its answer, received straight into dst. Events that arrive meanwhile are
// kept for the next poll(); a kAbandon of the call ends the wait at once.
Status MpiTransport::readChunk(const Call& call, int peer, RequestMsg request, void* dst) {
  const Clock::time_point start = Clock::now();
  if (call.abandonedBy >= 0) return abandoned(call, start, call.abandonNote);
  if (const Event* gaveUp = abandonOf(call)) return abandoned(call, start, gaveUp->note);
  request.replyTag = kTagReplyBase + static_cast<int>(nextReply_++ % static_cast<uint32_t>(replyTags_));
  MPI_Request recv = MPI_REQUEST_NULL;
  MOEDIST_MPI(MPI_Irecv(dst, static_cast<int>(request.bytes), MPI_BYTE, peer, request.replyTag, comm_, &recv));
  send(peer, kTagRequest, bytesOf(request));
  const Clock::time_point deadline = start + call.timeout;
  MPI_Status status{};
  int done = 0;
  const Event* gaveUp = nullptr;
  auto pause = std::chrono::microseconds(0);
  for (;;) {
    progress(&call);
    MPI_Test(&recv, &done, &status);
    if (done) break;
    if ((gaveUp = abandonOf(call)) != nullptr || Clock::now() >= deadline) break;
    if (pause.count() == 0) {
      std::this_thread::yield();
      pause = std::chrono::microseconds(1);
    } else {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(100));
    }
  }
  if (!done) {
    MPI_Cancel(&recv);
    MPI_Wait(&recv, MPI_STATUS_IGNORE);  // a cancelled receive completes locally, at once
    if (gaveUp != nullptr) return abandoned(call, start, gaveUp->note);
    return Status(StatusCode::kTimeout, fmt::format("{}timed out after {} ms waiting for rank {} to answer a read "
                                                    "of {} bytes ({})",
                                                    prefix(), msSince(start), peer, request.bytes,
                                                    describeCall(call.id.seq, call.participants, size_)));
  }
  int count = 0;
  MPI_Get_count(&status, MPI_BYTE, &count);
  if (static_cast<uint64_t>(count) != request.bytes)
    return Status(StatusCode::kTimeout,
                  fmt::format("{}rank {} refused a read of {} bytes: it has left the call ({})", prefix(), peer,
                              request.bytes, describeCall(call.id.seq, call.participants, size_)));
  return okStatus();
}

}  // namespace

Status createEngine(MPI_Comm comm, const std::string& name, bool sharedMemory, size_t windowBytes,
                    std::unique_ptr<Engine>* out) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized)
    return Status(StatusCode::kInvalidArgument, "createMpiCommunicator: MPI is not initialized (call MPI_Init_thread)");
  MPI_Comm dup = MPI_COMM_NULL, data = MPI_COMM_NULL;
  MOEDIST_MPI(MPI_Comm_dup(comm, &dup));
  MOEDIST_MPI(MPI_Comm_dup(comm, &data));
  MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(data, MPI_ERRORS_RETURN);
  auto transport = std::make_unique<MpiTransport>(dup, data, name);
  MOEDIST_RETURN_IF_ERROR(transport->attachWindow(sharedMemory ? windowBytes : 0));
  *out = std::make_unique<ProtocolEngine>(std::move(transport));
  return okStatus();
}

}  // namespace moedist::comm::mpi
