"""Rank processes of the group tests (importable by spawned children: multiprocessing passes sys.path on)."""

import os
import tempfile

import moedist
from _rankutil import check_closed_form, dispatch_combine

BS = 3


def shm_rank(conn, world_size, rank):
    """A rank of a shared-memory group: gets the unique id from the pipe, runs the closed-form problem twice,
    sends back ("ok", group name) or ("error", message)."""
    try:
        unique_id = conn.recv()
        name = moedist.create_shm_group(unique_id, world_size, rank, timeout=30)
        for _ in range(2):
            x, d, c = dispatch_combine(name, rank, world_size, BS)
            check_closed_form(rank, world_size, BS, x, d, c)
        conn.send(("ok", name))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"{type(e).__name__}: {e}"))


def torch_rank(rank, world_size, init_file):
    """A rank under torch.multiprocessing with gloo: moedist.torch.get_group_name, then the closed-form problem."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        name = moedist.torch.get_group_name()
        assert name.startswith("moedist_shm_"), name
        assert moedist.torch.get_group_name() == name  # cached: no second collective
        names = [None] * world_size
        dist.all_gather_object(names, name)
        assert names == [name] * world_size  # the same group everywhere
        x, d, c = dispatch_combine(name, dist.get_rank(), world_size, BS)
        check_closed_form(rank, world_size, BS, x, d, c)
        # a second process group over the same ranks gets its own moedist group
        sub = dist.new_group(list(range(world_size)))
        sub_name = moedist.torch.get_group_name(sub)
        assert sub_name != name and moedist.torch.get_group_name(sub) == sub_name
        x, d, c = dispatch_combine(sub_name, dist.get_rank(sub), world_size, BS)
        check_closed_form(rank, world_size, BS, x, d, c)
        assert moedist.torch.destroy_group(sub) is True
        assert moedist.torch.destroy_group() is True
        assert name not in moedist.live_groups() and sub_name not in moedist.live_groups()
    finally:
        dist.destroy_process_group()


def temp_init_file():
    fd, path = tempfile.mkstemp(prefix="moedist_torch_init_")
    os.close(fd)
    os.unlink(path)  # the file store creates it
    return path
