// moedist: non-owning views of host memory with a dtype, a shape and element strides.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

namespace moedist {

enum class DType : int8_t { kBFloat16, kFloat16, kFloat32, kInt8, kInt32, kInt64, kBool };

constexpr int64_t dtypeBytes(DType t) {
  switch (t) {
    case DType::kBFloat16:
    case DType::kFloat16:
      return 2;
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kInt64:
      return 8;
    case DType::kInt8:
    case DType::kBool:
      return 1;
  }
  return 0;
}

const char* toString(DType t);

// Storage format tag. moedist computes on row-major (ND) data only; FRACTAL_NZ exists so that the CANN layer
// can pass the caller's format through and get the documented rejection.
enum class Format : int8_t { kND, kFractalNZ };

inline constexpr int kMaxDims = 8;

// A view of `shape` elements of `dtype` at `data`, element (i0, i1, ...) at data + sum(i_d * strides[d]) elements.
// A default-constructed view is "absent" (defined() == false): that is how optional tensors are left out.
// A defined view may have zero elements (for example tpRecvCounts of shape (0,)).
class TensorView {
 public:
  TensorView() = default;
  TensorView(void* data, DType dtype, std::initializer_list<int64_t> shape);
  TensorView(void* data, DType dtype, std::span<const int64_t> shape);
  TensorView(void* data, DType dtype, std::span<const int64_t> shape, std::span<const int64_t> strides,
             Format format = Format::kND);

  bool defined() const { return defined_; }
  void* data() const { return data_; }
  DType dtype() const { return dtype_; }
  Format format() const { return format_; }
  int ndim() const { return ndim_; }
  int64_t dim(int i) const { return shape_[static_cast<size_t>(i)]; }
  int64_t stride(int i) const { return strides_[static_cast<size_t>(i)]; }
  std::span<const int64_t> shape() const { return {shape_.data(), static_cast<size_t>(ndim_)}; }
  std::span<const int64_t> strides() const { return {strides_.data(), static_cast<size_t>(ndim_)}; }
  int64_t numel() const;
  int64_t nbytes() const { return numel() * dtypeBytes(dtype_); }
  // True when the elements are dense and row-major (strides equal the default ones; size-1 dims are ignored).
  bool contiguous() const;

  template <class T>
  T* ptr() const {
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::kBFloat16;
  Format format_ = Format::kND;
  bool defined_ = false;
  int ndim_ = 0;
  std::array<int64_t, kMaxDims> shape_{};
  std::array<int64_t, kMaxDims> strides_{};
};

}  // namespace moedist
