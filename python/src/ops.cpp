// The six operators and the shape query over numpy arrays. Python (moedist/_ops.py) passes the tensors by their
// C++ field names (args.h) with the moedist dtype each array holds, the attributes by their C++ names, and
// preallocated dense outputs; this file builds the TensorViews (strides passed through), finds the communicators
// by (group name, rank id) and calls the general forms dispatch() / combine() with the GIL released.
#include "moedist/ops.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <array>
#include <string_view>
#include <type_traits>
#include <vector>

#include "binding.h"

namespace moedist::python {

namespace {

Operator toOperator(const std::string& name) {
  for (const Operator op : {Operator::kDispatchV3, Operator::kDispatchV2, Operator::kCombineAddRmsNormV2,
                            Operator::kCombineAddRmsNorm, Operator::kCombineV3, Operator::kCombineV2})
    if (name == toString(op)) return op;
  throw py::value_error("unknown operator '" + name + "'");
}

struct NamedDType {
  std::string_view name;
  DType dtype;
};
constexpr std::array<NamedDType, 7> kDTypes = {{
    {"bfloat16", DType::kBFloat16},
    {"float16", DType::kFloat16},
    {"float32", DType::kFloat32},
    {"int8", DType::kInt8},
    {"int32", DType::kInt32},
    {"int64", DType::kInt64},
    {"bool", DType::kBool},
}};

DType toDType(const std::string& name, const std::string& argument) {
  for (const auto& d : kDTypes)
    if (d.name == name) return d.dtype;
  throw py::type_error(argument + ": unknown moedist dtype '" + name + "'");
}

// The TensorView of a numpy array holding `dtype` elements: shape and strides (in elements) passed through.
TensorView toView(const py::array& a, DType dtype, const std::string& argument, bool output) {
  const auto itemsize = static_cast<int64_t>(a.itemsize());
  if (itemsize != dtypeBytes(dtype))
    throw py::type_error(argument + ": an array of " + std::to_string(itemsize) + "-byte elements cannot hold " +
                         toString(dtype) + " (" + std::to_string(dtypeBytes(dtype)) + " bytes)");
  if (a.ndim() > kMaxDims)
    throw py::value_error(argument + ": " + std::to_string(a.ndim()) + " dimensions, expected at most " +
                          std::to_string(kMaxDims));
  if (output && (!a.writeable() || !(a.flags() & py::array::c_style)))
    throw py::value_error(argument + ": outputs must be writeable C-contiguous arrays");
  std::vector<int64_t> shape, strides;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (a.strides(d) % itemsize != 0)
      throw py::value_error(argument + ": stride " + std::to_string(a.strides(d)) + " bytes of dimension " +
                            std::to_string(d) + " is not a multiple of the element size " + std::to_string(itemsize));
    shape.push_back(a.shape(d));
    strides.push_back(a.strides(d) / itemsize);
  }
  return TensorView(const_cast<void*>(a.data()), dtype, shape, strides);
}

// Field tables: the tensors and attributes of args.h by their C++ names.
template <class Args>
struct TensorField {
  std::string_view name;
  TensorView Args::*member;
  bool output;
};
template <class Args>
struct IntField {
  std::string_view name;
  int64_t Args::*member;
};

constexpr std::array<TensorField<DispatchArgs>, 13> kDispatchTensors = {{
    {"x", &DispatchArgs::x, false},
    {"expertIds", &DispatchArgs::expertIds, false},
    {"scales", &DispatchArgs::scales, false},
    {"xActiveMask", &DispatchArgs::xActiveMask, false},
    {"expertScales", &DispatchArgs::expertScales, false},
    {"elasticInfo", &DispatchArgs::elasticInfo, false},
    {"expandX", &DispatchArgs::expandX, true},
    {"dynamicScales", &DispatchArgs::dynamicScales, true},
    {"assistInfoForCombine", &DispatchArgs::assistInfoForCombine, true},
    {"expertTokenNums", &DispatchArgs::expertTokenNums, true},
    {"epRecvCounts", &DispatchArgs::epRecvCounts, true},
    {"tpRecvCounts", &DispatchArgs::tpRecvCounts, true},
    {"expandScales", &DispatchArgs::expandScales, true},
}};

constexpr std::array<TensorField<CombineArgs>, 22> kCombineTensors = {{
    {"expandX", &CombineArgs::expandX, false},
    {"expertIds", &CombineArgs::expertIds, false},
    {"assistInfoForCombine", &CombineArgs::assistInfoForCombine, false},
    {"epSendCounts", &CombineArgs::epSendCounts, false},
    {"expertScales", &CombineArgs::expertScales, false},
    {"residualX", &CombineArgs::residualX, false},
    {"gamma", &CombineArgs::gamma, false},
    {"tpSendCounts", &CombineArgs::tpSendCounts, false},
    {"xActiveMask", &CombineArgs::xActiveMask, false},
    {"activationScale", &CombineArgs::activationScale, false},
    {"weightScale", &CombineArgs::weightScale, false},
    {"groupList", &CombineArgs::groupList, false},
    {"expandScales", &CombineArgs::expandScales, false},
    {"sharedExpertX", &CombineArgs::sharedExpertX, false},
    {"elasticInfo", &CombineArgs::elasticInfo, false},
    {"oriX", &CombineArgs::oriX, false},
    {"constExpertAlpha1", &CombineArgs::constExpertAlpha1, false},
    {"constExpertAlpha2", &CombineArgs::constExpertAlpha2, false},
    {"constExpertV", &CombineArgs::constExpertV, false},
    {"yOut", &CombineArgs::yOut, true},
    {"rstdOut", &CombineArgs::rstdOut, true},
    {"xOut", &CombineArgs::xOut, true},
}};

constexpr std::array<IntField<MoeAttrs>, 8> kMoeAttrs = {{
    {"moeExpertNum", &MoeAttrs::moeExpertNum},
    {"expertShardType", &MoeAttrs::expertShardType},
    {"sharedExpertNum", &MoeAttrs::sharedExpertNum},
    {"sharedExpertRankNum", &MoeAttrs::sharedExpertRankNum},
    {"globalBs", &MoeAttrs::globalBs},
    {"zeroExpertNum", &MoeAttrs::zeroExpertNum},
    {"copyExpertNum", &MoeAttrs::copyExpertNum},
    {"constExpertNum", &MoeAttrs::constExpertNum},
}};
constexpr std::array<IntField<DispatchArgs>, 2> kDispatchAttrs = {{
    {"quantMode", &DispatchArgs::quantMode},
    {"expertTokenNumsType", &DispatchArgs::expertTokenNumsType},
}};
constexpr std::array<IntField<CombineArgs>, 3> kCombineAttrs = {{
    {"outDtype", &CombineArgs::outDtype},
    {"commQuantMode", &CombineArgs::commQuantMode},
    {"groupListType", &CombineArgs::groupListType},
}};

// Sets one attribute of `args` (any of MoeAttrs' and the operator's own); false when `name` is none of them.
template <class Args, size_t N>
bool setAttr(Args& args, const std::array<IntField<Args>, N>& own, std::string_view name, const py::handle& value) {
  for (const auto& f : kMoeAttrs)
    if (f.name == name) {
      args.*f.member = py::cast<int64_t>(value);
      return true;
    }
  for (const auto& f : own)
    if (f.name == name) {
      args.*f.member = py::cast<int64_t>(value);
      return true;
    }
  if (name == "commAlg") {
    args.commAlg = py::cast<std::string>(value);
    return true;
  }
  return false;
}

// Fills the attributes and tensors of `args` from the dicts; keeps the arrays in `keep` (they must outlive the call).
template <class Args, size_t NT, size_t NA>
void fillArgs(Args& args, const std::array<TensorField<Args>, NT>& tensorFields,
              const std::array<IntField<Args>, NA>& attrFields, const py::dict& tensors, const py::dict& attrs,
              std::vector<py::array>& keep) {
  for (const auto& [key, value] : attrs) {
    const auto name = py::cast<std::string>(key);
    if constexpr (std::is_same_v<Args, CombineArgs>) {
      if (name == "normEps") {
        args.normEps = py::cast<float>(value);
        continue;
      }
    }
    if (!setAttr(args, attrFields, name, value)) throw py::key_error("unknown attribute '" + name + "'");
  }
  for (const auto& [key, value] : tensors) {
    const auto name = py::cast<std::string>(key);
    const TensorField<Args>* field = nullptr;
    for (const auto& f : tensorFields)
      if (f.name == name) field = &f;
    if (field == nullptr) throw py::key_error("unknown tensor '" + name + "'");
    if (value.is_none()) continue;
    auto pair = py::cast<py::tuple>(value);
    auto array = py::cast<py::array>(pair[0]);
    keep.push_back(array);
    args.*field->member = toView(array, toDType(py::cast<std::string>(pair[1]), name), name, field->output);
  }
}

RankAttrs toRankAttrs(const py::tuple& ranks) {
  if (ranks.size() != 4) throw py::value_error("ranks: expected (epWorldSize, epRankId, tpWorldSize, tpRankId)");
  return RankAttrs{ranks[0].cast<int64_t>(), ranks[1].cast<int64_t>(), ranks[2].cast<int64_t>(),
                   ranks[3].cast<int64_t>()};
}

// The EP handle, and the TP handle when groupTp is given (else tp stays empty and the call gets no TP communicator).
void findCommunicators(const std::string& groupEp, const std::string& groupTp, const RankAttrs& ranks, Communicator* ep,
                       Communicator* tp) {
  *ep = findCommunicator(groupEp, ranks.epRankId, "group_ep");
  if (!groupTp.empty()) *tp = findCommunicator(groupTp, ranks.tpRankId, "group_tp");
}

// One call of a dispatch (Args = DispatchArgs) or combine operator (CombineArgs) named by `opName`.
template <class Args, size_t NT, size_t NA>
void runOperator(const std::array<TensorField<Args>, NT>& tensorFields,
                 const std::array<IntField<Args>, NA>& attrFields, const std::string& opName,
                 const std::string& groupEp, const std::string& groupTp, const py::tuple& rankTuple,
                 const py::dict& tensors, const py::dict& attrs) {
  constexpr bool kDispatch = std::is_same_v<Args, DispatchArgs>;
  const Operator op = toOperator(opName);
  if (isDispatch(op) != kDispatch)
    throw py::value_error(opName + (kDispatch ? " is not a dispatch operator" : " is not a combine operator"));
  const RankAttrs ranks = toRankAttrs(rankTuple);
  Args args;
  std::vector<py::array> keep;
  fillArgs(args, tensorFields, attrFields, tensors, attrs, keep);
  Communicator ep, tp;
  findCommunicators(groupEp, groupTp, ranks, &ep, &tp);
  Status status;
  {
    py::gil_scoped_release release;
    if constexpr (kDispatch)
      status = dispatch(op, ep, tp.valid() ? &tp : nullptr, ranks, args);
    else
      status = combine(op, ep, tp.valid() ? &tp : nullptr, ranks, args);
  }
  check(status);
}

void runDispatch(const std::string& opName, const std::string& groupEp, const std::string& groupTp,
                 const py::tuple& rankTuple, const py::dict& tensors, const py::dict& attrs) {
  runOperator(kDispatchTensors, kDispatchAttrs, opName, groupEp, groupTp, rankTuple, tensors, attrs);
}

void runCombine(const std::string& opName, const std::string& groupEp, const std::string& groupTp,
                const py::tuple& rankTuple, const py::dict& tensors, const py::dict& attrs) {
  runOperator(kCombineTensors, kCombineAttrs, opName, groupEp, groupTp, rankTuple, tensors, attrs);
}

py::dict outputShapesOf(const py::tuple& rankTuple, const py::dict& attrs, int64_t bs, int64_t h, int64_t k,
                        bool elastic) {
  const RankAttrs ranks = toRankAttrs(rankTuple);
  DispatchArgs moe;  // only its MoeAttrs part is read
  for (const auto& [key, value] : attrs) {
    const auto name = key.cast<std::string>();
    if (!setAttr(moe, std::array<IntField<DispatchArgs>, 0>{}, name, value))
      throw py::key_error("unknown attribute '" + name + "'");
  }
  OutputShapes s;
  check(outputShapes(ranks, moe, ShapeQuery{bs, h, k, elastic}, &s));
  py::dict out;
  out["A"] = s.A;
  out["localExpertNum"] = s.localExpertNum;
  out["expandXRows"] = s.expandXRows;
  out["assistInfoForCombine"] = s.assistInfoForCombine;
  out["expertTokenNums"] = s.expertTokenNums;
  out["epRecvCounts"] = s.epRecvCounts;
  out["tpRecvCounts"] = s.tpRecvCounts;
  out["expandScales"] = s.expandScales;
  out["H"] = s.H;
  out["Bs"] = s.Bs;
  out["windowBytes"] = s.windowBytes;
  return out;
}

}  // namespace

void registerOps(py::module_& m) {
  using py::arg;
  m.def("dispatch", &runDispatch, arg("op"), arg("group_ep"), arg("group_tp"), arg("ranks"), arg("tensors"),
        arg("attrs"),
        "Runs a dispatch operator: tensors {C++ name: (array, dtype name) or None}, attrs {C++ name: value}, "
        "ranks (epWorldSize, epRankId, tpWorldSize, tpRankId). Releases the GIL while it runs.");
  m.def("combine", &runCombine, arg("op"), arg("group_ep"), arg("group_tp"), arg("ranks"), arg("tensors"), arg("attrs"),
        "Runs a combine operator; arguments as for dispatch.");
  m.def("output_shapes", &outputShapesOf, arg("ranks"), arg("attrs"), arg("bs"), arg("h"), arg("k"), arg("elastic"),
        "moedist::outputShapes: the output lengths of a call, by their C++ names.");
}

}  // namespace moedist::python
