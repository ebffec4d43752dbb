"""The six operators over numpy arrays, and the shape query.

Every rank calls the operator with its own arrays, the group's name (group_ep, and group_tp with TP) and its rank
id; ranks may be threads of one process (the GIL is released while an operator runs) or processes. What numpy can
tell alone (an argument that is not an array, its dtype, its number of dimensions, an `out=` array's shape) raises
TypeError / ValueError on the calling rank before anything runs. Everything else is checked by moedist's operators
and raises moedist.Error on every rank of the call together (shape relations, attribute values, routing data).

Outputs are allocated at their full allocation shapes from the shape query (moedist::outputShapes), filled with
zeros, unless `out=` gives the caller's arrays. Nothing is written to any output when a call fails before its
exchanges (every argument error).
"""

import collections
import operator

import numpy as np

from . import _C
from ._dtypes import HALF_DTYPES, moedist_dtype

__all__ = [
    "DispatchOutputs",
    "CombineOutputs",
    "OutputShapes",
    "dispatch_v3",
    "dispatch_v2",
    "combine_add_rms_norm_v2",
    "combine_add_rms_norm",
    "combine_v3",
    "combine_v2",
    "output_shapes",
]

DispatchOutputs = collections.namedtuple(
    "DispatchOutputs",
    [
        "expand_x",  # (max(tp,1)*A, H): x's dtype, or int8 with quant_mode 2
        "dynamic_scales",  # (max(tp,1)*A,) float32; written with quant_mode 2
        "assist_info_for_combine",  # (A*128,) int32
        "expert_token_nums",  # (local_expert_num,) int64
        "ep_recv_counts",  # (W*local_expert_num*(tp==2 ? 2 : 1),) int32
        "tp_recv_counts",  # (tp_world_size,) int32
        "expand_scales",  # (A,) float32; never written
    ],
)
DispatchOutputs.__doc__ = "The outputs of dispatch_v3 / dispatch_v2 (numpy arrays at their allocation shapes)."

CombineOutputs = collections.namedtuple("CombineOutputs", ["y", "rstd", "x"])
CombineOutputs.__doc__ = (
    "The outputs of combine_add_rms_norm_v2 / combine_add_rms_norm: y (Bs, 1, H) the RmsNorm output, "
    "rstd (Bs, 1, 1) float32, x (Bs, 1, H) the combine output plus residual_x; y and x in expand_x's dtype."
)

OutputShapes = collections.namedtuple(
    "OutputShapes",
    [
        "a",  # A: the rank's output row capacity
        "local_expert_num",
        "expand_x_rows",  # max(tp,1)*A: expand_x is (expand_x_rows, H), dynamic_scales (expand_x_rows,)
        "assist_info_for_combine",
        "expert_token_nums",
        "ep_recv_counts",
        "tp_recv_counts",
        "expand_scales",
        "h",
        "bs",
        "window_bytes",  # the CANN window (HCCL_BUFFSIZE) every communicator needs: >= ceil(window_bytes / 2**20) MB
    ],
)
OutputShapes.__doc__ = "The output lengths of a call on one rank (moedist::OutputShapes)."

# Argument specs: (Python name, C++ name, allowed dtypes, allowed numbers of dimensions). "half" is the operator's
# 16-bit float type: np.uint16 bits (of x_dtype) or np.float16. None: any dtype (reserved arguments).
_DISPATCH_INPUTS = (
    ("x", "x", "half", (2,)),
    ("expert_ids", "expertIds", "int32", (2,)),
    ("scales", "scales", "float32", (2,)),
    ("x_active_mask", "xActiveMask", "bool", (1, 2)),
    ("expert_scales", "expertScales", "float32", (2,)),
    ("elastic_info", "elasticInfo", "int32", (1,)),
)
_COMBINE_INPUTS = (
    ("expand_x", "expandX", "half", (2,)),
    ("expert_ids", "expertIds", "int32", (2,)),
    ("assist_info_for_combine", "assistInfoForCombine", "int32", (1,)),
    ("ep_send_counts", "epSendCounts", "int32", (1,)),
    ("expert_scales", "expertScales", "float32", (2,)),
    ("residual_x", "residualX", "half", (3,)),
    ("gamma", "gamma", "half", (1,)),
    ("tp_send_counts", "tpSendCounts", "int32", (1,)),
    ("x_active_mask", "xActiveMask", "bool", (1, 2)),
    ("activation_scale", "activationScale", None, None),
    ("weight_scale", "weightScale", None, None),
    ("group_list", "groupList", None, None),
    ("expand_scales", "expandScales", None, None),
    ("shared_expert_x", "sharedExpertX", "half", (2, 3)),
    ("elastic_info", "elasticInfo", "int32", (1,)),
    ("ori_x", "oriX", "half", (2,)),
    ("const_expert_alpha_1", "constExpertAlpha1", "half", (1,)),
    ("const_expert_alpha_2", "constExpertAlpha2", "half", (1,)),
    ("const_expert_v", "constExpertV", "half", (2,)),
)
_MOE_ATTRS = (
    ("moe_expert_num", "moeExpertNum"),
    ("expert_shard_type", "expertShardType"),
    ("shared_expert_num", "sharedExpertNum"),
    ("shared_expert_rank_num", "sharedExpertRankNum"),
    ("global_bs", "globalBs"),
    ("zero_expert_num", "zeroExpertNum"),
    ("copy_expert_num", "copyExpertNum"),
    ("const_expert_num", "constExpertNum"),
)


def _int(name, value):
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from None


def _str(name, value):
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, got {type(value).__name__}")
    return value


def _half_name(name, value):
    if value not in HALF_DTYPES:
        raise ValueError(f"{name}: expected 'bfloat16' or 'float16', got {value!r}")
    return value


def _input(name, array, allowed, ndims):
    """Checks an input array's type, dtype and number of dimensions (TypeError / ValueError naming it)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(array).__name__}")
    if allowed == "half":
        if array.dtype not in (np.uint16, np.float16):
            raise TypeError(f"{name}: expected dtype uint16 (bfloat16 or float16 bits) or float16, got {array.dtype}")
    elif allowed is not None and array.dtype != np.dtype(allowed):
        raise TypeError(f"{name}: expected dtype {allowed}, got {array.dtype}")
    if ndims is not None and array.ndim not in ndims:
        expected = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name}: expected {expected} dimensions, got {array.ndim} (shape {array.shape})")
    return array


def _inputs(specs, values, half):
    """{C++ name: (array, moedist dtype) or None} of the given inputs, after checking each."""
    tensors = {}
    for name, cpp, allowed, ndims in specs:
        array = values[name]
        if array is None:
            tensors[cpp] = None
            continue
        _input(name, array, allowed, ndims)
        tensors[cpp] = (array, moedist_dtype(name, array, half))
    return tensors


def _ranks(ep_world_size, ep_rank_id, tp_world_size, tp_rank_id):
    return (
        _int("ep_world_size", ep_world_size),
        _int("ep_rank_id", ep_rank_id),
        _int("tp_world_size", tp_world_size),
        _int("tp_rank_id", tp_rank_id),
    )


def _moe_attrs(values):
    attrs = {cpp: _int(name, values[name]) for name, cpp in _MOE_ATTRS}
    attrs["commAlg"] = _str("comm_alg", values["comm_alg"])
    return attrs


def _outputs(op, specs, out, kind):
    """The output arrays: the caller's from `out` (checked) or new zero-filled ones. specs: (field, shape, dtype)."""
    if out is None:
        given = {}
    elif isinstance(out, dict):
        given = dict(out)
    elif isinstance(out, tuple) and hasattr(out, "_fields"):
        given = out._asdict()
    else:
        raise TypeError(f"{op}: out: expected a {kind} or a dict of arrays, got {type(out).__name__}")
    fields = [field for field, _, _ in specs]
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ValueError(f"{op}: out: unknown output(s) {', '.join(unknown)}; expected some of {', '.join(fields)}")
    arrays = {}
    for field, shape, dtype in specs:
        array = given.get(field)
        if array is None:
            arrays[field] = np.zeros(shape, dtype=dtype)
            continue
        name = f"out.{field}"
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{op}: {name}: expected a numpy.ndarray, got {type(array).__name__}")
        if array.dtype != dtype:
            raise TypeError(f"{op}: {name}: expected dtype {dtype}, got {array.dtype}")
        if array.shape != tuple(shape):
            raise ValueError(f"{op}: {name}: expected shape {tuple(shape)}, got {array.shape}")
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError(f"{op}: {name}: expected a writeable C-contiguous array")
        arrays[field] = array
    return arrays


def _shapes(ranks, attrs, bs, h, k, elastic):
    s = _C.output_shapes(ranks, attrs, bs, h, k, elastic)
    return OutputShapes(
        s["A"],
        s["localExpertNum"],
        s["expandXRows"],
        s["assistInfoForCombine"],
        s["expertTokenNums"],
        s["epRecvCounts"],
        s["tpRecvCounts"],
        s["expandScales"],
        s["H"],
        s["Bs"],
        s["windowBytes"],
    )


def output_shapes(
    ep_world_size,
    ep_rank_id,
    moe_expert_num,
    *,
    bs,
    h,
    k,
    elastic=False,
    tp_world_size=0,
    tp_rank_id=0,
    expert_shard_type=0,
    shared_expert_num=1,
    shared_expert_rank_num=0,
    global_bs=0,
    zero_expert_num=0,
    copy_expert_num=0,
    const_expert_num=0,
    comm_alg="",
):
    """The output lengths of a dispatch (and of the combine inputs that are dispatch outputs) on one rank.

    bs, h, k: the rank's tokens, hidden size and top-k; elastic: whether elastic_info is given. Checks the attributes
    the lengths depend on (moedist.Error otherwise). Returns an OutputShapes."""
    values = dict(locals())
    ranks = _ranks(ep_world_size, ep_rank_id, tp_world_size, tp_rank_id)
    return _shapes(ranks, _moe_attrs(values), _int("bs", bs), _int("h", h), _int("k", k), bool(elastic))


def _dispatch(op, values):
    half = _half_name("x_dtype", values["x_dtype"])
    tensors = _inputs(_DISPATCH_INPUTS, values, half)
    x, expert_ids = values["x"], values["expert_ids"]
    ranks = _ranks(values["ep_world_size"], values["ep_rank_id"], values["tp_world_size"], values["tp_rank_id"])
    attrs = _moe_attrs(values)
    attrs["quantMode"] = _int("quant_mode", values["quant_mode"])
    attrs["expertTokenNumsType"] = _int("expert_token_nums_type", values["expert_token_nums_type"])
    group_ep = _str("group_ep", values["group_ep"])
    group_tp = _str("group_tp", values["group_tp"])
    expand_name = "int8" if attrs["quantMode"] == 2 else (tensors["x"][1] if x is not None else half)
    if x is None or expert_ids is None:  # required: the operator reports the null argument on every rank
        _fail_together(_C.dispatch, op, group_ep, group_tp, ranks, tensors, attrs, _empty_dispatch_outputs(expand_name))
    bs, h = x.shape
    try:
        moe = {k: v for k, v in attrs.items() if k not in ("quantMode", "expertTokenNumsType")}
        s = _shapes(ranks, moe, bs, h, expert_ids.shape[1], values["elastic_info"] is not None)
    except _C.Error as shape_error:
        # Fail together with the other ranks: the operator refuses the same arguments and tells its peers.
        _fail_together(
            _C.dispatch, op, group_ep, group_tp, ranks, tensors, attrs, _empty_dispatch_outputs(expand_name), shape_error
        )
    expand_dtype = np.dtype(np.int8) if attrs["quantMode"] == 2 else x.dtype
    outputs = _outputs(
        op,
        (
            ("expand_x", (s.expand_x_rows, h), expand_dtype),
            ("dynamic_scales", (s.expand_x_rows,), np.dtype(np.float32)),
            ("assist_info_for_combine", (s.assist_info_for_combine,), np.dtype(np.int32)),
            ("expert_token_nums", (s.expert_token_nums,), np.dtype(np.int64)),
            ("ep_recv_counts", (s.ep_recv_counts,), np.dtype(np.int32)),
            ("tp_recv_counts", (s.tp_recv_counts,), np.dtype(np.int32)),
            ("expand_scales", (s.expand_scales,), np.dtype(np.float32)),
        ),
        values["out"],
        "DispatchOutputs",
    )
    tensors.update(
        {
            "expandX": (outputs["expand_x"], expand_name),
            "dynamicScales": (outputs["dynamic_scales"], "float32"),
            "assistInfoForCombine": (outputs["assist_info_for_combine"], "int32"),
            "expertTokenNums": (outputs["expert_token_nums"], "int64"),
            "epRecvCounts": (outputs["ep_recv_counts"], "int32"),
            "tpRecvCounts": (outputs["tp_recv_counts"], "int32"),
            "expandScales": (outputs["expand_scales"], "float32"),
        }
    )
    _C.dispatch(op, group_ep, group_tp, ranks, tensors, attrs)
    return DispatchOutputs(**outputs)


def _empty_dispatch_outputs(expand_name):
    """Zero-length dispatch outputs of the right dtypes (for calls that must fail before writing anything)."""
    expand_dtype = {"int8": np.int8, "float16": np.float16}.get(expand_name, np.uint16)
    return {
        "expandX": (np.zeros((0, 0), expand_dtype), expand_name),
        "dynamicScales": (np.zeros(0, np.float32), "float32"),
        "assistInfoForCombine": (np.zeros(0, np.int32), "int32"),
        "expertTokenNums": (np.zeros(0, np.int64), "int64"),
        "epRecvCounts": (np.zeros(0, np.int32), "int32"),
        "tpRecvCounts": (np.zeros(0, np.int32), "int32"),
        "expandScales": (np.zeros(0, np.float32), "float32"),
    }


def _fail_together(run, op, group_ep, group_tp, ranks, tensors, attrs, empty_outputs, error=None):
    """Runs the operator with zero-length outputs, so that it fails on this rank and on its peers together, and
    raises its moedist.Error (or `error`, should the operator not fail)."""
    tensors.update(empty_outputs)
    run(op, group_ep, group_tp, ranks, tensors, attrs)
    raise error if error is not None else _C.Error(f"{op}: the operator accepted arguments it should refuse")


def _combine(op, values, norm, half):
    half = _half_name("x_dtype", half)
    tensors = _inputs(_COMBINE_INPUTS, values, half)
    expand_x, expert_ids = values["expand_x"], values["expert_ids"]
    ranks = _ranks(values["ep_world_size"], values["ep_rank_id"], values["tp_world_size"], values["tp_rank_id"])
    if tensors["tpSendCounts"] is None:
        if ranks[2] == 2:
            raise ValueError(f"{op}: tp_send_counts is required when tp_world_size is 2 (pass dispatch's tp_recv_counts)")
        # Without TP its values are never read: zeros of the length the operator checks, (tp_world_size,).
        tensors["tpSendCounts"] = (np.zeros(max(ranks[2], 0), np.int32), "int32")
    attrs = _moe_attrs(values)
    attrs["commQuantMode"] = _int("comm_quant_mode", values["comm_quant_mode"])
    attrs["outDtype"] = _int("out_dtype", values["out_dtype"])
    attrs["groupListType"] = _int("group_list_type", values["group_list_type"])
    if norm:
        attrs["normEps"] = float(values["norm_eps"])
    group_ep = _str("group_ep", values["group_ep"])
    group_tp = _str("group_tp", values["group_tp"])
    bs = expert_ids.shape[0] if expert_ids is not None else 0  # a missing one fails in the operator (161001)
    h = expand_x.shape[1] if expand_x is not None else 0
    out_dtype = expand_x.dtype if expand_x is not None else np.dtype(np.uint16)
    out_name = tensors["expandX"][1] if expand_x is not None else half
    if norm:
        specs = (
            ("y", (bs, 1, h), out_dtype),
            ("rstd", (bs, 1, 1), np.dtype(np.float32)),
            ("x", (bs, 1, h), out_dtype),
        )
        outputs = _outputs(op, specs, values["out"], "CombineOutputs")
        tensors["yOut"] = (outputs["y"], out_name)
        tensors["rstdOut"] = (outputs["rstd"], "float32")
        tensors["xOut"] = (outputs["x"], out_name)
    else:
        out = values["out"]
        outputs = _outputs(op, (("x", (bs, h), out_dtype),), None if out is None else {"x": out}, "numpy.ndarray")
        tensors["xOut"] = (outputs["x"], out_name)
    _C.combine(op, group_ep, group_tp, ranks, tensors, attrs)
    return CombineOutputs(**outputs) if norm else outputs["x"]


def dispatch_v3(
    x,
    expert_ids,
    group_ep,
    ep_world_size,
    ep_rank_id,
    moe_expert_num,
    *,
    scales=None,
    x_active_mask=None,
    expert_scales=None,
    elastic_info=None,
    group_tp="",
    tp_world_size=0,
    tp_rank_id=0,
    expert_shard_type=0,
    shared_expert_num=1,
    shared_expert_rank_num=0,
    quant_mode=0,
    global_bs=0,
    expert_token_nums_type=1,
    comm_alg="",
    zero_expert_num=0,
    copy_expert_num=0,
    const_expert_num=0,
    x_dtype="bfloat16",
    out=None,
):
    """aclnnMoeDistributeDispatchV3: sends each token of this rank to the ranks of its top-k experts.

    x: (Bs, H) np.uint16 bits of x_dtype ("bfloat16" or "float16") or np.float16; expert_ids: (Bs, K) int32.
    Returns DispatchOutputs; expand_x has x's numpy dtype (int8 with quant_mode 2). See docs/python.md."""
    return _dispatch("DispatchV3", dict(locals()))


def dispatch_v2(
    x,
    expert_ids,
    group_ep,
    ep_world_size,
    ep_rank_id,
    moe_expert_num,
    *,
    scales=None,
    x_active_mask=None,
    expert_scales=None,
    group_tp="",
    tp_world_size=0,
    tp_rank_id=0,
    expert_shard_type=0,
    shared_expert_num=1,
    shared_expert_rank_num=0,
    quant_mode=0,
    global_bs=0,
    expert_token_nums_type=1,
    comm_alg="",
    x_dtype="bfloat16",
    out=None,
):
    """aclnnMoeDistributeDispatchV2: dispatch_v3 without elastic_info and special experts."""
    values = dict(locals())
    values.update(elastic_info=None, zero_expert_num=0, copy_expert_num=0, const_expert_num=0)
    return _dispatch("DispatchV2", values)


def combine_add_rms_norm_v2(
    expand_x,
    expert_ids,
    assist_info_for_combine,
    ep_send_counts,
    expert_scales,
    residual_x,
    gamma,
    group_ep,
    ep_world_size,
    ep_rank_id,
    moe_expert_num,
    *,
    tp_send_counts=None,
    x_active_mask=None,
    activation_scale=None,
    weight_scale=None,
    group_list=None,
    expand_scales=None,
    shared_expert_x=None,
    elastic_info=None,
    ori_x=None,
    const_expert_alpha_1=None,
    const_expert_alpha_2=None,
    const_expert_v=None,
    group_tp="",
    tp_world_size=0,
    tp_rank_id=0,
    expert_shard_type=0,
    shared_expert_num=1,
    shared_expert_rank_num=0,
    global_bs=0,
    out_dtype=0,
    comm_quant_mode=0,
    group_list_type=0,
    comm_alg="",
    norm_eps=1e-6,
    zero_expert_num=0,
    copy_expert_num=0,
    const_expert_num=0,
    out=None,
):
    """aclnnMoeDistributeCombineAddRmsNormV2: returns the expert outputs to their tokens, adds them up with the
    expert scales, adds residual_x and applies RmsNorm with gamma.

    expand_x: dispatch's expand_x after the experts, (max(tp,1)*A, H) bfloat16 bits (np.uint16).
    Returns CombineOutputs(y, rstd, x)."""
    return _combine("CombineAddRmsNormV2", dict(locals()), norm=True, half="bfloat16")


def combine_add_rms_norm(
    expand_x,
    expert_ids,
    assist_info_for_combine,
    ep_send_counts,
    expert_scales,
    residual_x,
    gamma,
    group_ep,
    ep_world_size,
    ep_rank_id,
    moe_expert_num,
    *,
    tp_send_counts=None,
    x_active_mask=None,
    activation_scale=None,
    weight_scale=None,
    group_list=None,
    expand_scales=None,
    shared_expert_x=None,
    group_tp="",
    tp_world_size=0,
    tp_rank_id=0,
    expert_shard_type=0,
    shared_expert_num=1,
    shared_expert_rank_num=0,
    global_bs=0,
    out_dtype=0,
    comm_quant_mode=0,
    group_list_type=0,
    comm_alg="",
    norm_eps=1e-6,
    out=None,
):
    """aclnnMoeDistributeCombineAddRmsNorm: combine_add_rms_norm_v2 without elastic_info and special experts."""
    values = dict(locals())
    values.update(_no_elastic_or_specials())
    return _combine("CombineAddRmsNorm", values, norm=True, half="bfloat16")


def combine_v3(
    expand_x,
    expert_ids,
    assist_info_for_combine,
    ep_send_counts,
    expert_scales,
    group_ep,
    ep_world_size,
    ep_rank_id,
    moe_expert_num,
    *,
    tp_send_counts=None,
    x_active_mask=None,
    activation_scale=None,
    weight_scale=None,
    group_list=None,
    expand_scales=None,
    shared_expert_x=None,
    elastic_info=None,
    ori_x=None,
    const_expert_alpha_1=None,
    const_expert_alpha_2=None,
    const_expert_v=None,
    group_tp="",
    tp_world_size=0,
    tp_rank_id=0,
    expert_shard_type=0,
    shared_expert_num=1,
    shared_expert_rank_num=0,
    global_bs=0,
    out_dtype=0,
    comm_quant_mode=0,
    group_list_type=0,
    comm_alg="",
    zero_expert_num=0,
    copy_expert_num=0,
    const_expert_num=0,
    x_dtype="bfloat16",
    out=None,
):
    """aclnnMoeDistributeCombineV3: the weighted sum of combine_add_rms_norm_v2 without residual and RmsNorm.

    expand_x: np.uint16 bits of x_dtype ("bfloat16" or "float16") or np.float16. Returns the x output, a numpy
    array (Bs, H) of expand_x's dtype; out= takes such an array."""
    values = dict(locals())
    values.update(residual_x=None, gamma=None, norm_eps=0.0)
    return _combine("CombineV3", values, norm=False, half=x_dtype)


def combine_v2(
    expand_x,
    expert_ids,
    assist_info_for_combine,
    ep_send_counts,
    expert_scales,
    group_ep,
    ep_world_size,
    ep_rank_id,
    moe_expert_num,
    *,
    tp_send_counts=None,
    x_active_mask=None,
    activation_scale=None,
    weight_scale=None,
    group_list=None,
    expand_scales=None,
    shared_expert_x=None,
    group_tp="",
    tp_world_size=0,
    tp_rank_id=0,
    expert_shard_type=0,
    shared_expert_num=1,
    shared_expert_rank_num=0,
    global_bs=0,
    out_dtype=0,
    comm_quant_mode=0,
    group_list_type=0,
    comm_alg="",
    x_dtype="bfloat16",
    out=None,
):
    """aclnnMoeDistributeCombineV2: combine_v3 without elastic_info and special experts. Returns x (Bs, H)."""
    values = dict(locals())
    values.update(_no_elastic_or_specials(), residual_x=None, gamma=None, norm_eps=0.0)
    return _combine("CombineV2", values, norm=False, half=x_dtype)


def _no_elastic_or_specials():
    return dict(
        elastic_info=None,
        ori_x=None,
        const_expert_alpha_1=None,
        const_expert_alpha_2=None,
        const_expert_v=None,
        zero_expert_num=0,
        copy_expert_num=0,
        const_expert_num=0,
    )
