// The in-process engine; inproc_engine.h describes the protocol. Every field of the shared state is guarded by
// Group::mu; a rank only touches the headers and regions of a call after its open() has returned, and nobody
// writes them between open() and close(), so reads of them need no lock.
#include "comm/inproc/inproc_engine.h"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <utility>

#include "comm/checks.h"
#include "util/check.h"

namespace moedist::comm::inproc {

using Participants = std::vector<int>;

struct CallState {
  CallState(Participants p, uint64_t s) : participants(std::move(p)), seq(s), slots(participants.size()) {}

  struct Slot {
    bool arrived = false;  // opened
    bool closed = false;
    bool left = false;  // returned from open() with an error, or from close()
    std::vector<std::byte> header;
    int numRegions = 0;
    std::array<Region, kMaxRegions> regions{};
  };

  const Participants participants;
  const uint64_t seq;          // calls each participant made before with this participant list
  std::vector<Slot> slots;     // one per participant, in participant order
  std::condition_variable cv;  // signalled when everyone arrived, everyone closed, or the call was abandoned
  int numArrived = 0;
  int numClosed = 0;
  int numLeft = 0;
  // Set once by the first participant that gives up; no participant succeeds afterwards.
  bool abandoned = false;
  std::string abandonCause;  // "rank 0 timed out first"
  std::string abandonNote;   // "rank 0 timed out waiting for rank(s) 3 to open it"

  int size() const { return static_cast<int>(participants.size()); }
};

struct Group {
  Group(std::string n, int s) : name(std::move(n)), size(s) {}
  ~Group();

  const std::string name;
  const int size;
  std::mutex mu;
  std::map<std::pair<Participants, uint64_t>, std::shared_ptr<CallState>> calls;
};

namespace {

// The names of the live in-process communicators. Never destroyed, so engines that outlive main() are safe.
struct NameTable {
  std::mutex mu;
  std::map<std::string, std::weak_ptr<Group>> groups;
};

NameTable& nameTable() {
  static NameTable* table = new NameTable;
  return *table;
}

std::string describeCall(const CallState& call, int worldSize) {
  return comm::describeCall(call.seq, call.participants, worldSize);
}

long long msSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

Status invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

// The participants for which flag(slot) is false.
template <typename F>
std::vector<int> missingRanks(const CallState& call, F flag) {
  std::vector<int> out;
  for (int i = 0; i < call.size(); ++i) {
    if (!flag(call.slots[static_cast<size_t>(i)])) out.push_back(call.participants[static_cast<size_t>(i)]);
  }
  return out;
}

// Marks this rank as gone from the call; the last rank that arrived erases the call's entry. Needs g.mu.
void leave(Group& g, const std::shared_ptr<CallState>& call, int slot) {
  CallState::Slot& s = call->slots[static_cast<size_t>(slot)];
  MOEDIST_CHECK(s.arrived && !s.left);
  s.left = true;
  ++call->numLeft;
  if (call->numLeft == call->numArrived) {
    auto it = g.calls.find({call->participants, call->seq});
    if (it != g.calls.end() && it->second == call) g.calls.erase(it);
  }
}

// Marks the call as failed for everyone and wakes its waiters. Needs g.mu.
void abandon(CallState& call, std::string cause, std::string note) {
  if (call.abandoned) return;
  call.abandoned = true;
  call.abandonCause = std::move(cause);
  call.abandonNote = std::move(note);
  call.cv.notify_all();
}

}  // namespace

Group::~Group() {
  NameTable& table = nameTable();
  std::lock_guard<std::mutex> lock(table.mu);
  auto it = table.groups.find(name);
  // A new communicator may already have taken the name over; only drop the entry when it is this one (expired).
  if (it != table.groups.end() && it->second.expired()) table.groups.erase(it);
}

InprocEngine::InprocEngine(std::shared_ptr<Group> group, int rank) : group_(std::move(group)), rank_(rank) {}

InprocEngine::~InprocEngine() {
  if (!call_) return;
  // Destroyed with a call open (a caller bug): let the peers fail now instead of at their deadlines.
  std::lock_guard<std::mutex> lock(group_->mu);
  const std::string why = "rank " + std::to_string(rank_) + " was destroyed with the call open";
  abandon(*call_, why, why);
  leave(*group_, call_, slot_);
}

int InprocEngine::size() const {
  return group_->size;
}

const std::string& InprocEngine::name() const {
  return group_->name;
}

std::string InprocEngine::prefix() const {
  return "in-process communicator '" + group_->name + "' rank " + std::to_string(rank_) + ": ";
}

Status InprocEngine::open(std::span<const int> participants, std::span<const std::byte> header,
                          std::span<const Region> regions, Clock::time_point deadline) {
  const Clock::time_point start = Clock::now();
  const int worldSize = group_->size;
  if (call_) return invalid(prefix() + "open() called while a call is still open; close() it first");
  MOEDIST_RETURN_IF_ERROR(checkOpen(prefix(), participants, rank_, worldSize, regions));

  // From here on the attempt counts as a call with this participant list, whether it succeeds or not.
  Participants key(participants.begin(), participants.end());
  const uint64_t seq = callsPerSet_[key]++;
  const int slot =
      static_cast<int>(std::lower_bound(participants.begin(), participants.end(), rank_) - participants.begin());

  Group& g = *group_;
  std::unique_lock<std::mutex> lock(g.mu);
  std::shared_ptr<CallState>& entry = g.calls[{key, seq}];
  if (!entry) entry = std::make_shared<CallState>(std::move(key), seq);
  const std::shared_ptr<CallState> call = entry;
  CallState::Slot& mine = call->slots[static_cast<size_t>(slot)];
  MOEDIST_CHECK(!mine.arrived);  // (set, seq) is unique per rank
  mine.arrived = true;
  mine.header.assign(header.begin(), header.end());
  mine.numRegions = static_cast<int>(regions.size());
  std::copy(regions.begin(), regions.end(), mine.regions.begin());
  if (++call->numArrived == call->size()) call->cv.notify_all();

  const bool done =
      call->cv.wait_until(lock, deadline, [&] { return call->numArrived == call->size() || call->abandoned; });
  if (done && !call->abandoned) {
    call_ = call;
    slot_ = slot;
    return okStatus();
  }
  Status failure = fail(*call, /*opening=*/true, start);
  leave(g, call, slot);
  return failure;
}

Status InprocEngine::fail(CallState& call, bool opening, Clock::time_point start) {
  const std::vector<int> missing =
      missingRanks(call, [opening](const CallState::Slot& s) { return opening ? s.arrived : s.closed; });
  const std::string verb = opening ? "open" : "close";
  const std::string what = describeCall(call, group_->size);
  const std::string ms = std::to_string(msSince(start));
  std::string message;
  if (!call.abandoned) {
    // This rank reached its deadline first (so `missing` is not empty); the others fail with it.
    message = prefix() + "timed out after " + ms + " ms waiting for rank(s) " + joinRanks(missing) + " to " + verb +
              " the call (" + what + ")";
    abandon(call, "rank " + std::to_string(rank_) + " timed out first",
            "rank " + std::to_string(rank_) + " timed out waiting for rank(s) " + joinRanks(missing) + " to " + verb +
                " it");
  } else if (!missing.empty()) {
    message = prefix() + "gave up after " + ms + " ms waiting for rank(s) " + joinRanks(missing) + " to " + verb +
              " the call (" + what + "): " + call.abandonCause;
  } else {
    message = prefix() + "the call (" + what + ") failed after " + ms + " ms because " + call.abandonNote;
  }
  return Status(StatusCode::kTimeout, std::move(message));
}

int InprocEngine::slotOf(int peer) const {
  if (!call_) return -1;
  const Participants& p = call_->participants;
  auto it = std::lower_bound(p.begin(), p.end(), peer);
  if (it == p.end() || *it != peer) return -1;
  return static_cast<int>(it - p.begin());
}

std::span<const std::byte> InprocEngine::peerHeader(int peer) const {
  const int slot = slotOf(peer);
  if (slot < 0) return {};
  const std::vector<std::byte>& h = call_->slots[static_cast<size_t>(slot)].header;
  return {h.data(), h.size()};
}

const std::byte* InprocEngine::peerRegion(int peer, int region) const {
  const int slot = slotOf(peer);
  if (slot < 0) return nullptr;
  const CallState::Slot& s = call_->slots[static_cast<size_t>(slot)];
  if (region < 0 || region >= s.numRegions) return nullptr;
  return static_cast<const std::byte*>(s.regions[static_cast<size_t>(region)].data);
}

size_t InprocEngine::peerRegionBytes(int peer, int region) const {
  const int slot = slotOf(peer);
  if (slot < 0) return 0;
  const CallState::Slot& s = call_->slots[static_cast<size_t>(slot)];
  if (region < 0 || region >= s.numRegions) return 0;
  return s.regions[static_cast<size_t>(region)].bytes;
}

Status InprocEngine::read(int peer, int region, size_t offset, void* dst, size_t bytes) {
  if (!call_) return invalid(prefix() + "read() called with no open call");
  const int slot = slotOf(peer);
  if (slot < 0) {
    return invalid(prefix() + "read() from rank " + std::to_string(peer) + ", which is not a participant of the " +
                   describeCall(*call_, group_->size));
  }
  const CallState::Slot& s = call_->slots[static_cast<size_t>(slot)];
  const size_t regionBytes = region >= 0 && region < s.numRegions ? s.regions[static_cast<size_t>(region)].bytes : 0;
  MOEDIST_RETURN_IF_ERROR(checkRead(prefix(), peer, region, s.numRegions, regionBytes, offset, dst, bytes));
  if (bytes == 0) return okStatus();
  const Region& r = s.regions[static_cast<size_t>(region)];
  std::memcpy(dst, static_cast<const std::byte*>(r.data) + offset, bytes);
  return okStatus();
}

Status InprocEngine::close(Clock::time_point deadline) {
  const Clock::time_point start = Clock::now();
  if (!call_) return invalid(prefix() + "close() called with no open call");
  const std::shared_ptr<CallState> call = std::move(call_);
  const int slot = slot_;
  call_.reset();
  slot_ = -1;

  Group& g = *group_;
  std::unique_lock<std::mutex> lock(g.mu);
  CallState::Slot& mine = call->slots[static_cast<size_t>(slot)];
  MOEDIST_CHECK(mine.arrived && !mine.closed && !mine.left);
  mine.closed = true;
  if (++call->numClosed == call->size()) call->cv.notify_all();

  const bool done =
      call->cv.wait_until(lock, deadline, [&] { return call->numClosed == call->size() || call->abandoned; });
  Status result = done && !call->abandoned ? okStatus() : fail(*call, /*opening=*/false, start);
  leave(g, call, slot);
  return result;
}

size_t InprocEngine::liveCalls() const {
  std::lock_guard<std::mutex> lock(group_->mu);
  return group_->calls.size();
}

Status createEngines(const std::string& name, int worldSize, std::vector<std::unique_ptr<Engine>>* engines) {
  if (engines == nullptr) return Status(StatusCode::kNullArgument, "createInprocEngines: engines is null");
  if (name.empty()) return invalid("createInprocEngines: the communicator name is empty");
  if (worldSize < 1) {
    return Status(StatusCode::kInvalidValue, "createInprocEngines: communicator '" + name + "' has worldSize " +
                                                 std::to_string(worldSize) + ", expected at least 1");
  }
  auto group = std::make_shared<Group>(name, worldSize);
  {
    NameTable& table = nameTable();
    std::lock_guard<std::mutex> lock(table.mu);
    std::weak_ptr<Group>& slot = table.groups[name];
    if (!slot.expired()) {
      // `group` is destroyed after `lock` is released (reverse order of declaration) and leaves the live entry be.
      return invalid("createInprocEngines: an in-process communicator called '" + name + "' already exists");
    }
    slot = group;
  }
  std::vector<std::unique_ptr<Engine>> out;
  out.reserve(static_cast<size_t>(worldSize));
  for (int r = 0; r < worldSize; ++r) out.push_back(std::make_unique<InprocEngine>(group, r));
  *engines = std::move(out);
  return okStatus();
}

}  // namespace moedist::comm::inproc
