"""Groups: moedist communicators, named the way CANN names its HCCL groups.

Three ways to make one, each returning the group's name (a str), which every rank then passes to the operators as
group_ep (or group_tp) together with its rank id:

- create_inprocess_group(world_size): ranks are threads of this process (one call creates every rank);
- create_shm_group(unique_id, world_size, rank): ranks are processes of this host, started by any launcher; rank 0
  makes the id with shm_unique_id() and hands the bytes to the others over any channel;
- create_mpi_group(comm=None): ranks are MPI processes (when moedist is built with MPI).

A group lives until destroy_group(name) or the interpreter's exit. The options every constructor takes:
name (None: a generated name, the same on every member), timeout (seconds of every cross-rank wait; None: the
MOEDIST_TIMEOUT_MS / HCCL_EXEC_TIMEOUT default), kernel_threads (0: MOEDIST_KERNEL_THREADS, else 1) and kernels
("cpu" or "ref"; "": MOEDIST_KERNELS, else "cpu").
"""

import atexit

from . import _C

__all__ = [
    "create_inprocess_group",
    "shm_unique_id",
    "create_shm_group",
    "mpi_available",
    "create_mpi_group",
    "destroy_group",
    "live_groups",
]

mpi_available = bool(_C.mpi_available)


def create_inprocess_group(world_size, *, name=None, timeout=None, kernel_threads=0, kernels=""):
    """A group of `world_size` ranks that are threads of this process; returns its name.

    Each rank's thread calls the operators with group_ep=name and its own ep_rank_id."""
    return _C.create_inprocess_group(world_size, name, timeout, kernel_threads, kernels)


def shm_unique_id():
    """A new unique id (bytes) for create_shm_group: random, so nobody else can guess the group's segments."""
    return _C.shm_unique_id()


def create_shm_group(unique_id, world_size, rank, *, name=None, timeout=None, kernel_threads=0, kernels=""):
    """This process's rank `rank` of the shared-memory group of `world_size` processes named by `unique_id` (the
    bytes of shm_unique_id(), made by one member). Every member calls it; it waits for all of them (at most
    HCCL_CONNECT_TIMEOUT seconds, 120 by default). Returns the group's name ("moedist_shm_..." unless `name` is given;
    the same in every member)."""
    if not isinstance(unique_id, (bytes, bytearray)):
        raise TypeError(f"unique_id: expected bytes (from moedist.shm_unique_id()), got {type(unique_id).__name__}")
    return _C.create_shm_group(bytes(unique_id), world_size, rank, name, timeout, kernel_threads, kernels)


def create_mpi_group(comm=None, *, ranks=None, name=None, timeout=None, kernel_threads=0, kernels=""):
    """This process's rank of a group whose ranks are MPI processes; collective over them. Returns the group's name
    ("moedist_mpi_<n>" unless `name` is given, the same on every rank when all create their groups in one order).

    comm: an mpi4py communicator (rank i of the group is its rank i), or None: MPI_COMM_WORLD, or with `ranks` the
    processes of MPI_COMM_WORLD listed there (in that order; only they call). Without mpi4py, moedist initializes MPI
    itself (MPI_THREAD_MULTIPLE) when nobody has, and finalizes it at exit."""
    if not mpi_available:
        raise RuntimeError("create_mpi_group: this moedist was built without MPI (CMake found no MPI)")
    if comm is not None and ranks is not None:
        raise ValueError("create_mpi_group: give comm or ranks, not both")
    handle = None
    if comm is not None:
        if not hasattr(comm, "py2f"):
            raise TypeError(f"comm: expected an mpi4py communicator, got {type(comm).__name__}")
        handle = comm.py2f()
    if ranks is not None:
        ranks = [int(r) for r in ranks]
    return _C.create_mpi_group(handle, ranks, name, timeout, kernel_threads, kernels)


def destroy_group(name):
    """Drops this process's handles of group `name`; returns False when moedist created no such group here.

    With MPI, destroying a group is collective over its ranks on this host (it frees the shared window)."""
    return _C.destroy_group(name)


def live_groups():
    """The names of the groups created by this process and not destroyed yet."""
    return _C.live_groups()


def _at_exit():
    _C.destroy_all_groups()
    if mpi_available:
        _C.mpi_finalize_if_owned()


atexit.register(_at_exit)
