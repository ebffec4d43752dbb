#include "moedist/tensor.h"

#include "util/check.h"

namespace moedist {

TensorView::TensorView(void* data, DType dtype, std::initializer_list<int64_t> shape)
    : TensorView(data, dtype, std::span<const int64_t>(shape.begin(), shape.size())) {}

TensorView::TensorView(void* data, DType dtype, std::span<const int64_t> shape)
    : data_(data), dtype_(dtype), defined_(true), ndim_(static_cast<int>(shape.size())) {
  MOEDIST_CHECK(shape.size() <= kMaxDims);
  int64_t s = 1;
  for (int d = ndim_ - 1; d >= 0; --d) {
    shape_[d] = shape[d];
    strides_[d] = s;
    s *= shape[d];
  }
}

TensorView::TensorView(void* data, DType dtype, std::span<const int64_t> shape, std::span<const int64_t> strides,
                       Format format)
    : data_(data), dtype_(dtype), format_(format), defined_(true), ndim_(static_cast<int>(shape.size())) {
  MOEDIST_CHECK(shape.size() <= kMaxDims && strides.size() == shape.size());
  for (int d = 0; d < ndim_; ++d) {
    shape_[d] = shape[d];
    strides_[d] = strides[d];
  }
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int d = 0; d < ndim_; ++d) n *= shape_[d];
  return n;
}

bool TensorView::contiguous() const {
  int64_t expected = 1;
  for (int d = ndim_ - 1; d >= 0; --d) {
    if (shape_[d] != 1 && strides_[d] != expected) return false;
    expected *= shape_[d];
  }
  return true;
}

}  // namespace moedist
