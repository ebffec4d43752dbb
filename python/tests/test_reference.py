"""Tests of moedist.reference, the reference model for Python.

Every expected value is a closed form worked out here (hand-computed bit patterns, counts that follow from the
routing, float32 arithmetic done step by step with numpy), never an output of the code under test.
Run: PYTHONPATH=build/<dir>/python /usr/bin/python3 -m pytest python/tests/test_reference.py
"""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from moedist import reference as ref

F32 = np.float32


def bf16(values):
    """An independent float32 -> bf16 round to nearest even (no NaN here), for expected values."""
    v = np.asarray(values, dtype=F32)
    u = np.atleast_1d(v).view(np.uint32).astype(np.uint64)
    one, sixteen = np.uint64(1), np.uint64(16)
    return ((u + np.uint64(0x7FFF) + ((u >> sixteen) & one)) >> sixteen).astype(np.uint16).reshape(v.shape)


def widen(bits):
    b = np.asarray(bits, dtype=np.uint16)
    return (np.atleast_1d(b).astype(np.uint32) << np.uint32(16)).view(F32).reshape(b.shape)


def rank_in(x, ids, mask=None, scales=None):
    return ref.DispatchInput(
        x=bf16(np.asarray(x, dtype=F32)),
        expert_ids=np.asarray(ids, dtype=np.int32),
        x_active_mask=None if mask is None else np.asarray(mask, dtype=bool),
        scales=scales,
    )


def identity_combine_inputs(cfg, din, dout, weights, residual=None, gamma=None):
    """Combine inputs whose expert FFN is the identity (expand_x = dispatch's rows)."""
    cin = []
    for g, group in enumerate(dout):
        row = []
        for p, o in enumerate(group):
            if o is None:
                row.append(None)
                continue
            bs = din[g][p].bs
            row.append(
                ref.CombineInput(
                    expand_x=o.expand_x,
                    assist_info_for_combine=o.assist_info_for_combine,
                    ep_send_counts=o.ep_recv_counts,
                    tp_send_counts=o.tp_recv_counts,
                    expert_scales=np.asarray(weights[g][p], dtype=F32).reshape(bs, cfg.top_k),
                    residual_x=np.zeros((bs, cfg.hidden), np.uint16) if residual is None else residual[g][p],
                    gamma=bf16(np.ones(cfg.hidden)) if gamma is None else gamma,
                )
            )
        cin.append(row)
    return cin


# ----------------------------------------------------------------------------------------------------------------
# Numerics


def test_bf16_round_to_nearest_even_bit_patterns():
    values = F32(
        [
            1.0,  # 0x3F800000 -> 0x3F80
            1.0 + 2**-8,  # 0x3F808000: a tie, 0x3F80 is even -> 0x3F80
            1.0 + 3 * 2**-8,  # 0x3F818000: a tie, 0x3F81 is odd -> 0x3F82
            1.0 + 2**-8 + 2**-20,  # just above the tie -> 0x3F81
            -2.0,  # 0xC0000000 -> 0xC000
            3.140625,  # 0x40490000 -> 0x4049 (exact)
            np.finfo(F32).max,  # 0x7F7FFFFF rounds up to infinity 0x7F80
            np.inf,
            0.0,
            -0.0,
        ]
    )
    want = [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC000, 0x4049, 0x7F80, 0x7F80, 0x0000, 0x8000]
    assert ref.float_to_bf16(values).tolist() == want
    nan = ref.float_to_bf16(F32([np.nan]))[0]
    assert (nan & 0x7F80) == 0x7F80 and (nan & 0x007F) != 0  # still a NaN
    assert ref.bf16_to_float(np.uint16([0x4049, 0xC000, 0x3F81])).tolist() == [3.140625, -2.0, 1.0078125]
    assert ref.float_to_bf16(np.ones((2, 3), F32)).shape == (2, 3)


def test_fp16_round_to_nearest_even_bit_patterns():
    values = F32(
        [
            1.0,  # 0x3C00
            1.0 + 2**-11,  # a tie between 0x3C00 and 0x3C01 -> even 0x3C00
            1.0 + 3 * 2**-11,  # a tie between 0x3C01 and 0x3C02 -> 0x3C02
            65504.0,  # the largest finite, 0x7BFF
            65520.0,  # a tie between 65504 (odd mantissa) and 2^16 -> infinity 0x7C00
            2**-24,  # the smallest subnormal 0x0001
            2**-25,  # a tie between 0 and 2^-24 -> 0
            3 * 2**-25,  # a tie between 1 and 2 units -> 2 units
            -2.0,  # 0xC000
        ]
    )
    want = [0x3C00, 0x3C00, 0x3C02, 0x7BFF, 0x7C00, 0x0001, 0x0000, 0x0002, 0xC000]
    assert ref.float_to_fp16(values).tolist() == want
    assert ref.fp16_to_float(np.uint16([0x3C02, 0x0001, 0xC000])).tolist() == [1.001953125, 2**-24, -2.0]
    assert ref.fp16_to_float(np.float16([0.5])).tolist() == [0.5]  # float16 values are accepted as bits
    # numpy's own float32 -> float16 cast rounds to nearest even too: they must agree everywhere.
    v = (np.random.default_rng(3).standard_normal(20000) * np.exp2(np.arange(20000) % 40 - 26)).astype(F32)
    assert np.array_equal(ref.float_to_fp16(v), v.astype(np.float16).view(np.uint16))


def test_reduce_sum_is_the_chunked_pairwise_tree():
    # Within a chunk, adjacent pairs first: (1e8 + 1) + (-1e8 + 1) = 1e8 + -1e8 = 0 (1 is below half an ulp of
    # 1e8); a left-to-right sum would give 1.
    v = np.zeros(64, F32)
    v[:4] = [1e8, 1.0, -1e8, 1.0]
    assert ref.reduce_sum(v) == 0.0
    # Chunks are added left to right: 2^24 + 1 is a tie that rounds to the even 2^24, twice; a tree over the chunk
    # sums would give 2^24 + 2.
    v = np.zeros(192, F32)
    v[0], v[64], v[128] = 2.0**24, 1.0, 1.0
    assert ref.reduce_sum(v) == 2.0**24
    # A partial last chunk: missing lanes are 0.
    assert ref.reduce_sum(np.full(70, 0.5, F32)) == 35.0


def test_rms_norm_row_closed_form():
    x = F32([2, -2, 2, -2])
    y, rstd = ref.rms_norm(x, bf16(np.ones(4)), 1e-6)
    # sq = 4 * 0.25 = 1 each, ms = 4; rstd = fl(1 / sqrt(fl(4 + 1e-6))); y = bf16(x * rstd) = +-1 (0.99999994
    # rounds to 1 in bf16).
    want_rstd = F32(1) / np.sqrt(F32(4) + F32(1e-6))
    assert rstd == want_rstd
    assert y.tolist() == [0x3F80, 0xBF80, 0x3F80, 0xBF80]
    # gamma is applied after rounding x * rstd to bf16: y = bf16(bf16(x * rstd) * gamma).
    y, _ = ref.rms_norm(x, bf16([0.5, 3, 1, 1]), 0.0)  # eps 0: rstd = 0.5 exactly
    assert y.tolist() == bf16([0.5, -3, 1, -1]).tolist()


def test_dynamic_quant_row_closed_form():
    q, scale = ref.dynamic_quant(F32([1, -2, 4, 0.5]))
    # m = 4, d = 127/4 = 31.75; v*d = 31.75, -63.5, 127, 15.875 -> rint (ties to even) 32, -64, 127, 16.
    assert q.tolist() == [32, -64, 127, 16]
    assert scale == F32(1) / F32(31.75)
    q, scale = ref.dynamic_quant(np.zeros(5, F32))  # SPEC 10.3: an all-zero row gives q = 0 and scale 0
    assert q.tolist() == [0] * 5 and scale == 0.0


def test_comm_quant_round_trip_closed_form():
    # One group of 8 equal values v (and a padding group of zeros): sc = fl(v * fl(1/127)), q = 127 for every
    # element, ret = bf16(fl(127 * f(bf16(sc)))).
    for v in (0.5, 3.0, -1.25):
        row = bf16(np.full(8, v))
        sc = F32(v if v > 0 else -v) * (F32(1) / F32(127))
        ret = bf16(F32(127) * widen(bf16(sc)))
        want = ret if v > 0 else bf16(F32(-127) * widen(bf16(sc)))
        assert ref.comm_quant_round_trip(row).tolist() == [int(want)] * 8
    assert ref.comm_quant_round_trip(np.zeros(16, np.uint16)).tolist() == [0] * 16  # SPEC 10.4: max 0 gives 0


# ----------------------------------------------------------------------------------------------------------------
# Dispatch


def test_dispatch_layout_closed_form():
    # W 2, M 2 (L 1): rank 0 hosts expert 0, rank 1 expert 1. Rows go to the expert's rank grouped by source rank.
    cfg = ref.Config(ep_world_size=2, moe_expert_num=2, top_k=1, hidden=4)
    x0 = [[1, 2, 3, 4], [5, 6, 7, 8]]
    x1 = [[-1, -2, -3, -4], [-5, -6, -7, -8]]
    din = [[rank_in(x0, [[1], [0]]), rank_in(x1, [[0], [1]])]]
    out = ref.dispatch(cfg, din)
    r0, r1 = out[0]
    assert r0.expand_x.dtype == np.uint16 and r0.expand_x.shape == (2, 4)
    assert np.array_equal(r0.expand_x, bf16([x0[1], x1[0]]))  # block s=0 (rank 0's token 1), then s=1
    assert r0.assist_info_for_combine.tolist() == [0, 1, 0, 1, 0, 0]  # (source, token, slot) triples
    assert r0.ep_recv_counts.tolist() == [1, 2]  # inclusive prefix sums
    assert r0.expert_token_nums.tolist() == [2]
    assert r0.num_own_rows == 2 and r0.num_rows == 2
    assert r0.dynamic_scales is None and r0.tp_recv_counts is None
    assert np.array_equal(r1.expand_x, bf16([x0[0], x1[1]]))
    assert r1.assist_info_for_combine.tolist() == [0, 0, 0, 1, 1, 0]


def test_dispatch_local_experts_order_and_token_nums():
    # W 2, M 4 (L 2): rank 1 hosts experts 2 and 3. Blocks i = le*W + s; expert_token_nums per local expert
    # (type 1: counts) or their inclusive cumsum (type 0).
    din = [[rank_in(np.ones((2, 2)), [[3, 2], [2, 0]]), rank_in(np.ones((1, 2)) * 2, [[3, 1]])]]
    for ttype, tokens in ((1, [2, 2]), (0, [2, 4])):
        cfg = ref.Config(
            ep_world_size=2, moe_expert_num=4, top_k=2, hidden=2, global_bs=4, expert_token_nums_type=ttype
        )
        r1 = ref.dispatch(cfg, din)[0][1]
        # le 0 (expert 2): s0 (t0,k1), (t1,k0); s1 none. le 1 (expert 3): s0 (t0,k0); s1 (t0,k0).
        assert r1.assist_info_for_combine.tolist() == [0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0]
        assert r1.ep_recv_counts.tolist() == [2, 2, 3, 4]
        assert r1.expert_token_nums.tolist() == tokens


def test_dispatch_shared_experts_and_specials():
    # W 3, one shared expert on rank 0 (Srank 1, R 1), M 2 on ranks 1, 2; a zero expert (id 2) is never sent.
    cfg = ref.Config(
        ep_world_size=3, moe_expert_num=2, top_k=2, hidden=2, shared_expert_num=1, shared_expert_rank_num=1,
        zero_expert_num=1,
    )
    din = [[rank_in(np.ones((2, 2)) * (p + 1), [[0, 2], [1, 0]]) for p in range(3)]]
    out = ref.dispatch(cfg, din)[0]
    shared = out[0]
    # Every token of every rank goes to the shared rank, slot K + 0 = 2, blocks by source.
    assert shared.ep_recv_counts.tolist() == [2, 4, 6]
    assert shared.assist_info_for_combine.reshape(-1, 3).tolist() == [[s, t, 2] for s in range(3) for t in range(2)]
    assert shared.expert_token_nums.tolist() == [6]
    # Expert 0 (rank 1) gets (t0,k0) and (t1,k1) of every source; expert 1 (rank 2) gets (t1,k0).
    assert out[1].assist_info_for_combine.reshape(-1, 3).tolist() == [[s, t, t] for s in range(3) for t in range(2)]
    assert out[2].assist_info_for_combine.reshape(-1, 3).tolist() == [[s, 1, 0] for s in range(3)]


def test_dispatch_quant_mode_2_rows_and_scales():
    cfg = ref.Config(ep_world_size=1, moe_expert_num=1, top_k=1, hidden=4, quant_mode=2)
    r = ref.dispatch(cfg, [[rank_in([[1, -2, 4, 0.5]], [[0]])]])[0][0]
    assert r.expand_x.dtype == np.int8 and r.expand_x.tolist() == [[32, -64, 127, 16]]  # as in dynamic_quant
    assert r.dynamic_scales.tolist() == [F32(1) / F32(31.75)]
    # Smooth scales multiply first: row S + e = 0; v = [2, -2, 4, 0.5] * [2, 1, 0.5, 1] = [2, -2, 2, 0.5]:
    # m 2, d 63.5, q = rint(127, -127, 127, 31.75) = [127, -127, 127, 32].
    scales = F32([[2, 1, 0.5, 1]])
    r = ref.dispatch(cfg, [[rank_in([[1, -2, 4, 0.5]], [[0]], scales=scales)]])[0][0]
    assert r.expand_x.tolist() == [[127, -127, 127, 32]]
    assert r.dynamic_scales.tolist() == [F32(1) / F32(63.5)]


def test_dispatch_tp_all_gather():
    cfg = ref.Config(ep_world_size=2, moe_expert_num=2, top_k=1, hidden=2, tp_world_size=2)
    # Group 0: everything to expert 0 (rank 0); group 1: rank 0's token to expert 0, rank 1's tokens to expert 1.
    din = [
        [rank_in([[1, 1], [2, 2]], [[0], [0]]), rank_in([[3, 3]], [[0]])],
        [rank_in([[4, 4], [5, 5]], [[0], [1]]), rank_in([[6, 6]], [[1]])],
    ]
    cfg.global_bs = 4
    out = ref.dispatch(cfg, din)
    a, b = out[0][0], out[1][0]  # the TP pair of EP rank 0
    assert a.num_own_rows == 3 and a.num_rows == 4
    assert np.array_equal(a.expand_x, bf16([[1, 1], [2, 2], [3, 3], [4, 4]]))  # own rows, then the peer's
    assert a.tp_recv_counts.tolist() == [3, 1] and b.tp_recv_counts.tolist() == [3, 1]  # indexed by TP rank
    assert a.ep_recv_counts.tolist() == [2, 3, 1, 1]  # own prefix sums, then the peer's, not offset
    assert a.expert_token_nums.tolist() == [4]
    assert np.array_equal(b.expand_x, bf16([[4, 4], [1, 1], [2, 2], [3, 3]]))  # own first on both ranks
    assert b.assist_info_for_combine.tolist() == [0, 0, 0]  # own triples only


def test_dispatch_masks_all_false_write_nothing():
    for mask_dims, mask in ((1, [False, False]), (2, [[False], [False]])):
        cfg = ref.Config(ep_world_size=2, moe_expert_num=2, top_k=1, hidden=2, mask_dims=mask_dims)
        full = [True, True] if mask_dims == 1 else [[True], [True]]
        din = [[rank_in(np.ones((2, 2)), [[0], [1]], mask), rank_in(np.ones((2, 2)), [[0], [1]], full)]]
        out = ref.dispatch(cfg, din)[0]
        for o in out:  # each rank gets exactly one row: rank 1's token for its expert; nothing from rank 0
            assert o.assist_info_for_combine.reshape(-1, 3)[:, 0].tolist() == [1]
            assert o.ep_recv_counts.tolist() == [0, 1]


def test_dispatch_elastic_scale_in_new_ids():
    cfg = ref.Config(ep_world_size=4, moe_expert_num=4, top_k=1, hidden=2)
    cfg.elastic_info = ref.make_elastic_info(cfg, [1])
    # Survivors 0, 2, 3 become 0, 1, 2; W' 3, Srank' 0, M' 3; table2 entries from W' on are -1.
    assert cfg.elastic_info == [1, 3, 0, 3, 0, -1, 1, 2, 0, 2, 3, -1]
    din = [[rank_in([[1, 1]], [[2]]), None, rank_in([[2, 2]], [[2]]), rank_in([[3, 3]], [[0]])]]
    out = ref.dispatch(cfg, din)[0]
    assert out[1] is None
    # Expert 2 is on new rank 2 = physical rank 3; triples carry the new source ids 0 and 1.
    assert out[3].assist_info_for_combine.tolist() == [0, 0, 0, 1, 0, 0]
    assert out[3].ep_recv_counts.tolist() == [1, 2, 2]
    assert out[0].assist_info_for_combine.tolist() == [2, 0, 0]
    with pytest.raises(ValueError, match="not a valid expert id"):  # ids in [M', M) are refused
        ref.dispatch(cfg, [[rank_in([[1, 1]], [[3]]), None, din[0][2], din[0][3]]])


def test_dispatch_rejects_what_the_contract_rejects():
    cfg = ref.Config(ep_world_size=2, moe_expert_num=2, top_k=2, hidden=2)
    ok = rank_in(np.ones((1, 2)), [[0, 1]])
    with pytest.raises(ValueError, match="twice"):
        ref.dispatch(cfg, [[rank_in(np.ones((1, 2)), [[1, 1]]), ok]])
    with pytest.raises(ValueError, match="not a valid expert id"):
        ref.dispatch(cfg, [[rank_in(np.ones((1, 2)), [[0, 2]]), ok]])
    with pytest.raises(ValueError, match="same Bs"):
        ref.dispatch(cfg, [[rank_in(np.ones((2, 2)), [[0, 1], [0, 1]]), ok]])
    with pytest.raises(TypeError, match="expert_ids"):
        ref.dispatch(cfg, [[ref.DispatchInput(ok.x, ok.expert_ids.astype(np.int64)), ok]])
    with pytest.raises(TypeError, match="float16"):  # float16 values where the dtype is bfloat16
        ref.dispatch(cfg, [[ref.DispatchInput(np.ones((1, 2), np.float16), ok.expert_ids), ok]])
    with pytest.raises(ValueError, match="2 ranks"):
        ref.dispatch(cfg, [[ok]])
    with pytest.raises(ValueError, match="x_dtype"):
        ref.Config(ep_world_size=2, moe_expert_num=2, top_k=2, hidden=2, x_dtype="float32")
    # Dicts work as inputs too.
    out = ref.dispatch(cfg, [[{"x": ok.x, "expert_ids": ok.expert_ids}, ok]])
    assert out[0][0].num_rows == 2


# ----------------------------------------------------------------------------------------------------------------
# Combine


def test_combine_one_expert_weight_one_gamma_one_gives_the_rmsnorm_of_x():
    # Every token goes to expert 0 with weight 1, the FFN is the identity, residual 0 and gamma 1:
    # x = x, and y / rstd are the RmsNorm of x.
    cfg = ref.Config(ep_world_size=2, moe_expert_num=2, top_k=1, hidden=4)
    xs = [F32([[2, -2, 2, -2], [3, 4, 0, 0]]), F32([[1, 1, 1, 1], [0.5, 0, 0, -0.5]])]
    din = [[rank_in(xs[p], [[0], [0]]) for p in range(2)]]
    dout = ref.dispatch(cfg, din)
    assert dout[0][1].num_rows == 0 and dout[0][1].ep_recv_counts.tolist() == [0, 0]
    out = ref.combine(cfg, din, identity_combine_inputs(cfg, din, dout, [[np.ones(2), np.ones(2)]]))
    for p in range(2):
        o = out[0][p]
        assert o.written.tolist() == [True, True]
        assert np.array_equal(o.x, bf16(xs[p]))
        for t in range(2):
            x = xs[p][t]
            ms = (x * x * (F32(1) / F32(4))).sum(dtype=F32)  # exact here: small integers and halves
            rstd = F32(1) / np.sqrt(ms + F32(1e-6))
            assert o.rstd[t] == rstd
            assert o.y[t].tolist() == bf16(widen(bf16(x * rstd))).tolist()
    assert out[0][0].y[0].tolist() == [0x3F80, 0xBF80, 0x3F80, 0xBF80]


def test_combine_weighted_sum_shared_rows_and_residual():
    # K 2, weights 0.5 and 0.25 of the same row x: acc = 0.5x + 0.25x = 0.75x; a shared expert adds x unweighted;
    # residual r: x = bf16(0.75x + x + r).
    cfg = ref.Config(
        ep_world_size=3, moe_expert_num=2, top_k=2, hidden=4, shared_expert_num=1, shared_expert_rank_num=1
    )
    x = F32([[4, 8, -4, 16]])
    din = [[rank_in(x * (p + 1), [[0, 1]]) for p in range(3)]]
    dout = ref.dispatch(cfg, din)
    residual = [[bf16(np.full((1, 4), 1.0)) for _ in range(3)]]
    cin = identity_combine_inputs(cfg, din, dout, [[[0.5, 0.25]] * 3], residual)
    out = ref.combine(cfg, din, cin)
    for p in range(3):
        want = x * (p + 1) * F32(1.75) + F32(1)
        assert np.array_equal(out[0][p].x, bf16(want))


def test_combine_v3_plain_sum_in_fp16():
    # add_rms_norm False (CombineV3/V2): x = round(sum) in x's dtype, no residual, no norm.
    cfg = ref.Config(ep_world_size=2, moe_expert_num=2, top_k=2, hidden=2, x_dtype="float16", add_rms_norm=False)
    x = np.float16([[2, 6]])
    din = [[ref.DispatchInput(x, np.int32([[0, 1]])), ref.DispatchInput(x, np.int32([[1, 0]]))]]
    dout = ref.dispatch(cfg, din)
    cin = [
        [
            ref.CombineInput(
                expand_x=o.expand_x,
                assist_info_for_combine=o.assist_info_for_combine,
                ep_send_counts=o.ep_recv_counts,
                expert_scales=F32([[0.5, 0.25]]),
            )
            for o in dout[0]
        ]
    ]
    out = ref.combine(cfg, din, cin)
    for o in out[0]:
        assert o.y is None and o.rstd is None
        assert o.x.view(np.float16).tolist() == [[1.5, 4.5]]


def test_combine_tp_reduce_adds_the_pair():
    # TP: the returned row is bf16(own partial + peer partial) = 2x with identity FFNs on both TP ranks.
    cfg = ref.Config(ep_world_size=2, moe_expert_num=2, top_k=1, hidden=2, tp_world_size=2, add_rms_norm=False)
    din = [[rank_in([[p + 1 + 4 * g, 3]], [[p]]) for p in range(2)] for g in range(2)]
    dout = ref.dispatch(cfg, din)
    cin = identity_combine_inputs(cfg, din, dout, [[[0.5], [0.5]], [[0.5], [0.5]]])
    out = ref.combine(cfg, din, cin)
    for g in range(2):
        for p in range(2):
            assert out[g][p].x.tolist() == bf16([[p + 1 + 4 * g, 3]]).tolist()  # 0.5 * 2x


def test_combine_special_experts():
    # ids: 0 MoE, 2 zero, 3 copy, 4 const (M 2, Z 1, C 1, Q 1). weights w; acc = w0*x + w3*x + w4*(a1*x + a2*v).
    cfg = ref.Config(
        ep_world_size=1, moe_expert_num=2, top_k=4, hidden=2, zero_expert_num=1, copy_expert_num=1,
        const_expert_num=1, add_rms_norm=False,
    )
    x = F32([[2, 4]])
    din = [[rank_in(x, [[0, 2, 3, 4]])]]
    dout = ref.dispatch(cfg, din)
    assert dout[0][0].num_rows == 1  # only the MoE slot is sent
    o = dout[0][0]
    ci = ref.CombineInput(
        expand_x=o.expand_x, assist_info_for_combine=o.assist_info_for_combine, ep_send_counts=o.ep_recv_counts,
        expert_scales=F32([[1, 8, 0.5, 0.25]]), ori_x=bf16(x), const_expert_alpha_1=bf16([2]),
        const_expert_alpha_2=bf16([4]), const_expert_v=bf16([[1, -1]]),
    )
    out = ref.combine(cfg, din, [[ci]])[0][0]
    # x + 0.5x + 0.25 * (2x + 4v) = [2 + 1 + 0.25*8, 4 + 2 + 0.25*4] = [5, 7]
    assert out.x.tolist() == bf16([[5, 7]]).tolist()
    with pytest.raises(ValueError, match="oriX"):
        ref.combine(cfg, din, [[ref.CombineInput(o.expand_x, o.assist_info_for_combine, o.ep_recv_counts,
                                                 F32([[1, 8, 0.5, 0.25]]))]])


def test_combine_masked_tokens_are_not_written():
    for mask_dims in (1, 2):
        cfg = ref.Config(ep_world_size=2, moe_expert_num=2, top_k=1, hidden=2, mask_dims=mask_dims)
        m0 = [True, False] if mask_dims == 1 else [[True], [False]]
        none = [False, False] if mask_dims == 1 else [[False], [False]]
        din = [[rank_in([[1, 1], [2, 2]], [[0], [1]], m0), rank_in([[3, 3], [4, 4]], [[0], [1]], none)]]
        dout = ref.dispatch(cfg, din)
        out = ref.combine(cfg, din, identity_combine_inputs(cfg, din, dout, [[np.ones(2), np.ones(2)]] ))
        assert out[0][0].written.tolist() == [True, False]
        assert out[0][1].written.tolist() == [False, False]
        assert out[0][0].x[0].tolist() == bf16([1, 1]).tolist()


def test_combine_comm_quant_mode_2_returns_the_round_trip():
    cfg = ref.Config(ep_world_size=1, moe_expert_num=1, top_k=1, hidden=8, comm_quant_mode=2, add_rms_norm=False)
    din = [[rank_in([np.full(8, 3.0)], [[0]])]]
    dout = ref.dispatch(cfg, din)
    out = ref.combine(cfg, din, identity_combine_inputs(cfg, din, dout, [[np.ones(1)]]))
    sc = F32(3) * (F32(1) / F32(127))
    assert out[0][0].x.tolist() == [[int(bf16(F32(127) * widen(bf16(sc))))] * 8]


def test_combine_rejects_rows_that_dispatch_did_not_send():
    cfg = ref.Config(ep_world_size=1, moe_expert_num=1, top_k=1, hidden=2)
    din = [[rank_in([[1, 1]], [[0]])]]
    dout = ref.dispatch(cfg, din)
    cin = identity_combine_inputs(cfg, din, dout, [[np.ones(1)]])
    cin[0][0].assist_info_for_combine = np.int32([0, 0, 1])  # slot 1 does not exist
    with pytest.raises(ValueError, match="token or slot out of range"):
        ref.combine(cfg, din, cin)


# ----------------------------------------------------------------------------------------------------------------
# Random cases, files, command line

GRID = [
    dict(ep_world_size=4, moe_expert_num=8, top_k=2, hidden=64),
    dict(ep_world_size=4, moe_expert_num=8, top_k=3, hidden=64, mask_dims=1),
    dict(ep_world_size=4, moe_expert_num=8, top_k=3, hidden=64, mask_dims=2),
    dict(ep_world_size=4, moe_expert_num=4, top_k=2, hidden=64, tp_world_size=2, quant_mode=2),
    dict(ep_world_size=4, moe_expert_num=8, top_k=2, hidden=64, comm_quant_mode=2, global_bs=24),
    dict(ep_world_size=6, moe_expert_num=8, top_k=2, hidden=64, shared_expert_num=2, shared_expert_rank_num=2),
    dict(ep_world_size=4, moe_expert_num=8, top_k=3, hidden=64, zero_expert_num=1, copy_expert_num=1,
         const_expert_num=2),
    dict(ep_world_size=4, moe_expert_num=8, top_k=2, hidden=64, x_dtype="float16", add_rms_norm=False),
]


def expected_rows(case):
    """Rows every rank must receive, counted from the inputs: active routed slots plus S rows per active token."""
    cfg = case.config
    S = 0 if (cfg.shared_expert_rank_num == 0 and cfg.shared_expert_num == 1) else cfg.shared_expert_num
    e = cfg.elastic_info
    m_eff = e[3] if e is not None and e[0] else cfg.moe_expert_num
    total = 0
    for group in case.dispatch_inputs:
        for d in group:
            if d is None:
                continue
            active = np.ones(d.expert_ids.shape, bool)
            if cfg.mask_dims == 1:
                active &= d.x_active_mask[:, None]
            elif cfg.mask_dims == 2:
                active = d.x_active_mask.copy()
            total += int((active & (d.expert_ids < m_eff)).sum()) + S * int(active.any(axis=1).sum())
    return total


@pytest.mark.parametrize("kw", GRID, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_make_case_is_valid_and_consistent(kw):
    cfg = ref.Config(**kw)
    case = ref.make_case(cfg, seed=11, shared_expert_x=cfg.shared_expert_rank_num == 0)
    own = sum(o.num_own_rows for g in case.dispatch_outputs for o in g if o is not None)
    assert own == expected_rows(case)
    for g in range(cfg.num_groups):
        for p in range(cfg.ep_world_size):
            d, c = case.dispatch_inputs[g][p], case.combine_outputs[g][p]
            ids = d.expert_ids
            assert all(len(set(row)) == len(row) for row in ids.tolist())  # distinct within each token
            if cfg.mask_dims == 1:
                n = int(d.x_active_mask.sum())
                assert d.x_active_mask.tolist() == [True] * n + [False] * (d.bs - n)
                assert c.written.tolist() == d.x_active_mask.tolist()
            elif cfg.mask_dims == 2:
                assert c.written.tolist() == d.x_active_mask.any(axis=1).tolist()
            else:
                assert c.written.all()
    if cfg.global_bs:
        assert all(1 <= d.bs <= cfg.global_bs // cfg.ep_world_size for g in case.dispatch_inputs for d in g)
    again = ref.make_case(cfg, seed=11, shared_expert_x=cfg.shared_expert_rank_num == 0)
    assert_cases_equal(case, again)


def test_make_case_elastic_and_per_rank_bs():
    cfg = ref.Config(
        ep_world_size=8, moe_expert_num=12, top_k=2, hidden=64, shared_expert_num=1, shared_expert_rank_num=2,
        global_bs=48,
    )
    cfg.elastic_info = ref.make_elastic_info(cfg, [3, 5])
    case = ref.make_case(cfg, seed=4, bs=[6, 5, 4, 3, 2, 1, 6, 5])
    assert [d is None for d in case.dispatch_inputs[0]] == [False, False, False, True, False, True, False, False]
    assert [o is None for o in case.combine_outputs[0]] == [d is None for d in case.dispatch_inputs[0]]
    assert [d.bs for d in case.dispatch_inputs[0] if d is not None] == [6, 5, 4, 2, 6, 5]
    assert max(int(d.expert_ids.max()) for d in case.dispatch_inputs[0] if d is not None) < 8  # M' = 2 * 4
    assert sum(o.num_own_rows for o in case.dispatch_outputs[0] if o is not None) == expected_rows(case)


def test_make_case_with_a_custom_ffn_is_the_identity_check():
    # With an identity FFN, weights w and one MoE expert per token, CombineV3 returns round(w * x).
    cfg = ref.Config(ep_world_size=2, moe_expert_num=2, top_k=1, hidden=64, add_rms_norm=False)
    case = ref.make_case(cfg, seed=2, ffn=lambda c, g, p, o: o.expand_x)
    for p in range(2):
        d, ci, co = case.dispatch_inputs[0][p], case.combine_inputs[0][p], case.combine_outputs[0][p]
        want = bf16(widen(d.x) * ci.expert_scales[:, :1])
        assert np.array_equal(co.x, want)


def test_stand_in_ffn_formula():
    cfg = ref.Config(ep_world_size=2, moe_expert_num=4, top_k=2, hidden=8)  # L 2
    case = ref.make_case(cfg, seed=5)
    for p in range(2):
        o = case.dispatch_outputs[0][p]
        ends = o.ep_recv_counts[[1, 3]]
        le = np.array([0 if i < ends[0] else 1 for i in range(o.num_rows)])
        coef = (F32(1) + F32(0.125) * le.astype(F32))[:, None]
        assert np.array_equal(case.combine_inputs[0][p].expand_x, bf16(widen(o.expand_x) * coef))


def assert_cases_equal(a, b):
    assert a.config == b.config and a.seed == b.seed
    for attr in ("dispatch_inputs", "dispatch_outputs", "combine_inputs", "combine_outputs"):
        for ga, gb in zip(getattr(a, attr), getattr(b, attr)):
            for ra, rb in zip(ga, gb):
                assert (ra is None) == (rb is None), attr
                if ra is None:
                    continue
                assert type(ra) is type(rb)
                for name in ra.__dataclass_fields__:
                    va, vb = getattr(ra, name), getattr(rb, name)
                    assert (va is None) == (vb is None), (attr, name)
                    if va is not None:
                        va, vb = np.asarray(va), np.asarray(vb)
                        assert va.dtype == vb.dtype and va.shape == vb.shape, (attr, name)
                        assert np.array_equal(va.view(np.uint8), vb.view(np.uint8)), (attr, name)


def test_save_load_round_trip(tmp_path):
    cfg = ref.Config(ep_world_size=4, moe_expert_num=4, top_k=2, hidden=32, tp_world_size=2, quant_mode=2)
    case = ref.make_case(cfg, seed=9)
    paths = ref.save_case(tmp_path, case)
    names = sorted(os.path.basename(p) for p in paths)
    assert names == sorted(["case.json"] + [f"tp{g}_ep{p}.npz" for g in range(2) for p in range(4)])
    meta = json.loads((tmp_path / "case.json").read_text())
    assert meta["format"] == "moedist-reference-case" and meta["version"] == 1 and meta["seed"] == 9
    assert meta["config"]["tp_world_size"] == 2 and meta["participates"] == [[True] * 4] * 2
    with np.load(tmp_path / "tp1_ep2.npz") as z:
        keys = set(z.files)
        assert z["dispatch_out.expand_x"].dtype == np.int8
        assert z["combine_in.expand_x"].dtype == np.uint16
    assert {"dispatch_in.x", "dispatch_in.expert_ids", "dispatch_in.scales", "dispatch_out.dynamic_scales",
            "dispatch_out.tp_recv_counts", "combine_in.tp_send_counts", "combine_in.gamma", "combine_out.y",
            "combine_out.rstd", "combine_out.written"} <= keys
    assert "dispatch_in.x_active_mask" not in keys  # None fields are left out
    assert_cases_equal(case, ref.load_case(tmp_path))
    # The loaded inputs reproduce the outputs.
    loaded = ref.load_case(tmp_path)
    again = ref.dispatch(loaded.config, loaded.dispatch_inputs)
    assert np.array_equal(again[1][3].expand_x, case.dispatch_outputs[1][3].expand_x)


def test_save_load_elastic_and_masks(tmp_path):
    cfg = ref.Config(ep_world_size=4, moe_expert_num=4, top_k=2, hidden=16, mask_dims=2, add_rms_norm=False)
    cfg.elastic_info = ref.make_elastic_info(cfg, [2])
    case = ref.make_case(cfg, seed=3)
    ref.save_case(tmp_path, case)
    assert not (tmp_path / "tp0_ep2.npz").exists()
    loaded = ref.load_case(tmp_path)
    assert loaded.dispatch_inputs[0][2] is None and loaded.combine_outputs[0][2] is None
    assert loaded.config.elastic_info == cfg.elastic_info
    assert_cases_equal(case, loaded)
    (tmp_path / "case.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ValueError, match="not a moedist-reference-case"):
        ref.load_case(tmp_path)


def run_cli(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.run(
        [sys.executable, "-m", "moedist.reference", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_writes_the_case_make_case_makes(tmp_path):
    r = run_cli("-W", "4", "-M", "8", "-K", "2", "-H", "64", "--mask-dims", "1", "--seed", "7", "--bs", "5",
                str(tmp_path / "c"))
    assert r.returncode == 0, r.stderr
    assert "wrote 5 files" in r.stdout
    cfg = ref.Config(ep_world_size=4, moe_expert_num=8, top_k=2, hidden=64, mask_dims=1)
    assert_cases_equal(ref.load_case(tmp_path / "c"), ref.make_case(cfg, 7, bs=5))


def test_cli_elastic_plain_combine_and_errors(tmp_path):
    r = run_cli("-W", "4", "-M", "4", "-K", "1", "-H", "16", "--removed-ranks", "1", "--combine", "plain",
                "--x-dtype", "float16", str(tmp_path / "e"))
    assert r.returncode == 0, r.stderr
    assert "tp0 ep1: removed by elastic scale-in" in r.stdout
    case = ref.load_case(tmp_path / "e")
    assert case.config.elastic_info == [1, 3, 0, 3, 0, -1, 1, 2, 0, 2, 3, -1]
    assert case.config.add_rms_norm is False and case.combine_outputs[0][0].y is None
    r = run_cli("-W", "3", "-M", "4", "-K", "1", "-H", "16", str(tmp_path / "bad"))  # M not a multiple of W
    assert r.returncode == 2 and "moe_expert_num" in r.stderr


def test_model_runs_on_several_threads_at_once():
    # The GIL is released while the model runs; calls on several threads must not disturb each other.
    cfg = ref.Config(ep_world_size=8, moe_expert_num=16, top_k=4, hidden=256)
    case = ref.make_case(cfg, seed=1, bs=16)
    results = [None] * 4

    def work(i):
        results[i] = ref.combine(cfg, case.dispatch_inputs, case.combine_inputs)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        for p in range(8):
            assert np.array_equal(r[0][p].y, case.combine_outputs[0][p].y)
