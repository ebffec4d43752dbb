// moedist._reference: the global-view reference model (reference/, moedist_ref) for Python, over numpy arrays.
// The user-facing module is moedist.reference (python/moedist/reference.py), which checks and normalises what users
// pass and documents the shapes; this file only converts between numpy arrays and the model's structures.
//
// Steps of dispatch() and combine(): take every rank's arrays (exact dtypes, C order; anything else is a TypeError),
// copy them into the model's inputs with the GIL held, run the model with the GIL released, and hand the written
// prefixes back as new numpy arrays. A model error (inputs outside the contract) raises ValueError with its message.
//
// Links moedist_reference only: no operator code, no moedist layer.
#include <moedist_ref/numeric.h>
#include <moedist_ref/reference.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace py = pybind11;
namespace ref = moedist::ref;

namespace {

// The array behind `obj`, which must have exactly dtype T (bool is accepted for uint8 masks). Raises TypeError
// naming `what` otherwise. Non-contiguous arrays are copied into C order.
template <typename T>
py::array_t<T, py::array::c_style> asArray(py::handle obj, const std::string& what) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(what + ": expected a numpy array");
  auto a = py::reinterpret_borrow<py::array>(obj);
  const bool boolAsByte = std::is_same_v<T, uint8_t> && a.dtype().kind() == 'b';
  if (boolAsByte) {
    a = a.attr("view")(py::dtype::of<uint8_t>());
  } else if (!py::isinstance<py::array_t<T>>(a)) {
    throw py::type_error(what + ": expected dtype " + py::str(py::dtype::of<T>()).cast<std::string>() + ", got " +
                         py::str(a.dtype()).cast<std::string>());
  }
  return py::array_t<T, py::array::c_style>::ensure(a);
}

template <typename T>
std::vector<T> toVector(py::handle obj, const std::string& what) {
  auto a = asArray<T>(obj, what);
  return std::vector<T>(a.data(), a.data() + a.size());
}

// An optional entry of a rank's dict: absent or None gives an empty vector.
template <typename T>
std::vector<T> optionalVector(const py::dict& d, const char* key, const std::string& where) {
  if (!d.contains(key) || d[key].is_none()) return {};
  return toVector<T>(d[key], where + key);
}

template <typename T>
std::vector<T> requiredVector(const py::dict& d, const char* key, const std::string& where) {
  if (!d.contains(key) || d[key].is_none()) throw py::value_error(where + key + " is required");
  return toVector<T>(d[key], where + key);
}

// A new numpy array of the given shape holding `n` elements copied from `src`.
template <typename T>
py::array_t<T> newArray(std::vector<py::ssize_t> shape, const T* src, size_t n) {
  py::array_t<T> a(shape);
  if (n > 0) std::memcpy(a.mutable_data(), src, n * sizeof(T));
  return a;
}

template <typename T>
py::array_t<T> newArray1(const std::vector<T>& v) {
  return newArray<T>({static_cast<py::ssize_t>(v.size())}, v.data(), v.size());
}

std::string rankWhere(const char* op, size_t g, size_t p) {
  return std::string(op) + ": inputs[" + std::to_string(g) + "][" + std::to_string(p) + "].";
}

// inputs[g][p]: a dict, or None for a rank that does not call (removed by elastic scale-in); fill(dict, where, input)
// reads one rank's dict.
template <class Input, class Fill>
std::vector<std::vector<Input>> takeInputs(const char* op, const py::sequence& groups, Fill fill) {
  std::vector<std::vector<Input>> in(static_cast<size_t>(py::len(groups)));
  for (size_t g = 0; g < in.size(); ++g) {
    const py::sequence ranks = groups[g].cast<py::sequence>();
    in[g].resize(static_cast<size_t>(py::len(ranks)));
    for (size_t p = 0; p < in[g].size(); ++p) {
      py::object r = ranks[p];
      if (!r.is_none()) fill(r.cast<py::dict>(), rankWhere(op, g, p), in[g][p]);
    }
  }
  return in;
}

// Dispatch: {x: (Bs, H) uint16, expert_ids: int32, x_active_mask: uint8/bool or None, scales: float32 or None}.
ref::DispatchInputs takeDispatchInputs(const char* op, const py::sequence& groups) {
  return takeInputs<ref::DispatchInput>(op, groups,
                                        [](const py::dict& d, const std::string& where, ref::DispatchInput& di) {
                                          if (!d.contains("x") || d["x"].is_none())
                                            throw py::value_error(where + "x is required");
                                          auto x = asArray<uint16_t>(d["x"], where + "x");
                                          if (x.ndim() != 2) throw py::value_error(where + "x must be 2-D (Bs, H)");
                                          di.Bs = static_cast<int>(x.shape(0));
                                          di.x.assign(x.data(), x.data() + x.size());
                                          di.expertIds = requiredVector<int32_t>(d, "expert_ids", where);
                                          di.mask = optionalVector<uint8_t>(d, "x_active_mask", where);
                                          di.scales = optionalVector<float>(d, "scales", where);
                                        });
}

ref::CombineInputs takeCombineInputs(const py::sequence& groups) {
  return takeInputs<ref::CombineInput>("combine", groups,
                                       [](const py::dict& d, const std::string& where, ref::CombineInput& ci) {
                                         ci.expandX = requiredVector<uint16_t>(d, "expand_x", where);
                                         ci.assistInfo = requiredVector<int32_t>(d, "assist_info_for_combine", where);
                                         ci.epSendCounts = requiredVector<int32_t>(d, "ep_send_counts", where);
                                         ci.tpSendCounts = optionalVector<int32_t>(d, "tp_send_counts", where);
                                         ci.expertScales = requiredVector<float>(d, "expert_scales", where);
                                         ci.residualX = requiredVector<uint16_t>(d, "residual_x", where);
                                         ci.gamma = requiredVector<uint16_t>(d, "gamma", where);
                                         ci.sharedExpertX = optionalVector<uint16_t>(d, "shared_expert_x", where);
                                         ci.oriX = optionalVector<uint16_t>(d, "ori_x", where);
                                         ci.alpha1 = optionalVector<uint16_t>(d, "const_expert_alpha_1", where);
                                         ci.alpha2 = optionalVector<uint16_t>(d, "const_expert_alpha_2", where);
                                         ci.constV = optionalVector<uint16_t>(d, "const_expert_v", where);
                                       });
}

py::object dispatchOutput(const ref::Config& cfg, const ref::DispatchOutput& o) {
  if (!o.participates) return py::none();
  py::dict d;
  const auto H = static_cast<py::ssize_t>(cfg.H);
  const auto rows = static_cast<py::ssize_t>(o.numRows);
  if (cfg.quantMode == 2) {
    d["expand_x"] = newArray<int8_t>({rows, H}, reinterpret_cast<const int8_t*>(o.expandX.data()), o.expandX.size());
    d["dynamic_scales"] = newArray1(o.dynamicScales);
  } else {
    d["expand_x"] =
        newArray<uint16_t>({rows, H}, reinterpret_cast<const uint16_t*>(o.expandX.data()), o.expandX.size() / 2);
    d["dynamic_scales"] = py::none();
  }
  d["num_own_rows"] = o.numOwnRows;
  d["num_rows"] = o.numRows;
  d["assist_info_for_combine"] = newArray1(o.assistInfo);
  d["expert_token_nums"] = newArray1(o.expertTokenNums);
  d["ep_recv_counts"] = newArray1(o.epRecvCounts);
  d["tp_recv_counts"] = o.tpRecvCounts.empty() ? py::object(py::none()) : py::object(newArray1(o.tpRecvCounts));
  return d;
}

py::object combineOutput(const ref::Config& cfg, const ref::CombineOutput& o) {
  if (!o.participates) return py::none();
  py::dict d;
  const auto H = static_cast<py::ssize_t>(cfg.H);
  const auto Bs = static_cast<py::ssize_t>(o.written.size());
  py::array_t<bool> written({Bs});
  for (py::ssize_t b = 0; b < Bs; ++b) written.mutable_at(b) = o.written[static_cast<size_t>(b)] != 0;
  d["written"] = written;
  d["x"] = newArray<uint16_t>({Bs, H}, o.xOut.data(), o.xOut.size());
  if (cfg.addRmsNorm) {
    d["y"] = newArray<uint16_t>({Bs, H}, o.yOut.data(), o.yOut.size());
    d["rstd"] = newArray1(o.rstdOut);
  } else {
    d["y"] = py::none();
    d["rstd"] = py::none();
  }
  return d;
}

template <typename Out, typename F>
py::list outputsToList(const std::vector<std::vector<Out>>& outs, F convert) {
  py::list groups;
  for (const auto& g : outs) {
    py::list ranks;
    for (const auto& o : g) ranks.append(convert(o));
    groups.append(std::move(ranks));
  }
  return groups;
}

py::list dispatch(const ref::Config& cfg, const py::sequence& inputs) {
  const ref::DispatchInputs in = takeDispatchInputs("dispatch", inputs);
  ref::DispatchOutputs out;
  std::optional<std::string> err;
  {
    py::gil_scoped_release release;
    err = ref::dispatch(cfg, in, &out);
  }
  if (err) throw py::value_error(*err);
  return outputsToList(out, [&](const ref::DispatchOutput& o) { return dispatchOutput(cfg, o); });
}

py::list combine(const ref::Config& cfg, const py::sequence& dispatchInputs, const py::sequence& combineInputs) {
  const ref::DispatchInputs din = takeDispatchInputs("combine", dispatchInputs);
  const ref::CombineInputs cin = takeCombineInputs(combineInputs);
  ref::CombineOutputs out;
  std::optional<std::string> err;
  {
    py::gil_scoped_release release;
    err = ref::combine(cfg, din, cin, &out);
  }
  if (err) throw py::value_error(*err);
  return outputsToList(out, [&](const ref::CombineOutput& o) { return combineOutput(cfg, o); });
}

// Element-wise conversions over arrays of any shape.
template <typename In, typename Out, typename F>
py::array_t<Out> mapArray(py::handle obj, const char* what, F f) {
  auto a = asArray<In>(obj, what);
  std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
  py::array_t<Out> r(shape);
  const In* src = a.data();
  Out* dst = r.mutable_data();
  const auto n = static_cast<size_t>(a.size());
  for (size_t i = 0; i < n; ++i) dst[i] = f(src[i]);
  return r;
}

std::vector<float> rowOf(py::handle obj, const char* what) {
  auto a = asArray<float>(obj, what);
  if (a.ndim() != 1) throw py::value_error(std::string(what) + ": expected a 1-D array");
  return std::vector<float>(a.data(), a.data() + a.size());
}

}  // namespace

PYBIND11_MODULE(_reference, m) {
  m.doc() = "The reference model of moedist (private; use moedist.reference).";

  py::class_<ref::Config>(m, "Config")
      .def(py::init<>())
      .def_readwrite("W", &ref::Config::W)
      .def_readwrite("M", &ref::Config::M)
      .def_readwrite("sharedExpertNum", &ref::Config::sharedExpertNum)
      .def_readwrite("sharedExpertRankNum", &ref::Config::sharedExpertRankNum)
      .def_readwrite("K", &ref::Config::K)
      .def_readwrite("H", &ref::Config::H)
      .def_readwrite("Z", &ref::Config::Z)
      .def_readwrite("C", &ref::Config::C)
      .def_readwrite("Q", &ref::Config::Q)
      .def_readwrite("globalBs", &ref::Config::globalBs)
      .def_readwrite("tp", &ref::Config::tp)
      .def_readwrite("fp16", &ref::Config::fp16)
      .def_readwrite("quantMode", &ref::Config::quantMode)
      .def_readwrite("expertTokenNumsType", &ref::Config::expertTokenNumsType)
      .def_readwrite("commQuantMode", &ref::Config::commQuantMode)
      .def_readwrite("normEps", &ref::Config::normEps)
      .def_readwrite("elasticInfo", &ref::Config::elasticInfo)
      .def_readwrite("maskDims", &ref::Config::maskDims)
      .def_readwrite("addRmsNorm", &ref::Config::addRmsNorm);

  m.def("dispatch", &dispatch, py::arg("config"), py::arg("inputs"),
        "All ranks' dispatch outputs (written prefixes) from all ranks' inputs, [tp_index][ep_rank].");
  m.def("combine", &combine, py::arg("config"), py::arg("dispatch_inputs"), py::arg("combine_inputs"),
        "All ranks' combine outputs from all ranks' dispatch and combine inputs, [tp_index][ep_rank].");

  m.def(
      "float_to_bf16", [](py::handle a) { return mapArray<float, uint16_t>(a, "float_to_bf16", ref::floatToBf16); },
      py::arg("values"));
  m.def(
      "bf16_to_float", [](py::handle a) { return mapArray<uint16_t, float>(a, "bf16_to_float", ref::bf16ToFloat); },
      py::arg("bits"));
  m.def(
      "float_to_fp16", [](py::handle a) { return mapArray<float, uint16_t>(a, "float_to_fp16", ref::floatToFp16); },
      py::arg("values"));
  m.def(
      "fp16_to_float", [](py::handle a) { return mapArray<uint16_t, float>(a, "fp16_to_float", ref::fp16ToFloat); },
      py::arg("bits"));

  m.def(
      "reduce_sum",
      [](py::handle v) {
        const std::vector<float> row = rowOf(v, "reduce_sum");
        return ref::reduceSumAscend(row.data(), static_cast<int64_t>(row.size()));
      },
      py::arg("values"));
  m.def(
      "rms_norm",
      [](py::handle x, py::handle gamma, float eps) {
        const std::vector<float> row = rowOf(x, "rms_norm: x");
        const std::vector<uint16_t> g = toVector<uint16_t>(gamma, "rms_norm: gamma");
        if (g.size() != row.size()) throw py::value_error("rms_norm: gamma must have as many elements as x");
        if (row.empty()) throw py::value_error("rms_norm: x must not be empty");
        std::vector<uint16_t> y(row.size());
        const float rstd = ref::rmsNormRow(row.data(), g.data(), static_cast<int64_t>(row.size()), eps, y.data());
        return py::make_tuple(newArray1(y), rstd);
      },
      py::arg("x"), py::arg("gamma"), py::arg("eps"));
  m.def(
      "dynamic_quant",
      [](py::handle v) {
        const std::vector<float> row = rowOf(v, "dynamic_quant");
        std::vector<int8_t> q(row.size());
        const float scale = ref::dynamicQuantRow(row.data(), static_cast<int64_t>(row.size()), q.data());
        return py::make_tuple(newArray1(q), scale);
      },
      py::arg("values"));
  m.def(
      "comm_quant_round_trip",
      [](py::handle bits) {
        const std::vector<uint16_t> row = toVector<uint16_t>(bits, "comm_quant_round_trip");
        std::vector<uint16_t> out(row.size());
        ref::commQuantRoundTrip(row.data(), static_cast<int64_t>(row.size()), out.data());
        return newArray1(out);
      },
      py::arg("bits"));
}
