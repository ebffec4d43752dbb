#include "bench_case.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "support/scenario.h"

namespace moedist::tool {

namespace {

template <class T>
void writeRaw(const std::filesystem::path& path, const std::vector<T>& values) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(T)));
  if (!out) throw std::runtime_error(fmt::format("moedist bench: cannot write {}", path.string()));
}

}  // namespace

void writeBenchCase(const BenchShape& shape, const std::string& dir) {
  testing::Scenario sc;
  sc.cfg.W = shape.worldSize;
  sc.cfg.M = shape.experts;
  sc.cfg.K = shape.topk;
  sc.cfg.H = shape.hidden;
  sc.bs.assign(static_cast<size_t>(shape.worldSize), shape.tokens);
  sc.seed = shape.seed;
  const ref::Config cfg = sc.config();
  const ref::DispatchInputs din = sc.makeDispatchInputs();
  ref::DispatchOutputs dout;
  if (auto err = ref::dispatch(cfg, din, &dout)) throw std::runtime_error("moedist bench: reference dispatch: " + *err);
  const ref::CombineInputs cin = sc.makeCombineInputs(dout);
  ref::CombineOutputs cout;
  if (auto err = ref::combine(cfg, din, cin, &cout))
    throw std::runtime_error("moedist bench: reference combine: " + *err);

  const std::filesystem::path root(dir);
  std::filesystem::create_directories(root);
  nlohmann::json tokens = nlohmann::json::array(), rows = nlohmann::json::array();
  int64_t totalRows = 0;
  for (int r = 0; r < cfg.W; ++r) {
    const auto& d = din[0][static_cast<size_t>(r)];
    const auto& c = cin[0][static_cast<size_t>(r)];
    const auto& o = cout[0][static_cast<size_t>(r)];
    const std::filesystem::path rank = root / fmt::format("rank{}", r);
    std::filesystem::create_directories(rank);
    writeRaw(rank / "x.bin", d.x);
    writeRaw(rank / "expert_ids.bin", d.expertIds);
    writeRaw(rank / "expert_scales.bin", c.expertScales);
    writeRaw(rank / "residual_x.bin", c.residualX);
    writeRaw(rank / "gamma.bin", c.gamma);
    writeRaw(rank / "y.bin", o.yOut);
    writeRaw(rank / "rstd.bin", o.rstdOut);
    writeRaw(rank / "x_out.bin", o.xOut);
    tokens.push_back(d.Bs);
    const int64_t received = dout[0][static_cast<size_t>(r)].numRows;
    rows.push_back(received);
    totalRows += received;
  }
  const int64_t bytes = totalRows * cfg.H * 2;
  const nlohmann::json manifest = {{"format", "moedist-bench-case"},
                                   {"version", 1},
                                   {"world_size", cfg.W},
                                   {"tokens", tokens},
                                   {"hidden", cfg.H},
                                   {"topk", cfg.K},
                                   {"experts", cfg.M},
                                   {"norm_eps", cfg.normEps},
                                   {"seed", shape.seed},
                                   {"rows_received", rows},
                                   {"dispatch_bytes", bytes},
                                   {"combine_bytes", bytes}};
  std::ofstream out(root / "case.json");
  out << manifest.dump(2) << "\n";
  if (!out) throw std::runtime_error(fmt::format("moedist bench: cannot write {}", (root / "case.json").string()));
}

}  // namespace moedist::tool
