// The in-process engine; inproc_engine.h describes it.
#include "comm/inproc/inproc_engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "comm/protocol.h"

namespace moedist::comm::inproc {

namespace {

// How long a rank polls its mailbox, yielding the core in between, before it sleeps: when the ranks outnumber the
// cores, a peer that is about to post gets the core at once and the answer comes without a sleep and a wake-up.
constexpr auto kSpin = std::chrono::microseconds(20);

struct Mailbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Event> events;
  size_t wakeAt = 1;  // the owner sleeps until this many events are here (Call::awaiting)
  // Written under mu; atomic so that the owner's spin can read them without it.
  std::atomic<size_t> count{0};     // events.size()
  std::atomic<bool> urgent{false};  // a kAbandon is here
};

struct Group {
  Group(std::string n, int s) : name(std::move(n)), size(s), boxes(static_cast<size_t>(s)) {}
  ~Group();

  const std::string name;
  const int size;
  std::vector<Mailbox> boxes;  // by rank
};

// The names of the live in-process communicators. Never destroyed, so engines that outlive main() are safe.
struct NameTable {
  std::mutex mu;
  std::map<std::string, std::weak_ptr<Group>> groups;
};

NameTable& nameTable() {
  static NameTable* table = new NameTable;
  return *table;
}

Group::~Group() {
  NameTable& table = nameTable();
  std::lock_guard<std::mutex> lock(table.mu);
  auto it = table.groups.find(name);
  // A new communicator may already have taken the name over; only drop the entry when it is this one (expired).
  if (it != table.groups.end() && it->second.expired()) table.groups.erase(it);
}

class InprocTransport final : public Transport {
 public:
  InprocTransport(std::shared_ptr<Group> group, int rank) : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size; }
  const std::string& name() const override { return group_->name; }
  const char* kind() const override { return "inproc"; }
  std::string prefix() const override {
    return fmt::format("in-process communicator '{}' rank {}: ", group_->name, rank_);
  }

  Status post(Call& call, Event& event, Clock::time_point) override {
    for (int p : call.participants) {
      if (p == rank_) continue;
      Mailbox& box = group_->boxes[static_cast<size_t>(p)];
      bool wake = false;
      {
        std::lock_guard<std::mutex> lock(box.mu);
        box.events.push_back(event);  // the header is shared, the region addresses are valid in every thread
        if (event.kind == EventKind::kAbandon) box.urgent.store(true, std::memory_order_release);
        box.count.store(box.events.size(), std::memory_order_release);
        wake = box.urgent || box.events.size() >= box.wakeAt;
      }
      if (wake) box.cv.notify_one();  // one wake per wait, not one per event
    }
    return okStatus();
  }

  void poll(const Call* call, Clock::time_point until, const std::function<void(Event&&)>& deliver) override {
    Mailbox& box = group_->boxes[static_cast<size_t>(rank_)];
    const size_t want = call != nullptr ? static_cast<size_t>(std::max(call->awaiting, 1)) : 1;
    const Clock::time_point spinEnd = std::min(until, Clock::now() + kSpin);
    while (box.count.load(std::memory_order_acquire) < want && !box.urgent.load(std::memory_order_acquire) &&
           Clock::now() < spinEnd)
      std::this_thread::yield();
    {
      std::unique_lock<std::mutex> lock(box.mu);
      box.wakeAt = want;
      box.cv.wait_until(lock, until, [&] { return box.urgent || box.events.size() >= box.wakeAt; });
      box.wakeAt = 1;
      box.urgent.store(false, std::memory_order_relaxed);
      incoming_.swap(box.events);
      box.count.store(0, std::memory_order_relaxed);
    }
    for (Event& e : incoming_) deliver(std::move(e));
    incoming_.clear();
  }

  Status read(const Call&, const Event& peer, int, size_t, void*, size_t) override {
    return Status(StatusCode::kInternal, fmt::format("{}rank {}'s region is not mapped", prefix(), peer.from));
  }

 private:
  std::shared_ptr<Group> group_;
  const int rank_;
  std::vector<Event> incoming_;  // reused between polls
};

Status invalid(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}

}  // namespace

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
  for (int r = 0; r < worldSize; ++r)
    out.push_back(std::make_unique<ProtocolEngine>(std::make_unique<InprocTransport>(group, r)));
  *engines = std::move(out);
  return okStatus();
}

}  // namespace moedist::comm::inproc
