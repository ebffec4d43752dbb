"""One rank of the MPI tests (started by test_mpi.py under mpirun): builds an MPI group one way, runs the closed-form
problem, prints "rank <r>: ok". Usage: _mpi_worker.py mpi4py|plain|ranks|torch"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

mode = sys.argv[1]
if mode != "mpi4py":
    sys.modules["mpi4py"] = None  # make `import mpi4py` fail: moedist must manage MPI itself

import moedist  # noqa: E402
from _rankutil import check_closed_form, dispatch_combine  # noqa: E402

BS = 3


def run(name, rank, world_size):
    for _ in range(2):
        x, d, c = dispatch_combine(name, rank, world_size, BS)
        check_closed_form(rank, world_size, BS, x, d, c)


if mode == "mpi4py":
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    name = moedist.create_mpi_group(world, timeout=30)
    assert name.startswith("moedist_mpi_"), name
    run(name, rank, size)
    # a sub-communicator in reversed order: rank i of the group is process size-1-i
    sub = world.Split(0, size - 1 - rank)
    rname = moedist.create_mpi_group(sub, name="reversed", timeout=30)
    run(rname, sub.Get_rank(), size)
    sub.Free()
elif mode == "plain":
    assert not moedist._C.mpi_initialized()
    name = moedist.create_mpi_group(timeout=30)  # initializes MPI itself
    rank, size = moedist._C.mpi_world()
    run(name, rank, size)
elif mode == "ranks":
    rank, size = moedist._C.mpi_world()
    order = list(reversed(range(size)))
    name = moedist.create_mpi_group(ranks=order, timeout=30)
    run(name, order.index(rank), size)
elif mode == "torch":
    import torch.distributed as dist

    rank, size = int(os.environ["OMPI_COMM_WORLD_RANK"]), int(os.environ["OMPI_COMM_WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"file://{sys.argv[2]}", rank=rank, world_size=size)
    name = moedist.torch.get_group_name(timeout=30)
    assert name.startswith("moedist_mpi_"), name  # the MPI engine, since these are MPI ranks
    assert moedist.torch.get_group_name() == name
    run(name, rank, size)
    moedist.torch.destroy_group()
    dist.destroy_process_group()
else:
    raise SystemExit(f"unknown mode {mode}")

print(f"rank {rank}: ok", flush=True)
