// The MPI engine; mpi_engine.h describes the protocol.
//
// Messages on the engine's own duplicate of the communicator:
//   kTagHeader   HeaderMsg + the caller's header bytes      (open)
//   kTagClose    CloseMsg                                   (close, or "abandoned" from a rank that gave up)
//   kTagRequest  RequestMsg                                 (read from a peer that is not mapped)
//   reply tags   the requested bytes, or none when the request cannot be served (then the reader fails)
// Control messages are drained by progress() whatever the caller waits for: a message of the open call updates its
// state, one of an earlier call of this rank is dropped, and one of a call this rank has not opened yet is kept
// until it does. Each read uses a fresh reply tag, so the answer to a read that timed out never meets a later one.
#include "comm/mpi/mpi_engine.h"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "comm/checks.h"
#include "util/check.h"

namespace moedist::comm::mpi {

namespace {

constexpr int kTagHeader = 1;
constexpr int kTagClose = 2;
constexpr int kTagRequest = 3;
constexpr int kTagReplyBase = 16;
constexpr size_t kMaxChunk = size_t{1} << 30;  // bytes per reply message (MPI counts are int)
constexpr size_t kStageAlign = 64;

// Which call a message belongs to: (participant list, calls this rank made before with that list).
struct CallId {
  uint64_t set = 0;  // hash of the participant list
  uint64_t seq = 0;
  bool operator==(const CallId&) const = default;
};

struct HeaderMsg {  // followed by the caller's header
  CallId id;
  int32_t numRegions = 0;
  int32_t pad = 0;
  std::array<uint64_t, kMaxRegions> bytes{};
  std::array<int64_t, kMaxRegions> staged{};  // offset in the sender's shared window, or -1: read() it
};

struct CloseMsg {
  CallId id;
  int32_t abandoned = 0;
  std::array<char, 244> note{};  // why it was abandoned ("rank 3 timed out waiting for rank(s) 5 to open it")
};

struct RequestMsg {
  CallId id;
  int32_t region = 0;
  int32_t replyTag = 0;
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

uint64_t hashRanks(std::span<const int> ranks) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the list and its length
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

template <typename T>
std::vector<std::byte> bytesOf(const T& msg, std::span<const std::byte> tail = {}) {
  std::vector<std::byte> out(sizeof(T) + tail.size());
  std::memcpy(out.data(), &msg, sizeof(T));
  if (!tail.empty()) std::memcpy(out.data() + sizeof(T), tail.data(), tail.size());
  return out;
}

template <typename T>
bool parse(const std::vector<std::byte>& bytes, T* msg) {
  if (bytes.size() < sizeof(T)) return false;
  std::memcpy(msg, bytes.data(), sizeof(T));
  return true;
}

long long msSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
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

class MpiEngine final : public Engine {
 public:
  MpiEngine(MPI_Comm comm, std::string name) : comm_(comm), name_(std::move(name)) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    windows_.assign(static_cast<size_t>(size_), nullptr);
    int* ub = nullptr;
    int flag = 0;
    MPI_Comm_get_attr(comm_, MPI_TAG_UB, &ub, &flag);
    replyTags_ = std::min(flag ? *ub - kTagReplyBase : 32767 - kTagReplyBase, 1 << 20);
  }
  ~MpiEngine() override;
  MpiEngine(const MpiEngine&) = delete;
  MpiEngine& operator=(const MpiEngine&) = delete;

  // The shared window of this host's ranks (collective over comm_). windowBytes 0: none.
  Status attachWindow(size_t windowBytes);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  const char* kind() const override { return "mpi"; }

  Status open(std::span<const int> participants, std::span<const std::byte> header, std::span<const Region> regions,
              Clock::time_point deadline) override;
  std::span<const std::byte> peerHeader(int peer) const override;
  bool mapped() const override { return call_ && call_->mapped; }
  const std::byte* peerRegion(int peer, int region) const override;
  size_t peerRegionBytes(int peer, int region) const override;
  Status read(int peer, int region, size_t offset, void* dst, size_t bytes) override;
  Status close(Clock::time_point deadline) override;

 private:
  struct Peer {
    int rank = -1;
    bool arrived = false;
    bool closed = false;
    std::vector<std::byte> header;
    HeaderMsg info;
  };
  struct Call {
    std::vector<int> participants;
    CallId id;
    std::vector<Peer> peers;  // in participant order
    std::array<Region, kMaxRegions> own{};
    Clock::duration timeout{};
    bool mapped = false;
    std::string abandonNote;  // set when a peer gave up on the call
    int abandonedBy = -1;
  };
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

  std::string prefix() const { return fmt::format("MPI communicator '{}' rank {}: ", name_, rank_); }
  std::string what() const { return describeCall(call_->id.seq, call_->participants, size_); }
  Peer* peerOf(int rank);
  const Peer* peerOf(int rank) const { return const_cast<MpiEngine*>(this)->peerOf(rank); }
  const std::byte* windowOf(int rank) const { return windows_[static_cast<size_t>(rank)]; }

  void send(int dest, int tag, std::vector<std::byte> buffer);
  void sendClose(bool abandoned, const std::string& note);
  // Completes sends, receives control messages and answers read requests; never blocks.
  void progress();
  void handle(Received message);
  void serve(int source, const RequestMsg& request);
  // Calls progress() until done() or the deadline; false at the deadline.
  template <typename Done>
  bool pollUntil(Clock::time_point deadline, Done done);
  std::vector<int> missing(bool opening) const;
  // The kTimeout of a call that a peer gave up on (its notice says why).
  Status abandoned(Clock::time_point start) const {
    return Status(StatusCode::kTimeout, fmt::format("{}the call ({}) failed after {} ms because {}", prefix(), what(),
                                                    msSince(start), call_->abandonNote));
  }
  Status readChunk(int peer, RequestMsg request, void* dst);

  MPI_Comm comm_ = MPI_COMM_NULL;  // owned duplicate
  std::string name_;
  int rank_ = 0, size_ = 0;
  int replyTags_ = 0;
  uint32_t nextReply_ = 0;
  MPI_Comm node_ = MPI_COMM_NULL;
  MPI_Win win_ = MPI_WIN_NULL;
  std::byte* window_ = nullptr;
  size_t windowBytes_ = 0;
  bool warnedWindow_ = false;
  std::vector<std::byte*> windows_;  // by rank: its window as mapped here (same host), or nullptr

  std::map<uint64_t, uint64_t> nextSeq_;  // participant-list hash -> calls made with that list
  std::optional<Call> call_;
  std::list<Send> sends_;
  std::list<Incoming> incoming_;
  std::vector<Received> early_;  // messages of calls this rank has not opened yet
};

MpiEngine::~MpiEngine() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;  // nothing can be released any more
  if (call_) sendClose(true, fmt::format("rank {} was destroyed with the call open", rank_));
  call_.reset();
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
}

Status MpiEngine::attachWindow(size_t windowBytes) {
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
    windows_[static_cast<size_t>(ranks[static_cast<size_t>(i)])] = static_cast<std::byte*>(peerBase);
  }
  return okStatus();
}

MpiEngine::Peer* MpiEngine::peerOf(int rank) {
  if (!call_) return nullptr;
  const auto& p = call_->participants;
  auto it = std::lower_bound(p.begin(), p.end(), rank);
  if (it == p.end() || *it != rank) return nullptr;
  return &call_->peers[static_cast<size_t>(it - p.begin())];
}

void MpiEngine::send(int dest, int tag, std::vector<std::byte> buffer) {
  Send& s = sends_.emplace_back();
  s.buffer = std::move(buffer);
  MPI_Isend(s.buffer.data(), static_cast<int>(s.buffer.size()), MPI_BYTE, dest, tag, comm_, &s.request);
}

void MpiEngine::sendClose(bool abandoned, const std::string& note) {
  CloseMsg msg;
  msg.id = call_->id;
  msg.abandoned = abandoned ? 1 : 0;
  note.copy(msg.note.data(), msg.note.size() - 1);
  for (int p : call_->participants)
    if (p != rank_) send(p, kTagClose, bytesOf(msg));
}

void MpiEngine::progress() {
  for (auto it = sends_.begin(); it != sends_.end();) {
    int done = 0;
    MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
    it = done ? sends_.erase(it) : std::next(it);
  }
  for (;;) {  // new messages; posted reply receives take theirs before they can be seen here
    int found = 0;
    MPI_Message handle;
    MPI_Status status;
    MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &found, &handle, &status);
    if (!found) break;
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    Incoming& in = incoming_.emplace_back();
    in.message.source = status.MPI_SOURCE;
    in.message.tag = status.MPI_TAG;
    in.message.bytes.resize(static_cast<size_t>(count));
    MPI_Imrecv(in.message.bytes.data(), count, MPI_BYTE, &handle, &in.request);
  }
  for (auto it = incoming_.begin(); it != incoming_.end();) {
    int done = 0;
    MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
    if (!done) {
      ++it;
      continue;
    }
    Received message = std::move(it->message);
    it = incoming_.erase(it);
    handle(std::move(message));
  }
}

void MpiEngine::handle(Received message) {
  if (message.tag >= kTagReplyBase) return;  // the answer to a read that gave up
  CallId id;
  if (!parse(message.bytes, &id)) return;
  if (message.tag == kTagRequest) {
    RequestMsg request;
    if (parse(message.bytes, &request)) serve(message.source, request);
    return;
  }
  Peer* peer = call_ && call_->id == id ? peerOf(message.source) : nullptr;
  if (peer == nullptr) {
    auto next = nextSeq_.find(id.set);
    if (next == nextSeq_.end() || id.seq >= next->second) early_.push_back(std::move(message));
    return;  // else: a call this rank has left (abandoned by someone); dropped
  }
  if (message.tag == kTagHeader && parse(message.bytes, &peer->info)) {
    peer->arrived = true;
    peer->header.assign(message.bytes.begin() + sizeof(HeaderMsg), message.bytes.end());
  } else if (message.tag == kTagClose) {
    CloseMsg close;
    if (!parse(message.bytes, &close)) return;
    peer->closed = true;
    if (close.abandoned && call_->abandonedBy < 0) {
      call_->abandonedBy = message.source;
      call_->abandonNote = std::string(close.note.data(), strnlen(close.note.data(), close.note.size()));
    }
  }
}

void MpiEngine::serve(int source, const RequestMsg& request) {
  const std::byte* data = nullptr;
  uint64_t bytes = 0;
  if (call_ && call_->id == request.id && peerOf(source) != nullptr && request.region >= 0 &&
      request.region < kMaxRegions) {
    const Region& r = call_->own[static_cast<size_t>(request.region)];
    if (request.offset <= r.bytes && request.bytes <= r.bytes - request.offset && request.bytes <= kMaxChunk) {
      data = static_cast<const std::byte*>(r.data) + request.offset;
      bytes = request.bytes;
    }
  }
  // A refused request (a call this rank has left) is answered with no bytes, so the reader fails at once.
  Send& s = sends_.emplace_back();
  MPI_Isend(data, static_cast<int>(bytes), MPI_BYTE, source, request.replyTag, comm_, &s.request);
}

template <typename Done>
bool MpiEngine::pollUntil(Clock::time_point deadline, Done done) {
  // Spin briefly, then sleep a little between polls: ranks are often oversubscribed (more processes than cores).
  auto pause = std::chrono::microseconds(0);
  for (;;) {
    progress();
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    if (pause.count() == 0) {
      std::this_thread::yield();
      pause = std::chrono::microseconds(1);
    } else {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(100));
    }
  }
}

std::vector<int> MpiEngine::missing(bool opening) const {
  std::vector<int> out;
  for (const Peer& p : call_->peers)
    if (!(opening ? p.arrived : p.closed)) out.push_back(p.rank);
  return out;
}

Status MpiEngine::open(std::span<const int> participants, std::span<const std::byte> header,
                       std::span<const Region> regions, Clock::time_point deadline) {
  const Clock::time_point start = Clock::now();
  if (call_) return Status(StatusCode::kInvalidArgument, prefix() + "open() called while a call is still open");
  MOEDIST_RETURN_IF_ERROR(checkOpen(prefix(), participants, rank_, size_, regions));

  // From here on the attempt counts as a call with this participant list, whether it succeeds or not.
  Call& call = call_.emplace();
  call.participants.assign(participants.begin(), participants.end());
  call.id.set = hashRanks(participants);
  call.id.seq = nextSeq_[call.id.set]++;
  call.timeout = deadline - start;
  std::copy(regions.begin(), regions.end(), call.own.begin());
  for (int p : participants) call.peers.emplace_back().rank = p;

  // Stage the regions in the shared window when a participant on this host will read them.
  HeaderMsg msg;
  msg.id = call.id;
  msg.numRegions = static_cast<int32_t>(regions.size());
  msg.staged.fill(-1);
  size_t need = 0;
  for (size_t i = 0; i < regions.size(); ++i) {
    msg.bytes[i] = regions[i].bytes;
    need += (regions[i].bytes + kStageAlign - 1) / kStageAlign * kStageAlign;
  }
  const bool hostPeers = std::any_of(participants.begin(), participants.end(),
                                     [&](int p) { return p != rank_ && windowOf(p) != nullptr; });
  if (hostPeers && need > windowBytes_ && !warnedWindow_) {  // correct, but slow: say so once
    warnedWindow_ = true;
    fmt::print(stderr,
               "moedist: {}a call publishes {} bytes, more than the shared-memory window of {} bytes "
               "(HCCL_BUFFSIZE MB); peers on this host read them through messages, which is slower. Raise "
               "HCCL_BUFFSIZE.\n",
               prefix(), need, windowBytes_);
  }
  if (hostPeers && need <= windowBytes_) {
    size_t at = 0;
    for (size_t i = 0; i < regions.size(); ++i) {
      if (regions[i].bytes > 0) std::memcpy(window_ + at, regions[i].data, regions[i].bytes);
      msg.staged[i] = static_cast<int64_t>(at);
      at += (regions[i].bytes + kStageAlign - 1) / kStageAlign * kStageAlign;
    }
    MPI_Win_sync(win_);
  }
  Peer& self = *peerOf(rank_);
  self.arrived = true;
  self.header.assign(header.begin(), header.end());
  self.info = msg;
  const auto wire = bytesOf(msg, header);
  for (int p : participants)
    if (p != rank_) send(p, kTagHeader, wire);
  // Messages of this call that came before it was opened here.
  std::vector<Received> early;
  early.swap(early_);
  for (Received& m : early) handle(std::move(m));

  const bool all = pollUntil(deadline, [&] {
    return call_->abandonedBy >= 0 ||
           std::all_of(call_->peers.begin(), call_->peers.end(), [](const Peer& p) { return p.arrived; });
  });
  if (all && call_->abandonedBy < 0) {
    if (win_ != MPI_WIN_NULL) MPI_Win_sync(win_);
    call_->mapped = std::all_of(call_->peers.begin(), call_->peers.end(), [&](const Peer& p) {
      if (p.rank == rank_) return true;
      if (windowOf(p.rank) == nullptr) return false;
      for (int i = 0; i < p.info.numRegions; ++i)
        if (p.info.bytes[static_cast<size_t>(i)] > 0 && p.info.staged[static_cast<size_t>(i)] < 0) return false;
      return true;
    });
    return okStatus();
  }
  const std::vector<int> late = missing(/*opening=*/true);
  const bool gaveUp = call_->abandonedBy >= 0;  // a peer did; else this rank reached its deadline
  Status failure = gaveUp ? abandoned(start)
                          : Status(StatusCode::kTimeout,
                                   fmt::format("{}timed out after {} ms waiting for rank(s) {} to open the call ({})",
                                               prefix(), msSince(start), joinRanks(late), what()));
  // Tell the others, so that they fail now rather than at their own deadlines (passing on a peer's notice).
  sendClose(true, gaveUp ? call_->abandonNote
                         : fmt::format("rank {} timed out waiting for rank(s) {} to open it", rank_, joinRanks(late)));
  call_.reset();
  return failure;
}

std::span<const std::byte> MpiEngine::peerHeader(int peer) const {
  const Peer* p = peerOf(peer);
  if (p == nullptr) return {};
  return {p->header.data(), p->header.size()};
}

const std::byte* MpiEngine::peerRegion(int peer, int region) const {
  const Peer* p = peerOf(peer);
  if (p == nullptr || region < 0 || region >= p->info.numRegions) return nullptr;
  const auto i = static_cast<size_t>(region);
  if (peer == rank_) return static_cast<const std::byte*>(call_->own[i].data);
  if (windowOf(peer) == nullptr || p->info.staged[i] < 0) return nullptr;
  return windowOf(peer) + p->info.staged[i];
}

size_t MpiEngine::peerRegionBytes(int peer, int region) const {
  const Peer* p = peerOf(peer);
  if (p == nullptr || region < 0 || region >= p->info.numRegions) return 0;
  return p->info.bytes[static_cast<size_t>(region)];
}

Status MpiEngine::read(int peer, int region, size_t offset, void* dst, size_t bytes) {
  if (!call_) return Status(StatusCode::kInvalidArgument, prefix() + "read() called with no open call");
  const Peer* p = peerOf(peer);
  if (p == nullptr) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{}read() from rank {}, which is not a participant of the {}", prefix(), peer, what()));
  }
  const size_t regionBytes =
      region >= 0 && region < p->info.numRegions ? p->info.bytes[static_cast<size_t>(region)] : 0;
  MOEDIST_RETURN_IF_ERROR(checkRead(prefix(), peer, region, p->info.numRegions, regionBytes, offset, dst, bytes));
  if (bytes == 0) return okStatus();
  if (const std::byte* base = peerRegion(peer, region)) {
    std::memcpy(dst, base + offset, bytes);
    return okStatus();
  }
  for (size_t done = 0; done < bytes; done += kMaxChunk) {
    RequestMsg request;
    request.id = call_->id;
    request.region = region;
    request.offset = offset + done;
    request.bytes = std::min(kMaxChunk, bytes - done);
    MOEDIST_RETURN_IF_ERROR(readChunk(peer, request, static_cast<std::byte*>(dst) + done));
  }
  return okStatus();
}

// One request for up to kMaxChunk bytes and its answer, received straight into dst.
Status MpiEngine::readChunk(int peer, RequestMsg request, void* dst) {
  request.replyTag = kTagReplyBase + static_cast<int>(nextReply_++ % static_cast<uint32_t>(replyTags_));
  MPI_Request recv = MPI_REQUEST_NULL;
  MOEDIST_MPI(MPI_Irecv(dst, static_cast<int>(request.bytes), MPI_BYTE, peer, request.replyTag, comm_, &recv));
  send(peer, kTagRequest, bytesOf(request));
  const Clock::time_point start = Clock::now();
  MPI_Status status{};
  int done = 0;
  pollUntil(start + call_->timeout, [&] {
    MPI_Test(&recv, &done, &status);
    return done != 0 || call_->abandonedBy >= 0;
  });
  if (!done) {
    MPI_Cancel(&recv);
    MPI_Wait(&recv, MPI_STATUS_IGNORE);  // a cancelled receive completes locally, at once
    if (call_->abandonedBy >= 0) return abandoned(start);
    return Status(StatusCode::kTimeout, fmt::format("{}timed out after {} ms waiting for rank {} to answer a read "
                                                    "of {} bytes ({})",
                                                    prefix(), msSince(start), peer, request.bytes, what()));
  }
  int count = 0;
  MPI_Get_count(&status, MPI_BYTE, &count);
  if (static_cast<uint64_t>(count) != request.bytes)
    return Status(StatusCode::kTimeout, fmt::format("{}rank {} refused a read of {} bytes: it has left the call ({})",
                                                    prefix(), peer, request.bytes, what()));
  return okStatus();
}

Status MpiEngine::close(Clock::time_point deadline) {
  const Clock::time_point start = Clock::now();
  if (!call_) return Status(StatusCode::kInvalidArgument, prefix() + "close() called with no open call");
  sendClose(false, "");
  peerOf(rank_)->closed = true;
  const bool all = pollUntil(deadline, [&] {
    if (call_->abandonedBy >= 0) return true;
    for (const Send& s : sends_)
      if (s.buffer.empty()) return false;  // answers still reading from the caller's regions
    return std::all_of(call_->peers.begin(), call_->peers.end(), [](const Peer& p) { return p.closed; });
  });
  Status result;
  if (call_->abandonedBy >= 0) {
    result = abandoned(start);
  } else if (!all) {
    const std::vector<int> late = missing(/*opening=*/false);
    result = Status(StatusCode::kTimeout,
                    late.empty() ? fmt::format("{}timed out after {} ms waiting for peers to finish reading this "
                                               "rank's regions ({})",
                                               prefix(), msSince(start), what())
                                 : fmt::format("{}timed out after {} ms waiting for rank(s) {} to close the call ({})",
                                               prefix(), msSince(start), joinRanks(late), what()));
  }
  call_.reset();
  return result;
}

}  // namespace

Status createEngine(MPI_Comm comm, const std::string& name, bool sharedMemory, size_t windowBytes,
                    std::unique_ptr<Engine>* out) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized)
    return Status(StatusCode::kInvalidArgument, "createMpiCommunicator: MPI is not initialized (call MPI_Init_thread)");
  MPI_Comm dup = MPI_COMM_NULL;
  MOEDIST_MPI(MPI_Comm_dup(comm, &dup));
  MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
  auto engine = std::make_unique<MpiEngine>(dup, name);
  MOEDIST_RETURN_IF_ERROR(engine->attachWindow(sharedMemory ? windowBytes : 0));
  *out = std::move(engine);
  return okStatus();
}

}  // namespace moedist::comm::mpi
