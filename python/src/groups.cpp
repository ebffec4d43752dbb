// Groups: communicators created from Python, kept alive by name. The operators find a rank's handle by (group
// name, rank id) with Communicator::find, the way CANN programs pass group names; this file only owns the handles,
// so that a group lives until moedist.destroy_group(name) or the interpreter's exit.
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

#include "binding.h"
#include "moedist/shm.h"

namespace moedist::python {

namespace {

struct Groups {
  std::mutex mu;
  std::map<std::string, std::vector<Communicator>> live;  // name -> the handles this process created
};

Groups& groups() {
  static auto* g = new Groups;  // never destroyed: handles are dropped in destroyAll, before the interpreter exits
  return *g;
}

// Drops the handles (with the GIL released: the last handle of a rank may wait for its peers, e.g. MPI's window).
void dropHandles(std::vector<Communicator> handles) {
  py::gil_scoped_release release;
  handles.clear();
}

std::string createInProcess(int worldSize, const py::object& name, const py::object& timeout, int kernelThreads,
                            const std::string& kernels) {
  const CommOptions options = commOptions(name, timeout, kernelThreads, kernels);
  std::vector<Communicator> ranks;
  check(Communicator::createInProcess(worldSize, options, &ranks));
  std::string created = ranks.front().name();
  keepGroup(created, std::move(ranks));
  return created;
}

py::bytes shmUniqueId() {
  ShmUniqueId id;
  check(getShmUniqueId(&id));
  return py::bytes(id.internal, sizeof(id.internal));
}

ShmUniqueId toShmUniqueId(const py::bytes& bytes) {
  const std::string s = bytes;
  ShmUniqueId id{};
  if (s.size() > sizeof(id.internal))
    throw py::value_error("unique_id: " + std::to_string(s.size()) + " bytes, expected at most " +
                          std::to_string(sizeof(id.internal)) + " (the bytes of moedist.shm_unique_id())");
  std::memcpy(id.internal, s.data(), s.size());
  if (!isShmUniqueId(id))
    throw py::value_error("unique_id: not a shared-memory unique id (expected the bytes of moedist.shm_unique_id())");
  return id;
}

std::string createShm(const py::bytes& uniqueId, int worldSize, int rank, const py::object& name,
                      const py::object& timeout, int kernelThreads, const std::string& kernels) {
  const ShmUniqueId id = toShmUniqueId(uniqueId);
  const CommOptions options = commOptions(name, timeout, kernelThreads, kernels);
  Communicator comm;
  Status status;
  {
    py::gil_scoped_release release;  // waits for the other members, which may be threads of this process
    status = createShmCommunicator(id, worldSize, rank, options, &comm);
  }
  check(status);
  std::string created = comm.name();
  keepGroup(created, {comm});
  return created;
}

bool destroyGroup(const std::string& name) {
  std::vector<Communicator> handles;
  {
    Groups& g = groups();
    std::lock_guard<std::mutex> lock(g.mu);
    auto it = g.live.find(name);
    if (it == g.live.end()) return false;
    handles = std::move(it->second);
    g.live.erase(it);
  }
  dropHandles(std::move(handles));
  return true;
}

// Every group, in the order of their names; the package calls this at exit (before MPI_Finalize, if any).
void destroyAll() {
  std::map<std::string, std::vector<Communicator>> all;
  {
    Groups& g = groups();
    std::lock_guard<std::mutex> lock(g.mu);
    all.swap(g.live);
  }
  for (auto& [name, handles] : all) dropHandles(std::move(handles));
}

std::vector<std::string> liveGroups() {
  Groups& g = groups();
  std::lock_guard<std::mutex> lock(g.mu);
  std::vector<std::string> names;
  for (const auto& [name, handles] : g.live) names.push_back(name);
  return names;
}

py::dict groupInfo(const std::string& name) {
  std::vector<int> ranks;
  Communicator first;
  {
    Groups& g = groups();
    std::lock_guard<std::mutex> lock(g.mu);
    auto it = g.live.find(name);
    if (it == g.live.end()) throw py::key_error("group_info: no group called '" + name + "' was created by moedist");
    for (const Communicator& c : it->second) ranks.push_back(c.rank());
    first = it->second.front();
  }
  py::dict info;
  info["name"] = name;
  info["world_size"] = first.size();
  info["ranks"] = ranks;  // the ranks that live in this process
  info["timeout"] = static_cast<double>(first.timeout().count()) / 1000.0;
  info["kernel_threads"] = first.kernelThreads();
  info["kernels"] = std::string(first.kernels());
  return info;
}

}  // namespace

CommOptions commOptions(const py::object& name, const py::object& timeoutSeconds, int kernelThreads,
                        const std::string& kernels) {
  CommOptions options;
  if (!name.is_none()) options.name = name.cast<std::string>();
  if (!timeoutSeconds.is_none()) {
    const double seconds = timeoutSeconds.cast<double>();
    if (!(seconds >= 0) || !std::isfinite(seconds))
      throw py::value_error("timeout: " + std::to_string(seconds) + " seconds, expected a finite number >= 0");
    options.timeout = std::chrono::milliseconds(static_cast<int64_t>(std::ceil(seconds * 1000.0)));
  }
  options.kernelThreads = kernelThreads;
  options.kernels = kernels;
  return options;
}

void keepGroup(const std::string& name, std::vector<Communicator> handles) {
  Groups& g = groups();
  std::lock_guard<std::mutex> lock(g.mu);
  auto& kept = g.live[name];
  for (Communicator& h : handles) kept.push_back(std::move(h));
}

void registerGroups(py::module_& m) {
  using py::arg;
  m.def("create_inprocess_group", &createInProcess, arg("world_size"), arg("name"), arg("timeout"),
        arg("kernel_threads"), arg("kernels"));
  m.def("shm_unique_id", &shmUniqueId);
  m.def("create_shm_group", &createShm, arg("unique_id"), arg("world_size"), arg("rank"), arg("name"), arg("timeout"),
        arg("kernel_threads"), arg("kernels"));
  m.def("destroy_group", &destroyGroup, arg("name"));
  m.def("destroy_all_groups", &destroyAll);
  m.def("live_groups", &liveGroups);
  m.def("group_info", &groupInfo, arg("name"));
}

}  // namespace moedist::python
