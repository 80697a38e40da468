"""Helpers for tests that start processes: free ports, /proc process trees, ledger rows, and a driver
killed with SIGKILL mid-way (every process it started must die with it)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: str | int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if (stat := _stat(pid)) is not None and stat[0] != "Z"}


def children(pid: int) -> set[int]:
    """Process ids of every live descendant of ``pid``."""
    parents = {int(p.name): stat[1] for p in Path("/proc").iterdir() if p.name.isdigit()
               and (stat := _stat(p.name)) is not None and stat[0] != "Z"}
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def ledger_rows(path: Path) -> dict[str, float]:
    """Run id -> the time its ledger row was committed (empty while there is no ledger yet)."""
    if not path.exists():
        return {}
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT id, finished FROM runs"))
    except sqlite3.OperationalError:  # the driver has not made the table yet
        return {}
    finally:
        db.close()


def kill_after_rows(command: list[str], ledger: Path, rows: int, timeout: float = 240) -> dict[str, float]:
    """Start ``command``, SIGKILL it once ``ledger`` has ``rows`` rows, and return the rows it had then.

    Fails the test if the driver had started no worker processes, or if any of them outlives it by
    a minute (those are then killed by process id, so none is left behind either way)."""
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while len(ledger_rows(ledger)) < rows and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = children(driver.pid)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        driver.kill()
    assert workers, "the driver had started worker processes"
    left = reap(workers, grace=60)
    assert not left, f"worker processes left behind after the driver was killed: {sorted(left)}"
    return ledger_rows(ledger)


def reap(pids: set[int], grace: float) -> set[int]:
    """Wait up to ``grace`` seconds for ``pids`` to exit, SIGKILL any still alive, and return those:
    a test asserts the result is empty, and leaves no process behind either way."""
    deadline = time.monotonic() + grace
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = alive(pids)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


# A process that has imported the CLI and its heavy dependencies once, then forks one child per
# command: each child runs `chiploop ARGV` in its own directory with its own stdout, stderr and exit
# code, in milliseconds instead of the seconds a fresh interpreter spends importing torch.
_ZYGOTE = r"""
import json, os, sys, traceback
import chiploop.experiments.cli as cli
import chiploop.experiments.spec, chiploop.experiments.sweeps.spec, chiploop.learning  # noqa: F401
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        rc = 1
        try:
            os.chdir(job["cwd"])
            for fd, name in ((1, "stdout"), (2, "stderr")):
                target = os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(target, fd)
                os.close(target)
            try:
                rc = cli.main(job["argv"])
            except SystemExit as stop:  # argparse: usage errors, --help, --version
                rc = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except BaseException:
                traceback.print_exc()
                rc = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc)
    _, status = os.waitpid(pid, 0)
    print(json.dumps(os.waitstatus_to_exitcode(status)), flush=True)
"""


class Forked:
    """`chiploop` commands in forked children of one pre-imported interpreter (see ``_ZYGOTE``)."""

    def __init__(self, env: dict | None = None, preload: tuple[str, ...] = ()):
        """``preload``: more modules the interpreter imports before it forks (e.g. pandas)."""
        code = "".join(f"import {name}\n" for name in preload) + _ZYGOTE
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def run(self, argv: list[str], cwd: Path, outputs: Path) -> subprocess.CompletedProcess:
        import json
        outputs.mkdir(parents=True, exist_ok=True)
        out, err = outputs / "stdout", outputs / "stderr"
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "stdout": str(out),
                                          "stderr": str(err)}) + "\n")
        self.proc.stdin.flush()
        code = json.loads(self.proc.stdout.readline())
        return subprocess.CompletedProcess(argv, code, out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()
