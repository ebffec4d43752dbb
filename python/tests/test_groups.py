"""Groups three ways (threads, shared memory between processes, torch.distributed), their names and lifetime, the
GIL released during calls, and no leak over many calls."""

import multiprocessing
import os
import threading
import time

import pytest

import moedist
from _rankutil import check_closed_form, dispatch_combine, problem, run_ranks
from _workers import BS, shm_rank, temp_init_file, torch_rank


def test_inprocess_group_by_threads():
    name = moedist.create_inprocess_group(4, timeout=20)
    try:
        assert name in moedist.live_groups()

        def rank(r):
            x, d, c = dispatch_combine(name, r, 4, BS)
            check_closed_form(r, 4, BS, x, d, c)

        run_ranks(4, rank)
    finally:
        assert moedist.destroy_group(name) is True
    assert name not in moedist.live_groups()
    assert moedist.destroy_group(name) is False
    x, ids, *_ = problem(0, 4, BS)
    with pytest.raises(moedist.Error, match=name):  # destroyed: the operators no longer find it
        moedist.dispatch_v3(x, ids, name, 4, 0, 4)


def test_group_names():
    name = moedist.create_inprocess_group(2, name="layer0_ep")
    try:
        assert name == "layer0_ep"
        with pytest.raises(moedist.Error, match="already exists") as e:
            moedist.create_inprocess_group(2, name="layer0_ep")
        assert e.value.code == 161002
        run_ranks(2, lambda r: check_closed_form(r, 2, BS, *dispatch_combine(name, r, 2, BS)))
    finally:
        moedist.destroy_group(name)
    with pytest.raises(moedist.Error, match="worldSize") as e:
        moedist.create_inprocess_group(0)
    assert e.value.code == 561002
    with pytest.raises(ValueError, match="timeout"):
        moedist.create_inprocess_group(2, timeout=-1)


def test_gil_is_released_while_ranks_wait():
    """Rank 0 enters dispatch first and can only finish once rank 1 (started 0.3 s later) has joined; meanwhile a
    third Python thread keeps counting. With the GIL held in the call, rank 1 and the counter would never run."""
    name = moedist.create_inprocess_group(2, timeout=20)
    counted = []
    stop = threading.Event()

    def counter():
        n = 0
        while not stop.is_set():
            n += 1
            time.sleep(0.001)
        counted.append(n)

    def rank(r):
        if r == 1:
            time.sleep(0.3)
        return dispatch_combine(name, r, 2, BS)

    t = threading.Thread(target=counter)
    t.start()
    try:
        start = time.monotonic()
        results = run_ranks(2, rank, timeout=30)  # the watchdog
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        t.join()
        moedist.destroy_group(name)
    for r, (x, d, c) in enumerate(results):
        check_closed_form(r, 2, BS, x, d, c)
    assert elapsed < 10
    assert counted[0] > 50, f"the counter thread ran {counted[0]} times in {elapsed:.2f} s"


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_no_leak_over_1000_calls():
    name = moedist.create_inprocess_group(2, timeout=20)
    inputs = [problem(r, 2, BS) for r in range(2)]
    barrier = threading.Barrier(2)

    def calls(r, n):
        x, ids, scales, residual, gamma = inputs[r]
        barrier.wait()
        for _ in range(n):
            d = moedist.dispatch_v3(x, ids, name, 2, r, 2)
            moedist.combine_add_rms_norm_v2(d.expand_x, ids, d.assist_info_for_combine, d.ep_recv_counts, scales,
                                            residual, gamma, name, 2, r, 2)  # fmt: skip

    try:
        run_ranks(2, lambda r: calls(r, 100))  # warm up: arenas, thread pools, numpy caches
        before = _rss_bytes()
        run_ranks(2, lambda r: calls(r, 1000), timeout=120)
        after = _rss_bytes()
    finally:
        moedist.destroy_group(name)
    # 1000 calls that leaked even their smallest output (an (A*128,) int32 array) would add megabytes
    assert after - before < 4 * 1024 * 1024, f"RSS grew by {(after - before) / 1024:.0f} KiB over 1000 calls"


def test_shm_group_by_processes_through_a_pipe():
    ctx = multiprocessing.get_context("spawn")
    world_size = 2
    unique_id = moedist.shm_unique_id()
    assert isinstance(unique_id, bytes) and len(unique_id) == 256
    pipes, procs = [], []
    for r in range(world_size):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=shm_rank, args=(child, world_size, r))
        p.start()
        parent.send(unique_id)
        pipes.append(parent)
        procs.append(p)
    try:
        replies = []
        for r, conn in enumerate(pipes):
            assert conn.poll(60), f"rank {r} sent nothing within 60 s"
            replies.append(conn.recv())
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    for r, (status, detail) in enumerate(replies):
        assert status == "ok", f"rank {r}: {detail}"
    assert replies[0][1] == replies[1][1] and replies[0][1].startswith("moedist_shm_")
    assert all(p.exitcode == 0 for p in procs)


def test_shm_group_rejects_other_bytes():
    with pytest.raises(ValueError, match="unique_id"):
        moedist.create_shm_group(b"not an id", 2, 0)
    with pytest.raises(TypeError, match="unique_id"):
        moedist.create_shm_group("text", 2, 0)


def test_shm_group_creation_times_out_naming_the_missing_members(monkeypatch):
    monkeypatch.setenv("HCCL_CONNECT_TIMEOUT", "1")
    with pytest.raises(moedist.Error, match=r"waiting for rank\(s\) 1, 2 to join") as e:
        moedist.create_shm_group(moedist.shm_unique_id(), 3, 0)  # ranks 1 and 2 never join
    assert e.value.code == 361001


def test_torch_multiprocessing_gloo_group():
    torch_mp = pytest.importorskip("torch.multiprocessing")
    init_file = temp_init_file()
    try:
        torch_mp.spawn(torch_rank, args=(2, init_file), nprocs=2, join=True)
    finally:
        if os.path.exists(init_file):
            os.unlink(init_file)


def test_moedist_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, moedist; assert 'torch' not in sys.modules, 'import moedist imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ)
