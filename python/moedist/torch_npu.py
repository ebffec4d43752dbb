"""torch_npu's MoE distribute operators, on the CPU.

A model file written for Ascend's torch_npu runs unchanged on top of moedist after two edits:
``import moedist.torch_npu as torch_npu`` instead of ``import torch_npu``, and a group name from moedist
(``moedist.torch.get_group_name(process_group)`` for processes, ``moedist.create_inprocess_group(n)`` for threads)
instead of the HCCL communicator name. Every function here has the name, the parameters (names, order, the
keyword-only marker, defaults) and the returned tuple of the torch_npu function of the same name, as listed in
docs/torch_npu.md; tensors are torch.Tensor on the CPU, inputs may be non-contiguous, and outputs are freshly
allocated, dense tensors of the documented dtype and shape.

Each call checks the tensors' types, dtypes and ranks (TypeError, ValueError; the message names the parameter),
allocates the outputs with torch.empty and runs the operator of moedist's numpy-level API (moedist.dispatch_v2 /
dispatch_v3, moedist.combine_v2 / combine_v3, moedist.combine_add_rms_norm / combine_add_rms_norm_v2), which writes
straight into the outputs' memory. Failures of the operator itself (values out of range, inconsistent data, a peer
rank that never calls) raise moedist.Error on every rank, with the aclnn code that CANN would return.

What torch_npu calls aclnn V1 dispatch/combine (npu_moe_distribute_dispatch, npu_moe_distribute_combine) has a
different combine protocol (expand_idx of shape (BS*K,)) that moedist does not implement; those two names are not
offered (see docs/torch_npu.md).
"""

import numpy as np
import torch

import moedist as _moedist

__all__ = [
    "npu_moe_distribute_dispatch_v2",
    "npu_moe_distribute_combine_v2",
    "npu_moe_distribute_combine_add_rms_norm",
]

_NOT_OFFERED = {
    "npu_moe_distribute_dispatch": "aclnnMoeDistributeDispatch (V1)",
    "npu_moe_distribute_combine": "aclnnMoeDistributeCombine (V1)",
}


def __getattr__(name):  # PEP 562: a clear message for the torch_npu names moedist does not offer
    if name in _NOT_OFFERED:
        raise AttributeError(
            f"moedist.torch_npu has no {name}: torch_npu implements it with {_NOT_OFFERED[name]}, whose combine "
            f"protocol (expand_idx of shape (BS*K,)) moedist does not implement. Use npu_moe_distribute_dispatch_v2 "
            f"with npu_moe_distribute_combine_v2 or npu_moe_distribute_combine_add_rms_norm (see docs/torch_npu.md).")
    raise AttributeError(f"module 'moedist.torch_npu' has no attribute '{name}'")


# ---------------------------------------------------------------------------------------------------------------
# Argument checks and torch <-> numpy views
# ---------------------------------------------------------------------------------------------------------------

_DTYPE_NAMES = {
    torch.bfloat16: "bfloat16",
    torch.float16: "float16",
    torch.float32: "float32",
    torch.int32: "int32",
    torch.int64: "int64",
    torch.int8: "int8",
    torch.bool: "bool",
}


def _dtype_name(dtype):
    return _DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def _tensor(op, name, t, dtypes, ndims, optional=False):
    """Checks one tensor argument and returns it (or None for an absent optional one)."""
    if t is None:
        if optional:
            return None
        raise TypeError(f"{op}: {name} is required, got None")
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{op}: {name} is on device '{t.device}', expected a CPU tensor (moedist runs on the CPU)")
    if t.dtype not in dtypes:
        expected = " or ".join(_dtype_name(d) for d in dtypes)
        raise TypeError(f"{op}: {name} has dtype {_dtype_name(t.dtype)}, expected {expected}")
    if t.dim() not in ndims:
        expected = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{op}: {name} is {t.dim()}-D with shape {tuple(t.shape)}, expected {expected}")
    return t


def _shape(op, name, t, expected, what):
    """Raises ValueError unless t's shape equals `expected` (a tuple)."""
    if t is not None and tuple(t.shape) != tuple(expected):
        raise ValueError(f"{op}: {name} has shape {tuple(t.shape)}, expected {tuple(expected)} ({what})")


def _int(op, name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    return int(v)


def _str(op, name, v):
    if not isinstance(v, str):
        raise TypeError(f"{op}: {name} must be a str, got {type(v).__name__}")
    return v


def _float(op, name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{op}: {name} must be a float, got {type(v).__name__}")
    return float(v)


def _reserved(op, name, t):
    """A reserved tensor argument: None, or a CPU tensor the operator will refuse (as CANN's does)."""
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor or None, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{op}: {name} is on device '{t.device}', expected a CPU tensor (moedist runs on the CPU)")


def _np(t):
    """A numpy view of a CPU tensor, without a copy (strides kept): bfloat16 as uint16 bits, the rest as is."""
    if t is None:
        return None
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _x_dtype(t):
    return "float16" if t.dtype == torch.float16 else "bfloat16"


def _check_mask(op, mask, bs, k):
    if mask is None:
        return
    if mask.dim() == 1:
        _shape(op, "x_active_mask", mask, (bs,), "1-D: (BS,)")
    else:
        _shape(op, "x_active_mask", mask, (bs, k), "2-D: (BS, K)")


def _check_elastic(op, elastic_info, ep_world_size):
    _shape(op, "elastic_info", elastic_info, (4 + 2 * ep_world_size,), "(4 + 2 * ep_world_size,)")


def _special_args(zero_expert_num, copy_expert_num, const_expert_num):
    return zero_expert_num != 0 or copy_expert_num != 0 or const_expert_num != 0


# ---------------------------------------------------------------------------------------------------------------
# npu_moe_distribute_dispatch_v2
# ---------------------------------------------------------------------------------------------------------------

def npu_moe_distribute_dispatch_v2(x, expert_ids, group_ep, ep_world_size, ep_rank_id, moe_expert_num, *,
                                   scales=None, x_active_mask=None, expert_scales=None, elastic_info=None,
                                   group_tp="", tp_world_size=0, tp_rank_id=0, expert_shard_type=0,
                                   shared_expert_num=1, shared_expert_rank_num=0, quant_mode=0, global_bs=0,
                                   expert_token_nums_type=1, comm_alg="", zero_expert_num=0, copy_expert_num=0,
                                   const_expert_num=0):
    """Sends each token to the ranks of its top-k experts (and to shared experts); see docs/torch_npu.md.

    Returns (expand_x, dynamic_scales, assist_info_for_combine, expert_token_nums, ep_recv_counts, tp_recv_counts,
    expand_scales). Runs moedist.dispatch_v3 when elastic_info or special experts are given, else
    moedist.dispatch_v2 (the same algorithm with those features off), as torch_npu picks aclnnMoeDistributeDispatchV3
    or V2.
    """
    op = "npu_moe_distribute_dispatch_v2"
    x = _tensor(op, "x", x, (torch.bfloat16, torch.float16), (2,))
    expert_ids = _tensor(op, "expert_ids", expert_ids, (torch.int32,), (2,))
    scales = _tensor(op, "scales", scales, (torch.float32,), (2,), optional=True)
    x_active_mask = _tensor(op, "x_active_mask", x_active_mask, (torch.bool,), (1, 2), optional=True)
    expert_scales = _tensor(op, "expert_scales", expert_scales, (torch.float32,), (2,), optional=True)
    elastic_info = _tensor(op, "elastic_info", elastic_info, (torch.int32,), (1,), optional=True)
    group_ep = _str(op, "group_ep", group_ep)
    group_tp = _str(op, "group_tp", group_tp)
    comm_alg = _str(op, "comm_alg", comm_alg)
    ep_world_size = _int(op, "ep_world_size", ep_world_size)
    ep_rank_id = _int(op, "ep_rank_id", ep_rank_id)
    moe_expert_num = _int(op, "moe_expert_num", moe_expert_num)
    tp_world_size = _int(op, "tp_world_size", tp_world_size)
    tp_rank_id = _int(op, "tp_rank_id", tp_rank_id)
    expert_shard_type = _int(op, "expert_shard_type", expert_shard_type)
    shared_expert_num = _int(op, "shared_expert_num", shared_expert_num)
    shared_expert_rank_num = _int(op, "shared_expert_rank_num", shared_expert_rank_num)
    quant_mode = _int(op, "quant_mode", quant_mode)
    global_bs = _int(op, "global_bs", global_bs)
    expert_token_nums_type = _int(op, "expert_token_nums_type", expert_token_nums_type)
    zero_expert_num = _int(op, "zero_expert_num", zero_expert_num)
    copy_expert_num = _int(op, "copy_expert_num", copy_expert_num)
    const_expert_num = _int(op, "const_expert_num", const_expert_num)

    bs, h = x.shape
    if expert_ids.shape[0] != bs:
        raise ValueError(f"{op}: expert_ids has shape {tuple(expert_ids.shape)}, expected ({bs}, K): one row per "
                         f"token of x (BS = {bs})")
    k = expert_ids.shape[1]
    if scales is not None and scales.shape[1] != h:
        raise ValueError(f"{op}: scales has shape {tuple(scales.shape)}, expected (*, {h}): one row of H = {h} "
                         f"smoothing factors per expert")
    _check_mask(op, x_active_mask, bs, k)
    _shape(op, "expert_scales", expert_scales, (bs, k), "(BS, K)")
    _check_elastic(op, elastic_info, ep_world_size)
    special = _special_args(zero_expert_num, copy_expert_num, const_expert_num)
    run = _moedist.dispatch_v3 if elastic_info is not None or special else _moedist.dispatch_v2
    kwargs = dict(scales=_np(scales), x_active_mask=_np(x_active_mask), expert_scales=_np(expert_scales),
                  group_tp=group_tp, tp_world_size=tp_world_size, tp_rank_id=tp_rank_id,
                  expert_shard_type=expert_shard_type, shared_expert_num=shared_expert_num,
                  shared_expert_rank_num=shared_expert_rank_num, quant_mode=quant_mode, global_bs=global_bs,
                  expert_token_nums_type=expert_token_nums_type, comm_alg=comm_alg, x_dtype=_x_dtype(x))
    if run is _moedist.dispatch_v3:
        kwargs.update(elastic_info=_np(elastic_info), zero_expert_num=zero_expert_num,
                      copy_expert_num=copy_expert_num, const_expert_num=const_expert_num)
    args = (_np(x), _np(expert_ids), group_ep, ep_world_size, ep_rank_id, moe_expert_num)
    try:
        s = _moedist.output_shapes(ep_world_size, ep_rank_id, moe_expert_num, bs=bs, h=h, k=k,
                                   elastic=elastic_info is not None, tp_world_size=tp_world_size,
                                   tp_rank_id=tp_rank_id, expert_shard_type=expert_shard_type,
                                   shared_expert_num=shared_expert_num, shared_expert_rank_num=shared_expert_rank_num,
                                   global_bs=global_bs, zero_expert_num=zero_expert_num,
                                   copy_expert_num=copy_expert_num, const_expert_num=const_expert_num,
                                   comm_alg=comm_alg)
    except _moedist.Error:
        run(*args, **kwargs)  # the operator refuses the same attributes, on every rank of the group together
        raise
    expand_x = torch.empty((s.expand_x_rows, h), dtype=torch.int8 if quant_mode == 2 else x.dtype)
    dynamic_scales = torch.empty((s.expand_x_rows,), dtype=torch.float32)
    assist_info_for_combine = torch.empty((s.assist_info_for_combine,), dtype=torch.int32)
    expert_token_nums = torch.empty((s.expert_token_nums,), dtype=torch.int64)
    ep_recv_counts = torch.empty((s.ep_recv_counts,), dtype=torch.int32)
    tp_recv_counts = torch.empty((s.tp_recv_counts,), dtype=torch.int32)
    expand_scales = torch.empty((s.expand_scales,), dtype=torch.float32)

    outputs = (expand_x, dynamic_scales, assist_info_for_combine, expert_token_nums, ep_recv_counts,
               tp_recv_counts, expand_scales)
    run(*args, **kwargs, out=_moedist.DispatchOutputs(*(_np(t) for t in outputs)))
    return outputs


# ---------------------------------------------------------------------------------------------------------------
# The combines
# ---------------------------------------------------------------------------------------------------------------

def _combine_inputs(op, expand_x, expand_x_dtypes, expert_ids, assist_name, assist, ep_send_counts, expert_scales,
                    tp_send_counts, x_active_mask, expand_scales, shared_expert_x, elastic_info, ori_x,
                    const_expert_alpha_1, const_expert_alpha_2, const_expert_v, ep_world_size):
    """The checks both combines share; returns (Bs, K, H)."""
    expand_x = _tensor(op, "expand_x", expand_x, expand_x_dtypes, (2,))
    _tensor(op, "expert_ids", expert_ids, (torch.int32,), (2,))
    _tensor(op, assist_name, assist, (torch.int32,), (1,))
    _tensor(op, "ep_send_counts", ep_send_counts, (torch.int32,), (1,))
    _tensor(op, "expert_scales", expert_scales, (torch.float32,), (2,))
    _tensor(op, "tp_send_counts", tp_send_counts, (torch.int32,), (1,), optional=True)
    _tensor(op, "x_active_mask", x_active_mask, (torch.bool,), (1, 2), optional=True)
    _tensor(op, "expand_scales", expand_scales, (torch.float32,), (1,), optional=True)
    _tensor(op, "shared_expert_x", shared_expert_x, (expand_x.dtype,), (2, 3), optional=True)
    _tensor(op, "elastic_info", elastic_info, (torch.int32,), (1,), optional=True)
    _tensor(op, "ori_x", ori_x, (expand_x.dtype,), (2,), optional=True)
    _tensor(op, "const_expert_alpha_1", const_expert_alpha_1, (expand_x.dtype,), (1,), optional=True)
    _tensor(op, "const_expert_alpha_2", const_expert_alpha_2, (expand_x.dtype,), (1,), optional=True)
    _tensor(op, "const_expert_v", const_expert_v, (expand_x.dtype,), (2,), optional=True)
    bs, k = expert_ids.shape
    h = expand_x.shape[1]
    _shape(op, "expert_scales", expert_scales, (bs, k), "(BS, K), like expert_ids")
    _check_mask(op, x_active_mask, bs, k)
    if shared_expert_x is not None:
        sx = tuple(shared_expert_x.shape)
        ok = sx == (bs, h) if shared_expert_x.dim() == 2 else (sx[0] * sx[1] == bs and sx[2] == h)
        if not ok:
            raise ValueError(f"{op}: shared_expert_x has shape {sx}, expected ({bs}, {h}) or 3-D (a, b, {h}) with "
                             f"a * b = BS = {bs}")
    _check_elastic(op, elastic_info, ep_world_size)
    _shape(op, "ori_x", ori_x, (bs, h), "(BS, H)")
    if const_expert_v is not None and const_expert_v.shape[1] != h:
        raise ValueError(f"{op}: const_expert_v has shape {tuple(const_expert_v.shape)}, expected "
                         f"(const_expert_num, {h})")
    return bs, k, h


def npu_moe_distribute_combine_v2(expand_x, expert_ids, assist_info_for_combine, ep_send_counts, expert_scales,
                                  group_ep, ep_world_size, ep_rank_id, moe_expert_num, *, tp_send_counts=None,
                                  x_active_mask=None, expand_scales=None, shared_expert_x=None, elastic_info=None,
                                  ori_x=None, const_expert_alpha_1=None, const_expert_alpha_2=None,
                                  const_expert_v=None, group_tp="", tp_world_size=0, tp_rank_id=0,
                                  expert_shard_type=0, shared_expert_num=1, shared_expert_rank_num=0, global_bs=0,
                                  comm_quant_mode=0, comm_alg="", zero_expert_num=0, copy_expert_num=0,
                                  const_expert_num=0):
    """Returns the expert outputs to their tokens and sums them with the router weights; see docs/torch_npu.md.

    Returns x of shape (BS, H) in expand_x's dtype. Runs moedist.combine_v3 when elastic_info or special experts
    are given, else moedist.combine_v2, as torch_npu picks aclnnMoeDistributeCombineV3 or V2.
    """
    op = "npu_moe_distribute_combine_v2"
    ep_world_size = _int(op, "ep_world_size", ep_world_size)
    bs, k, h = _combine_inputs(op, expand_x, (torch.bfloat16, torch.float16), expert_ids, "assist_info_for_combine",
                               assist_info_for_combine, ep_send_counts, expert_scales, tp_send_counts,
                               x_active_mask, expand_scales, shared_expert_x, elastic_info, ori_x,
                               const_expert_alpha_1, const_expert_alpha_2, const_expert_v, ep_world_size)
    ints = {n: _int(op, n, v) for n, v in (
        ("ep_rank_id", ep_rank_id), ("moe_expert_num", moe_expert_num), ("tp_world_size", tp_world_size),
        ("tp_rank_id", tp_rank_id), ("expert_shard_type", expert_shard_type),
        ("shared_expert_num", shared_expert_num), ("shared_expert_rank_num", shared_expert_rank_num),
        ("global_bs", global_bs), ("comm_quant_mode", comm_quant_mode), ("zero_expert_num", zero_expert_num),
        ("copy_expert_num", copy_expert_num), ("const_expert_num", const_expert_num))}
    group_ep = _str(op, "group_ep", group_ep)
    group_tp = _str(op, "group_tp", group_tp)
    comm_alg = _str(op, "comm_alg", comm_alg)

    x = torch.empty((bs, h), dtype=expand_x.dtype)
    _require_tp_send_counts(op, tp_send_counts, ints["tp_world_size"])
    kwargs = dict(tp_send_counts=_np(tp_send_counts), x_active_mask=_np(x_active_mask),
                  expand_scales=_np(expand_scales), shared_expert_x=_np(shared_expert_x), group_tp=group_tp,
                  tp_world_size=ints["tp_world_size"], tp_rank_id=ints["tp_rank_id"],
                  expert_shard_type=ints["expert_shard_type"],
                  shared_expert_num=ints["shared_expert_num"], shared_expert_rank_num=ints["shared_expert_rank_num"],
                  global_bs=ints["global_bs"], comm_quant_mode=ints["comm_quant_mode"], comm_alg=comm_alg,
                  x_dtype=_x_dtype(expand_x), out=_np(x))
    args = (_np(expand_x), _np(expert_ids), _np(assist_info_for_combine), _np(ep_send_counts), _np(expert_scales),
            group_ep, ep_world_size, ints["ep_rank_id"], ints["moe_expert_num"])
    if elastic_info is not None or _special_args(ints["zero_expert_num"], ints["copy_expert_num"],
                                                 ints["const_expert_num"]):
        _moedist.combine_v3(*args, elastic_info=_np(elastic_info), ori_x=_np(ori_x),
                            const_expert_alpha_1=_np(const_expert_alpha_1),
                            const_expert_alpha_2=_np(const_expert_alpha_2), const_expert_v=_np(const_expert_v),
                            zero_expert_num=ints["zero_expert_num"], copy_expert_num=ints["copy_expert_num"],
                            const_expert_num=ints["const_expert_num"], **kwargs)
    else:
        _moedist.combine_v2(*args, **kwargs)
    return x


def _require_tp_send_counts(op, tp_send_counts, tp_world_size):
    """torch_npu lets tp_send_counts default to None, which the numpy layer reads as zeros without TP (where the
    operator never reads it); with TP it is required."""
    if tp_send_counts is None and tp_world_size == 2:
        raise ValueError(f"{op}: tp_send_counts is required when tp_world_size is 2 (pass dispatch's tp_recv_counts)")


def npu_moe_distribute_combine_add_rms_norm(expand_x, expert_ids, expand_idx, ep_send_counts, expert_scales,
                                            residual_x, gamma, group_ep, ep_world_size, ep_rank_id, moe_expert_num,
                                            *, tp_send_counts=None, x_active_mask=None, activation_scale=None,
                                            weight_scale=None, group_list=None, expand_scales=None,
                                            shared_expert_x=None, elastic_info=None, ori_x=None,
                                            const_expert_alpha_1=None, const_expert_alpha_2=None,
                                            const_expert_v=None, group_tp="", tp_world_size=0, tp_rank_id=0,
                                            expert_shard_type=0, shared_expert_num=1, shared_expert_rank_num=0,
                                            global_bs=0, out_dtype=0, comm_quant_mode=0, group_list_type=0,
                                            comm_alg="", norm_eps=1e-06, zero_expert_num=0, copy_expert_num=0,
                                            const_expert_num=0):
    """Combine, then residual add and RmsNorm, fused; see docs/torch_npu.md.

    expand_idx is dispatch_v2's assist_info_for_combine (torch_npu keeps the V1 name). Returns (y, rstd_out, x):
    y and x of shape (BS, 1, H) in residual_x's dtype (bfloat16), rstd_out (BS, 1, 1) float32. Runs
    moedist.combine_add_rms_norm_v2 when elastic_info or special experts are given, else
    moedist.combine_add_rms_norm, as torch_npu picks aclnnMoeDistributeCombineAddRmsNormV2 or V1.
    """
    op = "npu_moe_distribute_combine_add_rms_norm"
    ep_world_size = _int(op, "ep_world_size", ep_world_size)
    bs, k, h = _combine_inputs(op, expand_x, (torch.bfloat16,), expert_ids, "expand_idx", expand_idx,
                               ep_send_counts, expert_scales, tp_send_counts, x_active_mask, expand_scales,
                               shared_expert_x, elastic_info, ori_x, const_expert_alpha_1, const_expert_alpha_2,
                               const_expert_v, ep_world_size)
    _tensor(op, "residual_x", residual_x, (torch.bfloat16,), (3,))
    _tensor(op, "gamma", gamma, (torch.bfloat16,), (1,))
    _shape(op, "residual_x", residual_x, (bs, 1, h), "(BS, 1, H)")
    _shape(op, "gamma", gamma, (h,), "(H,)")
    for name, t in (("activation_scale", activation_scale), ("weight_scale", weight_scale),
                    ("group_list", group_list)):
        _reserved(op, name, t)
    ints = {n: _int(op, n, v) for n, v in (
        ("ep_rank_id", ep_rank_id), ("moe_expert_num", moe_expert_num), ("tp_world_size", tp_world_size),
        ("tp_rank_id", tp_rank_id), ("expert_shard_type", expert_shard_type),
        ("shared_expert_num", shared_expert_num), ("shared_expert_rank_num", shared_expert_rank_num),
        ("global_bs", global_bs), ("out_dtype", out_dtype), ("comm_quant_mode", comm_quant_mode),
        ("group_list_type", group_list_type), ("zero_expert_num", zero_expert_num),
        ("copy_expert_num", copy_expert_num), ("const_expert_num", const_expert_num))}
    group_ep = _str(op, "group_ep", group_ep)
    group_tp = _str(op, "group_tp", group_tp)
    comm_alg = _str(op, "comm_alg", comm_alg)
    norm_eps = _float(op, "norm_eps", norm_eps)

    y = torch.empty((bs, 1, h), dtype=residual_x.dtype)
    rstd_out = torch.empty((bs, 1, 1), dtype=torch.float32)
    x = torch.empty((bs, 1, h), dtype=residual_x.dtype)
    _require_tp_send_counts(op, tp_send_counts, ints["tp_world_size"])
    kwargs = dict(tp_send_counts=_np(tp_send_counts), x_active_mask=_np(x_active_mask),
                  activation_scale=_np(activation_scale), weight_scale=_np(weight_scale), group_list=_np(group_list),
                  expand_scales=_np(expand_scales),
                  shared_expert_x=_np(shared_expert_x), group_tp=group_tp, tp_world_size=ints["tp_world_size"],
                  tp_rank_id=ints["tp_rank_id"], expert_shard_type=ints["expert_shard_type"],
                  shared_expert_num=ints["shared_expert_num"], shared_expert_rank_num=ints["shared_expert_rank_num"],
                  global_bs=ints["global_bs"], out_dtype=ints["out_dtype"], comm_quant_mode=ints["comm_quant_mode"],
                  group_list_type=ints["group_list_type"], comm_alg=comm_alg, norm_eps=norm_eps,
                  out=_moedist.CombineOutputs(y=_np(y), rstd=_np(rstd_out), x=_np(x)))
    args = (_np(expand_x), _np(expert_ids), _np(expand_idx), _np(ep_send_counts), _np(expert_scales),
            _np(residual_x), _np(gamma), group_ep, ep_world_size, ints["ep_rank_id"], ints["moe_expert_num"])
    if elastic_info is not None or _special_args(ints["zero_expert_num"], ints["copy_expert_num"],
                                                 ints["const_expert_num"]):
        _moedist.combine_add_rms_norm_v2(*args, elastic_info=_np(elastic_info), ori_x=_np(ori_x),
                                         const_expert_alpha_1=_np(const_expert_alpha_1),
                                         const_expert_alpha_2=_np(const_expert_alpha_2),
                                         const_expert_v=_np(const_expert_v), zero_expert_num=ints["zero_expert_num"],
                                         copy_expert_num=ints["copy_expert_num"],
                                         const_expert_num=ints["const_expert_num"], **kwargs)
    else:
        _moedist.combine_add_rms_norm(*args, **kwargs)
    return y, rstd_out, x
