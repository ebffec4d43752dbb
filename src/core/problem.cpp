#include "core/problem.h"

namespace moedist::core {

const char* opName(Op op) {
  switch (op) {
    case Op::kDispatchV3:
      return "DispatchV3";
    case Op::kDispatchV2:
      return "DispatchV2";
    case Op::kCombineAddRmsNormV2:
      return "CombineAddRmsNormV2";
    case Op::kCombineAddRmsNorm:
      return "CombineAddRmsNorm";
    case Op::kCombineV3:
      return "CombineV3";
    case Op::kCombineV2:
      return "CombineV2";
  }
  return "UnknownOp";
}

}  // namespace moedist::core
