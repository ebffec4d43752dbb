// moedist: expert-parallel MoE dispatch and combine (CANN's MoeDistributeDispatchV3 and
// MoeDistributeCombineAddRmsNormV2) on ordinary machines. Umbrella header of the C++ API.
#pragma once

#include "moedist/communicator.h"
#include "moedist/ops.h"
#include "moedist/status.h"
#include "moedist/tensor.h"
