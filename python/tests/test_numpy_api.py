"""The numpy-level API: conversions, the shape query, the six operators on closed-form data, non-contiguous inputs,
out= arrays, fp16 and int8 variants."""

import numpy as np
import pytest

import moedist
from _rankutil import H, check_closed_form, dispatch_combine, expected_rows, problem, run_ranks

W, BS = 2, 3


@pytest.fixture
def group():
    name = moedist.create_inprocess_group(W, timeout=20)
    yield name
    moedist.destroy_group(name)


# ---- conversions ----------------------------------------------------------------------------------------------


def test_bfloat16_rounds_to_nearest_even():
    one = 1.0
    ulp = 2.0**-7  # bfloat16 spacing at 1.0
    values = np.array(
        [one, one + ulp / 2, one + 3 * ulp / 2, one + ulp / 2 + 2**-20, -2.5, 0.0, -0.0, np.inf, 3.4028235e38],
        np.float32,
    )
    bits = moedist.float32_to_bfloat16(values)
    assert bits.dtype == np.uint16 and bits.shape == values.shape
    # 1 + ulp/2 ties to even (1.0); 1 + 3ulp/2 ties to even (1 + 2ulp); just above the tie rounds up; max float -> inf
    assert bits.tolist() == [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC020, 0x0000, 0x8000, 0x7F80, 0x7F80]
    back = moedist.bfloat16_to_float32(bits)
    assert back.dtype == np.float32
    assert back[:3].tolist() == [1.0, 1.0, 1.0 + 2 * ulp]


def test_bfloat16_nan_stays_quiet():
    signaling = np.array([0x7F800001, 0xFF800001], np.uint32).view(np.float32)
    bits = moedist.float32_to_bfloat16(signaling)
    assert bits.tolist() == [0x7FC0, 0xFFC0]


def test_bfloat16_round_trip_is_exact():
    bits = np.arange(0, 1 << 16, dtype=np.uint32).astype(np.uint16)
    finite = (bits & 0x7F80) != 0x7F80
    assert np.array_equal(moedist.float32_to_bfloat16(moedist.bfloat16_to_float32(bits))[finite], bits[finite])


def test_float16_conversions():
    values = np.array([1.0, 1.0 + 2**-11, 1.0 + 3 * 2**-11, 65520.0, -0.0, 6e-8], np.float32)
    bits = moedist.float32_to_float16(values)
    assert bits.dtype == np.uint16
    assert bits.tolist() == [0x3C00, 0x3C00, 0x3C02, 0x7C00, 0x8000, 0x0001]
    assert moedist.float16_to_float32(bits).tolist() == moedist.float16_to_float32(bits.view(np.float16)).tolist()
    assert moedist.float16_to_float32(bits)[:3].tolist() == [1.0, 1.0, 1.0 + 2**-9]
    nan = moedist.float32_to_float16(np.array([0x7F800001], np.uint32).view(np.float32))
    assert nan.tolist() == [0x7E00]


def test_conversions_reject_wrong_dtypes():
    with pytest.raises(TypeError, match="uint16"):
        moedist.bfloat16_to_float32(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        moedist.bfloat16_to_float32([1, 2])


# ---- the shape query ------------------------------------------------------------------------------------------


def test_output_shapes():
    s = moedist.output_shapes(4, 1, 8, bs=16, h=H, k=2)
    assert isinstance(s, moedist.OutputShapes)
    assert s.local_expert_num == 2 and s.expert_token_nums == 2
    assert s.expand_x_rows == s.a and s.assist_info_for_combine == s.a * 128 and s.expand_scales == s.a
    assert s.ep_recv_counts == 4 * 2 and s.tp_recv_counts == 0 and s.h == H and s.bs == 16
    assert s.a >= 16 * 2  # every token may pick both local experts of one rank... at least Bs*K rows from itself
    # L 2, maxBs 16: 2 * (16 * 4 * 2 * Align512(Align32(2048) + 44) + 16 * 2 * Align512(2048)) = 2 * (327680 + 65536)
    assert s.window_bytes == 786432
    with pytest.raises(moedist.Error, match="moeExpertNum") as e:
        moedist.output_shapes(4, 1, 7, bs=16, h=H, k=2)
    assert e.value.code == 561002


# ---- the operators --------------------------------------------------------------------------------------------


def test_dispatch_and_combine_closed_form(group):
    def rank(r):
        x, d, c = dispatch_combine(group, r, W, BS)
        check_closed_form(r, W, BS, x, d, c)
        assert isinstance(d, moedist.DispatchOutputs) and isinstance(c, moedist.CombineOutputs)
        s = moedist.output_shapes(W, r, W, bs=BS, h=H, k=1)
        assert d.expand_x.shape == (s.expand_x_rows, H) and d.expand_x.dtype == np.uint16
        assert d.dynamic_scales.shape == (s.expand_x_rows,) and d.dynamic_scales.dtype == np.float32
        assert d.assist_info_for_combine.shape == (s.assist_info_for_combine,)
        assert d.expert_token_nums.dtype == np.int64 and d.ep_recv_counts.dtype == np.int32
        assert d.tp_recv_counts.shape == (0,) and d.expand_scales.shape == (s.a,)
        assert c.y.shape == (BS, 1, H) and c.y.dtype == np.uint16
        assert c.rstd.shape == (BS, 1, 1) and c.rstd.dtype == np.float32
        # y = x * rstd * gamma with gamma 1: close to sign(x) (each row is constant)
        np.testing.assert_allclose(moedist.bfloat16_to_float32(c.y), 1.0, rtol=1e-2)

    run_ranks(W, rank)


def test_non_contiguous_inputs_give_the_same_bytes(group):
    def rank(r):
        x, ids, scales, residual, gamma = problem(r, W, BS)
        wide = np.zeros((BS, 2 * H), np.uint16)
        wide[:, ::2] = x
        ids_f = np.asfortranarray(np.repeat(ids, 1, axis=1))
        dense = moedist.dispatch_v3(x, ids, group, W, r, W)
        strided = moedist.dispatch_v3(wide[:, ::2], ids_f, group, W, r, W)
        for a, b in zip(dense, strided):
            assert np.array_equal(a, b)
        expand = np.zeros((dense.expand_x.shape[0], 2 * H), np.uint16)[:, ::2]
        expand[...] = dense.expand_x
        c1 = moedist.combine_add_rms_norm_v2(
            dense.expand_x, ids, dense.assist_info_for_combine, dense.ep_recv_counts, scales, residual, gamma,
            group, W, r, W)  # fmt: skip
        c2 = moedist.combine_add_rms_norm_v2(
            expand, ids, dense.assist_info_for_combine, dense.ep_recv_counts, scales, residual, gamma, group, W, r, W)
        for a, b in zip(c1, c2):
            assert np.array_equal(a, b)

    run_ranks(W, rank)


def test_out_arrays_are_written_and_returned(group):
    def rank(r):
        x, ids, scales, residual, gamma = problem(r, W, BS)
        s = moedist.output_shapes(W, r, W, bs=BS, h=H, k=1)
        expand_x = np.full((s.expand_x_rows, H), 0xFFFF, np.uint16)
        d = moedist.dispatch_v3(x, ids, group, W, r, W, out={"expand_x": expand_x})
        assert d.expand_x is expand_x
        n = len(expected_rows(r, W, BS))
        assert np.array_equal(moedist.bfloat16_to_float32(expand_x[:n, 0]), np.array(expected_rows(r, W, BS)))
        again = moedist.dispatch_v3(x, ids, group, W, r, W, out=d)  # every array of a DispatchOutputs
        assert all(a is b for a, b in zip(again, d))
        y, rstd, xo = np.empty((BS, 1, H), np.uint16), np.empty((BS, 1, 1), np.float32), np.empty((BS, 1, H), np.uint16)
        c = moedist.combine_add_rms_norm_v2(
            d.expand_x, ids, d.assist_info_for_combine, d.ep_recv_counts, scales, residual, gamma, group, W, r, W,
            out=moedist.CombineOutputs(y, rstd, xo))  # fmt: skip
        assert c.y is y and c.rstd is rstd and c.x is xo and np.array_equal(xo[:, 0, :], x)

    run_ranks(W, rank)


def test_float16_and_the_siblings(group):
    def rank(r):
        x, ids, scales, residual, gamma = problem(r, W, BS)
        x16 = moedist.float32_to_float16(moedist.bfloat16_to_float32(x)).view(np.float16)
        d = moedist.dispatch_v2(x16, ids, group, W, r, W)
        assert d.expand_x.dtype == np.float16
        n = len(expected_rows(r, W, BS))
        assert d.expand_x[:n, 0].astype(np.float32).tolist() == expected_rows(r, W, BS)
        xo = moedist.combine_v2(d.expand_x, ids, d.assist_info_for_combine, d.ep_recv_counts, scales, group, W, r, W)
        assert isinstance(xo, np.ndarray) and xo.shape == (BS, H) and xo.dtype == np.float16
        assert np.array_equal(xo, x16)
        # fp16 as uint16 bits with x_dtype="float16"
        bits = x16.view(np.uint16)
        d3 = moedist.dispatch_v3(bits, ids, group, W, r, W, x_dtype="float16")
        assert d3.expand_x.dtype == np.uint16 and np.array_equal(d3.expand_x.view(np.float16), d.expand_x)
        xo3 = moedist.combine_v3(
            d3.expand_x, ids, d3.assist_info_for_combine, d3.ep_recv_counts, scales, group, W, r, W, x_dtype="float16")
        assert np.array_equal(xo3, bits)
        # bf16 through the V1 combine with RmsNorm
        db = moedist.dispatch_v2(x, ids, group, W, r, W)
        c = moedist.combine_add_rms_norm(
            db.expand_x, ids, db.assist_info_for_combine, db.ep_recv_counts, scales, residual, gamma, group, W, r, W)
        assert np.array_equal(c.x[:, 0, :], x)

    run_ranks(W, rank)


def test_quant_mode_2_gives_int8_rows(group):
    def rank(r):
        x, ids, *_ = problem(r, W, BS)
        d = moedist.dispatch_v3(x, ids, group, W, r, W, quant_mode=2)
        assert d.expand_x.dtype == np.int8
        n = len(expected_rows(r, W, BS))
        # constant rows quantize to 127 with the scale value / 127
        assert (d.expand_x[:n] == 127).all()
        np.testing.assert_allclose(d.dynamic_scales[:n], np.array(expected_rows(r, W, BS)) / 127.0, rtol=1e-6)

    run_ranks(W, rank)


def test_tensor_parallel_pairs():
    """W=2 EP ranks x TP 2: process p is EP rank p // 2 of EP group p % 2 and TP rank p % 2 of TP pair p // 2. Both
    TP ranks of an EP rank hold the same tokens, so each gets its own rows then its peer's (the same values), and
    combine adds the pair's two returned rows: x == 2 * the token's row."""
    tp = 2
    ep_groups = [moedist.create_inprocess_group(W, timeout=20) for _ in range(tp)]
    tp_groups = [moedist.create_inprocess_group(tp, timeout=20) for _ in range(W)]

    def rank(p):
        e, t = p // tp, p % tp
        x, ids, scales, residual, gamma = problem(e, W, BS)
        d = moedist.dispatch_v3(x, ids, ep_groups[t], W, e, W, group_tp=tp_groups[e], tp_world_size=tp, tp_rank_id=t)
        s = moedist.output_shapes(W, e, W, bs=BS, h=H, k=1, tp_world_size=tp, tp_rank_id=t)
        assert d.expand_x.shape == (2 * s.a, H) and s.expand_x_rows == 2 * s.a
        rows = expected_rows(e, W, BS)
        n = len(rows)
        assert d.tp_recv_counts.tolist() == [n, n]
        got = moedist.bfloat16_to_float32(d.expand_x[: 2 * n, 0]).tolist()
        assert got == rows + rows
        c = moedist.combine_add_rms_norm_v2(
            d.expand_x, ids, d.assist_info_for_combine, d.ep_recv_counts, scales, residual, gamma, ep_groups[t], W, e,
            W, tp_send_counts=d.tp_recv_counts, group_tp=tp_groups[e], tp_world_size=tp, tp_rank_id=t)  # fmt: skip
        assert np.array_equal(moedist.bfloat16_to_float32(c.x[:, 0, :]), 2 * moedist.bfloat16_to_float32(x))

    try:
        run_ranks(W * tp, rank)
    finally:
        for g in ep_groups + tp_groups:
            moedist.destroy_group(g)
