"""The ledger of a sweep directory: one committed SQLite row per finished run.

Only the driver writes it (WAL mode), one row per run as each comes back, so a driver killed at
any point loses only the runs in flight; the runner skips every run that has a row. Summaries
(the report, the ablation and suite tables) read their numbers back from these rows.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path


class Ledger:
    """One SQLite row per finished run (WAL; only the sweep driver writes)."""

    COLUMNS = ("id", "status", "message", "spec", "final", "wall_s", "versions", "worker", "finished")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, status TEXT, message TEXT, spec TEXT, "
                        "final TEXT, wall_s REAL, versions TEXT, worker TEXT, finished REAL)")
        self.db.commit()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def done_ids(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT id FROM runs")}

    def put(self, run_id: str, spec: dict, outcome: Mapping) -> None:
        """Commit one finished run: ``outcome`` has status, message, final, wall_s, versions, worker."""
        with self.db:  # committed whole, or rolled back (an interrupt half way leaves no open transaction)
            self.db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (run_id, outcome["status"], outcome.get("message", ""), json.dumps(spec),
                             json.dumps(dict(outcome.get("final", {}))), outcome.get("wall_s", float("nan")),
                             json.dumps(outcome.get("versions", {})), outcome.get("worker", ""), time.time()))

    def rows(self, ids: Iterable[str] | None = None) -> Iterator[dict]:
        """Every row (or those of ``ids``) in id order, with spec, final and versions decoded."""
        wanted = None if ids is None else set(ids)
        for values in self.db.execute(f"SELECT {', '.join(self.COLUMNS)} FROM runs ORDER BY id"):
            row = dict(zip(self.COLUMNS, values))
            if wanted is None or row["id"] in wanted:
                yield {**row, **{k: json.loads(row[k]) for k in ("spec", "final", "versions")}}

    def close(self) -> None:
        self.db.close()


def read_rows(out_dir: str | Path, ids: Iterable[str] | None = None) -> dict[str, dict]:
    """The ledger rows of the sweep directory ``out_dir`` (those of ``ids``, default all) by run id."""
    with Ledger(Path(out_dir) / "ledger.sqlite") as ledger:
        return {row["id"]: row for row in ledger.rows(ids)}
