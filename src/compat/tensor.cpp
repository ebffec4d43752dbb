// aclTensor on moedist: aclCreateTensor turns CANN's description (view shape, element strides, element offset,
// format, storage shape, data) into a moedist TensorView with the offset folded into the data pointer, keeping the
// CANN data type, format and storage shape beside it. Live tensors are kept in a registry, so a stale or foreign
// pointer is an error code, never a crash.
#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "compat/runtime.h"
#include "compat/runtime_internal.h"

namespace moedist::compat {

namespace {

constexpr uint64_t kMaxStorageDims = 16;

// A view dtype that equals none of DType's enumerators: every dtype check rejects it (toString gives "?").
constexpr DType kUnsupportedDType = static_cast<DType>(-1);

struct Tensors {
  std::mutex mu;
  std::unordered_set<const aclTensor*> live;
};

Tensors& tensors() {
  static Tensors* t = new Tensors();  // never destroyed: tensors may be destroyed late at exit
  return *t;
}

// Bytes per element of a CANN data type; 0 for sub-byte, variable-size and unknown types.
int64_t elementBytes(aclDataType t) {
  switch (t) {
    case ACL_INT8:
    case ACL_UINT8:
    case ACL_BOOL:
    case ACL_HIFLOAT8:
    case ACL_FLOAT8_E5M2:
    case ACL_FLOAT8_E4M3FN:
    case ACL_FLOAT8_E8M0:
      return 1;
    case ACL_FLOAT16:
    case ACL_BF16:
    case ACL_INT16:
    case ACL_UINT16:
      return 2;
    case ACL_FLOAT:
    case ACL_INT32:
    case ACL_UINT32:
    case ACL_COMPLEX32:
      return 4;
    case ACL_INT64:
    case ACL_UINT64:
    case ACL_DOUBLE:
    case ACL_COMPLEX64:
      return 8;
    case ACL_COMPLEX128:
      return 16;
    default:
      return 0;
  }
}

// The aclDataType of a raw value: itself when it names an enumerator, else ACL_DT_UNDEFINED.
aclDataType knownDataType(int64_t raw) {
  if (raw < -1 || raw > ACL_FLOAT4_E1M2) return ACL_DT_UNDEFINED;
  const auto t = static_cast<aclDataType>(raw);  // within the enumerators' range
  return std::strcmp(dataTypeName(t), "an unknown aclDataType") == 0 ? ACL_DT_UNDEFINED : t;
}

// The aclFormat of a raw value: itself when it names an enumerator of our header, else ACL_FORMAT_UNDEFINED.
aclFormat knownFormat(int64_t raw) {
  switch (raw) {
    case ACL_FORMAT_NCHW:
    case ACL_FORMAT_NHWC:
    case ACL_FORMAT_ND:
    case ACL_FORMAT_NC1HWC0:
    case ACL_FORMAT_FRACTAL_Z:
    case ACL_FORMAT_NC1HWC0_C04:
    case ACL_FORMAT_HWCN:
    case ACL_FORMAT_NDHWC:
    case ACL_FORMAT_FRACTAL_NZ:
    case ACL_FORMAT_NCDHW:
    case ACL_FORMAT_NDC1HWC0:
    case ACL_FRACTAL_Z_3D:
    case ACL_FORMAT_NC:
    case ACL_FORMAT_NCL:
      return static_cast<aclFormat>(raw);
    default:
      return ACL_FORMAT_UNDEFINED;
  }
}

// dataType and format are raw values from C (see rawEnum); unknown ones become the UNDEFINED enumerators.
aclTensor* createTensor(const int64_t* viewDims, uint64_t viewDimsNum, int64_t rawDataType, const int64_t* stride,
                        int64_t offset, int64_t rawFormat, const int64_t* storageDims, uint64_t storageDimsNum,
                        void* tensorData) {
  const aclDataType dataType = knownDataType(rawDataType);
  const aclFormat format = knownFormat(rawFormat);
  auto reject = [](const std::string& message) -> aclTensor* {
    setRecentError("aclCreateTensor: " + message);
    return nullptr;
  };
  if (viewDimsNum > static_cast<uint64_t>(kMaxDims))
    return reject(fmt::format("viewDimsNum is {}, expected at most {}", viewDimsNum, kMaxDims));
  if (viewDims == nullptr && viewDimsNum > 0)
    return reject(fmt::format("viewDims is nullptr, expected {} dims", viewDimsNum));
  if (storageDimsNum > kMaxStorageDims)
    return reject(fmt::format("storageDimsNum is {}, expected at most {}", storageDimsNum, kMaxStorageDims));
  if (storageDims == nullptr && storageDimsNum > 0)
    return reject(fmt::format("storageDims is nullptr, expected {} dims", storageDimsNum));
  if (offset < 0) return reject(fmt::format("offset is {}, expected >= 0", offset));

  const int ndim = static_cast<int>(viewDimsNum);
  std::vector<int64_t> shape(viewDims, viewDims + ndim), strides(static_cast<size_t>(ndim));
  int64_t numel = 1;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] < 0) return reject(fmt::format("viewDims[{}] is {}, expected >= 0", d, shape[d]));
    if (__builtin_mul_overflow(numel, shape[d], &numel))
      return reject("the view has more elements than int64_t can count");
  }
  if (stride != nullptr) {
    for (int d = 0; d < ndim; ++d) {
      if (stride[d] < 0) return reject(fmt::format("stride[{}] is {}, expected >= 0", d, stride[d]));
      strides[d] = stride[d];
    }
  } else {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; --d) {
      strides[d] = s;
      if (shape[d] > 0 && __builtin_mul_overflow(s, shape[d], &s))
        return reject("the view has more elements than int64_t can count");
    }
  }
  // The largest element index the view reaches must be representable (the kernels compute it).
  if (numel > 0) {
    int64_t last = offset;
    for (int d = 0; d < ndim; ++d) {
      int64_t step = 0;
      if (__builtin_mul_overflow(shape[d] - 1, strides[d], &step) || __builtin_add_overflow(last, step, &last))
        return reject("the view reaches an element index that int64_t cannot hold");
    }
  }

  DType dtype = kUnsupportedDType;
  const bool supported = toDType(dataType, &dtype);
  char* data = static_cast<char*>(tensorData);
  if (offset != 0 && data != nullptr) {
    const int64_t bytes = supported ? dtypeBytes(dtype) : elementBytes(dataType);
    if (bytes == 0)
      return reject(fmt::format("offset is {}, but data type {} has no whole-byte element size to apply it with",
                                offset, dataTypeName(dataType)));
    int64_t byteOffset = 0;
    if (__builtin_mul_overflow(offset, bytes, &byteOffset))
      return reject(fmt::format("offset {} overflows as a byte offset", offset));
    data += byteOffset;
  }

  auto t = std::make_unique<aclTensor>();
  t->view = TensorView(data, dtype, std::span<const int64_t>(shape), std::span<const int64_t>(strides),
                       format == ACL_FORMAT_FRACTAL_NZ ? Format::kFractalNZ : Format::kND);
  t->dataType = dataType;
  t->format = format;
  if (storageDimsNum > 0) t->storageShape.assign(storageDims, storageDims + storageDimsNum);
  t->offset = offset;
  Tensors& reg = tensors();
  std::lock_guard<std::mutex> lock(reg.mu);
  reg.live.insert(t.get());
  return t.release();
}

}  // namespace

bool toDType(aclDataType t, DType* out) {
  switch (t) {
    case ACL_BF16:
      *out = DType::kBFloat16;
      return true;
    case ACL_FLOAT16:
      *out = DType::kFloat16;
      return true;
    case ACL_FLOAT:
      *out = DType::kFloat32;
      return true;
    case ACL_INT8:
      *out = DType::kInt8;
      return true;
    case ACL_INT32:
      *out = DType::kInt32;
      return true;
    case ACL_INT64:
      *out = DType::kInt64;
      return true;
    case ACL_BOOL:
      *out = DType::kBool;
      return true;
    default:
      return false;
  }
}

bool isLiveTensor(const aclTensor* t) {
  if (t == nullptr) return false;
  Tensors& reg = tensors();
  std::lock_guard<std::mutex> lock(reg.mu);
  return reg.live.count(t) != 0;
}

bool hasMoedistDType(aclDataType t) {
  DType unused;
  return toDType(t, &unused);
}

const char* dataTypeName(aclDataType t) {
  switch (t) {
    case ACL_DT_UNDEFINED:
      return "ACL_DT_UNDEFINED";
    case ACL_FLOAT:
      return "ACL_FLOAT";
    case ACL_FLOAT16:
      return "ACL_FLOAT16";
    case ACL_INT8:
      return "ACL_INT8";
    case ACL_INT32:
      return "ACL_INT32";
    case ACL_UINT8:
      return "ACL_UINT8";
    case ACL_INT16:
      return "ACL_INT16";
    case ACL_UINT16:
      return "ACL_UINT16";
    case ACL_UINT32:
      return "ACL_UINT32";
    case ACL_INT64:
      return "ACL_INT64";
    case ACL_UINT64:
      return "ACL_UINT64";
    case ACL_DOUBLE:
      return "ACL_DOUBLE";
    case ACL_BOOL:
      return "ACL_BOOL";
    case ACL_STRING:
      return "ACL_STRING";
    case ACL_COMPLEX64:
      return "ACL_COMPLEX64";
    case ACL_COMPLEX128:
      return "ACL_COMPLEX128";
    case ACL_BF16:
      return "ACL_BF16";
    case ACL_INT4:
      return "ACL_INT4";
    case ACL_UINT1:
      return "ACL_UINT1";
    case ACL_COMPLEX32:
      return "ACL_COMPLEX32";
    case ACL_HIFLOAT8:
      return "ACL_HIFLOAT8";
    case ACL_FLOAT8_E5M2:
      return "ACL_FLOAT8_E5M2";
    case ACL_FLOAT8_E4M3FN:
      return "ACL_FLOAT8_E4M3FN";
    case ACL_FLOAT8_E8M0:
      return "ACL_FLOAT8_E8M0";
    case ACL_FLOAT6_E3M2:
      return "ACL_FLOAT6_E3M2";
    case ACL_FLOAT6_E2M3:
      return "ACL_FLOAT6_E2M3";
    case ACL_FLOAT4_E2M1:
      return "ACL_FLOAT4_E2M1";
    case ACL_FLOAT4_E1M2:
      return "ACL_FLOAT4_E1M2";
  }
  return "an unknown aclDataType";
}

}  // namespace moedist::compat

extern "C" {

aclTensor* aclCreateTensor(const int64_t* viewDims, uint64_t viewDimsNum, aclDataType dataType, const int64_t* stride,
                           int64_t offset, aclFormat format, const int64_t* storageDims, uint64_t storageDimsNum,
                           void* tensorData) {
  return moedist::compat::guarded<aclTensor*>(
      "aclCreateTensor",
      [&] {
        return moedist::compat::createTensor(viewDims, viewDimsNum, moedist::compat::rawEnum(dataType), stride, offset,
                                             moedist::compat::rawEnum(format), storageDims, storageDimsNum, tensorData);
      },
      nullptr);
}

aclnnStatus aclDestroyTensor(const aclTensor* tensor) {
  return moedist::compat::guarded<aclnnStatus>(
      "aclDestroyTensor",
      [&]() -> aclnnStatus {
        if (tensor == nullptr) {
          moedist::compat::setRecentError("aclDestroyTensor: tensor is nullptr");
          return ACLNN_ERR_PARAM_NULLPTR;
        }
        {
          auto& reg = moedist::compat::tensors();
          std::lock_guard<std::mutex> lock(reg.mu);
          if (reg.live.erase(tensor) == 0) {
            moedist::compat::setRecentError(
                fmt::format("aclDestroyTensor: {} is not a live tensor (never created, or destroyed already)",
                            static_cast<const void*>(tensor)));
            return ACLNN_ERR_PARAM_INVALID;
          }
        }
        delete tensor;
        return ACLNN_SUCCESS;
      },
      ACLNN_ERR_INNER);
}

}  // extern "C"
