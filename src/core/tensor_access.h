// Reading the caller's tensors: inputs may be strided views (CANN's AutoContiguous); core works on dense data.
#pragma once

#include <cstddef>
#include <span>

#include "moedist/tensor.h"

namespace moedist::core {

// Bytes of dense data `v` needs.
inline size_t denseBytes(const TensorView& v) {
  return v.defined() ? static_cast<size_t>(v.nbytes()) : 0;
}

// The view's elements as dense row-major bytes: the caller's memory itself when the view is contiguous, else a
// gathered copy in `scratch` (which must hold denseBytes(v)). Absent views give an empty span.
std::span<const std::byte> denseInput(const TensorView& v, std::span<std::byte> scratch);

template <class T>
std::span<const T> denseAs(const TensorView& v, std::span<std::byte> scratch) {
  auto b = denseInput(v, scratch);
  return {reinterpret_cast<const T*>(b.data()), b.size() / sizeof(T)};
}

}  // namespace moedist::core
