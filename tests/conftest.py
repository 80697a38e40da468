import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from processes import alive, children, free_port


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def spec_file(tmp_path):
    """Write a YAML text to a file in tmp_path and return its path."""
    def write(text: str, name: str = "spec.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


@pytest.fixture
def loopback_cluster(tmp_path):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1, stopped by process id."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp_path}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              **quiet)]
    procs += [subprocess.Popen([dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                                "--no-dashboard"], **quiet) for _ in range(2)]
    try:
        from distributed import Client
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        everything = set().union(*(children(p.pid) | {p.pid} for p in procs))
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in alive(everything):
            os.kill(pid, signal.SIGKILL)
