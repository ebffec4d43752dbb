// aclCreateTensor / aclDestroyTensor on moedist (src/compat/tensor.cpp): view shape and element strides (given,
// or row-major for nullptr), the element offset folded into the data pointer, the aclDataType -> DType mapping
// (unsupported types get a view dtype that no check accepts), format and storage shape kept, argument errors
// returning nullptr with a message, and the destroy codes.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "aclnn/aclnn_base.h"
#include "compat/runtime.h"

// From c_headers_check.c: aclCreateTensor called from C with any ints as the data type and format.
extern "C" aclTensor* moedistCCreateTensor(const int64_t* dims, uint64_t numDims, int dataType, int format, void* data);

namespace moedist::compat {
namespace {

std::string recentError() {
  const char* m = aclGetRecentErrMsg();
  return m == nullptr ? std::string() : std::string(m);
}

// The seed example's helper: row-major strides, offset 0, ND, storage = view.
aclTensor* createLikeTheExample(const std::vector<int64_t>& shape, aclDataType dt, void* data) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; i--) strides[i] = shape[i + 1] * strides[i + 1];
  return aclCreateTensor(shape.data(), shape.size(), dt, strides.data(), 0, aclFormat::ACL_FORMAT_ND, shape.data(),
                         shape.size(), data);
}

TEST(AclTensor, LikeTheSeedExample) {
  std::vector<uint16_t> x(8 * 7168);
  aclTensor* t = createLikeTheExample({8, 7168}, aclDataType::ACL_BF16, x.data());
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(isLiveTensor(t));
  EXPECT_TRUE(t->view.defined());
  EXPECT_EQ(t->view.data(), x.data());
  EXPECT_EQ(t->view.dtype(), DType::kBFloat16);
  EXPECT_EQ(t->view.format(), Format::kND);
  ASSERT_EQ(t->view.ndim(), 2);
  EXPECT_EQ(t->view.dim(0), 8);
  EXPECT_EQ(t->view.dim(1), 7168);
  EXPECT_EQ(t->view.stride(0), 7168);
  EXPECT_EQ(t->view.stride(1), 1);
  EXPECT_TRUE(t->view.contiguous());
  EXPECT_EQ(t->dataType, ACL_BF16);
  EXPECT_EQ(t->format, ACL_FORMAT_ND);
  EXPECT_EQ(t->storageShape, (std::vector<int64_t>{8, 7168}));
  EXPECT_EQ(t->offset, 0);
  EXPECT_EQ(aclDestroyTensor(t), ACLNN_SUCCESS);
  EXPECT_FALSE(isLiveTensor(t));
}

TEST(AclTensor, StridesOffsetAndStorage) {
  std::vector<float> storage(4 * 10);
  const int64_t dims[] = {3, 4};
  const int64_t strides[] = {10, 2};  // every other element of rows of 10
  const int64_t storageDims[] = {40};
  aclTensor* t = aclCreateTensor(dims, 2, ACL_FLOAT, strides, 5, ACL_FORMAT_ND, storageDims, 1, storage.data());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->view.data(), storage.data() + 5);  // offset in elements, folded into the pointer
  EXPECT_EQ(t->offset, 5);
  EXPECT_EQ(t->view.stride(0), 10);
  EXPECT_EQ(t->view.stride(1), 2);
  EXPECT_FALSE(t->view.contiguous());
  EXPECT_EQ(t->storageShape, (std::vector<int64_t>{40}));
  EXPECT_EQ(aclDestroyTensor(t), ACLNN_SUCCESS);

  // Null strides: row-major.
  const int64_t dims3[] = {2, 3, 5};
  aclTensor* r = aclCreateTensor(dims3, 3, ACL_INT32, nullptr, 0, ACL_FORMAT_ND, dims3, 3, storage.data());
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->view.stride(0), 15);
  EXPECT_EQ(r->view.stride(1), 5);
  EXPECT_EQ(r->view.stride(2), 1);
  EXPECT_EQ(aclDestroyTensor(r), ACLNN_SUCCESS);
}

TEST(AclTensor, ZeroDimsAndEmptyTensors) {
  const int64_t zero[] = {0};
  aclTensor* e = aclCreateTensor(zero, 1, ACL_INT32, nullptr, 0, ACL_FORMAT_ND, zero, 1, nullptr);
  ASSERT_NE(e, nullptr);  // tpRecvCounts of shape (0,)
  EXPECT_TRUE(e->view.defined());
  EXPECT_EQ(e->view.numel(), 0);
  EXPECT_EQ(aclDestroyTensor(e), ACLNN_SUCCESS);
  int scalar = 3;
  aclTensor* s = aclCreateTensor(nullptr, 0, ACL_INT32, nullptr, 0, ACL_FORMAT_ND, nullptr, 0, &scalar);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->view.ndim(), 0);
  EXPECT_EQ(s->view.numel(), 1);
  EXPECT_EQ(aclDestroyTensor(s), ACLNN_SUCCESS);
}

TEST(AclTensor, DataTypeMapping) {
  struct Case {
    aclDataType acl;
    DType dtype;
    int64_t bytes;
  };
  const Case cases[] = {{ACL_BF16, DType::kBFloat16, 2}, {ACL_FLOAT16, DType::kFloat16, 2},
                        {ACL_FLOAT, DType::kFloat32, 4}, {ACL_INT8, DType::kInt8, 1},
                        {ACL_INT32, DType::kInt32, 4},   {ACL_INT64, DType::kInt64, 8},
                        {ACL_BOOL, DType::kBool, 1}};
  alignas(64) char buf[256] = {};
  const int64_t dims[] = {4};
  for (const Case& c : cases) {
    aclTensor* t = aclCreateTensor(dims, 1, c.acl, nullptr, 3, ACL_FORMAT_ND, dims, 1, buf);
    ASSERT_NE(t, nullptr) << dataTypeName(c.acl);
    EXPECT_EQ(t->view.dtype(), c.dtype) << dataTypeName(c.acl);
    EXPECT_EQ(t->view.data(), buf + 3 * c.bytes) << dataTypeName(c.acl);
    EXPECT_TRUE(hasMoedistDType(c.acl));
    EXPECT_EQ(aclDestroyTensor(t), ACLNN_SUCCESS);
  }
  // Other types: a tensor whose view dtype no check accepts; the CANN type is kept for the message.
  for (aclDataType dt : {ACL_UINT8, ACL_INT16, ACL_DOUBLE, ACL_UINT64, ACL_DT_UNDEFINED, ACL_INT4}) {
    aclTensor* t = aclCreateTensor(dims, 1, dt, nullptr, 0, ACL_FORMAT_ND, dims, 1, buf);
    ASSERT_NE(t, nullptr) << dataTypeName(dt);
    EXPECT_FALSE(hasMoedistDType(dt));
    EXPECT_EQ(t->dataType, dt);
    for (DType d :
         {DType::kBFloat16, DType::kFloat16, DType::kFloat32, DType::kInt8, DType::kInt32, DType::kInt64, DType::kBool})
      EXPECT_NE(t->view.dtype(), d) << dataTypeName(dt);
    EXPECT_EQ(aclDestroyTensor(t), ACLNN_SUCCESS);
  }
  // An offset is applied with the CANN type's element size even when moedist has no DType for it.
  aclTensor* u = aclCreateTensor(dims, 1, ACL_DOUBLE, nullptr, 2, ACL_FORMAT_ND, dims, 1, buf);
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(u->view.data(), buf + 16);
  EXPECT_EQ(aclDestroyTensor(u), ACLNN_SUCCESS);
  EXPECT_STREQ(dataTypeName(ACL_BF16), "ACL_BF16");
  EXPECT_STREQ(dataTypeName(static_cast<aclDataType>(5)), "an unknown aclDataType");
}

TEST(AclTensor, ValuesNoEnumeratorNamesBecomeUndefined) {
  char buf[16] = {};
  const int64_t dims[] = {4};
  for (int dt : {5, 99, -7, 1 << 20}) {
    aclTensor* t = moedistCCreateTensor(dims, 1, dt, ACL_FORMAT_ND, buf);
    ASSERT_NE(t, nullptr) << dt;
    EXPECT_EQ(t->dataType, ACL_DT_UNDEFINED) << dt;
    EXPECT_FALSE(hasMoedistDType(t->dataType));
    EXPECT_EQ(aclDestroyTensor(t), ACLNN_SUCCESS);
  }
  aclTensor* f = moedistCCreateTensor(dims, 1, ACL_BF16, 1000, buf);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->dataType, ACL_BF16);
  EXPECT_EQ(f->format, ACL_FORMAT_UNDEFINED);
  EXPECT_EQ(aclDestroyTensor(f), ACLNN_SUCCESS);
}

TEST(AclTensor, FormatIsKept) {
  uint16_t buf[64] = {};
  const int64_t dims[] = {4, 16};
  const int64_t nz[] = {1, 1, 16, 16};
  aclTensor* t = aclCreateTensor(dims, 2, ACL_BF16, nullptr, 0, ACL_FORMAT_FRACTAL_NZ, nz, 4, buf);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->format, ACL_FORMAT_FRACTAL_NZ);
  EXPECT_EQ(t->view.format(), Format::kFractalNZ);
  EXPECT_EQ(t->storageShape.size(), 4u);
  EXPECT_EQ(aclDestroyTensor(t), ACLNN_SUCCESS);
  aclTensor* n = aclCreateTensor(dims, 2, ACL_BF16, nullptr, 0, ACL_FORMAT_NCHW, dims, 2, buf);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->format, ACL_FORMAT_NCHW);
  EXPECT_EQ(n->view.format(), Format::kND);
  EXPECT_EQ(aclDestroyTensor(n), ACLNN_SUCCESS);
}

TEST(AclTensor, ArgumentErrorsReturnNullWithAMessage) {
  char buf[64] = {};
  const int64_t nine[] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  const int64_t dims[] = {2, 3};
  const int64_t negDims[] = {2, -3};
  const int64_t negStrides[] = {3, -1};
  struct Case {
    const char* what;
    aclTensor* t;
    const char* message;
  };
  const Case cases[] = {
      {"9 dims", aclCreateTensor(nine, 9, ACL_INT8, nullptr, 0, ACL_FORMAT_ND, nine, 9, buf), "viewDimsNum is 9"},
      {"null dims", aclCreateTensor(nullptr, 2, ACL_INT8, nullptr, 0, ACL_FORMAT_ND, dims, 2, buf),
       "viewDims is nullptr"},
      {"negative dim", aclCreateTensor(negDims, 2, ACL_INT8, nullptr, 0, ACL_FORMAT_ND, dims, 2, buf),
       "viewDims[1] is -3"},
      {"negative stride", aclCreateTensor(dims, 2, ACL_INT8, negStrides, 0, ACL_FORMAT_ND, dims, 2, buf),
       "stride[1] is -1"},
      {"negative offset", aclCreateTensor(dims, 2, ACL_INT8, nullptr, -1, ACL_FORMAT_ND, dims, 2, buf), "offset is -1"},
      {"null storage dims", aclCreateTensor(dims, 2, ACL_INT8, nullptr, 0, ACL_FORMAT_ND, nullptr, 2, buf),
       "storageDims is nullptr"},
      {"offset of a sub-byte type", aclCreateTensor(dims, 2, ACL_INT4, nullptr, 1, ACL_FORMAT_ND, dims, 2, buf),
       "ACL_INT4"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.t, nullptr) << c.what;
  }
  // The message names the argument (each failed call replaces it, so check some one by one).
  EXPECT_EQ(aclCreateTensor(nine, 9, ACL_INT8, nullptr, 0, ACL_FORMAT_ND, nine, 9, buf), nullptr);
  EXPECT_NE(recentError().find("aclCreateTensor: viewDimsNum is 9"), std::string::npos);
  EXPECT_EQ(aclCreateTensor(negDims, 2, ACL_INT8, nullptr, 0, ACL_FORMAT_ND, dims, 2, buf), nullptr);
  EXPECT_NE(recentError().find("viewDims[1] is -3"), std::string::npos);
  EXPECT_EQ(aclCreateTensor(dims, 2, ACL_INT4, nullptr, 1, ACL_FORMAT_ND, dims, 2, buf), nullptr);
  EXPECT_NE(recentError().find("ACL_INT4"), std::string::npos);
  const int64_t huge[] = {INT64_MAX / 2, 4};
  EXPECT_EQ(aclCreateTensor(huge, 2, ACL_INT8, nullptr, 0, ACL_FORMAT_ND, huge, 2, buf), nullptr);
  EXPECT_NE(recentError().find("int64_t"), std::string::npos);
}

TEST(AclTensor, DestroyErrors) {
  EXPECT_EQ(aclDestroyTensor(nullptr), ACLNN_ERR_PARAM_NULLPTR);
  const int64_t dims[] = {1};
  int v = 0;
  aclTensor* t = aclCreateTensor(dims, 1, ACL_INT32, nullptr, 0, ACL_FORMAT_ND, dims, 1, &v);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(aclDestroyTensor(t), ACLNN_SUCCESS);
  EXPECT_EQ(aclDestroyTensor(t), ACLNN_ERR_PARAM_INVALID);
  EXPECT_NE(recentError().find("not a live tensor"), std::string::npos);
  alignas(aclTensor) char fake[sizeof(aclTensor)] = {};
  EXPECT_EQ(aclDestroyTensor(reinterpret_cast<const aclTensor*>(fake)), ACLNN_ERR_PARAM_INVALID);
  EXPECT_FALSE(isLiveTensor(nullptr));
}

}  // namespace
}  // namespace moedist::compat
