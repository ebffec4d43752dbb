"""MPI groups under mpirun (2 processes): with mpi4py, without it (moedist initializes and finalizes MPI), over
chosen ranks of MPI_COMM_WORLD, and through moedist.torch.get_group_name when torch's ranks are MPI ranks."""

import os
import shlex
import shutil
import subprocess
import sys

import pytest

import moedist
from _workers import temp_init_file

pytestmark = pytest.mark.skipif(not moedist.mpi_available, reason="moedist was built without MPI")

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_mpi_worker.py")


def mpirun(mode, *args, np=2):
    mpiexec = os.environ.get("MOEDIST_MPIEXEC") or shutil.which("mpirun")
    if not mpiexec:
        pytest.skip("no mpirun")
    flags = os.environ.get("MOEDIST_MPIEXEC_FLAGS")
    if flags is None:  # outside CTest: Open MPI's flags for root and for more ranks than cores
        version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout
        flags = "--oversubscribe --allow-run-as-root" if "Open MPI" in version or "OpenRTE" in version else ""
    command = [mpiexec, "-n", str(np), *shlex.split(flags), sys.executable, WORKER, mode, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=os.environ)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited with {done.returncode}:\n{output}"
    for r in range(np):
        assert f"rank {r}: ok" in done.stdout, output


def test_mpi_group_from_mpi4py():
    pytest.importorskip("mpi4py")
    mpirun("mpi4py")


def test_mpi_group_without_mpi4py():
    mpirun("plain")


def test_mpi_group_over_chosen_ranks():
    mpirun("ranks")


def test_torch_group_name_uses_mpi_under_mpirun():
    pytest.importorskip("torch.distributed")
    init_file = temp_init_file()
    try:
        mpirun("torch", init_file)
    finally:
        if os.path.exists(init_file):
            os.unlink(init_file)
