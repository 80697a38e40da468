"""Device-spec sweeps: deterministic expansion of a sweep spec into runs, and a resumable ledger.

A sweep spec (YAML) is a base experiment plus ``grid`` (dotted key -> list; the product),
``zip`` (dotted key -> list; varied together), ``random`` (dotted key -> distribution, ``samples``
draws from a generator seeded by ``random_seed``) and ``seeds``. A run's identity is the hash of
its fully resolved ExperimentSpec, so the same sweep gives the same ids in every process, and a
changed sweep adds only the runs that are new. The sweep driver alone writes the SQLite ledger
(WAL), one committed row per finished run; re-running skips every run that has a row.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import random
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chiploop.experiments.engine import Executor, SerialExecutor
from chiploop.experiments.results import write_atomic
from chiploop.experiments.spec import ExperimentSpec, experiment_from_data, set_override
from chiploop.specs import Spec, SpecError, from_mapping, load_yaml, spec_field, to_plain


@dataclass(frozen=True)
class Distribution(Spec):
    """One random axis: ``uniform`` / ``log_uniform`` on [low, high], or ``choice`` among ``values``."""

    kind: Literal["uniform", "log_uniform", "choice"] = spec_field("uniform", doc="distribution")
    low: float = spec_field(0.0, doc="lower end (uniform, log_uniform)")
    high: float = spec_field(1.0, doc="upper end (uniform, log_uniform)")
    values: tuple[Any, ...] = spec_field((), doc="the choices (choice)")

    def check(self) -> None:
        if self.kind == "choice" and not self.values:
            raise SpecError("values", [], "a non-empty list for kind choice")
        if self.kind != "choice" and not self.low < self.high:
            raise SpecError("high", self.high, f"greater than low ({self.low})")
        if self.kind == "log_uniform" and self.low <= 0:
            raise SpecError("low", self.low, "0 < value for kind log_uniform")

    def draw(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return self.values[rng.randrange(len(self.values))]
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))


@dataclass(frozen=True)
class SweepSpec(Spec):
    """A base experiment and the axes it is varied along."""

    base: dict = spec_field(default_factory=dict, doc="the experiment every run starts from")
    grid: dict = spec_field(default_factory=dict, doc="dotted key -> list of values; all combinations")
    zip: dict = spec_field(default_factory=dict, doc="dotted key -> list of values, varied together")
    random: dict = spec_field(default_factory=dict, doc="dotted key -> {kind, low, high, values}")
    samples: int = spec_field(1, doc="random draws (when `random` is set)", low=1, high=100000)
    random_seed: int = spec_field(0, doc="seed of the random draws", low=0)
    seeds: tuple[int, ...] = spec_field((0,), doc="experiment seeds every configuration runs with")

    def check(self) -> None:
        for name in ("grid", "zip"):
            for key, values in getattr(self, name).items():
                if not isinstance(values, list) or not values:
                    raise SpecError(f"{name}.{key}", values, "a non-empty list of values")
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            raise SpecError("zip", {k: len(v) for k, v in self.zip.items()}, "lists of one common length")
        for key, value in self.random.items():
            from_mapping(Distribution, value, prefix=f"random.{key}.")


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML; ``base`` may be a mapping or a path to an experiment YAML."""
    data = load_yaml(path)
    if isinstance(data.get("base"), str):
        data = {**data, "base": load_yaml(Path(path).parent / data["base"])}
    return from_mapping(SweepSpec, data, source=str(path))


def expand(sweep: SweepSpec, source: str = "<sweep>") -> list[ExperimentSpec]:
    """Every run of the sweep, validated, in a deterministic order: grid x zip x random x seeds."""
    grid_keys = list(sweep.grid)
    grid = [dict(zip(grid_keys, combo)) for combo in itertools.product(*(sweep.grid[k] for k in grid_keys))]
    n_zip = len(next(iter(sweep.zip.values()))) if sweep.zip else 1
    zipped = [{k: v[i] for k, v in sweep.zip.items()} for i in range(n_zip)]
    rng = random.Random(sweep.random_seed)
    axes = {k: from_mapping(Distribution, v) for k, v in sweep.random.items()}
    drawn = [{k: d.draw(rng) for k, d in axes.items()} for _ in range(sweep.samples if axes else 1)]
    specs = []
    for g, z, r, seed in itertools.product(grid, zipped, drawn, sweep.seeds):
        data = dict(sweep.base)
        for key, value in {**g, **z, **r, "seed": seed}.items():
            data = set_override(data, key, value)
        specs.append(experiment_from_data(data, source=f"{source}: run {len(specs)}"))
    return specs


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

    def done_ids(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT id FROM runs")}

    def put(self, run_id: str, spec: dict, outcome: Mapping) -> None:
        """Commit one finished run: ``outcome`` has status, message, final, wall_s, versions, worker."""
        self.db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (run_id, outcome["status"], outcome.get("message", ""), json.dumps(spec),
                         json.dumps(dict(outcome.get("final", {}))), outcome.get("wall_s", float("nan")),
                         json.dumps(outcome.get("versions", {})), outcome.get("worker", ""), time.time()))
        self.db.commit()

    def rows(self) -> Iterator[dict]:
        for values in self.db.execute(f"SELECT {', '.join(self.COLUMNS)} FROM runs ORDER BY id"):
            row = dict(zip(self.COLUMNS, values))
            yield {**row, **{k: json.loads(row[k]) for k in ("spec", "final", "versions")}}

    def close(self) -> None:
        self.db.close()


def swept_keys(sweep: SweepSpec) -> list[str]:
    """The dotted keys the sweep varies (and ``seed``): the columns of its results table."""
    return [*sweep.grid, *sweep.zip, *sweep.random, "seed"]


def _lookup(data: Mapping, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, Mapping) else None
    return data


def run_one(job: tuple[dict, str]) -> dict:
    """Train one run (in a worker process or in this one) into its run dir; never raises.

    Returns status (``ok``, ``diverged`` or ``failed``), message, final metrics (with the
    diagnostics summary when probed), wall seconds, versions and which worker ran it.
    """
    from chiploop.experiments.results import versions
    from chiploop.experiments.train import train

    spec_data, run_dir = job
    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:  # train() sets torch's threads from the spec (1 unless asked), as the workers need
        result = train(experiment_from_data(spec_data), run_dir, progress=False)
        return {"status": result.status, "final": result.final, "wall_s": result.wall_s,
                "versions": result.versions, "worker": worker}
    except Exception as err:  # a crashing run is a result too; the sweep goes on
        return {"status": "failed", "message": f"{type(err).__name__}: {err}", "final": {},
                "wall_s": time.perf_counter() - start, "versions": versions(), "worker": worker}


def run_sweep(sweep: SweepSpec, out_dir: str | Path, source: str = "<sweep>", progress: bool = True,
              executor: Executor | None = None) -> dict:
    """Train every run without a ledger row on ``executor`` (default: serial); returns counts.

    Each finished run is committed to ``out_dir/ledger.sqlite`` as it comes back, so a sweep killed
    at any point loses only the runs in flight, and re-running it does only what is missing. A run
    that raises, or that the engine loses, is recorded as ``failed`` with its message; the sweep
    goes on. ``out_dir/results.parquet`` is exported from the ledger at the end.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    specs = expand(sweep, source)
    ledger = Ledger(out_dir / "ledger.sqlite")
    try:
        write_atomic(out_dir / "sweep.json", json.dumps({"source": source, "swept": swept_keys(sweep),
                                                          "sweep": to_plain(sweep)}, indent=2) + "\n")
        done = ledger.done_ids()
        todo = {s.spec_hash(): s for s in specs if s.spec_hash() not in done}
        runs_dir = out_dir.resolve() / "runs"  # absolute: workers may run in another directory
        jobs = [(s.to_dict(), str(runs_dir / run_id)) for run_id, s in todo.items()]
        if jobs:  # a finished sweep starts no engine; it only re-exports the table
            bar = tqdm(total=len(jobs), desc="sweep", disable=not progress)
            with executor or SerialExecutor() as engine, bar:
                for (spec_data, run_dir), outcome in engine.imap_unordered(run_one, jobs):
                    if isinstance(outcome, BaseException):
                        outcome = {"status": "failed", "message": f"{type(outcome).__name__}: {outcome}"}
                    ledger.put(Path(run_dir).name, spec_data, outcome)
                    bar.update()
        export_table(ledger, sweep, out_dir / "results.parquet", {s.spec_hash() for s in specs})
    finally:
        ledger.close()
    return {"runs": len(specs), "already_done": len(specs) - len(todo), "ran": len(todo)}


def label(value: Any) -> Any:
    """A table cell for a swept value: numbers and strings as they are; a rule as ``name(k=v, ...)``;
    other mappings and lists as compact JSON."""
    if isinstance(value, Mapping) and set(value) == {"name", "options"}:
        options = ", ".join(f"{k}={v}" for k, v in sorted(value["options"].items()))
        return f"{value['name']}({options})" if options else value["name"]
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def export_table(ledger: Ledger, sweep: SweepSpec, path: str | Path, ids: set[str] | None = None):
    """``results.parquet`` (atomically): one row per run of the sweep (``ids``; default every ledger
    row): the device preset and the rule by name (also when they are swept), every swept field a
    column, then status, message and metrics (a metric named like a swept field, such as the
    schedule's last ``lr``, becomes ``final_lr``)."""
    import pandas as pd

    rows = []
    for row in ledger.rows():
        if ids is not None and row["id"] not in ids:
            continue
        fixed = {"device": row["spec"]["device"].get("preset") or "custom", "rule": label(row["spec"]["rule"])}
        swept = {k: fixed[k] if k in fixed else label(_lookup(row["spec"], k)) for k in swept_keys(sweep)}
        final = {f"final_{k}" if k in swept or k in fixed else k: v for k, v in row["final"].items()}
        rows.append({"id": row["id"], **fixed, **swept, "status": row["status"], "message": row["message"],
                     **final, "wall_s": row["wall_s"], "worker": row["worker"]})
    frame = pd.DataFrame(rows)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    write_atomic(path, buf.getvalue())
    return frame
