// denseInput / denseAs (tensor_access.h): a contiguous view is returned as the caller's own memory, a strided
// view is gathered into the scratch buffer in row-major order, and an absent view gives an empty span.
#include "core/tensor_access.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

namespace moedist::core {
namespace {

template <class T>
std::vector<T> toVector(std::span<const T> s) {
  return std::vector<T>(s.begin(), s.end());
}

TEST(DenseInput, ContiguousViewIsTheCallersMemory) {
  std::vector<int32_t> buf(6);
  std::iota(buf.begin(), buf.end(), 10);
  const TensorView v(buf.data(), DType::kInt32, {2, 3});
  std::vector<std::byte> scratch(denseBytes(v));
  const auto bytes = denseInput(v, scratch);
  EXPECT_EQ(static_cast<const void*>(bytes.data()), static_cast<const void*>(buf.data()));
  EXPECT_EQ(bytes.size(), 24u);
  const auto words = denseAs<int32_t>(v, scratch);
  EXPECT_EQ(words.data(), buf.data());
  EXPECT_EQ(toVector(words), buf);
}

TEST(DenseInput, ContiguousViewNeedsNoScratch) {
  std::vector<int32_t> buf = {1, 2, 3, 4};
  const TensorView v(buf.data(), DType::kInt32, {4});
  const auto words = denseAs<int32_t>(v, {});
  EXPECT_EQ(words.data(), buf.data());
  EXPECT_EQ(words.size(), 4u);
}

TEST(DenseInput, AbsentViewIsEmpty) {
  const TensorView absent;
  EXPECT_EQ(denseBytes(absent), 0u);
  EXPECT_TRUE(denseInput(absent, {}).empty());
  EXPECT_TRUE(denseAs<int32_t>(absent, {}).empty());
}

TEST(DenseInput, ZeroElementViewIsEmpty) {
  int32_t dummy = 0;
  const int64_t shape[] = {0, 3};
  const int64_t strides[] = {7, 2};  // not contiguous, but there is nothing to gather
  const TensorView v(&dummy, DType::kInt32, shape, strides);
  EXPECT_EQ(denseBytes(v), 0u);
  EXPECT_TRUE(denseInput(v, {}).empty());
}

TEST(DenseInput, RowPitch2D) {
  // A (3, 4) int32 view of rows 5 elements apart: element (i, j) = buf[5i + j] = 100 + 5i + j.
  std::vector<int32_t> buf(15);
  std::iota(buf.begin(), buf.end(), 100);
  const int64_t shape[] = {3, 4};
  const int64_t strides[] = {5, 1};
  const TensorView v(buf.data(), DType::kInt32, shape, strides);
  ASSERT_FALSE(v.contiguous());
  std::vector<std::byte> scratch(denseBytes(v));
  ASSERT_EQ(scratch.size(), 48u);
  const auto words = denseAs<int32_t>(v, scratch);
  EXPECT_EQ(static_cast<const void*>(words.data()), static_cast<const void*>(scratch.data()));
  EXPECT_EQ(toVector(words), (std::vector<int32_t>{100, 101, 102, 103, 105, 106, 107, 108, 110, 111, 112, 113}));
}

TEST(DenseInput, Transposed2D) {
  // buf is a row-major (2, 3) matrix {{1, 2, 3}, {4, 5, 6}}; the view is its (3, 2) transpose:
  // element (i, j) = buf[i + 3j].
  std::vector<float> buf = {1, 2, 3, 4, 5, 6};
  const int64_t shape[] = {3, 2};
  const int64_t strides[] = {1, 3};
  const TensorView v(buf.data(), DType::kFloat32, shape, strides);
  std::vector<std::byte> scratch(denseBytes(v));
  EXPECT_EQ(toVector(denseAs<float>(v, scratch)), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

TEST(DenseInput, ThreeDimsWithASizeOneMiddleDim) {
  // (2, 1, 3) bf16-sized elements; rows 7 apart, the size-1 dim has an arbitrary stride.
  // Element (i, 0, k) = buf[7i + k].
  std::vector<uint16_t> buf(14);
  std::iota(buf.begin(), buf.end(), uint16_t{500});
  const int64_t shape[] = {2, 1, 3};
  const int64_t strides[] = {7, 12345, 1};
  const TensorView v(buf.data(), DType::kBFloat16, shape, strides);
  ASSERT_FALSE(v.contiguous());
  std::vector<std::byte> scratch(denseBytes(v));
  ASSERT_EQ(scratch.size(), 12u);
  EXPECT_EQ(toVector(denseAs<uint16_t>(v, scratch)), (std::vector<uint16_t>{500, 501, 502, 507, 508, 509}));
}

TEST(DenseInput, SizeOneDimWithOddStrideIsStillContiguous) {
  // (2, 1, 3) with strides (3, 99, 1): dense apart from the size-1 dim, so no copy is made.
  std::vector<uint16_t> buf = {1, 2, 3, 4, 5, 6};
  const int64_t shape[] = {2, 1, 3};
  const int64_t strides[] = {3, 99, 1};
  const TensorView v(buf.data(), DType::kFloat16, shape, strides);
  const auto words = denseAs<uint16_t>(v, {});
  EXPECT_EQ(words.data(), buf.data());
  EXPECT_EQ(toVector(words), buf);
}

TEST(DenseInput, OneDimStrideTwo) {
  // Every other int8 / bool byte: element i = buf[2i].
  std::vector<uint8_t> buf = {1, 0, 1, 0, 0, 9, 1, 9};
  const int64_t shape[] = {4};
  const int64_t strides[] = {2};
  const TensorView v(buf.data(), DType::kBool, shape, strides);
  std::vector<std::byte> scratch(denseBytes(v));
  ASSERT_EQ(scratch.size(), 4u);
  EXPECT_EQ(toVector(denseAs<uint8_t>(v, scratch)), (std::vector<uint8_t>{1, 1, 0, 1}));

  // The same with 4-byte elements.
  std::vector<int32_t> ints = {10, -1, 11, -1, 12, -1};
  const int64_t shape3[] = {3};
  const TensorView vi(ints.data(), DType::kInt32, shape3, strides);
  std::vector<std::byte> scratchI(denseBytes(vi));
  EXPECT_EQ(toVector(denseAs<int32_t>(vi, scratchI)), (std::vector<int32_t>{10, 11, 12}));
}

TEST(DenseInput, StridedInnerAndOuterDims) {
  // (2, 3) int64 view with strides (10, 3): element (i, j) = buf[10i + 3j].
  std::vector<int64_t> buf(20);
  std::iota(buf.begin(), buf.end(), int64_t{0});
  const int64_t shape[] = {2, 3};
  const int64_t strides[] = {10, 3};
  const TensorView v(buf.data(), DType::kInt64, shape, strides);
  std::vector<std::byte> scratch(denseBytes(v));
  EXPECT_EQ(toVector(denseAs<int64_t>(v, scratch)), (std::vector<int64_t>{0, 3, 6, 10, 13, 16}));
}

TEST(DenseInput, GatherLeavesTheSourceAlone) {
  std::vector<int32_t> buf = {1, 2, 3, 4, 5, 6};
  const std::vector<int32_t> before = buf;
  const int64_t shape[] = {2, 2};
  const int64_t strides[] = {3, 1};
  const TensorView v(buf.data(), DType::kInt32, shape, strides);
  std::vector<std::byte> scratch(denseBytes(v));
  EXPECT_EQ(toVector(denseAs<int32_t>(v, scratch)), (std::vector<int32_t>{1, 2, 4, 5}));
  EXPECT_EQ(buf, before);
}

}  // namespace
}  // namespace moedist::core
