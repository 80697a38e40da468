"""Run results and how they reach disk: atomically, so a crash never leaves half a file."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def versions() -> dict[str, str]:
    """Versions of chiploop, torch and aihwkit, stored with every result (aihwkit's from its package
    metadata: reading it imports no simulator)."""
    import torch

    import chiploop
    return {"chiploop": chiploop.__version__, "torch": torch.__version__, "aihwkit": package_version("aihwkit")}


def package_version(name: str) -> str:
    """An installed distribution's version from its metadata, without importing it ("not installed" if absent)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text or bytes) to ``path`` through a temporary file in the same folder and
    ``os.replace``, so that a reader sees the old file or the new one, never half of one. The file
    gets the permissions any new file would (``0666`` less the umask), so collaborators on a shared
    file system can read results."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.chmod(fd, 0o666 & ~current_umask())  # mkstemp makes the file owner-only; a plain open would not
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def csv_text(rows: list[dict]) -> str:
    """Rows of dicts as CSV text, columns in order of first appearance."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


@dataclass
class Result:
    """What one training run produced: resolved spec, per-epoch history, final metrics."""

    spec: dict[str, Any]
    spec_hash: str
    status: str                      # "ok", "diverged", "interrupted" or "chip_lost"
    history: list[dict[str, float]]  # one row per epoch (epoch 0 = before training)
    final: dict[str, float]
    wall_s: float
    versions: dict[str, str] = field(default_factory=versions)
    diagnostics: list[dict] = field(default_factory=list)  # update probes: step, layer, part, bias, var, cos
    inference: list[dict] = field(default_factory=list)  # after training: time_s, compensation, repeat, test_acc
    ledger: dict[str, Any] = field(default_factory=dict)  # chip ledger: calls, bytes, pulses, energy per verb
    error: str = ""                  # why a run stopped early (status chip_lost: the verb, crossbar and step)

    def write(self, run_dir: str | Path) -> Path:
        """``result.json``, ``history.csv`` (and ``diagnostics.csv``, ``inference.csv``) in ``run_dir``,
        each atomically."""
        run_dir = Path(run_dir)
        write_atomic(run_dir / "result.json", json.dumps(asdict(self), indent=2, allow_nan=True) + "\n")
        write_atomic(run_dir / "history.csv", csv_text(self.history))
        if self.diagnostics:
            write_atomic(run_dir / "diagnostics.csv", csv_text(self.diagnostics))
        if self.inference:
            write_atomic(run_dir / "inference.csv", csv_text(self.inference))
        return run_dir

    @classmethod
    def read(cls, run_dir: str | Path) -> Result:
        """A run directory's ``result.json``; a missing or malformed one is a SpecError."""
        from chiploop.specs import SpecError

        file = Path(run_dir) / "result.json"
        try:
            return cls(**json.loads(file.read_text()))
        except OSError:
            raise SpecError("RUN_DIR", str(run_dir), "a run directory with result.json (written by `chiploop run`)",
                            str(file)) from None
        except (ValueError, TypeError) as err:
            raise SpecError("<file>", str(file), f"a chiploop result.json ({str(err).splitlines()[0]})",
                            str(file)) from None
