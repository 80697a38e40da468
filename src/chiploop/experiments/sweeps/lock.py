"""One process at a time in a sweep directory: an exclusive ``flock`` on ``DIR/.chiploop.lock``.

The holder writes its process id into the lock file, so a second ``chiploop sweep`` (or ablate,
demo) on the same directory stops at once with one line that names the directory and the process
holding it, instead of training every run again and colliding in the ledger. The kernel releases
a ``flock`` when its last descriptor closes, so a holder that exits, crashes or is killed (even
with SIGKILL) leaves no stale lock behind; the file itself stays and is reused.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chiploop.specs import SpecError

LOCK_NAME = ".chiploop.lock"


class DirectoryBusy(SpecError):
    """Another process holds the lock of ``directory``."""

    def __init__(self, directory: str | Path, pid: str):
        self.directory, self.pid = str(directory), pid
        super().__init__("--out", self.directory, "a directory no other chiploop process is using")

    def _message(self) -> str:
        who = f"process {self.pid}" if self.pid else "another process"
        return (f"{self.directory} is in use by chiploop {who} (lock {Path(self.directory) / LOCK_NAME}); "
                "wait for it to finish, stop it, or give another --out")


@contextmanager
def exclusive(directory: str | Path) -> Iterator[Path]:
    """Hold the lock of ``directory`` (made if missing) for the ``with`` block; :class:`DirectoryBusy`
    at once if another process holds it. The descriptor is not inherited by processes started meanwhile."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise DirectoryBusy(directory, holder) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
