#include "core/tensor_access.h"

#include <cstring>

#include "util/check.h"

namespace moedist::core {

namespace {

// Copies the sub-tensor at `src` spanning dims [d, ndim) into dst; returns the advanced dst.
std::byte* gather(const TensorView& v, int d, const std::byte* src, std::byte* dst) {
  const int64_t elem = dtypeBytes(v.dtype());
  if (d == v.ndim() - 1) {
    if (v.stride(d) == 1) {
      std::memcpy(dst, src, static_cast<size_t>(v.dim(d) * elem));
      return dst + v.dim(d) * elem;
    }
    for (int64_t i = 0; i < v.dim(d); ++i, dst += elem) std::memcpy(dst, src + i * v.stride(d) * elem, elem);
    return dst;
  }
  for (int64_t i = 0; i < v.dim(d); ++i) dst = gather(v, d + 1, src + i * v.stride(d) * elem, dst);
  return dst;
}

}  // namespace

std::span<const std::byte> denseInput(const TensorView& v, std::span<std::byte> scratch) {
  if (!v.defined()) return {};
  const size_t bytes = denseBytes(v);
  if (v.contiguous() || bytes == 0) return {static_cast<const std::byte*>(v.data()), bytes};
  MOEDIST_CHECK(scratch.size() >= bytes);
  if (v.ndim() == 0) {
    std::memcpy(scratch.data(), v.data(), bytes);
  } else {
    gather(v, 0, static_cast<const std::byte*>(v.data()), scratch.data());
  }
  return {scratch.data(), bytes};
}

}  // namespace moedist::core
