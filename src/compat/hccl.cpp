// HCCL on moedist: an HCCL communicator is a moedist communicator, and an HcclComm is one rank's handle to it.
// HcclCommInitAll makes an in-process communicator (ranks are threads of this process). HcclGetRootInfo hands out
// one of two kinds of root info:
//   - under mpirun with several processes, an MPI root info (compat/hccl_mpi.h): the members are MPI processes,
//     on one host or many;
//   - otherwise, a shared-memory root info: the text of a moedist::ShmUniqueId (moedist/shm.h). Its members are
//     processes of this host started by any launcher (fork, a shell loop, torchrun), or threads of one process:
//     HcclCommInitRootInfo creates the rank with createShmCommunicator, which waits for every member for at most
//     HCCL_CONNECT_TIMEOUT seconds and refuses at once a member on another host or in another container.
// The application passes the root info's bytes to the other members over any channel (MPI_Bcast, a pipe, a file).
// The communicator's name is the group name that the aclnn operators receive; findCommunicator looks it up.
// A communicator lives until the handles of all its ranks are destroyed, so ranks may destroy their handles at
// different times (as in the CANN example, where ranks removed by scale-in finish early). Handles are looked up in
// a registry, so a stale or foreign handle is an error code, never a crash.
#include "hccl/hccl.h"

#include <fmt/format.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "compat/hccl_mpi.h"
#include "compat/runtime.h"
#include "compat/runtime_internal.h"
#include "moedist/shm.h"
#include "util/env.h"

namespace moedist::compat {

namespace {

struct HcclGroup {
  std::vector<Communicator> ranks;  // keeps every rank alive while any handle of the group lives
};

struct HcclHandle {
  std::shared_ptr<HcclGroup> group;
  int rank = 0;
};

struct HcclRegistry {
  std::mutex mu;
  std::unordered_map<const void*, std::unique_ptr<HcclHandle>> handles;
};

HcclRegistry& registry() {
  static HcclRegistry* r = new HcclRegistry();  // never destroyed: handles may be destroyed late at exit
  return *r;
}

HcclResult failHccl(HcclResult code, const std::string& message) {
  setRecentError(message);
  return code;
}

HcclResult fromStatus(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk:
      return HCCL_SUCCESS;
    case StatusCode::kNullArgument:
      return HCCL_E_PTR;
    case StatusCode::kInvalidArgument:
    case StatusCode::kInvalidValue:
      return HCCL_E_PARA;
    case StatusCode::kTimeout:
      return HCCL_E_TIMEOUT;
    case StatusCode::kInternal:
      return HCCL_E_INTERNAL;
  }
  return HCCL_E_INTERNAL;
}

// Requires reg.mu.
HcclComm addHandleLocked(HcclRegistry& reg, std::shared_ptr<HcclGroup> group, int rank) {
  auto h = std::make_unique<HcclHandle>();
  h->group = std::move(group);
  h->rank = rank;
  HcclComm comm = h.get();
  reg.handles[comm] = std::move(h);
  return comm;
}

// Looks up a live handle; on success *rankOut is a copy of its communicator rank.
HcclResult lookup(HcclComm comm, const char* fn, Communicator* rankOut) {
  if (comm == nullptr) return failHccl(HCCL_E_PTR, fmt::format("{}: comm is nullptr", fn));
  HcclRegistry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mu);
  auto it = reg.handles.find(comm);
  if (it == reg.handles.end())
    return failHccl(HCCL_E_PARA,
                    fmt::format("{}: comm {} is not a live HCCL communicator (never created, or destroyed)", fn, comm));
  *rankOut = it->second->group->ranks[static_cast<size_t>(it->second->rank)];
  return HCCL_SUCCESS;
}

HcclResult commInitAll(uint32_t ndev, int32_t* devices, HcclComm* comms) {
  if (devices == nullptr) return failHccl(HCCL_E_PTR, "HcclCommInitAll: devices is nullptr");
  if (comms == nullptr) return failHccl(HCCL_E_PTR, "HcclCommInitAll: comms is nullptr");
  if (ndev == 0 || ndev > static_cast<uint32_t>(kMaxDevices))
    return failHccl(HCCL_E_PARA, fmt::format("HcclCommInitAll: ndev is {}, expected 1..{}", ndev, kMaxDevices));
  std::unordered_set<int32_t> seen;
  for (uint32_t i = 0; i < ndev; ++i) {
    if (devices[i] < 0 || devices[i] >= kMaxDevices)
      return failHccl(HCCL_E_PARA, fmt::format("HcclCommInitAll: devices[{}] is {}, expected a device id 0..{}", i,
                                               devices[i], kMaxDevices - 1));
    if (!seen.insert(devices[i]).second)
      return failHccl(
          HCCL_E_PARA,
          fmt::format("HcclCommInitAll: devices[{}] is {}, which appears earlier in devices too", i, devices[i]));
  }
  auto group = std::make_shared<HcclGroup>();
  Status st = Communicator::createInProcess(static_cast<int>(ndev), CommOptions{}, &group->ranks);
  if (!st.ok()) return failHccl(fromStatus(st), "HcclCommInitAll: " + st.message());
  HcclRegistry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mu);
  for (uint32_t i = 0; i < ndev; ++i) comms[i] = addHandleLocked(reg, group, static_cast<int>(i));
  return HCCL_SUCCESS;
}

static_assert(sizeof(ShmUniqueId::internal) <= sizeof(HcclRootInfo::internal),
              "a shared-memory unique id fits in a root info");

// Whether the root info holds a shared-memory unique id; if so, *id is a copy of it.
bool shmRootInfo(const HcclRootInfo& rootInfo, ShmUniqueId* id) {
  const size_t length = strnlen(rootInfo.internal, sizeof(id->internal));
  if (length == sizeof(id->internal)) return false;  // longer than any id
  std::memset(id->internal, 0, sizeof(id->internal));
  std::memcpy(id->internal, rootInfo.internal, length);
  return isShmUniqueId(*id);
}

HcclResult getRootInfo(HcclRootInfo* rootInfo) {
  if (rootInfo == nullptr) return failHccl(HCCL_E_PTR, "HcclGetRootInfo: rootInfo is nullptr");
#if MOEDIST_WITH_MPI
  if (mpiRootInfoWanted()) {  // ranks are MPI processes
    makeMpiRootInfo(rootInfo);
    return HCCL_SUCCESS;
  }
#endif
  ShmUniqueId id;
  Status st = getShmUniqueId(&id);
  if (!st.ok()) return failHccl(fromStatus(st), "HcclGetRootInfo: " + st.message());
  std::memset(rootInfo->internal, 0, sizeof(rootInfo->internal));
  std::memcpy(rootInfo->internal, id.internal, sizeof(id.internal));
  return HCCL_SUCCESS;
}

// Registers this process's rank `rank` of a communicator of `nRanks` ranks (the others live in other processes, or
// are joined by other calls) and returns its handle.
HcclComm addJoinedRank(uint32_t nRanks, uint32_t rank, Communicator c) {
  auto group = std::make_shared<HcclGroup>();
  group->ranks.resize(nRanks);
  group->ranks[rank] = std::move(c);
  HcclRegistry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mu);
  return addHandleLocked(reg, std::move(group), static_cast<int>(rank));
}

HcclResult commInitRootInfo(uint32_t nRanks, const HcclRootInfo* rootInfo, uint32_t rank, HcclComm* comm) {
  if (rootInfo == nullptr) return failHccl(HCCL_E_PTR, "HcclCommInitRootInfo: rootInfo is nullptr");
  if (comm == nullptr) return failHccl(HCCL_E_PTR, "HcclCommInitRootInfo: comm is nullptr");
  if (nRanks == 0 || nRanks > static_cast<uint32_t>(kMaxDevices))
    return failHccl(HCCL_E_PARA,
                    fmt::format("HcclCommInitRootInfo: nRanks is {}, expected 1..{}", nRanks, kMaxDevices));
  if (rank >= nRanks)
    return failHccl(HCCL_E_PARA, fmt::format("HcclCommInitRootInfo: rank is {}, expected 0..{}", rank, nRanks - 1));
  if (rootInfo->internal[0] == '\0')
    return failHccl(HCCL_E_PARA, "HcclCommInitRootInfo: rootInfo is empty; get one from HcclGetRootInfo");

  Communicator joined;
#if MOEDIST_WITH_MPI
  if (isMpiRootInfo(*rootInfo)) {  // this process is one rank; the others are MPI processes
    Status st = joinMpiRootInfo(nRanks, *rootInfo, rank, util::envConnectTimeout(), &joined);
    if (!st.ok()) return failHccl(fromStatus(st), "HcclCommInitRootInfo: " + st.message());
    *comm = addJoinedRank(nRanks, rank, std::move(joined));
    return HCCL_SUCCESS;
  }
#endif
  ShmUniqueId id;
  if (!shmRootInfo(*rootInfo, &id))
    return failHccl(HCCL_E_PARA,
                    "HcclCommInitRootInfo: rootInfo is not a root info of moedist's HcclGetRootInfo (copy all "
                    "HCCL_ROOT_INFO_BYTES bytes of it)");
  // Every member (a process of this host, or a thread of this one) attaches to the others' shared memory; the wait
  // is bounded by HCCL_CONNECT_TIMEOUT, and the operators' deadline is the default (HCCL_EXEC_TIMEOUT).
  Status st = createShmCommunicator(id, static_cast<int>(nRanks), static_cast<int>(rank), CommOptions{}, &joined);
  if (!st.ok()) return failHccl(fromStatus(st), "HcclCommInitRootInfo: " + st.message());
  *comm = addJoinedRank(nRanks, rank, std::move(joined));
  return HCCL_SUCCESS;
}

}  // namespace

Status findCommunicator(const char* group, int64_t rank, Communicator* out) {
  if (group == nullptr) return Status(StatusCode::kNullArgument, "the group name is nullptr");
  if (out == nullptr) return Status(StatusCode::kInternal, "findCommunicator: out is nullptr");
  if (strnlen(group, MAX_GROUP_NAME) >= static_cast<size_t>(MAX_GROUP_NAME))
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("the group name is {} or more characters long, expected fewer than {}",
                              static_cast<int>(MAX_GROUP_NAME), static_cast<int>(MAX_GROUP_NAME)));
  if (group[0] == '\0') return Status(StatusCode::kInvalidArgument, "the group name is empty");
  if (rank < 0 || rank >= kMaxDevices)
    return Status(StatusCode::kInvalidValue,
                  fmt::format("rank {} of group '{}' does not exist (expected 0..{})", rank, group, kMaxDevices - 1));
  return Communicator::find(group, static_cast<int>(rank), out);
}

}  // namespace moedist::compat

using moedist::compat::guarded;

extern "C" {

HcclResult HcclCommInitAll(uint32_t ndev, int32_t* devices, HcclComm* comms) {
  return guarded(
      "HcclCommInitAll", [&] { return moedist::compat::commInitAll(ndev, devices, comms); }, HCCL_E_INTERNAL);
}

HcclResult HcclGetRootInfo(HcclRootInfo* rootInfo) {
  return guarded(
      "HcclGetRootInfo", [&] { return moedist::compat::getRootInfo(rootInfo); }, HCCL_E_INTERNAL);
}

HcclResult HcclCommInitRootInfo(uint32_t nRanks, const HcclRootInfo* rootInfo, uint32_t rank, HcclComm* comm) {
  return guarded(
      "HcclCommInitRootInfo", [&] { return moedist::compat::commInitRootInfo(nRanks, rootInfo, rank, comm); },
      HCCL_E_INTERNAL);
}

HcclResult HcclGetCommName(HcclComm comm, char* commName) {
  return guarded(
      "HcclGetCommName",
      [&]() -> HcclResult {
        if (commName == nullptr) return moedist::compat::failHccl(HCCL_E_PTR, "HcclGetCommName: commName is nullptr");
        moedist::Communicator c;
        if (HcclResult r = moedist::compat::lookup(comm, "HcclGetCommName", &c); r != HCCL_SUCCESS) return r;
        const std::string& name = c.name();
        const size_t n = std::min(name.size(), static_cast<size_t>(MAX_GROUP_NAME) - 1);
        std::memcpy(commName, name.data(), n);
        commName[n] = '\0';
        return HCCL_SUCCESS;
      },
      HCCL_E_INTERNAL);
}

HcclResult HcclGetRankSize(HcclComm comm, uint32_t* rankSize) {
  return guarded(
      "HcclGetRankSize",
      [&]() -> HcclResult {
        if (rankSize == nullptr) return moedist::compat::failHccl(HCCL_E_PTR, "HcclGetRankSize: rankSize is nullptr");
        moedist::Communicator c;
        if (HcclResult r = moedist::compat::lookup(comm, "HcclGetRankSize", &c); r != HCCL_SUCCESS) return r;
        *rankSize = static_cast<uint32_t>(c.size());
        return HCCL_SUCCESS;
      },
      HCCL_E_INTERNAL);
}

HcclResult HcclGetRankId(HcclComm comm, uint32_t* rank) {
  return guarded(
      "HcclGetRankId",
      [&]() -> HcclResult {
        if (rank == nullptr) return moedist::compat::failHccl(HCCL_E_PTR, "HcclGetRankId: rank is nullptr");
        moedist::Communicator c;
        if (HcclResult r = moedist::compat::lookup(comm, "HcclGetRankId", &c); r != HCCL_SUCCESS) return r;
        *rank = static_cast<uint32_t>(c.rank());
        return HCCL_SUCCESS;
      },
      HCCL_E_INTERNAL);
}

HcclResult HcclCommDestroy(HcclComm comm) {
  return guarded(
      "HcclCommDestroy",
      [&]() -> HcclResult {
        if (comm == nullptr) return moedist::compat::failHccl(HCCL_E_PTR, "HcclCommDestroy: comm is nullptr");
        std::unique_ptr<moedist::compat::HcclHandle> h;  // released after the lock (may end the communicator)
        auto& reg = moedist::compat::registry();
        {
          std::lock_guard<std::mutex> lock(reg.mu);
          auto it = reg.handles.find(comm);
          if (it == reg.handles.end())
            return moedist::compat::failHccl(
                HCCL_E_PARA, fmt::format("HcclCommDestroy: comm {} is not a live HCCL communicator", comm));
          h = std::move(it->second);
          reg.handles.erase(it);
        }
        return HCCL_SUCCESS;
      },
      HCCL_E_INTERNAL);
}

}  // extern "C"
