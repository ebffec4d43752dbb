"""moedist's six operators, called over numpy arrays with ranks as Python threads (and a few cases as processes),
against the reference model (moedist.reference), bit for bit.

Each case is a random valid problem from moedist.reference.make_case: every rank's inputs, the model's dispatch
outputs, the combine inputs made from them by the model's stand-in FFN, and the model's combine outputs. Every rank
runs the dispatch operator on its inputs and the combine operator on the operator's own dispatch outputs (with the
FFN rows of the case as expand_x). Output arrays are passed with out= and filled with a byte pattern first: the
written prefixes must equal the model's bytes, and every other byte must keep the pattern (SPEC decision 4).

Run: PYTHONPATH=build/<dir>/python /usr/bin/python3 -m pytest python/tests/test_ops_vs_reference.py
This file also runs as a script: `test_ops_vs_reference.py --worker ...` is one rank of a process case.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import moedist
from moedist import reference as ref

H = 1024  # the operators accept 1024 <= H <= 8192 (SPEC 6.1)
PATTERN = 0xA5  # every byte of every output before the call
TIMEOUT = 30  # seconds of each cross-rank wait

DISPATCH_OPS = {"dispatch_v3": moedist.dispatch_v3, "dispatch_v2": moedist.dispatch_v2}
COMBINE_OPS = {
    "combine_add_rms_norm_v2": (moedist.combine_add_rms_norm_v2, True),
    "combine_add_rms_norm": (moedist.combine_add_rms_norm, True),
    "combine_v3": (moedist.combine_v3, False),
    "combine_v2": (moedist.combine_v2, False),
}
V3_ONLY = ("zero_expert_num", "copy_expert_num", "const_expert_num")


# ----------------------------------------------------------------------------------------------------------------
# The cases: (id, Config fields, dispatch operator, combine operator, make_case options, test options)

CASES = [
    ("v2_addrmsnorm_v1", dict(ep_world_size=4, moe_expert_num=8, top_k=2), "dispatch_v2", "combine_add_rms_norm", {}),
    ("mask1", dict(ep_world_size=4, moe_expert_num=8, top_k=3, mask_dims=1), "dispatch_v3",
     "combine_add_rms_norm_v2", {}),
    ("mask2_quant2_smooth_v3", dict(ep_world_size=4, moe_expert_num=8, top_k=3, mask_dims=2, quant_mode=2),
     "dispatch_v3", "combine_v3", {}),
    ("quant2_no_smooth_type0", dict(ep_world_size=2, moe_expert_num=8, top_k=3, quant_mode=2,
                                    expert_token_nums_type=0), "dispatch_v2", "combine_add_rms_norm",
     dict(smooth_scales=False)),
    ("tp2_mask1", dict(ep_world_size=4, moe_expert_num=4, top_k=2, tp_world_size=2, mask_dims=1), "dispatch_v3",
     "combine_add_rms_norm_v2", {}),
    ("tp2_quant2_v2", dict(ep_world_size=2, moe_expert_num=2, top_k=2, tp_world_size=2, quant_mode=2), "dispatch_v2",
     "combine_v2", {}),
    ("tp2_fp16_v2", dict(ep_world_size=2, moe_expert_num=2, top_k=1, tp_world_size=2, x_dtype="float16"),
     "dispatch_v2", "combine_v2", {}),
    ("comm_quant2", dict(ep_world_size=4, moe_expert_num=8, top_k=2, comm_quant_mode=2), "dispatch_v3",
     "combine_add_rms_norm_v2", {}),
    ("comm_quant2_mask2_v3", dict(ep_world_size=3, moe_expert_num=6, top_k=2, comm_quant_mode=2, mask_dims=2),
     "dispatch_v3", "combine_v3", {}),
    ("shared_experts", dict(ep_world_size=6, moe_expert_num=8, top_k=2, shared_expert_num=2,
                            shared_expert_rank_num=2), "dispatch_v3", "combine_add_rms_norm_v2", {}),
    ("shared_replicas_v2", dict(ep_world_size=5, moe_expert_num=3, top_k=2, shared_expert_num=1,
                                shared_expert_rank_num=2), "dispatch_v2", "combine_v2", {}),
    ("shared_expert_x", dict(ep_world_size=4, moe_expert_num=8, top_k=2), "dispatch_v2", "combine_add_rms_norm",
     dict(shared_expert_x=True)),
    ("specials", dict(ep_world_size=4, moe_expert_num=8, top_k=3, zero_expert_num=1, copy_expert_num=1,
                      const_expert_num=2), "dispatch_v3", "combine_add_rms_norm_v2", {}),
    ("specials_fp16_v3", dict(ep_world_size=4, moe_expert_num=4, top_k=3, zero_expert_num=1, copy_expert_num=1,
                              const_expert_num=1, x_dtype="float16", mask_dims=1), "dispatch_v3", "combine_v3",
     dict(special_fraction=0.4), dict(float16_arrays=True)),
    ("elastic_shared", dict(ep_world_size=8, moe_expert_num=12, top_k=2, shared_expert_num=1,
                            shared_expert_rank_num=2), "dispatch_v3", "combine_add_rms_norm_v2", {},
     dict(removed=[3, 5])),
    ("elastic_specials_v3", dict(ep_world_size=4, moe_expert_num=4, top_k=2, zero_expert_num=1, copy_expert_num=1,
                                 mask_dims=1), "dispatch_v3", "combine_v3", {}, dict(removed=[1])),
    ("elastic_info_not_active", dict(ep_world_size=4, moe_expert_num=8, top_k=2), "dispatch_v3",
     "combine_add_rms_norm_v2", {}, dict(removed=[], is_elastic=0)),
    ("bs_per_rank", dict(ep_world_size=4, moe_expert_num=8, top_k=2, global_bs=32), "dispatch_v3",
     "combine_add_rms_norm_v2", {}),
    ("bs_per_rank_fp16_v2", dict(ep_world_size=3, moe_expert_num=6, top_k=2, global_bs=15, x_dtype="float16"),
     "dispatch_v2", "combine_v2", dict(bs=[5, 1, 3])),
    ("fp16_mask2_v3", dict(ep_world_size=4, moe_expert_num=8, top_k=2, x_dtype="float16", mask_dims=2),
     "dispatch_v3", "combine_v3", {}, dict(float16_arrays=True)),
]


def case_spec(entry):
    name, fields, dop, cop, make = entry[:5]
    opts = entry[5] if len(entry) > 5 else {}
    return dict(name=name, fields=fields, dispatch=dop, combine=cop, make=make, opts=opts)


def build_case(spec, seed):
    fields = dict(spec["fields"], hidden=H, add_rms_norm=COMBINE_OPS[spec["combine"]][1])
    cfg = ref.Config(**fields)
    opts = spec["opts"]
    if "removed" in opts:
        cfg.elastic_info = ref.make_elastic_info(cfg, opts["removed"], is_elastic=opts.get("is_elastic", 1))
    return ref.make_case(cfg, seed, **spec["make"])


# ----------------------------------------------------------------------------------------------------------------
# One rank: run both operators and compare


def patterned(shape, dtype):
    a = np.empty(shape, dtype)
    a.view(np.uint8)[...] = PATTERN
    return a


def check(errors, what, got, want, rows=None):
    """got's first len(want) elements (or rows) must have want's bytes, the rest the pattern."""
    got = np.ascontiguousarray(got)
    n = len(want) if rows is None else rows
    head, tail = got[:n], got[n:]
    want = np.ascontiguousarray(want)
    if head.shape != want.shape:
        errors.append(f"{what}: written part has shape {head.shape}, the model's {want.shape}")
    elif not np.array_equal(head.view(np.uint8), want.view(np.uint8)):
        bad = np.argwhere(head.view(np.uint8) != want.view(np.uint8))[0]
        errors.append(f"{what}: differs from the model at byte index {bad.tolist()}")
    if tail.size and not (tail.view(np.uint8) == PATTERN).all():
        errors.append(f"{what}: elements after the first {n} were written")


def check_rows(errors, what, got, want, written):
    """Rows of written tokens must equal the model's, the others keep the pattern."""
    got = np.ascontiguousarray(got).reshape(len(written), -1)
    want = np.ascontiguousarray(want).reshape(len(written), -1)
    for t, w in enumerate(written):
        if w and not np.array_equal(got[t].view(np.uint8), want[t].view(np.uint8)):
            errors.append(f"{what}: token {t} differs from the model")
        if not w and not (got[t].view(np.uint8) == PATTERN).all():
            errors.append(f"{what}: token {t} is inactive but was written")


def run_rank(case, spec, g, p, group_ep, group_tp):
    """Runs dispatch and combine on rank [g][p]; returns the list of differences from the model."""
    cfg = case.config
    W, M, K = cfg.ep_world_size, cfg.moe_expert_num, cfg.top_k
    d, want_d = case.dispatch_inputs[g][p], case.dispatch_outputs[g][p]
    ci, want_c = case.combine_inputs[g][p], case.combine_outputs[g][p]
    half16 = spec["opts"].get("float16_arrays", False)
    v3 = spec["dispatch"] == "dispatch_v3"
    elastic = None if cfg.elastic_info is None else np.asarray(cfg.elastic_info, np.int32)
    common = dict(
        group_tp=group_tp,
        tp_world_size=cfg.tp_world_size,
        tp_rank_id=g if cfg.tp_world_size == 2 else 0,
        shared_expert_num=cfg.shared_expert_num,
        shared_expert_rank_num=cfg.shared_expert_rank_num,
        global_bs=cfg.global_bs,
    )
    specials = {k: getattr(cfg, k) for k in V3_ONLY}
    errors = []

    # Dispatch.
    shape_kw = {k: v for k, v in common.items() if k != "group_tp"}
    shapes = moedist.output_shapes(
        W, p, M, bs=d.bs, h=H, k=K, elastic=elastic is not None, **shape_kw, **(specials if v3 else {})
    )
    x = d.x.view(np.float16) if half16 else d.x
    expand_dtype = np.int8 if cfg.quant_mode == 2 else x.dtype
    out = dict(
        expand_x=patterned((shapes.expand_x_rows, H), expand_dtype),
        dynamic_scales=patterned((shapes.expand_x_rows,), np.float32),
        assist_info_for_combine=patterned((shapes.assist_info_for_combine,), np.int32),
        expert_token_nums=patterned((shapes.expert_token_nums,), np.int64),
        ep_recv_counts=patterned((shapes.ep_recv_counts,), np.int32),
        tp_recv_counts=patterned((shapes.tp_recv_counts,), np.int32),
        expand_scales=patterned((shapes.expand_scales,), np.float32),
    )
    kw = dict(common, scales=d.scales, x_active_mask=d.x_active_mask, quant_mode=cfg.quant_mode,
              expert_token_nums_type=cfg.expert_token_nums_type, x_dtype=cfg.x_dtype, out=out)
    if v3:
        kw.update(specials, elastic_info=elastic)
    got = DISPATCH_OPS[spec["dispatch"]](x, d.expert_ids, group_ep, W, p, M, **kw)
    check(errors, "expand_x", got.expand_x, want_d.expand_x, rows=want_d.num_rows)
    if cfg.quant_mode == 2:
        check(errors, "dynamic_scales", got.dynamic_scales, want_d.dynamic_scales)
    else:
        check(errors, "dynamic_scales", got.dynamic_scales, np.zeros(0, np.float32))
    check(errors, "assist_info_for_combine", got.assist_info_for_combine, want_d.assist_info_for_combine)
    check(errors, "expert_token_nums", got.expert_token_nums, want_d.expert_token_nums)
    check(errors, "ep_recv_counts", got.ep_recv_counts, want_d.ep_recv_counts)
    want_tp = want_d.tp_recv_counts if want_d.tp_recv_counts is not None else np.zeros(0, np.int32)
    check(errors, "tp_recv_counts", got.tp_recv_counts, want_tp)
    check(errors, "expand_scales", got.expand_scales, np.zeros(0, np.float32))

    # Combine, on the operator's own dispatch outputs; expand_x: the case's FFN rows, at the operator's capacity.
    op, norm = COMBINE_OPS[spec["combine"]]
    rows = patterned((shapes.expand_x_rows, H), np.uint16)
    rows[: ci.expand_x.shape[0]] = ci.expand_x
    if half16:
        rows = rows.view(np.float16)
    bs = d.bs
    kw = dict(common, tp_send_counts=got.tp_recv_counts if cfg.tp_world_size == 2 else None,
              x_active_mask=d.x_active_mask, comm_quant_mode=cfg.comm_quant_mode)
    if ci.shared_expert_x is not None:
        kw["shared_expert_x"] = ci.shared_expert_x
    if spec["combine"] in ("combine_add_rms_norm_v2", "combine_v3"):
        kw.update(specials, elastic_info=elastic, ori_x=ci.ori_x, const_expert_alpha_1=ci.const_expert_alpha_1,
                  const_expert_alpha_2=ci.const_expert_alpha_2, const_expert_v=ci.const_expert_v)
        if half16:
            for k in ("ori_x", "const_expert_alpha_1", "const_expert_alpha_2", "const_expert_v"):
                kw[k] = None if kw[k] is None else kw[k].view(np.float16)
    head = (rows, d.expert_ids, got.assist_info_for_combine, got.ep_recv_counts, ci.expert_scales)
    if norm:
        outs = dict(y=patterned((bs, 1, H), np.uint16), rstd=patterned((bs, 1, 1), np.float32),
                    x=patterned((bs, 1, H), np.uint16))
        res = op(*head, ci.residual_x.reshape(bs, 1, H), ci.gamma, group_ep, W, p, M, norm_eps=cfg.norm_eps,
                 out=outs, **kw)
        check_rows(errors, "y", res.y, want_c.y, want_c.written)
        check_rows(errors, "rstd", res.rstd, want_c.rstd, want_c.written)
        check_rows(errors, "x", res.x, want_c.x, want_c.written)
    else:
        xo = patterned((bs, H), rows.dtype)
        res = op(*head, group_ep, W, p, M, x_dtype=cfg.x_dtype, out=xo, **kw)
        if res is not xo and not np.shares_memory(res, xo):
            errors.append("x: the operator did not write into out=")
        check_rows(errors, "x", res, want_c.x, want_c.written)
    return errors


# ----------------------------------------------------------------------------------------------------------------
# Ranks as threads


def participants(case):
    cfg = case.config
    return [(g, p) for g in range(cfg.num_groups) for p in range(cfg.ep_world_size)
            if case.dispatch_inputs[g][p] is not None]


@pytest.mark.parametrize("entry", CASES, ids=[c[0] for c in CASES])
def test_operators_match_the_reference_with_threads(entry):
    from _rankutil import run_ranks

    spec = case_spec(entry)
    case = build_case(spec, seed=len(spec["name"]))
    cfg = case.config
    ep = [moedist.create_inprocess_group(cfg.ep_world_size, timeout=TIMEOUT) for _ in range(cfg.num_groups)]
    tp = [moedist.create_inprocess_group(2, timeout=TIMEOUT) for _ in range(cfg.ep_world_size)] \
        if cfg.tp_world_size == 2 else None
    ranks = participants(case)
    try:
        results = run_ranks(len(ranks), lambda i: run_rank(case, spec, *ranks[i], ep[ranks[i][0]],
                                                           tp[ranks[i][1]] if tp else ""), timeout=120)
    finally:
        for name in ep + (tp or []):
            moedist.destroy_group(name)
    problems = [f"rank {ranks[i]}: {e}" for i, errs in enumerate(results) for e in errs]
    assert not problems, "\n".join(problems[:20])


def test_the_comparison_catches_a_wrong_output():
    # The checks can fail: a row that differs from the model by one bit, a byte written after the prefix, and a
    # token row that differs are all reported.
    case = build_case(case_spec(CASES[0]), seed=3)
    out = next(o for o in case.dispatch_outputs[0] if o.num_rows > 0)
    n = out.num_rows
    got = patterned((n + 2, H), np.uint16)
    got[:n] = out.expand_x
    errors = []
    check(errors, "expand_x", got, out.expand_x, rows=n)
    assert errors == []
    flipped = out.expand_x.copy()
    flipped[0, 0] ^= 1
    check(errors, "expand_x", got, flipped, rows=n)
    assert errors == ["expand_x: differs from the model at byte index [0, 0]"]
    got[n + 1, 3] = 0
    check(errors, "expand_x", got, out.expand_x, rows=n)
    assert errors[-1] == f"expand_x: elements after the first {n} were written"
    check_rows(errors, "y", patterned((2, 4), np.uint16), np.zeros((2, 4), np.uint16), [True, False])
    assert errors[-1] == "y: token 0 differs from the model"
    check_rows(errors, "y", np.zeros((2, 4), np.uint16), np.zeros((2, 4), np.uint16), [True, False])
    assert errors[-1] == "y: token 1 is inactive but was written"


# ----------------------------------------------------------------------------------------------------------------
# Ranks as processes (shared-memory groups): the parent writes the case with save_case, each process loads it

PROCESS_CASES = ["mask1", "tp2_mask1", "specials_fp16_v3", "mask2_quant2_smooth_v3", "elastic_specials_v3", "shared_experts"]


@pytest.mark.parametrize("name", PROCESS_CASES)
def test_operators_match_the_reference_with_processes(name, tmp_path):
    spec = case_spec(next(c for c in CASES if c[0] == name))
    case = build_case(spec, seed=7)
    ref.save_case(tmp_path, case)
    cfg = case.config
    ep_ids = [moedist.shm_unique_id().hex() for _ in range(cfg.num_groups)]
    tp_ids = [moedist.shm_unique_id().hex() for _ in range(cfg.ep_world_size)] if cfg.tp_world_size == 2 else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    procs = []
    for g, p in [(g, p) for g in range(cfg.num_groups) for p in range(cfg.ep_world_size)]:  # removed ranks too
        args = [sys.executable, os.path.abspath(__file__), "--worker", str(tmp_path), name, str(g), str(p),
                ep_ids[g], tp_ids[p] if tp_ids else ""]
        procs.append(((g, p), subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                               text=True)))
    problems = []
    for rank, proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            problems.append(f"rank {rank}: still running after 120 s")
            continue
        if proc.returncode != 0:
            problems.append(f"rank {rank}: exit code {proc.returncode}: {stderr.strip()[-2000:]}")
            continue
        problems += [f"rank {rank}: {e}" for e in json.loads(stdout.strip().splitlines()[-1])]
    assert not problems, "\n".join(problems[:20])


def worker(directory, name, g, p, ep_id, tp_id):
    spec = case_spec(next(c for c in CASES if c[0] == name))
    case = ref.load_case(directory)
    cfg = case.config
    group_ep = moedist.create_shm_group(bytes.fromhex(ep_id), cfg.ep_world_size, p, timeout=TIMEOUT)
    group_tp = moedist.create_shm_group(bytes.fromhex(tp_id), 2, g, timeout=TIMEOUT) if tp_id else ""
    # A rank removed by elastic scale-in is a member of the groups (their creation is collective over all ranks) and
    # calls no operator: it leaves at once, as a failed NPU would, and the others go on without it.
    removed = case.dispatch_inputs[g][p] is None
    print(json.dumps([] if removed else run_rank(case, spec, g, p, group_ep, group_tp)))


if __name__ == "__main__" and len(sys.argv) == 8 and sys.argv[1] == "--worker":
    _, _, directory, name, g, p, ep_id, tp_id = sys.argv
    worker(directory, name, int(g), int(p), ep_id, tp_id)
