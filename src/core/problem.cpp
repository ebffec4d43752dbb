// The operator names of the public vocabulary (moedist/args.h), defined here because core is where they are used
// first: every message core writes starts with the operator's name.
#include "core/problem.h"

namespace moedist {

const char* toString(Operator op) {
  switch (op) {
    case Operator::kDispatchV3:
      return "DispatchV3";
    case Operator::kDispatchV2:
      return "DispatchV2";
    case Operator::kCombineAddRmsNormV2:
      return "CombineAddRmsNormV2";
    case Operator::kCombineAddRmsNorm:
      return "CombineAddRmsNorm";
    case Operator::kCombineV3:
      return "CombineV3";
    case Operator::kCombineV2:
      return "CombineV2";
  }
  return "UnknownOp";
}

bool isDispatch(Operator op) {
  return op == Operator::kDispatchV3 || op == Operator::kDispatchV2;
}

}  // namespace moedist
