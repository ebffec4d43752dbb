// The topology of one call: which ranks take part and which role each plays (SPEC 1, 2.2 and 5).
//
// Without elastic scale-in it is the attributes' world. With elasticInfo whose flag is set, the survivors
// re-derive everything from (W', Srank', M') and the renumbering tables; removed ranks do not take part, and a
// removed rank that calls anyway gets an error. All survivors pass the same elasticInfo, so every check here
// fails identically on every participating rank without any exchange.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/problem.h"
#include "moedist/status.h"

namespace moedist::core {

struct Topology {
  bool scaledIn = false;
  int64_t W = 0;                  // ranks taking part (W')
  int64_t Srank = 0;              // shared-expert ranks among them (Srank')
  int64_t M = 0;                  // MoE experts among them (M'); MoE ids are in [0, M)
  int64_t L = 0;                  // MoE experts per MoE rank (unchanged by scale-in)
  int64_t R = 0;                  // ranks per shared expert (0 without shared experts)
  int64_t self = 0;               // this rank's id in the (possibly renumbered) world
  std::vector<int> physical;      // new id -> physical rank
  std::vector<int> participants;  // physical ranks taking part, ascending

  bool isSharedRank(int64_t id) const { return id < Srank; }
  bool selfShared() const { return isSharedRank(self); }
  // Destination id of MoE expert e (e < M) and of shared expert j for source id s (SPEC 2.2).
  int64_t moeRank(int64_t e) const { return Srank + e / L; }
  int64_t sharedRank(int64_t s, int64_t j) const { return s % R + j * R; }
  // Receive blocks of rank `id`: W*L (MoE rank: block le*W + s) or W (shared rank: block s).
  int64_t numRecvBlocks(int64_t id) const { return isSharedRank(id) ? W : W * L; }
};

// elasticInfo: the (4 + 2W,) table as dense int32, or empty when not given.
Status makeTopology(Operator op, const Geometry& geo, std::span<const int32_t> elasticInfo, Topology* topo);

}  // namespace moedist::core
