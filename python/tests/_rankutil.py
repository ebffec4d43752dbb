"""Helpers of the moedist Python tests: ranks as threads with a watchdog, and closed-form problems.

The closed-form problem: W ranks, one MoE expert per rank (moe_expert_num = W), top-1 routing. Token t of rank r
carries the value (r + 1) * (t + 1) in every column (exact in bfloat16 for small values) and goes to expert
(r + t) % W. Dispatch then gives expert e the rows of every (source rank, token) routed to it, in source-rank then
token order; with the identity as the expert FFN, expert scales 1 and a zero residual, combine returns each token's
own row: x == the dispatched x, exactly.
"""

import threading

import numpy as np

import moedist

H = 1024  # the smallest hidden size the operators accept


def run_ranks(world_size, fn, timeout=60.0):
    """Runs fn(rank) on one thread per rank; returns the results by rank. Raises the first rank's exception (with
    every rank's in its message) or an AssertionError naming the ranks still running after `timeout` seconds."""
    results = [None] * world_size
    errors = [None] * world_size

    def body(r):
        try:
            results[r] = fn(r)
        except BaseException as e:  # noqa: BLE001 - collected and re-raised below
            errors[r] = e

    threads = [threading.Thread(target=body, args=(r,), daemon=True) for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    stuck = [r for r, t in enumerate(threads) if t.is_alive()]
    if stuck:
        raise AssertionError(f"watchdog: rank(s) {stuck} still running after {timeout} s")
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if failed:
        summary = "; ".join(f"rank {r}: {type(e).__name__}: {e}" for r, e in failed)
        raise AssertionError(summary) from failed[0][1]
    return results


def run_ranks_expecting(world_size, fn, timeout=60.0):
    """Runs fn(rank) on one thread per rank; returns each rank's exception (None where it raised none)."""

    def catching(r):
        try:
            fn(r)
        except Exception as e:  # noqa: BLE001
            return e
        return None

    return run_ranks(world_size, catching, timeout)


def token_values(world_size, bs):
    """values[r][t]: the value of token t of rank r."""
    return [[float((r + 1) * (t + 1)) for t in range(bs)] for r in range(world_size)]


def problem(rank, world_size, bs, h=H):
    """x (bf16 bits), expert_ids, expert_scales, residual_x, gamma of `rank` in the closed-form problem."""
    values = np.array(token_values(world_size, bs)[rank], np.float32)
    x = moedist.float32_to_bfloat16(np.repeat(values[:, None], h, axis=1))
    expert_ids = np.array([[(rank + t) % world_size] for t in range(bs)], np.int32)
    expert_scales = np.ones((bs, 1), np.float32)
    residual_x = np.zeros((bs, 1, h), np.uint16)
    gamma = moedist.float32_to_bfloat16(np.ones(h, np.float32))
    return x, expert_ids, expert_scales, residual_x, gamma


def expected_rows(expert, world_size, bs):
    """The values of the rows expert `expert` receives, in order (source rank, then token)."""
    values = token_values(world_size, bs)
    return [values[r][t] for r in range(world_size) for t in range(bs) if (r + t) % world_size == expert]


def dispatch_combine(group, rank, world_size, bs, h=H):
    """Dispatch and combine of the closed-form problem on `rank`; returns (x, DispatchOutputs, CombineOutputs)."""
    x, ids, scales, residual, gamma = problem(rank, world_size, bs, h)
    d = moedist.dispatch_v3(x, ids, group, world_size, rank, world_size)
    c = moedist.combine_add_rms_norm_v2(
        d.expand_x, ids, d.assist_info_for_combine, d.ep_recv_counts, scales, residual, gamma, group, world_size, rank,
        world_size
    )  # fmt: skip
    return x, d, c


def check_closed_form(rank, world_size, bs, x, d, c, h=H):
    """Asserts the closed-form outputs of `rank` (see the module's docstring)."""
    rows = expected_rows(rank, world_size, bs)
    n = len(rows)
    assert d.expert_token_nums.tolist() == [n]
    got = moedist.bfloat16_to_float32(d.expand_x[:n])
    assert np.array_equal(got, np.repeat(np.array(rows, np.float32)[:, None], h, axis=1))
    counts = [sum(1 for t in range(bs) if (r + t) % world_size == rank) for r in range(world_size)]
    assert d.ep_recv_counts.tolist() == np.cumsum(counts).tolist()
    assert np.array_equal(c.x[:, 0, :], x)  # the token's own row: identity expert, scale 1, zero residual
    values = np.array(token_values(world_size, bs)[rank], np.float64)
    np.testing.assert_allclose(c.rstd[:, 0, 0], 1.0 / np.sqrt(values * values + 1e-6), rtol=1e-6)
