// The problem a `moedist bench` point runs, written as files for the baselines (bench/README.md, "Case files"):
// every rank's inputs and the reference model's outputs, so that the hand-written pipelines run the same data as
// the operators and are checked against the same oracle.
#pragma once

#include <cstdint>
#include <string>

namespace moedist::tool {

// A benchmark point: bf16 rows, no shared or special experts, no masks, no TP, no quantization.
struct BenchShape {
  int worldSize = 8, tokens = 128, hidden = 7168, topk = 8, experts = 256;
  uint64_t seed = 1;
};

// Writes DIR/case.json and DIR/rank<r>/*.bin (creating DIR). Throws std::runtime_error naming what failed.
void writeBenchCase(const BenchShape& shape, const std::string& dir);

}  // namespace moedist::tool
