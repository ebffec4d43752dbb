#!/usr/bin/python3
"""Time per call of dispatch and combine from Python, next to the same calls from C++ in the same run.

One problem (W ranks, Bs tokens per rank, hidden H, top-K of M MoE experts, no special or shared experts, bf16):
DispatchV3 then CombineAddRmsNormV2 with residual and gamma, as `moedist run` runs it with the same flags. The
Python side calls the package's operators from W Python threads (an in-process group) and from W processes (a
shared-memory group; `--engines`), three ways:

  numpy out=   moedist.dispatch_v3 / combine_add_rms_norm_v2 writing into arrays allocated once (out=...)
  numpy        the same, allocating the outputs on every call
  torch_npu    moedist.torch_npu's npu_moe_distribute_dispatch_v2 / npu_moe_distribute_combine_add_rms_norm (threads)

The C++ side is `moedist run` (the `moedist` program of the same build) with the same shape, started from here, so
that both are measured in one run on the same machine. Both report "the slowest rank, best of N layers": each rank
keeps the fastest of its calls, and the figure is the slowest rank's (a barrier before every call); the Python side
also gives the median over layers of the slowest rank. Every Python output of the first layer is compared with the
reference model (moedist.reference), unless --no-check.

    PYTHONPATH=build/release/python /usr/bin/python3 bench/python_ops.py --moedist build/release/tools/moedist
"""

import argparse
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

import moedist
from moedist import reference as ref


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-w", "--world-size", type=int, default=4)
    p.add_argument("-b", "--tokens", type=int, default=128, help="tokens per rank (Bs)")
    p.add_argument("--hidden", type=int, default=7168)
    p.add_argument("-k", "--topk", type=int, default=8)
    p.add_argument("-m", "--experts", type=int, default=16, help="MoE experts (moe_expert_num)")
    p.add_argument("--layers", type=int, default=20, help="timed dispatch + combine pairs per way")
    p.add_argument("--warmup", type=int, default=3, help="untimed pairs before them")
    p.add_argument("--engines", default="threads,processes", help="comma list of threads, processes")
    p.add_argument("--moedist", help="the moedist program for the C++ side (default: beside the package's build)")
    p.add_argument("--no-cpp", action="store_true", help="skip the C++ side")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with the reference model")
    return p.parse_args(argv)


class Rank:
    """What rank r needs: the shape, its inputs and the reference model's outputs for them."""

    def __init__(self, a, case, r):
        self.r, self.W, self.bs, self.M = r, a.world_size, a.tokens, a.experts
        self.din, self.cin = case.dispatch_inputs[0][r], case.combine_inputs[0][r]
        self.residual_x = self.cin.residual_x.reshape(a.tokens, 1, a.hidden)  # the operators' (Bs, 1, H)
        self.want_d, self.want_c = case.dispatch_outputs[0][r], case.combine_outputs[0][r]


def check_prefix(what, got, want):
    n = want.shape[0]
    if got.shape[0] < n or not np.array_equal(got[:n].view(np.uint8), want.view(np.uint8)):
        raise AssertionError(f"{what}: differs from the reference model")


def check(k, d, c):
    """Compares rank k's dispatch and combine outputs (numpy) with the reference model."""
    r, want_d, want_c = k.r, k.want_d, k.want_c
    check_prefix(f"rank {r} dispatch expand_x", d.expand_x, want_d.expand_x)
    check_prefix(f"rank {r} dispatch assist_info_for_combine", d.assist_info_for_combine,
                 want_d.assist_info_for_combine)  # fmt: skip
    check_prefix(f"rank {r} dispatch ep_recv_counts", d.ep_recv_counts, want_d.ep_recv_counts)
    check_prefix(f"rank {r} dispatch expert_token_nums", d.expert_token_nums, want_d.expert_token_nums)
    for name in ("y", "rstd", "x"):
        got = getattr(c, name).reshape(k.bs, -1)
        check_prefix(f"rank {r} combine {name}", got, getattr(want_c, name).reshape(k.bs, -1))


def expert_rows(d, cin):
    """Combine's expand_x: dispatch's expand_x array with the expert outputs (the reference's stand-in FFN)."""
    rows = np.zeros_like(d.expand_x)
    rows[: cin.expand_x.shape[0]] = cin.expand_x
    return rows


def numpy_calls(k, group, preallocate):
    """(dispatch(), combine()) closures of rank k over the numpy API; with preallocate, outputs allocated once."""
    din, cin = k.din, k.cin
    first = moedist.dispatch_v3(din.x, din.expert_ids, group, k.W, k.r, k.M)
    rows = expert_rows(first, cin)
    out = {"d": first if preallocate else None, "c": None}
    state = {}

    def dispatch():
        state["d"] = moedist.dispatch_v3(din.x, din.expert_ids, group, k.W, k.r, k.M, out=out["d"])
        return state["d"]

    def combine():
        d = state["d"]
        return moedist.combine_add_rms_norm_v2(rows, din.expert_ids, d.assist_info_for_combine, d.ep_recv_counts,
                                               cin.expert_scales, k.residual_x, cin.gamma, group, k.W, k.r, k.M,
                                               out=out["c"])  # fmt: skip

    if preallocate:  # one pair on every rank together, for combine's output arrays
        dispatch()
        out["c"] = combine()
    return dispatch, combine


def torch_calls(k, group):
    import torch

    import moedist.torch_npu as torch_npu

    din, cin = k.din, k.cin
    bf16 = lambda a: torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)  # noqa: E731
    x, ids = bf16(din.x), torch.from_numpy(din.expert_ids)
    scales, residual, gamma = torch.from_numpy(cin.expert_scales), bf16(k.residual_x), bf16(cin.gamma)
    first = moedist.dispatch_v3(din.x, din.expert_ids, group, k.W, k.r, k.M)
    rows = bf16(expert_rows(first, cin))
    state = {}

    def dispatch():
        state["d"] = torch_npu.npu_moe_distribute_dispatch_v2(x, ids, group, k.W, k.r, k.M)
        return state["d"]

    def combine():
        d = state["d"]
        return torch_npu.npu_moe_distribute_combine_add_rms_norm(rows, ids, d[2], d[4], scales, residual, gamma,
                                                                 group, k.W, k.r, k.M)  # fmt: skip

    return dispatch, combine


def time_rank(k, barrier, make_calls, layers, warmup, do_check):
    """Rank k's per-layer (dispatch seconds, combine seconds), after `warmup` untimed pairs."""
    dispatch, combine = make_calls()
    times = []
    for layer in range(warmup + layers):
        barrier.wait()
        t0 = time.perf_counter()
        d = dispatch()
        t1 = time.perf_counter()
        barrier.wait()
        t2 = time.perf_counter()
        c = combine()
        t3 = time.perf_counter()
        if layer == 0 and do_check and isinstance(d, moedist.DispatchOutputs):
            check(k, d, c)
        if layer >= warmup:
            times.append((t1 - t0, t3 - t2))
    return times


def summarize(per_rank):
    """{op: (best, median)} of the slowest rank: best = max over ranks of each rank's best (as moedist run),
    median = median over layers of the slowest rank of that layer."""
    out = {}
    for i, op in enumerate(("dispatch", "combine")):
        best = max(min(t[i] for t in rank) for rank in per_rank)
        median = statistics.median(max(rank[layer][i] for rank in per_rank) for layer in range(len(per_rank[0])))
        out[op] = (best, median)
    return out


def run_threads(ranks, a, way):
    W = len(ranks)
    group = moedist.create_inprocess_group(W, timeout=120)
    barrier = threading.Barrier(W)
    results, errors = [None] * W, []

    def body(r):
        try:
            if way == "torch_npu":
                make = lambda: torch_calls(ranks[r], group)  # noqa: E731
            else:
                make = lambda: numpy_calls(ranks[r], group, preallocate=way == "numpy out=")  # noqa: E731
            results[r] = time_rank(ranks[r], barrier, make, a.layers, a.warmup, not a.no_check)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(f"rank {r}: {type(e).__name__}: {e}")
            barrier.abort()

    threads = [threading.Thread(target=body, args=(r,)) for r in range(W)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    moedist.destroy_group(group)
    if errors:
        raise SystemExit("python_ops: " + "; ".join(errors))
    return summarize(results)


def process_rank(k, uid, barrier, queue, way, layers, warmup, do_check):
    try:
        group = moedist.create_shm_group(uid, k.W, k.r, timeout=120)
        make = lambda: numpy_calls(k, group, preallocate=way == "numpy out=")  # noqa: E731
        queue.put((k.r, time_rank(k, barrier, make, layers, warmup, do_check), None))
        moedist.destroy_group(group)
    except BaseException as e:  # noqa: BLE001 - reported by the parent
        barrier.abort()
        queue.put((k.r, None, f"{type(e).__name__}: {e}"))


def run_processes(ranks, a, way):
    W = len(ranks)
    ctx = multiprocessing.get_context("spawn")
    uid = moedist.shm_unique_id()
    barrier, queue = ctx.Barrier(W), ctx.Queue()
    procs = [ctx.Process(target=process_rank, args=(k, uid, barrier, queue, way, a.layers, a.warmup, not a.no_check))
             for k in ranks]  # fmt: skip
    for proc in procs:
        proc.start()
    results, errors = [None] * W, []
    for _ in range(W):
        r, times, error = queue.get(timeout=600)
        results[r] = times
        if error:
            errors.append(f"rank {r}: {error}")
    for proc in procs:
        proc.join()
    if errors:
        raise SystemExit("python_ops: " + "; ".join(errors))
    return summarize(results)


def default_moedist():
    """build/<preset>/tools/moedist beside build/<preset>/python, where the package was imported from."""
    build = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(moedist.__file__))))
    return os.path.join(build, "tools", "moedist")


def run_cpp(a, engine):
    """{op: best seconds} of `moedist run` with the same shape and engine (inproc or shm)."""
    exe = a.moedist or default_moedist()
    cmd = [exe, "run", "-w", str(a.world_size), "-b", str(a.tokens), "--hidden", str(a.hidden), "-k", str(a.topk),
           "-m", str(a.experts), "--zero-experts", "0", "--copy-experts", "0", "--const-experts", "0",
           "--no-shared-expert-x", "--layers", str(a.layers + a.warmup), "--no-baseline", "--engine", engine]  # fmt: skip
    if engine == "shm":
        cmd.append("--staging")  # x and the rows in private memory, as numpy arrays are: staged on every call
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"python_ops: {' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    name = {"inproc": "", "shm": "shm"}[engine]
    out, copy = {}, None
    for line in done.stdout.splitlines():
        m = re.match(r"\s+(dispatch|combine)\s+(?:(\S+)\s+)?([\d.]+) ms", line)
        if m and (m.group(2) or "") == name:
            out[m.group(1)] = float(m.group(3)) / 1e3
        m = re.search(r"memcpy bandwidth measured in this run with \d+ threads: ([\d.]+) GB/s", line)
        if m:
            copy = float(m.group(1))
    return out, " ".join(os.path.relpath(c) if c == exe else c for c in cmd), copy


def main(argv=None):
    a = parse_args(argv)
    engines = [e for e in a.engines.split(",") if e]
    config = ref.Config(ep_world_size=a.world_size, moe_expert_num=a.experts, top_k=a.topk, hidden=a.hidden)
    case = ref.make_case(config, seed=1, bs=a.tokens)
    ranks = [Rank(a, case, r) for r in range(a.world_size)]
    moved = sum(k.want_d.expand_x.nbytes for k in ranks)
    print(f"python_ops: W={a.world_size} Bs={a.tokens} H={a.hidden} K={a.topk} M={a.experts}, bf16, no special or "
          f"shared experts; {a.layers} timed layers after {a.warmup} warm-up; dispatch moves {moved / 1e6:.1f} MB")  # fmt: skip
    print("time per call, slowest rank: best of the layers (as moedist run) / median over layers\n")
    print(f"  {'ranks':<10} {'caller':<18} {'dispatch ms':>19} {'combine ms':>19}")
    rows = []
    for engine in engines:
        ways = ["numpy out=", "numpy"] + (["torch_npu"] if engine == "threads" and has_torch() else [])
        for way in ways:
            s = run_threads(ranks, a, way) if engine == "threads" else run_processes(ranks, a, way)
            rows.append((engine, way, s))
            print(f"  {engine:<10} {'Python ' + way:<18} {fmt(s['dispatch'])} {fmt(s['combine'])}", flush=True)
        if not a.no_cpp:
            cpp, cmd, copy = run_cpp(a, "inproc" if engine == "threads" else "shm")
            py = rows[-len(ways)][2]
            print(f"  {engine:<10} {'C++':<18} {cpp['dispatch'] * 1e3:>8.3f}{'':11} {cpp['combine'] * 1e3:>8.3f}")
            print(f"  {'':<10} {'Python/C++':<18} {py['dispatch'][0] / cpp['dispatch']:>7.2f}x{'':11} "
                  f"{py['combine'][0] / cpp['combine']:>7.2f}x   (numpy out=, best)")  # fmt: skip
            print(f"  {'':<10} C++: {cmd}" + (f"  (memcpy {copy:.1f} GB/s)" if copy else ""), flush=True)
    if not a.no_check:
        print("\nmatch: the first layer's outputs of every rank and every Python caller are bit-identical to the "
              "reference model")  # fmt: skip
    return 0


def fmt(best_median):
    best, median = best_median
    return f"{best * 1e3:>8.3f} / {median * 1e3:>8.3f}"


def has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
