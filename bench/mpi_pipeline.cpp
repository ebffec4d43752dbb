// moedist_bench_mpi_pipeline: the benchmarks' hand-written MPI baseline (bench/README.md, "The baselines"), the
// pipeline a competent engineer writes without moedist, one MPI process per rank. It reads a case written by
// `moedist bench --write-case DIR`, then times, for each iteration, a dispatch (MPI_Alltoall of the row counts,
// rows packed by destination rank in token then top-k slot order, MPI_Alltoallv of their expert ids and of the bf16
// rows) and a combine (MPI_Alltoallv of the expert outputs back, then the weighted sum, residual add and RmsNorm in
// the exact order and roundings of docs/operators/combine_add_rms_norm.md, "Numerics"); between the two, untimed,
// the stand-in expert FFN of the README. Each timed call starts and ends with a
// barrier (no rank's untimed work takes a core from a peer still inside it), and each rank times its own.
// After the last iteration every rank compares its outputs bit for bit with the case's expected files, rank 0
// gathers the times, peak resident sets and the first difference, and writes the runner JSON of the README
// ("Runner output") to --json FILE or to stdout. Rank 0 also prints "mpi_pipeline: check <result>" (to stdout
// with --json FILE, else to stderr, so that stdout holds only the JSON). Exit status: 0 when the check passes
// (or is skipped), 1 when it fails, 2 when the case cannot be run (on every process).
//
// Standalone on purpose: nothing from moedist's headers or libraries, only MPI's C API, CLI11, nlohmann-json and
// the tests' cache-line allocator (tests/support/aligned_buffer.h), so that its tensors are aligned as the harness's.
// Built with the project's flags (-ffp-contract=off -fno-fast-math), so every fp32 step below is one IEEE
// operation rounded to nearest even.
#include <mpi.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/aligned_buffer.h"

namespace {

using moedist::testing::AlignedBuffer;

// ---------------------------------------------------------------------------------------------------------------
// bf16 <-> fp32

inline float bf16ToFloat(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

// Round to nearest, ties to even; NaN stays a (quiet) NaN with its sign; overflow rounds to infinity.
inline uint16_t floatToBf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// The per-token arithmetic of combine, one 64-element chunk (the ReduceSum's) at a time. Called with n = 64 for
// every whole chunk, so that after inlining the loops have a fixed trip count and the compiler vectorizes them at
// -O2; a partial last chunk (H not a multiple of 64) takes the same code with its own n. Elements are independent:
// vectorizing across them changes no result.
#define ALWAYS_INLINE inline __attribute__((always_inline))

// acc = fl(acc + fl(f(row) * w)).
ALWAYS_INLINE void accumulate(float* __restrict acc, const uint16_t* __restrict row, float w, int n) {
  for (int i = 0; i < n; ++i) {
    const float p = bf16ToFloat(row[i]) * w;
    acc[i] = acc[i] + p;
  }
}

// x = fl(acc + f(residual)), kept in acc; xOut = bf16(x); returns the chunk's share of the mean of squares,
// sq = fl(fl(x * x) * inv) summed by an adjacent-pair tree over 64 lanes (missing lanes 0).
ALWAYS_INLINE float residualChunk(float* __restrict acc, const uint16_t* __restrict res, uint16_t* __restrict xOut,
                                  float inv, int n) {
  float lane[64];
  for (int i = 0; i < n; ++i) {
    const float x = acc[i] + bf16ToFloat(res[i]);
    acc[i] = x;
    xOut[i] = floatToBf16(x);
    const float x2 = x * x;
    lane[i] = x2 * inv;
  }
  for (int i = n; i < 64; ++i) lane[i] = 0.0f;
  for (int width = 32; width >= 1; width /= 2)
    for (int i = 0; i < width; ++i) lane[i] = lane[2 * i] + lane[2 * i + 1];
  return lane[0];
}

// y = bf16(fl(f(bf16(fl(x * rstd))) * f(gamma))).
ALWAYS_INLINE void normChunk(const float* __restrict x, const uint16_t* __restrict gamma, float rstd,
                             uint16_t* __restrict y, int n) {
  for (int i = 0; i < n; ++i) {
    const uint16_t normed = floatToBf16(x[i] * rstd);
    y[i] = floatToBf16(bf16ToFloat(normed) * bf16ToFloat(gamma[i]));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The case files

struct Case {
  int worldSize = 0, hidden = 0, topk = 0, experts = 0;
  std::vector<int> tokens;
  float normEps = 0.0f;
  std::vector<int64_t> rowsReceived;
  int64_t dispatchBytes = 0, combineBytes = 0;
};

Case readCase(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "case.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
    if (j.at("format").get<std::string>() != "moedist-bench-case" || j.at("version").get<int>() != 1)
      throw std::runtime_error("not a moedist-bench-case version 1");
    Case c;
    c.worldSize = j.at("world_size").get<int>();
    c.tokens = j.at("tokens").get<std::vector<int>>();
    c.hidden = j.at("hidden").get<int>();
    c.topk = j.at("topk").get<int>();
    c.experts = j.at("experts").get<int>();
    c.normEps = static_cast<float>(j.at("norm_eps").get<double>());
    c.rowsReceived = j.at("rows_received").get<std::vector<int64_t>>();
    c.dispatchBytes = j.at("dispatch_bytes").get<int64_t>();
    c.combineBytes = j.at("combine_bytes").get<int64_t>();
    if (c.worldSize < 1 || c.hidden < 1 || c.topk < 1 || c.experts < 1 || c.experts % c.worldSize != 0 ||
        std::ssize(c.tokens) != c.worldSize || std::ssize(c.rowsReceived) != c.worldSize)
      throw std::runtime_error("inconsistent shape");
    for (int bs : c.tokens)
      if (bs < 0) throw std::runtime_error("negative token count");
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path.string() + ": " + e.what());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path.string() + ": " + e.what());
  }
}

template <class T>
AlignedBuffer<T> readRaw(const std::filesystem::path& path, size_t count) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  const auto bytes = static_cast<size_t>(in.tellg());
  if (bytes != count * sizeof(T))
    throw std::runtime_error(path.string() + ": " + std::to_string(bytes) + " bytes, expected " +
                             std::to_string(count * sizeof(T)));
  AlignedBuffer<T> values(count);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(bytes));
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return values;
}

struct RankData {
  AlignedBuffer<uint16_t> x, residual, gamma, expectY, expectXOut;
  AlignedBuffer<int32_t> ids;
  AlignedBuffer<float> scales, expectRstd;
};

RankData readRank(const Case& c, const std::filesystem::path& dir, int rank) {
  const std::filesystem::path r = dir / ("rank" + std::to_string(rank));
  const auto bs = static_cast<size_t>(c.tokens[static_cast<size_t>(rank)]);
  const auto h = static_cast<size_t>(c.hidden), k = static_cast<size_t>(c.topk);
  RankData d;
  d.x = readRaw<uint16_t>(r / "x.bin", bs * h);
  d.ids = readRaw<int32_t>(r / "expert_ids.bin", bs * k);
  d.scales = readRaw<float>(r / "expert_scales.bin", bs * k);
  d.residual = readRaw<uint16_t>(r / "residual_x.bin", bs * h);
  d.gamma = readRaw<uint16_t>(r / "gamma.bin", h);
  d.expectY = readRaw<uint16_t>(r / "y.bin", bs * h);
  d.expectRstd = readRaw<float>(r / "rstd.bin", bs);
  d.expectXOut = readRaw<uint16_t>(r / "x_out.bin", bs * h);
  for (int32_t e : d.ids)
    if (e < 0 || e >= c.experts)
      throw std::runtime_error((r / "expert_ids.bin").string() + ": expert id " + std::to_string(e) + " outside [0, " +
                               std::to_string(c.experts) + ")");
  return d;
}

// ---------------------------------------------------------------------------------------------------------------
// The pipeline

// A buffer that only grows: sized on first use (in the warmup), reused afterwards.
template <class T>
struct Buffer {
  AlignedBuffer<T> data;
  T* ensure(size_t n) {
    if (n > data.size() || data.empty()) data = AlignedBuffer<T>(std::max<size_t>(n, 1));
    return data.data();
  }
};

class Pipeline {
 public:
  Pipeline(const Case& c, const RankData& d, int rank, MPI_Comm comm)
      : d_(d),
        comm_(comm),
        W_(c.worldSize),
        H_(c.hidden),
        K_(c.topk),
        L_(c.experts / c.worldSize),
        Bs_(c.tokens[static_cast<size_t>(rank)]),
        eps_(c.normEps),
        sendCounts_(static_cast<size_t>(W_)),
        recvCounts_(static_cast<size_t>(W_)),
        sendDispl_(static_cast<size_t>(W_)),
        recvDispl_(static_cast<size_t>(W_)),
        cursor_(static_cast<size_t>(W_)),
        sendRows_(static_cast<size_t>(Bs_) * K_ * H_),
        sendIds_(static_cast<size_t>(Bs_) * K_),
        slotRow_(static_cast<size_t>(Bs_) * K_),
        retRows_(static_cast<size_t>(Bs_) * K_ * H_),
        acc_((static_cast<size_t>(H_) + 63) / 64 * 64),
        y_(static_cast<size_t>(Bs_) * H_),
        rstd_(static_cast<size_t>(Bs_)),
        xOut_(static_cast<size_t>(Bs_) * H_) {
    MPI_Type_contiguous(H_, MPI_UINT16_T, &rowType_);  // one bf16 row: counts in rows, never overflowing an int
    MPI_Type_commit(&rowType_);
  }
  ~Pipeline() { MPI_Type_free(&rowType_); }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Routing, count exchange, packing, and the exchange of the expert ids and rows.
  void dispatch() {
    std::fill(sendCounts_.begin(), sendCounts_.end(), 0);
    const int32_t* ids = d_.ids.data();
    const int64_t slots = static_cast<int64_t>(Bs_) * K_;
    for (int64_t i = 0; i < slots; ++i) ++sendCounts_[static_cast<size_t>(ids[i] / L_)];
    MPI_Alltoall(sendCounts_.data(), 1, MPI_INT, recvCounts_.data(), 1, MPI_INT, comm_);
    int sendTotal = 0, recvTotal = 0;
    for (int r = 0; r < W_; ++r) {
      sendDispl_[static_cast<size_t>(r)] = sendTotal;
      sendTotal += sendCounts_[static_cast<size_t>(r)];
      recvDispl_[static_cast<size_t>(r)] = recvTotal;
      recvTotal += recvCounts_[static_cast<size_t>(r)];
    }
    recvTotal_ = recvTotal;

    // Token order, then slot order; the position of (t, k) is where its row comes back in combine.
    std::copy(sendDispl_.begin(), sendDispl_.end(), cursor_.begin());
    const size_t rowBytes = static_cast<size_t>(H_) * sizeof(uint16_t);
    for (int t = 0; t < Bs_; ++t) {
      const uint16_t* src = d_.x.data() + static_cast<size_t>(t) * H_;
      for (int k = 0; k < K_; ++k) {
        const size_t slot = static_cast<size_t>(t) * K_ + k;
        const int32_t e = ids[slot];
        const int pos = cursor_[static_cast<size_t>(e / L_)]++;
        std::memcpy(sendRows_.data() + static_cast<size_t>(pos) * H_, src, rowBytes);
        sendIds_[static_cast<size_t>(pos)] = e;
        slotRow_[slot] = pos;
      }
    }

    int32_t* recvIds = recvIds_.ensure(static_cast<size_t>(recvTotal));
    uint16_t* recvRows = recvRows_.ensure(static_cast<size_t>(recvTotal) * H_);
    MPI_Alltoallv(sendIds_.data(), sendCounts_.data(), sendDispl_.data(), MPI_INT32_T, recvIds, recvCounts_.data(),
                  recvDispl_.data(), MPI_INT32_T, comm_);
    MPI_Alltoallv(sendRows_.data(), sendCounts_.data(), sendDispl_.data(), rowType_, recvRows, recvCounts_.data(),
                  recvDispl_.data(), rowType_, comm_);
  }

  // The stand-in expert FFN, in place on the received rows: out_h = bf16(f(row_h) * c).
  void expert() {
    const int32_t* ids = recvIds_.data.data();
    uint16_t* rows = recvRows_.data.data();
    for (int64_t i = 0; i < recvTotal_; ++i) {
      const int32_t local = ids[i] % L_;
      const float c = 1.0f + 0.125f * static_cast<float>(local % 8);
      uint16_t* row = rows + static_cast<size_t>(i) * H_;
      for (int h = 0; h < H_; ++h) row[h] = floatToBf16(bf16ToFloat(row[h]) * c);
    }
  }

  // The rows back (counts reversed), then per token the weighted sum, residual add and RmsNorm.
  void combine() {
    MPI_Alltoallv(recvRows_.data.data(), recvCounts_.data(), recvDispl_.data(), rowType_, retRows_.data(),
                  sendCounts_.data(), sendDispl_.data(), rowType_, comm_);
    const float inv = 1.0f / static_cast<float>(H_);
    const uint16_t* gamma = d_.gamma.data();
    float* acc = acc_.data();
    for (int t = 0; t < Bs_; ++t) {
      const float* w = d_.scales.data() + static_cast<size_t>(t) * K_;
      const int* pos = slotRow_.data() + static_cast<size_t>(t) * K_;
      const uint16_t* res = d_.residual.data() + static_cast<size_t>(t) * H_;
      uint16_t* xOut = xOut_.data() + static_cast<size_t>(t) * H_;
      uint16_t* y = y_.data() + static_cast<size_t>(t) * H_;
      // Weighted sum in ascending k, residual, xOut and the mean of squares, chunk by chunk; the chunk sums are
      // added left to right from the first one's.
      float ms = 0.0f;
      for (int base = 0; base < H_; base += 64) {
        const int n = std::min(64, H_ - base);
        float* a = acc + base;
        for (int i = 0; i < 64; ++i) a[i] = 0.0f;  // acc_ has room for a whole last chunk
        float part;
        if (n == 64) {
          for (int k = 0; k < K_; ++k)
            accumulate(a, retRows_.data() + static_cast<size_t>(pos[k]) * H_ + base, w[k], 64);
          part = residualChunk(a, res + base, xOut + base, inv, 64);
        } else {
          for (int k = 0; k < K_; ++k)
            accumulate(a, retRows_.data() + static_cast<size_t>(pos[k]) * H_ + base, w[k], n);
          part = residualChunk(a, res + base, xOut + base, inv, n);
        }
        ms = base == 0 ? part : ms + part;
      }
      const float sum = ms + eps_;
      const float root = std::sqrt(sum);
      const float rstd = 1.0f / root;
      rstd_[static_cast<size_t>(t)] = rstd;
      for (int base = 0; base < H_; base += 64) {
        const int n = std::min(64, H_ - base);
        if (n == 64)
          normChunk(acc + base, gamma + base, rstd, y + base, 64);
        else
          normChunk(acc + base, gamma + base, rstd, y + base, n);
      }
    }
  }

  int64_t rowsReceived() const { return recvTotal_; }
  const AlignedBuffer<uint16_t>& y() const { return y_; }
  const AlignedBuffer<float>& rstd() const { return rstd_; }
  const AlignedBuffer<uint16_t>& xOut() const { return xOut_; }

 private:
  const RankData& d_;
  MPI_Comm comm_;
  MPI_Datatype rowType_ = MPI_DATATYPE_NULL;
  int W_, H_, K_, L_, Bs_;
  float eps_;
  std::vector<int> sendCounts_, recvCounts_, sendDispl_, recvDispl_, cursor_;
  AlignedBuffer<uint16_t> sendRows_;
  AlignedBuffer<int32_t> sendIds_;
  std::vector<int> slotRow_;
  Buffer<int32_t> recvIds_;
  Buffer<uint16_t> recvRows_;
  int64_t recvTotal_ = 0;
  AlignedBuffer<uint16_t> retRows_;
  AlignedBuffer<float> acc_;  // x of one token, unrounded, H rounded up to whole chunks
  AlignedBuffer<uint16_t> y_;
  AlignedBuffer<float> rstd_;
  AlignedBuffer<uint16_t> xOut_;
};

// ---------------------------------------------------------------------------------------------------------------
// The check, the gathering and the JSON

std::string hex(uint32_t bits, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*x", digits, bits);
  return buf;
}

// "" when this rank's outputs are the expected ones, else its first difference.
std::string checkRank(const Case& c, const RankData& d, const Pipeline& p, int rank) {
  const std::string who = "rank " + std::to_string(rank) + " ";
  const int64_t expectRows = c.rowsReceived[static_cast<size_t>(rank)];
  if (p.rowsReceived() != expectRows)
    return who + "received " + std::to_string(p.rowsReceived()) + " rows, expected " + std::to_string(expectRows);
  const int64_t bs = c.tokens[static_cast<size_t>(rank)], h = c.hidden;
  auto rows = [&](const char* name, const AlignedBuffer<uint16_t>& got, const AlignedBuffer<uint16_t>& want) {
    for (int64_t i = 0; i < bs * h; ++i)
      if (got[static_cast<size_t>(i)] != want[static_cast<size_t>(i)])
        return who + name + " token " + std::to_string(i / h) + " column " + std::to_string(i % h) + ": " +
               hex(got[static_cast<size_t>(i)], 4) + ", expected " + hex(want[static_cast<size_t>(i)], 4);
    return std::string();
  };
  if (std::string diff = rows("x_out", p.xOut(), d.expectXOut); !diff.empty()) return diff;
  for (int64_t t = 0; t < bs; ++t) {
    const auto got = std::bit_cast<uint32_t>(p.rstd()[static_cast<size_t>(t)]);
    const auto want = std::bit_cast<uint32_t>(d.expectRstd[static_cast<size_t>(t)]);
    if (got != want)
      return who + "rstd token " + std::to_string(t) + " column 0: " + hex(got, 8) + ", expected " + hex(want, 8);
  }
  return rows("y", p.y(), d.expectY);
}

// Rank 0 gets every rank's string, in rank order.
std::vector<std::string> gatherStrings(const std::string& mine, int rank, int size, MPI_Comm comm) {
  const int len = static_cast<int>(mine.size());
  std::vector<int> lens(static_cast<size_t>(size)), displs(static_cast<size_t>(size));
  MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, comm);
  int total = 0;
  for (int r = 0; r < size; ++r) {
    displs[static_cast<size_t>(r)] = total;
    total += lens[static_cast<size_t>(r)];
  }
  std::vector<char> all(static_cast<size_t>(std::max(total, 1)));
  MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, 0, comm);
  std::vector<std::string> out;
  if (rank == 0)
    for (int r = 0; r < size; ++r)
      out.emplace_back(all.data() + displs[static_cast<size_t>(r)], static_cast<size_t>(lens[static_cast<size_t>(r)]));
  return out;
}

// Rank 0 gets every rank's values, one row per rank.
std::vector<std::vector<double>> gatherTimes(const std::vector<double>& mine, int rank, int size, MPI_Comm comm) {
  const auto n = mine.size();
  std::vector<double> all(rank == 0 ? n * static_cast<size_t>(size) : 0);
  MPI_Gather(mine.data(), static_cast<int>(n), MPI_DOUBLE, all.data(), static_cast<int>(n), MPI_DOUBLE, 0, comm);
  std::vector<std::vector<double>> out;
  if (rank == 0)
    for (int r = 0; r < size; ++r)
      out.emplace_back(all.begin() + static_cast<std::ptrdiff_t>(n) * r,
                       all.begin() + static_cast<std::ptrdiff_t>(n) * (r + 1));
  return out;
}

int64_t peakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

int run(int argc, char** argv) {
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);

  CLI::App app{"The hand-written MPI baseline of the benchmarks (bench/README.md): one process per rank."};
  std::string caseDir, jsonPath;
  int iterations = 20, warmup = 3;
  bool noCheck = false;
  app.add_option("--case", caseDir, "case directory written by `moedist bench --write-case DIR`")->required();
  app.add_option("--iterations", iterations, "timed iterations")->check(CLI::Range(1, 1 << 30))->capture_default_str();
  app.add_option("--warmup", warmup, "untimed iterations first")->check(CLI::Range(0, 1 << 30))->capture_default_str();
  app.add_option("--json", jsonPath, "where to write the runner JSON (default: stdout)");
  app.add_flag("--no-check", noCheck, "do not compare the outputs with the case's expected files");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (rank == 0) return app.exit(e);
    return e.get_exit_code();
  }

  // Load; every process learns whether all of them could.
  Case c;
  RankData data;
  std::string error;
  try {
    c = readCase(caseDir);
    if (c.worldSize != size)
      error = "the case " + caseDir + " has world_size " + std::to_string(c.worldSize) + ", but the job has " +
              std::to_string(size) + " process" + (size == 1 ? "" : "es") + " (run it with mpirun -np " +
              std::to_string(c.worldSize) + ")";
    else
      data = readRank(c, caseDir, rank);
  } catch (const std::exception& e) {
    error = e.what();
  }
  int failed = error.empty() ? 0 : 1, anyFailed = 0;
  MPI_Allreduce(&failed, &anyFailed, 1, MPI_INT, MPI_MAX, comm);
  if (anyFailed) {
    if (failed) std::fprintf(stderr, "mpi_pipeline: rank %d: %s\n", rank, error.c_str());
    return 2;
  }

  // The iterations.
  Pipeline pipeline(c, data, rank, comm);
  std::vector<double> dispatchSeconds, combineSeconds;
  dispatchSeconds.reserve(static_cast<size_t>(iterations));
  combineSeconds.reserve(static_cast<size_t>(iterations));
  for (int it = 0; it < warmup + iterations; ++it) {
    MPI_Barrier(comm);
    const double t0 = MPI_Wtime();
    pipeline.dispatch();
    const double t1 = MPI_Wtime();
    MPI_Barrier(comm);  // as moedist run: no rank's expert work competes with a peer still in dispatch
    pipeline.expert();
    MPI_Barrier(comm);
    const double t2 = MPI_Wtime();
    pipeline.combine();
    const double t3 = MPI_Wtime();
    MPI_Barrier(comm);
    if (it >= warmup) {
      dispatchSeconds.push_back(t1 - t0);
      combineSeconds.push_back(t3 - t2);
    }
  }

  // The check, agreed on rank 0: the first difference of the lowest rank that has one.
  const std::string mine = noCheck ? std::string() : checkRank(c, data, pipeline, rank);
  const std::vector<std::string> diffs = gatherStrings(mine, rank, size, comm);
  const auto dispatchAll = gatherTimes(dispatchSeconds, rank, size, comm);
  const auto combineAll = gatherTimes(combineSeconds, rank, size, comm);
  const int64_t rss = peakRssBytes();
  std::vector<int64_t> rssAll(static_cast<size_t>(size));
  MPI_Gather(&rss, 1, MPI_INT64_T, rssAll.data(), 1, MPI_INT64_T, 0, comm);

  int status = 0;
  if (rank == 0) {
    std::string check = noCheck ? "not checked" : "pass";
    for (const std::string& d : diffs)
      if (!d.empty()) {
        check = "fail: " + d;
        status = 1;
        break;
      }
    const bool sameTokens = std::all_of(c.tokens.begin(), c.tokens.end(), [&](int b) { return b == c.tokens[0]; });
    nlohmann::ordered_json doc;
    doc["runner"] = "mpi_pipeline";
    doc["world_size"] = c.worldSize;
    if (sameTokens)
      doc["tokens"] = c.tokens[0];
    else
      doc["tokens"] = c.tokens;
    doc["hidden"] = c.hidden;
    doc["topk"] = c.topk;
    doc["experts"] = c.experts;
    doc["warmup"] = warmup;
    doc["iterations"] = iterations;
    doc["dispatch_seconds"] = dispatchAll;
    doc["combine_seconds"] = combineAll;
    doc["dispatch_bytes"] = c.dispatchBytes;
    doc["combine_bytes"] = c.combineBytes;
    doc["peak_rss_bytes"] = rssAll;
    doc["check"] = check;
    const std::string text = doc.dump(1) + "\n";
    if (jsonPath.empty()) {
      std::fputs(text.c_str(), stdout);
      std::fflush(stdout);
      std::fprintf(stderr, "mpi_pipeline: check %s\n", check.c_str());
    } else {
      std::ofstream out(jsonPath);
      out << text;
      out.close();
      if (!out) {
        std::fprintf(stderr, "mpi_pipeline: --json: cannot write %s\n", jsonPath.c_str());
        status = 2;
      }
      std::printf("mpi_pipeline: check %s\n", check.c_str());
      std::fflush(stdout);
    }
  }
  MPI_Bcast(&status, 1, MPI_INT, 0, comm);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 2;
  try {
    status = run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_pipeline: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  MPI_Finalize();
  return status;
}
