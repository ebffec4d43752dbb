"""moedist.torch_npu: torch_npu's MoE distribute functions on CPU tensors, against the reference model.

Ranks are threads over moedist.create_inprocess_group. Each case takes random valid inputs and the reference
model's outputs from moedist.reference.make_case, runs npu_moe_distribute_dispatch_v2 and the combine
(npu_moe_distribute_combine_add_rms_norm, or npu_moe_distribute_combine_v2) through moedist.torch_npu on every
rank, and compares bit for bit: the written prefixes of the dispatch outputs, and the rows of the tokens the combine
writes. The signatures are checked in test_torch_npu_signatures.py; the two examples run at the end.
"""

import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import moedist
import moedist.torch_npu as torch_npu
from moedist import reference as ref

H = 1024  # the smallest hidden size the operators accept
TIMEOUT = 60  # seconds a rank waits for its peers before moedist.Error

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLES = os.path.join(REPO, "examples", "python")


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def to_torch(bits, dtype):
    """A torch tensor of `dtype` (bfloat16 / float16) from uint16 bits (or float16 values)."""
    a = np.ascontiguousarray(bits)
    if a.dtype == np.float16:
        a = a.view(np.uint16)
    return torch.from_numpy(a.view(np.int16).copy()).view(dtype)


def bits(t):
    return t.contiguous().view(torch.int16).numpy().view(np.uint16)


def strided(t):
    """The same values as a non-contiguous view: every other column of a wider tensor."""
    wide = torch.zeros(t.shape[:-1] + (2 * t.shape[-1],), dtype=t.dtype)
    wide[..., ::2] = t
    view = wide[..., ::2]
    assert torch.equal(view, t) and (t.shape[-1] < 2 or not view.is_contiguous())
    return view


def same(what, got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if got.tobytes() != want.tobytes():
        raise AssertionError(f"{what}: {int(np.count_nonzero(got != want))} of {got.size} elements differ")


def run_ranks(fns):
    """Runs fns[i]() on one thread each; re-raises the first failure."""
    errors = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:  # noqa: B902 - collected for the main thread
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def make_groups(cfg):
    """EP groups (one per TP index) and, with TP, TP pairs (one per EP rank)."""
    ep = [moedist.create_inprocess_group(cfg.ep_world_size, timeout=TIMEOUT) for _ in range(cfg.num_groups)]
    tp = [moedist.create_inprocess_group(2, timeout=TIMEOUT) for _ in range(cfg.ep_world_size)] \
        if cfg.tp_world_size == 2 else None
    return ep, tp


def run_case(cfg, case, *, non_contiguous=False, shared_expert_x=False):
    """Dispatch and combine through moedist.torch_npu on every rank; compares with the case's reference outputs."""
    W, G = cfg.ep_world_size, cfg.num_groups
    dtype = torch.float16 if cfg.x_dtype == "float16" else torch.bfloat16
    cdtype = torch.float16 if cfg.combine_dtype == "float16" else torch.bfloat16
    ep_groups, tp_groups = make_groups(cfg)
    elastic = None if cfg.elastic_info is None else torch.tensor(cfg.elastic_info, dtype=torch.int32)
    maybe = strided if non_contiguous else (lambda t: t)

    def rank(g, p):
        d, want_d = case.dispatch_inputs[g][p], case.dispatch_outputs[g][p]
        c, want_c = case.combine_inputs[g][p], case.combine_outputs[g][p]
        common = dict(group_tp=tp_groups[p] if tp_groups else "", tp_world_size=cfg.tp_world_size,
                      tp_rank_id=g if cfg.tp_world_size == 2 else 0, shared_expert_num=cfg.shared_expert_num,
                      shared_expert_rank_num=cfg.shared_expert_rank_num, global_bs=cfg.global_bs,
                      elastic_info=elastic, zero_expert_num=cfg.zero_expert_num,
                      copy_expert_num=cfg.copy_expert_num, const_expert_num=cfg.const_expert_num)
        x = maybe(to_torch(d.x, dtype))
        expert_ids = maybe(torch.from_numpy(d.expert_ids.copy()))
        mask = None if d.x_active_mask is None else maybe(torch.from_numpy(d.x_active_mask.copy()))
        scales = None if d.scales is None else maybe(torch.from_numpy(d.scales.copy()))
        outs = torch_npu.npu_moe_distribute_dispatch_v2(
            x, expert_ids, ep_groups[g], W, p, cfg.moe_expert_num, scales=scales, x_active_mask=mask,
            quant_mode=cfg.quant_mode, expert_token_nums_type=cfg.expert_token_nums_type, **common)
        assert len(outs) == 7 and all(isinstance(t, torch.Tensor) for t in outs)
        expand_x, dynamic_scales, assist, token_nums, ep_recv, tp_recv, expand_scales = outs
        assert expand_x.dtype == (torch.int8 if cfg.quant_mode == 2 else dtype)
        assert (dynamic_scales.dtype, assist.dtype, token_nums.dtype, ep_recv.dtype, tp_recv.dtype,
                expand_scales.dtype) == (torch.float32, torch.int32, torch.int64, torch.int32, torch.int32,
                                         torch.float32)
        assert expand_x.shape[1] == H and expand_x.shape[0] == dynamic_scales.shape[0]
        assert assist.shape[0] == 128 * expand_scales.shape[0]
        assert tp_recv.shape == (cfg.tp_world_size,)
        where = f"[{g}][{p}]"
        n = want_d.num_rows
        if cfg.quant_mode == 2:
            same(where + " expand_x", expand_x[:n].numpy(), want_d.expand_x)
            same(where + " dynamic_scales", dynamic_scales[:n].numpy(), want_d.dynamic_scales)
        else:
            same(where + " expand_x", bits(expand_x[:n]), want_d.expand_x)
        same(where + " assist_info_for_combine", assist[:want_d.assist_info_for_combine.size].numpy(),
             want_d.assist_info_for_combine)
        same(where + " expert_token_nums", token_nums[:want_d.expert_token_nums.size].numpy(),
             want_d.expert_token_nums)
        same(where + " ep_recv_counts", ep_recv[:want_d.ep_recv_counts.size].numpy(), want_d.ep_recv_counts)
        if want_d.tp_recv_counts is not None:
            same(where + " tp_recv_counts", tp_recv.numpy(), want_d.tp_recv_counts)

        # The expert FFN: the reference case's rows (stand_in_ffn of the same dispatch rows) in the first n rows.
        rows = torch.zeros((expand_x.shape[0], H), dtype=cdtype)
        rows[:n] = to_torch(c.expand_x, cdtype)[:n]
        t16 = (lambda a: None if a is None else maybe(to_torch(a, cdtype)))
        # With tp_world_size 1, leave tp_send_counts at its default None (torch_npu allows it without TP).
        kw = dict(tp_send_counts=None if cfg.tp_world_size == 1 else tp_recv, x_active_mask=mask,
                  expand_scales=expand_scales,
                  shared_expert_x=t16(c.shared_expert_x), ori_x=t16(c.ori_x),
                  const_expert_alpha_1=t16(c.const_expert_alpha_1), const_expert_alpha_2=t16(c.const_expert_alpha_2),
                  const_expert_v=t16(c.const_expert_v), comm_quant_mode=cfg.comm_quant_mode, **common)
        weights = maybe(torch.from_numpy(c.expert_scales.copy()))
        written = want_c.written
        if cfg.add_rms_norm:
            residual = maybe(to_torch(c.residual_x, torch.bfloat16).reshape(d.bs, 1, H))
            gamma = to_torch(c.gamma, torch.bfloat16)
            res = torch_npu.npu_moe_distribute_combine_add_rms_norm(
                maybe(rows), expert_ids, assist, ep_recv, weights, residual, gamma, ep_groups[g], W, p,
                cfg.moe_expert_num, norm_eps=cfg.norm_eps, **kw)
            assert isinstance(res, tuple) and len(res) == 3
            y, rstd, xo = res
            assert (y.shape, rstd.shape, xo.shape) == ((d.bs, 1, H), (d.bs, 1, 1), (d.bs, 1, H))
            assert (y.dtype, rstd.dtype, xo.dtype) == (torch.bfloat16, torch.float32, torch.bfloat16)
            same(where + " y", bits(y).reshape(d.bs, H)[written], want_c.y[written])
            same(where + " rstd_out", rstd.numpy().reshape(d.bs)[written], want_c.rstd[written])
            same(where + " x", bits(xo).reshape(d.bs, H)[written], want_c.x[written])
        else:
            xo = torch_npu.npu_moe_distribute_combine_v2(
                maybe(rows), expert_ids, assist, ep_recv, weights, ep_groups[g], W, p, cfg.moe_expert_num, **kw)
            assert isinstance(xo, torch.Tensor) and xo.shape == (d.bs, H) and xo.dtype == cdtype
            same(where + " x", bits(xo)[written], want_c.x[written])

    run_ranks([(lambda g=g, p=p: rank(g, p)) for g in range(G) for p in range(W)
               if case.dispatch_inputs[g][p] is not None])


# ---------------------------------------------------------------------------------------------------------------
# The grid: masks, quantization, shared experts, special experts, elastic scale-in, TP, fp16, comm quant


GRID = {
    # name: (Config kwargs, make_case kwargs, EP ranks removed by elastic scale-in)
    "plain": (dict(ep_world_size=4, moe_expert_num=8, top_k=3), {}, None),
    "comm_quant_shared_x": (dict(ep_world_size=4, moe_expert_num=4, top_k=2, comm_quant_mode=2),
                            dict(shared_expert_x=True), None),
    "mask1d_quant": (dict(ep_world_size=4, moe_expert_num=8, top_k=3, mask_dims=1, quant_mode=2), {}, None),
    "mask2d_quant_shared_ranks": (dict(ep_world_size=4, moe_expert_num=6, top_k=3, mask_dims=2, shared_expert_num=1,
                                       shared_expert_rank_num=1, quant_mode=2), {}, None),
    "special_experts_elastic": (dict(ep_world_size=4, moe_expert_num=8, top_k=4, zero_expert_num=1,
                                     copy_expert_num=2, const_expert_num=2), {}, [1]),
    "tp1_mask2d_uneven_bs": (dict(ep_world_size=4, moe_expert_num=8, top_k=3, tp_world_size=1, global_bs=24,
                                  mask_dims=2), {}, None),
    "tp2": (dict(ep_world_size=2, moe_expert_num=2, top_k=2, tp_world_size=2), {}, None),
    "tp2_quant_mask1d": (dict(ep_world_size=2, moe_expert_num=2, top_k=2, tp_world_size=2, quant_mode=2,
                              mask_dims=1), {}, None),
    "combine_v2_fp16_shared_x": (dict(ep_world_size=4, moe_expert_num=8, top_k=2, x_dtype="float16",
                                      add_rms_norm=False), dict(shared_expert_x=True), None),
    "combine_v2_specials_uneven_bs": (dict(ep_world_size=3, moe_expert_num=6, top_k=3, global_bs=15,
                                           copy_expert_num=1, const_expert_num=1, add_rms_norm=False), {}, None),
}


@pytest.mark.parametrize("name", sorted(GRID))
def test_against_reference(name):
    cfg_kw, case_kw, removed = GRID[name]
    cfg = ref.Config(hidden=H, **cfg_kw)
    if removed is not None:
        cfg.elastic_info = ref.make_elastic_info(cfg, removed)
    run_case(cfg, ref.make_case(cfg, seed=sum(map(ord, name)), **case_kw))


def test_non_contiguous_inputs():
    cfg = ref.Config(ep_world_size=4, moe_expert_num=8, top_k=3, hidden=H, mask_dims=2, quant_mode=2,
                     copy_expert_num=1, const_expert_num=1)
    run_case(cfg, ref.make_case(cfg, seed=7), non_contiguous=True)


# ---------------------------------------------------------------------------------------------------------------
# Argument errors: raised before anything runs, naming the parameter (no peer is needed for them)


def dispatch_args(**over):
    a = dict(x=torch.zeros(4, H, dtype=torch.bfloat16), expert_ids=torch.zeros(4, 2, dtype=torch.int32),
             group_ep="no_such_group", ep_world_size=2, ep_rank_id=0, moe_expert_num=2)
    a.update(over)
    return a


def combine_args(**over):
    a = dict(expand_x=torch.zeros(16, H, dtype=torch.bfloat16), expert_ids=torch.zeros(4, 2, dtype=torch.int32),
             expand_idx=torch.zeros(16 * 128, dtype=torch.int32), ep_send_counts=torch.zeros(2, dtype=torch.int32),
             expert_scales=torch.zeros(4, 2, dtype=torch.float32),
             residual_x=torch.zeros(4, 1, H, dtype=torch.bfloat16), gamma=torch.zeros(H, dtype=torch.bfloat16),
             group_ep="no_such_group", ep_world_size=2, ep_rank_id=0, moe_expert_num=2)
    a.update(over)
    return a


def combine_v2_args(**over):
    a = combine_args()
    a["assist_info_for_combine"] = a.pop("expand_idx")
    del a["residual_x"], a["gamma"]
    a.update(over)
    return a


DTYPE_ERRORS = [
    ("dispatch", dict(x=torch.zeros(4, H, dtype=torch.float32)), "x"),
    ("dispatch", dict(expert_ids=torch.zeros(4, 2, dtype=torch.int64)), "expert_ids"),
    ("dispatch", dict(scales=torch.zeros(2, H, dtype=torch.float16)), "scales"),
    ("dispatch", dict(x_active_mask=torch.ones(4, dtype=torch.int32)), "x_active_mask"),
    ("dispatch", dict(elastic_info=torch.zeros(8, dtype=torch.int64)), "elastic_info"),
    ("dispatch", dict(x=np.zeros((4, H), np.uint16)), "x"),
    ("dispatch", dict(group_ep=3), "group_ep"),
    ("dispatch", dict(ep_world_size=2.0), "ep_world_size"),
    ("combine", dict(expand_x=torch.zeros(16, H, dtype=torch.float16)), "expand_x"),
    ("combine", dict(expand_x=torch.zeros(16, H, dtype=torch.int8)), "expand_x"),
    ("combine", dict(expand_idx=torch.zeros(16 * 128, dtype=torch.int64)), "expand_idx"),
    ("combine", dict(expert_scales=torch.zeros(4, 2, dtype=torch.bfloat16)), "expert_scales"),
    ("combine", dict(residual_x=torch.zeros(4, 1, H, dtype=torch.float32)), "residual_x"),
    ("combine", dict(gamma=torch.zeros(H, dtype=torch.float16)), "gamma"),
    ("combine", dict(ori_x=torch.zeros(4, H, dtype=torch.float16)), "ori_x"),
    ("combine", dict(norm_eps="1e-6"), "norm_eps"),
    ("combine_v2", dict(shared_expert_x=torch.zeros(4, H, dtype=torch.float16)), "shared_expert_x"),
    ("combine_v2", dict(tp_send_counts=torch.zeros(2, dtype=torch.float32)), "tp_send_counts"),
]

SHAPE_ERRORS = [
    ("dispatch", dict(x=torch.zeros(4, 2, H, dtype=torch.bfloat16)), "x"),
    ("dispatch", dict(expert_ids=torch.zeros(5, 2, dtype=torch.int32)), "expert_ids"),
    ("dispatch", dict(scales=torch.zeros(2, H + 1, dtype=torch.float32)), "scales"),
    ("dispatch", dict(x_active_mask=torch.ones(3, dtype=torch.bool)), "x_active_mask"),
    ("dispatch", dict(x_active_mask=torch.ones(4, 3, dtype=torch.bool)), "x_active_mask"),
    ("dispatch", dict(expert_scales=torch.zeros(4, 3, dtype=torch.float32)), "expert_scales"),
    ("dispatch", dict(elastic_info=torch.zeros(7, dtype=torch.int32)), "elastic_info"),
    ("combine", dict(expert_scales=torch.zeros(4, 3, dtype=torch.float32)), "expert_scales"),
    ("combine", dict(residual_x=torch.zeros(4, H, dtype=torch.bfloat16)), "residual_x"),
    ("combine", dict(residual_x=torch.zeros(4, 2, H, dtype=torch.bfloat16)), "residual_x"),
    ("combine", dict(gamma=torch.zeros(H - 1, dtype=torch.bfloat16)), "gamma"),
    ("combine", dict(expand_idx=torch.zeros(16, 128, dtype=torch.int32)), "expand_idx"),
    ("combine", dict(ori_x=torch.zeros(4, H - 1, dtype=torch.bfloat16)), "ori_x"),
    ("combine", dict(const_expert_v=torch.zeros(1, H - 1, dtype=torch.bfloat16)), "const_expert_v"),
    ("combine", dict(tp_world_size=2, group_tp="tp"), "tp_send_counts"),
    ("combine_v2", dict(shared_expert_x=torch.zeros(3, 1, H, dtype=torch.bfloat16)), "shared_expert_x"),
    ("combine_v2", dict(x_active_mask=torch.ones(4, 1, 1, dtype=torch.bool)), "x_active_mask"),
]

CALLS = {
    "dispatch": (torch_npu.npu_moe_distribute_dispatch_v2, dispatch_args),
    "combine": (torch_npu.npu_moe_distribute_combine_add_rms_norm, combine_args),
    "combine_v2": (torch_npu.npu_moe_distribute_combine_v2, combine_v2_args),
}


@pytest.mark.parametrize("op,over,param", DTYPE_ERRORS, ids=[f"{o}-{p}-{i}" for i, (o, _, p) in
                                                              enumerate(DTYPE_ERRORS)])
def test_dtype_errors(op, over, param):
    fn, args = CALLS[op]
    with pytest.raises(TypeError, match=rf"^npu_moe_distribute_\w+: {param} "):
        fn(**args(**over))


@pytest.mark.parametrize("op,over,param", SHAPE_ERRORS, ids=[f"{o}-{p}-{i}" for i, (o, _, p) in
                                                              enumerate(SHAPE_ERRORS)])
def test_shape_errors(op, over, param):
    fn, args = CALLS[op]
    with pytest.raises(ValueError, match=rf"^npu_moe_distribute_\w+: {param} "):
        fn(**args(**over))


def test_device_error_names_the_parameter():
    meta = torch.zeros(4, H, dtype=torch.bfloat16, device="meta")
    with pytest.raises(ValueError, match=r"^npu_moe_distribute_dispatch_v2: x is on device 'meta'"):
        torch_npu.npu_moe_distribute_dispatch_v2(**dispatch_args(x=meta))


def test_operator_errors_are_moedist_errors_on_every_rank():
    """An expert id out of range: the operator refuses it on both ranks (moedist.Error, aclnn code)."""
    group = moedist.create_inprocess_group(2, timeout=TIMEOUT)
    errors = []

    def rank(r):
        ids = torch.tensor([[0, 1], [1, 7 if r == 0 else 0]], dtype=torch.int32)
        try:
            torch_npu.npu_moe_distribute_dispatch_v2(torch.zeros(2, H, dtype=torch.bfloat16), ids, group, 2, r, 2)
        except moedist.Error as e:
            errors.append(e)

    run_ranks([lambda: rank(0), lambda: rank(1)])
    assert len(errors) == 2 and all(e.code in (161002, 561002) for e in errors)


# ---------------------------------------------------------------------------------------------------------------
# The examples


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("script", ["combine_add_rms_norm_threads.py", "combine_add_rms_norm_processes.py"])
def test_example_runs(script):
    env = dict(os.environ, MOEDIST_EXAMPLE_PORT=str(free_port()), MOEDIST_TIMEOUT_MS="60000")
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, script)], cwd=EXAMPLES, env=env,
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "bit-exact" in out and "  OK" in out and "run npu success." in out, out[-4000:]
