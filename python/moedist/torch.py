"""moedist groups over the ranks of a torch.distributed process group.

    import torch.distributed as dist, moedist
    dist.init_process_group("gloo", ...)              # one process per rank (torchrun, torch.multiprocessing, ...)
    group_ep = moedist.torch.get_group_name()          # collective over the process group the first time
    moedist.dispatch_v3(x, expert_ids, group_ep, dist.get_world_size(), dist.get_rank(), moe_expert_num)

Rank i of the moedist group is rank i of the process group, so the rank order is torch's: pass
dist.get_rank(process_group) as ep_rank_id. The first call for a process group is collective over it: rank 0 makes a
shared-memory unique id and broadcasts it with broadcast_object_list (the group's backend must broadcast CPU objects:
gloo, or mpi), and every member creates its rank of a shared-memory group (all ranks on one host). When moedist is
built with MPI and the processes are MPI ranks (started by mpirun, torch's global rank equal to the MPI rank), the
MPI engine is used instead, over the same processes, through mpi4py when it is importable. Later calls return the
cached name. torch is imported by these functions only, never by `import moedist`.
"""

import os

from . import _groups

__all__ = ["get_group_name", "destroy_group"]

_names = {}  # id(process group) -> (process group, moedist group name); the group object is kept alive with it

_MPI_ENV = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


def get_group_name(process_group=None, *, timeout=None, kernel_threads=0, kernels=""):
    """The name of the moedist group over the ranks of `process_group` (None: the default group), created the first
    time (collective over the process group) and cached afterwards. timeout, kernel_threads, kernels: as for
    moedist.create_inprocess_group, used when the group is created."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("moedist.torch.get_group_name: torch.distributed is not initialized (init_process_group)")
    pg = process_group if process_group is not None else dist.distributed_c10d._get_default_group()
    cached = _names.get(id(pg))
    if cached is not None and cached[0] is pg:
        return cached[1]
    options = dict(timeout=timeout, kernel_threads=kernel_threads, kernels=kernels)
    ranks = _global_ranks(dist, pg)
    if _groups.mpi_available and _is_mpi_job():
        name = _create_mpi(dist, ranks, options)
    else:
        name = _create_shm(dist, pg, ranks, options)
    _names[id(pg)] = (pg, name)
    return name


def destroy_group(process_group=None):
    """Destroys the moedist group get_group_name made for `process_group` (None: the default group); False when
    there is none. With the MPI engine this is collective over the group's ranks on each host."""
    import torch.distributed as dist

    pg = process_group if process_group is not None else dist.distributed_c10d._get_default_group()
    cached = _names.pop(id(pg), None)
    if cached is None:
        return False
    return _groups.destroy_group(cached[1])


def _global_ranks(dist, pg):
    """The global ranks of the process group's ranks 0, 1, ... (torch 1.13 and 2.x)."""
    size = dist.get_world_size(pg)
    get_global = getattr(dist, "get_global_rank", None) or dist.distributed_c10d._get_global_rank
    if pg is dist.distributed_c10d._get_default_group():
        return list(range(size))
    return [get_global(pg, r) for r in range(size)]


def _is_mpi_job():
    return any(v in os.environ for v in _MPI_ENV)


def _create_shm(dist, pg, ranks, options):
    rank = dist.get_rank(pg)
    box = [_groups.shm_unique_id() if rank == 0 else None]
    dist.broadcast_object_list(box, src=ranks[0], group=pg)
    return _groups.create_shm_group(box[0], len(ranks), rank, **options)


def _create_mpi(dist, ranks, options):
    try:
        from mpi4py import MPI
    except ImportError:
        MPI = None
    if MPI is not None:
        world = MPI.COMM_WORLD
        mpi_rank = world.Get_rank()
    else:
        mpi_rank = _groups._C.mpi_world()[0]
    if mpi_rank != dist.get_rank():
        raise RuntimeError(
            f"moedist.torch.get_group_name: torch's global rank {dist.get_rank()} is not the MPI rank {mpi_rank}; "
            "start the processes with mpirun and init_process_group with rank = the MPI rank"
        )
    whole = ranks == list(range(world.Get_size() if MPI is not None else _groups._C.mpi_world()[1]))
    if MPI is None:
        return _groups.create_mpi_group(ranks=None if whole else ranks, **options)
    if whole:
        return _groups.create_mpi_group(world, **options)
    sub = world.Create_group(world.Get_group().Incl(ranks))
    try:
        return _groups.create_mpi_group(sub, **options)
    finally:
        sub.Free()
