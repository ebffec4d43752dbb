"""Errors: moedist.Error with the aclnn code and the argument's name on every rank, TypeError / ValueError for what
numpy can tell before anything runs, nothing written on failure, timeouts naming the missing rank."""

import re

import numpy as np
import pytest

import moedist
from _rankutil import H, problem, run_ranks, run_ranks_expecting

W, BS = 2, 3


@pytest.fixture
def group():
    name = moedist.create_inprocess_group(W, timeout=10)
    yield name
    moedist.destroy_group(name)


def patterned_outputs(r):
    """DispatchOutputs filled with a byte pattern, at the allocation shapes of the closed-form problem."""
    s = moedist.output_shapes(W, r, W, bs=BS, h=H, k=1)
    shapes = [(s.expand_x_rows, H), (s.expand_x_rows,), (s.assist_info_for_combine,), (s.expert_token_nums,),
              (s.ep_recv_counts,), (s.tp_recv_counts,), (s.expand_scales,)]  # fmt: skip
    dtypes = [np.uint16, np.float32, np.int32, np.int64, np.int32, np.int32, np.float32]
    arrays = []
    for shape, dtype in zip(shapes, dtypes):
        a = np.empty(shape, dtype)
        a.view(np.uint8)[...] = 0xA5
        arrays.append(a)
    return moedist.DispatchOutputs(*arrays)


def untouched(outputs):
    return all((a.view(np.uint8) == 0xA5).all() for a in outputs)


def test_error_is_a_runtime_error_with_a_code():
    assert issubclass(moedist.Error, RuntimeError)
    assert moedist.Error.__module__ == "moedist" and moedist.Error.__name__ == "Error"


def test_bad_attribute_on_every_rank(group):
    def rank(r):
        x, ids, *_ = problem(r, W, BS)
        moedist.dispatch_v3(x, ids, group, W, r, W, shared_expert_num=5)

    errors = run_ranks_expecting(W, rank)
    for e in errors:
        assert isinstance(e, moedist.Error)
        assert e.code == 561002 and e.status == "kInvalidValue"
        assert "sharedExpertNum" in str(e)


def test_bad_data_on_one_rank_fails_every_rank_and_writes_nothing(group):
    outs = [patterned_outputs(r) for r in range(W)]

    def rank(r):
        x, ids, *_ = problem(r, W, BS)
        if r == 1:
            ids[0, 0] = 7  # not an expert of a 2-expert model
        moedist.dispatch_v3(x, ids, group, W, r, W, out=outs[r])

    errors = run_ranks_expecting(W, rank)
    for e in errors:
        assert isinstance(e, moedist.Error) and e.code == 161002
        assert "expertIds[0][0] is 7" in str(e)
    assert "rank 1" in str(errors[0])  # rank 0 learns which rank failed
    assert all(untouched(o) for o in outs)


def test_bad_attribute_on_one_rank_fails_every_rank(group):
    # globalBs fails the shape query on rank 1 only: the package still runs the operator so that rank 0 hears of it
    def rank(r):
        x, ids, *_ = problem(r, W, BS)
        moedist.dispatch_v3(x, ids, group, W, r, W, global_bs=5 if r == 1 else 0)

    errors = run_ranks_expecting(W, rank, timeout=30)
    for e in errors:
        assert isinstance(e, moedist.Error) and e.code == 561002 and "globalBs" in str(e)


def test_missing_required_tensor_is_a_null_argument(group):
    def rank(r):
        x, ids, scales, residual, gamma = problem(r, W, BS)
        d = moedist.dispatch_v3(x, ids, group, W, r, W)
        moedist.combine_add_rms_norm_v2(
            d.expand_x, ids, d.assist_info_for_combine, d.ep_recv_counts, scales, residual, None, group, W, r, W)

    for e in run_ranks_expecting(W, rank):
        assert isinstance(e, moedist.Error) and e.code == 161001 and "gamma" in str(e)


def test_missing_x_is_a_null_argument_on_every_rank(group):
    def rank(r):
        x, ids, *_ = problem(r, W, BS)
        moedist.dispatch_v3(None if r == 0 else x, ids, group, W, r, W)

    errors = run_ranks_expecting(W, rank)
    for e in errors:
        assert isinstance(e, moedist.Error) and e.code == 161001 and "x: expected a tensor" in str(e)


@pytest.mark.parametrize(
    "argument, value, exception, pattern",
    [
        ("x", np.zeros((BS, H), np.float32), TypeError, "x: expected dtype uint16 .* or float16, got float32"),
        ("x", np.zeros((BS, 1, H), np.uint16), ValueError, r"x: expected 2 dimensions, got 3"),
        ("x", [[0] * H] * BS, TypeError, "x: expected a numpy.ndarray, got list"),
        ("expert_ids", np.zeros((BS, 1), np.int64), TypeError, "expert_ids: expected dtype int32, got int64"),
        ("expert_ids", np.zeros(BS, np.int32), ValueError, "expert_ids: expected 2 dimensions, got 1"),
        ("x_active_mask", np.ones(BS, np.uint8), TypeError, "x_active_mask: expected dtype bool, got uint8"),
        ("scales", np.zeros((1, H), np.float64), TypeError, "scales: expected dtype float32, got float64"),
        ("x_dtype", "float32", ValueError, "x_dtype: expected 'bfloat16' or 'float16', got 'float32'"),
        ("ep_rank_id", 0.5, TypeError, "ep_rank_id: expected an integer, got float"),
        ("group_ep", 3, TypeError, "group_ep: expected a str, got int"),
    ],
)
def test_numpy_errors_before_anything_runs(group, argument, value, exception, pattern):
    outs = [patterned_outputs(r) for r in range(W)]

    def rank(r):
        x, ids, *_ = problem(r, W, BS)
        args = dict(x=x, expert_ids=ids, group_ep=group, ep_world_size=W, ep_rank_id=r, moe_expert_num=W)
        kwargs = {}
        if argument in args:
            args[argument] = value
        else:
            kwargs[argument] = value
        moedist.dispatch_v3(**args, **kwargs, out=outs[r])

    errors = run_ranks_expecting(W, rank, timeout=5)  # raised locally: no rank waits for another
    for e in errors:
        assert isinstance(e, exception), repr(e)
        assert re.search(pattern, str(e)), str(e)
    assert all(untouched(o) for o in outs)
    run_ranks(W, lambda r: moedist.dispatch_v3(*problem(r, W, BS)[:2], group, W, r, W))  # the group still works


@pytest.mark.parametrize(
    "field, bad, exception, pattern",
    [
        ("expand_x", lambda a: a.astype(np.float16), TypeError, "out.expand_x: expected dtype uint16, got float16"),
        ("expand_x", lambda a: a[:-1], ValueError, r"out.expand_x: expected shape \(\d+, 1024\), got"),
        ("expand_x", lambda a: np.asfortranarray(a), ValueError, "out.expand_x: expected a writeable C-contiguous"),
        ("expert_token_nums", lambda a: [0], TypeError, "out.expert_token_nums: expected a numpy.ndarray"),
    ],
)
def test_bad_out_arrays(group, field, bad, exception, pattern):
    x, ids, *_ = problem(0, W, BS)
    out = patterned_outputs(0)._asdict()
    out[field] = bad(out[field])
    with pytest.raises(exception, match=pattern):
        moedist.dispatch_v3(x, ids, group, W, 0, W, out=out)
    with pytest.raises(ValueError, match="unknown output"):
        moedist.dispatch_v3(x, ids, group, W, 0, W, out={"y": out["expand_x"]})


def test_combine_dtype_errors(group):
    x, ids, scales, residual, gamma = problem(0, W, BS)
    expand = np.zeros((8, H), np.uint16)
    counts = np.zeros(2, np.int32)
    assist = np.zeros(8 * 128, np.int32)
    with pytest.raises(TypeError, match="residual_x: expected dtype uint16"):
        moedist.combine_add_rms_norm_v2(expand, ids, assist, counts, scales, residual.astype(np.float32), gamma,
                                        group, W, 0, W)  # fmt: skip
    with pytest.raises(ValueError, match="gamma: expected 1 dimensions, got 2"):
        moedist.combine_add_rms_norm_v2(expand, ids, assist, counts, scales, residual, gamma[None], group, W, 0, W)
    with pytest.raises(TypeError, match="ep_send_counts: expected dtype int32, got int64"):
        moedist.combine_v3(expand, ids, assist, counts.astype(np.int64), scales, group, W, 0, W)
    with pytest.raises(ValueError, match="tp_send_counts is required when tp_world_size is 2"):
        moedist.combine_v3(expand, ids, assist, counts, scales, group, W, 0, W, group_tp=group, tp_world_size=2)


def test_timeout_names_the_missing_rank():
    name = moedist.create_inprocess_group(W, timeout=0.3)
    try:
        x, ids, *_ = problem(0, W, BS)
        with pytest.raises(moedist.Error) as e:
            moedist.dispatch_v3(x, ids, name, W, 0, W)  # rank 1 never calls
        assert e.value.code == 361001 and e.value.status == "kTimeout"
        assert re.search(r"rank\(s\) 1\b", str(e.value)), str(e.value)
    finally:
        moedist.destroy_group(name)


def test_unknown_group_and_rank():
    x, ids, *_ = problem(0, W, BS)
    with pytest.raises(moedist.Error, match="no_such_group"):
        moedist.dispatch_v3(x, ids, "no_such_group", W, 0, W)
    name = moedist.create_inprocess_group(W)
    try:
        with pytest.raises(moedist.Error):
            moedist.dispatch_v3(x, ids, name, W, 5, W)
    finally:
        moedist.destroy_group(name)
