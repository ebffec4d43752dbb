#include "core/topology.h"

#include <fmt/format.h>

#include <algorithm>

namespace moedist::core {

namespace {
Status bad(Operator op, const std::string& what) {
  return Status(StatusCode::kInvalidArgument, fmt::format("{}: elasticInfo: {}", toString(op), what));
}
}  // namespace

Status makeTopology(Operator op, const Geometry& geo, std::span<const int32_t> e, Topology* topo) {
  Topology& t = *topo;
  t = Topology{};
  t.L = geo.L;
  if (e.empty() || e[0] == 0) {
    t.W = geo.W;
    t.Srank = geo.Srank;
    t.M = geo.M;
    t.self = geo.r;
    t.physical.resize(static_cast<size_t>(geo.W));
    for (int i = 0; i < geo.W; ++i) t.physical[static_cast<size_t>(i)] = i;
    t.participants = t.physical;
  } else {
    const int64_t W = geo.W;
    const int64_t newW = e[1], newSrank = e[2], newM = e[3];
    std::span<const int32_t> table1 = e.subspan(4, static_cast<size_t>(W));
    std::span<const int32_t> table2 = e.subspan(static_cast<size_t>(4 + W), static_cast<size_t>(W));
    if (newW < 1 || newW > W) return bad(op, fmt::format("[1] (ranks after scale-in) is {}, expected 1..{}", newW, W));
    if (newSrank < 0 || newSrank >= newW)
      return bad(op, fmt::format("[2] (shared-expert ranks after scale-in) is {}, expected 0..{}", newSrank, newW - 1));
    if (geo.S > 0 && (newSrank == 0 || newSrank % geo.S != 0))
      return bad(op, fmt::format("[2] (shared-expert ranks after scale-in) is {}, expected a positive multiple of "
                                 "sharedExpertNum {}",
                                 newSrank, geo.S));
    if (geo.S == 0 && newSrank != 0)
      return bad(op, fmt::format("[2] (shared-expert ranks after scale-in) is {}, expected 0 without shared experts",
                                 newSrank));
    if (newM > geo.M)
      return bad(op,
                 fmt::format("[3] (MoE experts after scale-in) is {}, expected at most moeExpertNum {}", newM, geo.M));
    if (newM != geo.L * (newW - newSrank))
      return bad(op, fmt::format("[3] (MoE experts after scale-in) is {}, expected {} so that every MoE rank keeps its "
                                 "{} experts ({} MoE ranks)",
                                 newM, geo.L * (newW - newSrank), geo.L, newW - newSrank));
    int64_t survivors = 0;
    for (int64_t p = 0; p < W; ++p) {
      const int32_t n = table1[static_cast<size_t>(p)];
      if (n == -1) continue;
      if (n < 0 || n >= newW)
        return bad(op, fmt::format("[{}] (new id of rank {}) is {}, expected -1 or 0..{}", 4 + p, p, n, newW - 1));
      if (table2[static_cast<size_t>(n)] != p)
        return bad(op, fmt::format("tables are not inverse: rank {} has new id {} but [{}] (rank of new id {}) is {}",
                                   p, n, 4 + W + n, n, table2[static_cast<size_t>(n)]));
      ++survivors;
    }
    if (survivors != newW) return bad(op, fmt::format("{} ranks have a new id, expected [1] = {}", survivors, newW));
    const int32_t selfNew = table1[static_cast<size_t>(geo.r)];
    if (selfNew == -1)
      return bad(op,
                 fmt::format("rank {} was removed by the scale-in (new id -1) and must not call the operator", geo.r));
    t.scaledIn = true;
    t.W = newW;
    t.Srank = newSrank;
    t.M = newM;
    t.self = selfNew;
    t.physical.assign(table2.begin(), table2.begin() + newW);
    t.participants = t.physical;
    std::sort(t.participants.begin(), t.participants.end());
  }
  t.R = geo.S > 0 ? t.Srank / geo.S : 0;
  return okStatus();
}

}  // namespace moedist::core
