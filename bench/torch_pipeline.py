#!/usr/bin/python3
"""Baseline for the benchmarks: the MoE dispatch -> expert -> combine pipeline in eager PyTorch.

What it is (bench/README.md, "The baselines"): the pipeline a competent engineer writes without moedist, with
torch.distributed over gloo, one process per rank, on the problem of a case directory written by
`moedist bench ... --write-case DIR` (bench/README.md, "Case files"):

- dispatch: the per-destination row counts go round with all_to_all_single, each rank packs its rows by destination
  rank (token order, then top-k slot order, one copy per (token, expert) pair) and exchanges them, with each row's
  expert id, with all_to_all_single and split sizes;
- expert (not timed): the stand-in FFN, out = bf16(float(row) * (1 + 0.125 * ((e % L) % 8)));
- combine: the rows go back the same way, then the fp32 weighted sum, the residual add and RmsNorm, written to bf16
  in the exact order and roundings of docs/operators/combine_add_rms_norm.md, "Numerics", so that the outputs are
  bit-identical to the reference model's, which the case holds.

Each iteration meets at a barrier before and after dispatch and combine (so that no rank's untimed work takes a core
from a peer still inside a timed call); each rank times its own dispatch and combine.
After the timed iterations the last iteration's xOut, rstdOut and yOut are checked bit for bit against the case.

Run it with Debian's interpreter (the one that sees python3-torch):

    /usr/bin/python3 bench/torch_pipeline.py --case DIR [--iterations 20] [--warmup 3] [--json FILE] [--no-check]
                                             [--port P]

It writes the runner JSON of bench/README.md ("Runner output", "runner": "torch_pipeline") to FILE or stdout and,
when the JSON goes to a file, prints "torch_pipeline: check pass|fail: ...|not checked" on stdout.
Exit status: 0 when the check passes or is skipped, 1 when it fails, 2 on bad usage or a bad case directory, 3 when a
rank process fails.
"""

import argparse
import datetime
import json
import os
import resource
import socket
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

F32 = torch.float32
BF16 = torch.bfloat16
CHUNK = 64  # ReduceSum's chunk, in elements (SPEC 3.4)


# ---------------------------------------------------------------------------------------------------------------
# The case directory
# ---------------------------------------------------------------------------------------------------------------

class CaseError(Exception):
    """A case directory that cannot be read (missing or malformed files)."""


def load_case_json(case_dir):
    path = os.path.join(case_dir, "case.json")
    try:
        with open(path) as f:
            case = json.load(f)
    except (OSError, ValueError) as e:
        raise CaseError(f"argument --case: cannot read {path}: {e}") from None
    if case.get("format") != "moedist-bench-case" or case.get("version") != 1:
        raise CaseError(f"argument --case: {path} is not a moedist-bench-case version 1")
    keys = ("world_size", "tokens", "hidden", "topk", "experts", "norm_eps", "rows_received", "dispatch_bytes",
            "combine_bytes")
    missing = [k for k in keys if k not in case]
    if missing:
        raise CaseError(f"argument --case: {path} lacks {', '.join(missing)}")
    w, m = case["world_size"], case["experts"]
    if w < 1 or m % w != 0 or len(case["tokens"]) != w or len(case["rows_received"]) != w:
        raise CaseError(f"argument --case: {path}: inconsistent world_size {w}, experts {m}, tokens, rows_received")
    return case


def read_raw(case_dir, rank, name, dtype, count):
    """One raw file of DIR/rank<r>/ as a numpy array of `count` elements."""
    path = os.path.join(case_dir, f"rank{rank}", name)
    try:
        a = np.fromfile(path, dtype=dtype)
    except OSError as e:
        raise CaseError(f"argument --case: cannot read {path}: {e}") from None
    if a.size != count:
        raise CaseError(f"argument --case: {path} holds {a.size} elements of {np.dtype(dtype).name}, "
                        f"expected {count}")
    return a


def bf16_tensor(a):
    """bf16 bits (uint16) as a torch bf16 tensor."""
    return torch.from_numpy(a.view(np.int16)).view(BF16)


def load_rank(case_dir, case, rank):
    """A rank's inputs and expected outputs, as torch tensors."""
    bs, h, k = case["tokens"][rank], case["hidden"], case["topk"]
    scales = read_raw(case_dir, rank, "expert_scales.bin", np.float32, bs * k)
    return {
        "x": bf16_tensor(read_raw(case_dir, rank, "x.bin", np.uint16, bs * h)).view(bs, h),
        "expert_ids": torch.from_numpy(read_raw(case_dir, rank, "expert_ids.bin", np.int32, bs * k)).view(bs, k),
        "expert_scales": torch.from_numpy(scales).view(bs, k),
        "residual_x": bf16_tensor(read_raw(case_dir, rank, "residual_x.bin", np.uint16, bs * h)).view(bs, h),
        "gamma": bf16_tensor(read_raw(case_dir, rank, "gamma.bin", np.uint16, h)),
        "expected": {
            "x_out": bf16_tensor(read_raw(case_dir, rank, "x_out.bin", np.uint16, bs * h)).view(bs, h),
            "rstd": torch.from_numpy(read_raw(case_dir, rank, "rstd.bin", np.float32, bs)),
            "y": bf16_tensor(read_raw(case_dir, rank, "y.bin", np.uint16, bs * h)).view(bs, h),
        },
    }


# ---------------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------------

def as_bytes(t):
    """A bf16 (n, H) tensor's bits as uint8 (n, 2H): gloo's all_to_all takes neither bf16 nor int16."""
    return t.view(torch.uint8)


def dispatch(x, expert_ids, experts_per_rank, world_size):
    """Sends one copy of a token's row per (token, expert) pair to the expert's rank.

    Returns the received rows (bf16, (R, H)), their expert ids (int32, (R,)) and what combine needs to send the
    rows back: the packing order and the split sizes both ways.
    """
    bs, k = expert_ids.shape
    flat_ids = expert_ids.reshape(-1)                    # (token, slot) pairs in token order, then slot order
    dest = torch.div(flat_ids, experts_per_rank, rounding_mode="floor").to(torch.int64)
    _, order = torch.sort(dest, stable=True)             # by destination rank, pair order kept within a rank
    send_counts = torch.bincount(dest, minlength=world_size)
    recv_counts = torch.empty_like(send_counts)
    dist.all_to_all_single(recv_counts, send_counts)
    send_splits, recv_splits = send_counts.tolist(), recv_counts.tolist()

    send_rows = x.index_select(0, torch.div(order, k, rounding_mode="floor"))
    recv_rows = torch.empty(sum(recv_splits), x.shape[1], dtype=BF16)
    dist.all_to_all_single(as_bytes(recv_rows), as_bytes(send_rows), recv_splits, send_splits)
    recv_ids = torch.empty(sum(recv_splits), dtype=torch.int32)
    dist.all_to_all_single(recv_ids, flat_ids.index_select(0, order), recv_splits, send_splits)
    return recv_rows, recv_ids, (order, send_splits, recv_splits)


def expert_ffn(rows, ids, experts_per_rank):
    """The stand-in FFN: out_h = bf16(float(row_h) * c), c = 1 + 0.125 * ((e % L) % 8), in fp32."""
    local = torch.remainder(ids, experts_per_rank)
    c = torch.remainder(local, 8).to(F32) * torch.tensor(0.125, dtype=F32) + torch.tensor(1.0, dtype=F32)
    return (rows.float() * c.unsqueeze(1)).to(BF16)


def reduce_sum_rows(sq):
    """ReduceSum of each row of an fp32 (Bs, H) tensor as the A3 "count" ReduceSum (SPEC 3.4).

    64-element chunks (a partial last chunk padded with zeros), each summed by an adjacent-pair binary tree, then
    the chunk sums added left to right.
    """
    bs, h = sq.shape
    chunks = -(-h // CHUNK)
    if chunks * CHUNK != h:
        sq = torch.cat([sq, torch.zeros(bs, chunks * CHUNK - h, dtype=F32)], dim=1)
    a = sq.view(bs, chunks, CHUNK)
    while a.shape[2] > 1:
        a = a[:, :, 0::2] + a[:, :, 1::2]
    sums = a[:, :, 0]
    ms = sums[:, 0]
    for c in range(1, chunks):
        ms = ms + sums[:, c]
    return ms


def combine(rows, route, expert_scales, residual_x, gamma, eps):
    """Sends the expert rows back and computes (xOut, rstdOut, yOut) as CombineAddRmsNormV2 (SPEC 3.3, 3.4)."""
    order, send_splits, recv_splits = route
    bs, k = expert_scales.shape
    h = rows.shape[1]
    back = torch.empty(bs * k, h, dtype=BF16)
    dist.all_to_all_single(as_bytes(back), as_bytes(rows), send_splits, recv_splits)
    ret = torch.empty_like(back).index_copy_(0, order, back).view(bs, k, h)  # (token, slot) order

    acc = torch.zeros(bs, h, dtype=F32)
    for slot in range(k):                                # ascending k, separate multiply and add
        acc = acc + ret[:, slot, :].float() * expert_scales[:, slot:slot + 1]
    x = acc + residual_x.float()
    x_out = x.to(BF16)

    inv = torch.tensor(1.0, dtype=F32) / torch.tensor(float(h), dtype=F32)
    ms = reduce_sum_rows((x * x) * inv)
    rstd = torch.tensor(1.0, dtype=F32) / torch.sqrt(ms + eps)
    y = ((x * rstd.unsqueeze(1)).to(BF16).float() * gamma.float()).to(BF16)
    return x_out, rstd, y


# ---------------------------------------------------------------------------------------------------------------
# One rank's process
# ---------------------------------------------------------------------------------------------------------------

def first_difference(rank, outputs, expected):
    """An empty string when the outputs are the expected bits, else where they first differ."""
    for name in ("x_out", "rstd", "y"):
        got, want = outputs[name], expected[name]
        int_type = torch.int16 if got.dtype == BF16 else torch.int32
        diff = (got.view(int_type) != want.view(int_type)).nonzero()
        if diff.numel():
            where = diff[0].tolist()
            token = where[0]
            column = f", column {where[1]}" if len(where) > 1 else ""
            bits = 4 if int_type == torch.int16 else 8
            mask = (1 << (4 * bits)) - 1
            g, w = got.view(int_type)[tuple(where)].item() & mask, want.view(int_type)[tuple(where)].item() & mask
            return f"rank {rank}, {name}, token {token}{column}: got 0x{g:0{bits}x}, expected 0x{w:0{bits}x}"
    return ""


def check_rank(rank, outputs, expected, rows_received, expected_rows):
    """An empty string when the rank received the case's row count and its outputs are the case's bits, else what
    differs first."""
    if rows_received != expected_rows:
        return f"rank {rank}, rows received: got {rows_received}, expected {expected_rows}"
    return first_difference(rank, outputs, expected)


def rank_main(rank, cfg):
    """One rank: load its part of the case, run warmup + timed iterations, check, gather to rank 0."""
    torch.set_num_threads(1)
    case = cfg["case"]
    w, m = case["world_size"], case["experts"]
    experts_per_rank = m // w
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{cfg['port']}", rank=rank, world_size=w,
                            timeout=datetime.timedelta(seconds=300))
    data = load_rank(cfg["case_dir"], case, rank)
    eps = torch.tensor(case["norm_eps"], dtype=F32)

    dispatch_s, combine_s = [], []
    for it in range(cfg["warmup"] + cfg["iterations"]):
        dist.barrier()
        t0 = time.perf_counter()
        rows, ids, route = dispatch(data["x"], data["expert_ids"], experts_per_rank, w)
        t1 = time.perf_counter()
        dist.barrier()  # as moedist run: no rank's expert work competes with a peer still in dispatch
        expert_rows = expert_ffn(rows, ids, experts_per_rank)
        dist.barrier()
        t2 = time.perf_counter()
        x_out, rstd, y = combine(expert_rows, route, data["expert_scales"], data["residual_x"], data["gamma"], eps)
        t3 = time.perf_counter()
        dist.barrier()
        if it >= cfg["warmup"]:
            dispatch_s.append(t1 - t0)
            combine_s.append(t3 - t2)

    check = None
    if cfg["check"]:
        check = check_rank(rank, {"x_out": x_out, "rstd": rstd, "y": y}, data["expected"], rows.shape[0],
                           case["rows_received"][rank])
    mine = {"dispatch_seconds": dispatch_s, "combine_seconds": combine_s,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "check": check}
    gathered = [None] * w if rank == 0 else None
    dist.gather_object(mine, gathered, dst=0)
    if rank == 0:
        with open(cfg["result_path"], "w") as f:
            json.dump(gathered, f)
    dist.barrier()
    dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------------
# The parent
# ---------------------------------------------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_args(argv):
    p = argparse.ArgumentParser(description="PyTorch (gloo) baseline of the MoE dispatch -> expert -> combine "
                                            "pipeline on a `moedist bench --write-case` directory (bench/README.md)")
    p.add_argument("--case", required=True, metavar="DIR", help="case directory (moedist bench --write-case DIR)")
    p.add_argument("--iterations", type=int, default=20, metavar="N", help="timed iterations (default 20)")
    p.add_argument("--warmup", type=int, default=3, metavar="n", help="untimed iterations first (default 3)")
    p.add_argument("--json", metavar="FILE", help="write the runner JSON here (default: stdout)")
    p.add_argument("--no-check", action="store_true", help="do not check the outputs against the case")
    p.add_argument("--port", type=int, default=0, metavar="P",
                   help="TCP port on 127.0.0.1 for the process group's rendezvous (default: a free one)")
    args = p.parse_args(argv)
    if args.iterations < 1:
        p.error(f"argument --iterations: must be at least 1, got {args.iterations}")
    if args.warmup < 0:
        p.error(f"argument --warmup: must be at least 0, got {args.warmup}")
    if not 0 <= args.port <= 65535:
        p.error(f"argument --port: must be in [0, 65535], got {args.port}")
    if not os.path.isdir(args.case):
        p.error(f"argument --case: {args.case} is not a directory")
    return p, args


def overall_check(per_rank, checked):
    if not checked:
        return "not checked"
    fails = [r["check"] for r in per_rank if r["check"]]
    return f"fail: {fails[0]}" if fails else "pass"


def runner_json(case, args, per_rank, check):
    tokens = case["tokens"]
    return {
        "runner": "torch_pipeline",
        "world_size": case["world_size"],
        "tokens": tokens[0] if len(set(tokens)) == 1 else tokens,
        "hidden": case["hidden"], "topk": case["topk"], "experts": case["experts"],
        "warmup": args.warmup, "iterations": args.iterations,
        "dispatch_seconds": [r["dispatch_seconds"] for r in per_rank],
        "combine_seconds": [r["combine_seconds"] for r in per_rank],
        "dispatch_bytes": case["dispatch_bytes"], "combine_bytes": case["combine_bytes"],
        "peak_rss_bytes": [r["peak_rss_bytes"] for r in per_rank],
        "check": check,
    }


def main(argv):
    parser, args = parse_args(argv)
    try:
        case = load_case_json(args.case)
        for r in range(case["world_size"]):  # every file present and of its size, before starting processes
            load_rank(args.case, case, r)
    except CaseError as e:
        parser.error(str(e))

    with tempfile.TemporaryDirectory(prefix="torch_pipeline.") as tmp:
        cfg = {"case": case, "case_dir": args.case, "port": args.port or free_port(), "warmup": args.warmup,
               "iterations": args.iterations, "check": not args.no_check,
               "result_path": os.path.join(tmp, "result.json")}
        try:
            mp.spawn(rank_main, args=(cfg,), nprocs=case["world_size"], join=True)
        except Exception as e:  # a rank raised or died: spawn has ended the others
            print(f"torch_pipeline: a rank process failed: {e}", file=sys.stderr)
            return 3
        with open(cfg["result_path"]) as f:
            per_rank = json.load(f)

    check = overall_check(per_rank, not args.no_check)
    text = json.dumps(runner_json(case, args, per_rank, check))
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
        print(f"torch_pipeline: check {check}")
    else:
        print(text)
    return 1 if check.startswith("fail") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
