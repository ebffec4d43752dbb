// HCCL root infos over MPI; compat/hccl_mpi.h describes the protocol.
//
// The handshake uses point-to-point messages on MPI_COMM_WORLD, as nothing else is common to the members before
// their communicator exists, with tags far above what applications usually use (kTagBase + 2 * (root info id mod
// 2^20)): an application receiving with MPI_ANY_TAG on MPI_COMM_WORLD while HcclCommInitRootInfo runs could take
// them, which the README mentions.
#include "compat/hccl_mpi.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "moedist/mpi.h"
#include "util/check.h"

namespace moedist::compat {

namespace {

constexpr char kPrefix[] = "moedist-mpi-root:";
constexpr int kTagBase = 0x3D000000;
constexpr int kIdSpan = 1 << 20;
constexpr int32_t kRefused = -2;  // first table entry of the root's answer to a member it refused

using Clock = std::chrono::steady_clock;

struct Join {  // member -> root
  uint64_t id = 0;
  uint32_t nRanks = 0;
  uint32_t rank = 0;
  int32_t worldRank = 0;
  int32_t pad = 0;
};

struct Parsed {
  int root = -1;
  uint64_t id = 0;
};

bool parse(const HcclRootInfo& info, Parsed* out) {
  const std::string s(info.internal, strnlen(info.internal, sizeof(info.internal)));
  if (s.rfind(kPrefix, 0) != 0) return false;
  unsigned long long id = 0;
  int root = -1;
  if (std::sscanf(s.c_str() + sizeof(kPrefix) - 1, "%d:%llu", &root, &id) != 2 || root < 0) return false;
  out->root = root;
  out->id = id;
  return true;
}

int worldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Polls `done` until it is true or the deadline passes, sleeping a little between polls.
template <typename Done>
bool pollUntil(Clock::time_point deadline, Done done) {
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

bool testDone(MPI_Request* request) {
  int flag = 0;
  MPI_Test(request, &flag, MPI_STATUS_IGNORE);
  return flag != 0;
}

// Sends on every request's completion or the deadline; false at the deadline (requests cancelled).
bool completeAll(std::vector<MPI_Request>& requests, Clock::time_point deadline) {
  const bool done = pollUntil(deadline, [&] {
    return std::all_of(requests.begin(), requests.end(), [](MPI_Request& r) { return testDone(&r); });
  });
  if (!done) {
    for (MPI_Request& r : requests) {
      if (r == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&r);
      MPI_Request_free(&r);
    }
  }
  return done;
}

long long msSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// The root: gathers the members' world ranks and answers each with the table (or a refusal).
Status gather(const Parsed& p, uint32_t nRanks, uint32_t rank, int tag, Clock::time_point deadline,
              std::vector<int32_t>* table) {
  const Clock::time_point start = Clock::now();
  table->assign(nRanks, -1);
  (*table)[rank] = worldRank();
  uint32_t joined = 1;
  std::vector<MPI_Request> sends;
  std::vector<std::vector<int32_t>> refusals;
  refusals.reserve(64);
  while (joined < nRanks) {
    int found = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &found, &status);
    if (!found) {
      if (Clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      continue;
    }
    Join j;
    MPI_Recv(&j, sizeof j, MPI_BYTE, status.MPI_SOURCE, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);  // arrived: at once
    if (j.id != p.id || j.nRanks != nRanks || j.rank >= nRanks || (*table)[j.rank] != -1) {
      refusals.emplace_back(nRanks, kRefused);
      sends.push_back(MPI_REQUEST_NULL);
      MPI_Isend(refusals.back().data(), static_cast<int>(nRanks), MPI_INT32_T, status.MPI_SOURCE, tag + 1,
                MPI_COMM_WORLD, &sends.back());
      continue;
    }
    (*table)[j.rank] = j.worldRank;
    ++joined;
  }
  if (joined < nRanks) {
    std::string late;
    for (uint32_t r = 0; r < nRanks; ++r)
      if ((*table)[r] == -1) late += (late.empty() ? "" : ", ") + std::to_string(r);
    for (uint32_t r = 0; r < nRanks; ++r)  // members that did join must not wait for an answer that never comes
      if ((*table)[r] >= 0 && r != rank) {
        refusals.emplace_back(nRanks, kRefused);
        sends.push_back(MPI_REQUEST_NULL);
        MPI_Isend(refusals.back().data(), static_cast<int>(nRanks), MPI_INT32_T, (*table)[r], tag + 1, MPI_COMM_WORLD,
                  &sends.back());
      }
    completeAll(sends, Clock::now() + std::chrono::seconds(1));
    return Status(StatusCode::kTimeout, fmt::format("timed out after {} ms waiting for rank(s) {} of {} to join",
                                                    msSince(start), late, nRanks));
  }
  for (uint32_t r = 0; r < nRanks; ++r) {
    if (r == rank) continue;
    sends.push_back(MPI_REQUEST_NULL);
    MPI_Isend(table->data(), static_cast<int>(nRanks), MPI_INT32_T, (*table)[r], tag + 1, MPI_COMM_WORLD,
              &sends.back());
  }
  if (!completeAll(sends, deadline))
    return Status(StatusCode::kTimeout, "timed out sending the rank table to the members");
  return okStatus();
}

// A member: tells the root who it is and waits for the table.
Status ask(const Parsed& p, uint32_t nRanks, uint32_t rank, int tag, Clock::time_point deadline,
           std::vector<int32_t>* table) {
  const Clock::time_point start = Clock::now();
  table->assign(nRanks, -1);
  Join j;
  j.id = p.id;
  j.nRanks = nRanks;
  j.rank = rank;
  j.worldRank = worldRank();
  MPI_Request requests[2];
  MPI_Irecv(table->data(), static_cast<int>(nRanks), MPI_INT32_T, p.root, tag + 1, MPI_COMM_WORLD, &requests[1]);
  MPI_Isend(&j, sizeof j, MPI_BYTE, p.root, tag, MPI_COMM_WORLD, &requests[0]);
  std::vector<MPI_Request> both(requests, requests + 2);
  if (!completeAll(both, deadline))
    return Status(StatusCode::kTimeout, fmt::format("timed out after {} ms waiting for the root (MPI_COMM_WORLD rank "
                                                    "{}) to answer; it must call HcclCommInitRootInfo too",
                                                    msSince(start), p.root));
  if ((*table)[0] == kRefused)
    return Status(StatusCode::kInvalidValue,
                  fmt::format("the root refused rank {}: another member gave a different nRanks or the same rank, or "
                              "some rank did not join in time",
                              rank));
  return okStatus();
}

}  // namespace

bool mpiRootInfoWanted() {
  int initialized = 0, finalized = 0, size = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return false;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size > 1;
}

void makeMpiRootInfo(HcclRootInfo* rootInfo) {
  static std::atomic<uint64_t> nextId{0};
  const std::string key = fmt::format("{}{}:{}", kPrefix, worldRank(), nextId.fetch_add(1));
  std::memset(rootInfo->internal, 0, sizeof(rootInfo->internal));
  std::memcpy(rootInfo->internal, key.data(), key.size());
}

bool isMpiRootInfo(const HcclRootInfo& rootInfo) {
  Parsed p;
  return parse(rootInfo, &p);
}

Status joinMpiRootInfo(uint32_t nRanks, const HcclRootInfo& rootInfo, uint32_t rank, std::chrono::milliseconds timeout,
                       Communicator* out) {
  Parsed p;
  if (!parse(rootInfo, &p)) return Status(StatusCode::kInvalidValue, "rootInfo is not an MPI root info");
  if (!mpiRootInfoWanted())
    return Status(StatusCode::kInvalidArgument,
                  "rootInfo comes from an MPI process, but MPI is not initialized here (call MPI_Init_thread)");
  int worldSize = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &worldSize);
  if (p.root >= worldSize || nRanks > static_cast<uint32_t>(worldSize))
    return Status(StatusCode::kInvalidValue,
                  fmt::format("nRanks is {} and the root is MPI_COMM_WORLD rank {}, but MPI_COMM_WORLD has {} "
                              "processes",
                              nRanks, p.root, worldSize));
  const int tag = kTagBase + 2 * static_cast<int>(p.id % kIdSpan);
  const Clock::time_point deadline = Clock::now() + timeout;
  std::vector<int32_t> table;
  const bool root = worldRank() == p.root;
  MOEDIST_RETURN_IF_ERROR(root ? gather(p, nRanks, rank, tag, deadline, &table)
                               : ask(p, nRanks, rank, tag, deadline, &table));

  // The members' own MPI communicator, in HCCL rank order (collective over the members only).
  MPI_Group world, members;
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  MPI_Group_incl(world, static_cast<int>(nRanks), table.data(), &members);
  MPI_Comm comm = MPI_COMM_NULL;
  const int rc = MPI_Comm_create_group(MPI_COMM_WORLD, members, tag, &comm);
  MPI_Group_free(&members);
  MPI_Group_free(&world);
  if (rc != MPI_SUCCESS || comm == MPI_COMM_NULL)
    return Status(StatusCode::kInternal, fmt::format("MPI_Comm_create_group failed with code {}", rc));
  Status s = createMpiCommunicator(comm, CommOptions{}, out);
  MPI_Comm_free(&comm);  // the communicator keeps its own duplicate
  return s;
}

}  // namespace moedist::compat
