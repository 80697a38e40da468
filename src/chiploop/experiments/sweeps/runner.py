"""Train a list of experiment specs into one directory: ledger, executor, results table.

Every way chiploop trains many runs goes through :func:`run_study`: a sweep spec's expansion
(:func:`sweep_study`), an ablation (``ablation.py``), a suite file such as the demo
(``suite.py``), and the grids of ``experiments/tune_lr.py`` and ``experiments/injected_grid.py``.
A :class:`Study` is the list of (run id, spec) plus the spec fields that tell its runs apart.
A sweep directory holds::

    ledger.sqlite    one committed row per finished run: a re-run does only what is missing
    sweep.json       what made the runs: kind, source, the columns that tell them apart, its spec
    runs/ID/         each run's result.json, history.csv, weights.npz (and the probes' files), and
                     outcome.json (its ledger row, written last: the run dir is complete)
    results.parquet  one row per run of the study, exported from the ledger (``chiploop report``)
    .chiploop.lock   held (flock) by the one process working in the directory

An interrupt (Ctrl-C; SIGTERM through the CLI) stops the study cleanly: the results that had come
in and every run a worker finished while the engine was stopping (its ``outcome.json``) are
committed, the engine is closed, and :class:`StudyInterrupted` is raised; re-running does the rest.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chiploop.experiments.results import write_atomic
from chiploop.experiments.spec import ExperimentSpec, experiment_from_data
from chiploop.experiments.sweeps.engine import Executor, SerialExecutor
from chiploop.experiments.sweeps.ledger import Ledger
from chiploop.experiments.sweeps.population import OUTCOME, is_population, members, run_population
from chiploop.experiments.sweeps.population import jobs as population_jobs
from chiploop.experiments.sweeps.lock import exclusive
from chiploop.experiments.sweeps.spec import SweepSpec, expand, swept_keys
from chiploop.specs import to_plain

STATUSES = ("ok", "diverged", "failed")


@dataclass(frozen=True)
class Study:
    """Runs to train into one directory, and the spec fields that tell them apart in its table."""

    runs: tuple[tuple[str, ExperimentSpec], ...]  # (run id, spec): the id names the ledger row and run dir
    columns: tuple[str, ...] = ("seed",)  # dotted spec keys, one results.parquet column each
    categorical: tuple[str, ...] = ()     # columns that name configurations even when numeric (zip axes)
    kind: str = "sweep"                   # what made the runs: sweep, ablation, suite (progress bar, sweep.json)
    source: str = "<study>"               # the file it came from, for messages and the report's title
    spec: dict = field(default_factory=dict)  # the producer's own spec, stored in sweep.json
    population: bool = True  # runs that differ only in seed train as one population (sweeps/population.py)

    def __post_init__(self) -> None:
        seen: dict[str, ExperimentSpec] = {}
        for run_id, spec in self.runs:
            if seen.setdefault(run_id, spec) != spec:
                raise ValueError(f"run id {run_id} names two different specs")

    @property
    def ids(self) -> list[str]:
        """The distinct run ids, in order."""
        return list(dict.fromkeys(run_id for run_id, _ in self.runs))


def by_hash(specs: Iterable[ExperimentSpec]) -> tuple[tuple[str, ExperimentSpec], ...]:
    """(spec hash, spec) for each spec: the run's identity is its fully resolved spec, so the same
    list gives the same ids in every process and a changed spec is a new run."""
    return tuple((s.spec_hash(), s) for s in specs)


def sweep_study(sweep: SweepSpec, source: str = "<sweep>", overrides: Iterable[str] = ()) -> Study:
    """A sweep spec's expansion as a study: its swept keys are the columns, its zip axes categorical;
    ``overrides`` (``--set KEY=VALUE``) change the base experiment of every run."""
    overrides = list(overrides)
    spec = {**to_plain(sweep), "set": overrides} if overrides else to_plain(sweep)
    return Study(by_hash(expand(sweep, source, overrides)), tuple(swept_keys(sweep)), tuple(sweep.zip), "sweep",
                 source, spec, sweep.population)


def run_dir(out_dir: str | Path, run_id: str) -> Path:
    """Where run ``run_id`` of the sweep directory ``out_dir`` writes its files."""
    return Path(out_dir) / "runs" / run_id


def run_one(job: tuple[dict, str]) -> dict:
    """Train one run (in a worker process or in this one) into its run dir; never raises.

    Returns status (``ok``, ``diverged`` or ``failed``), message, final metrics (with the
    diagnostics summary when probed), wall seconds, versions and which worker ran it.
    """
    from chiploop.experiments.results import versions
    from chiploop.experiments.train import train

    spec_data, path = job
    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:  # train() sets torch's threads from the spec (1 unless asked), as the workers need
        (Path(path) / OUTCOME).unlink(missing_ok=True)  # from an earlier attempt that was never committed
        result = train(experiment_from_data(spec_data), path, progress=False)
        outcome = {"status": result.status, "final": result.final, "wall_s": result.wall_s,
                   "versions": result.versions, "worker": worker}
        write_atomic(Path(path) / OUTCOME, json.dumps(outcome) + "\n")  # the run dir is complete
        return outcome
    except Exception as err:  # a crashing run is a result too; the sweep goes on
        return {"status": "failed", "message": f"{type(err).__name__}: {err}", "final": {},
                "wall_s": time.perf_counter() - start, "versions": versions(), "worker": worker}


def run_item(item: Any) -> Any:
    """An executor's item: one run (:func:`run_one`: its outcome) or a population of runs
    (:func:`~chiploop.experiments.sweeps.population.run_population`: one outcome per run)."""
    return run_population(item) if is_population(item) else run_one(item)


def run_study(study: Study, out_dir: str | Path, progress: bool = True, executor: Executor | None = None,
              population: bool | None = None) -> dict:
    """Train every run of ``study`` without a ledger row on ``executor`` (default: serial); returns
    counts: runs, already_done, ran, and ok, diverged, failed over every run in the ledger.

    Each finished run is committed to ``out_dir/ledger.sqlite`` as it comes back, so a driver killed
    at any point loses only the runs in flight, and re-running does only what is missing. A run that
    raises, or that the engine loses, is recorded as ``failed`` with its message; the others go on.
    ``out_dir/results.parquet`` is exported from the ledger at the end. One process at a time works
    in ``out_dir`` (:func:`~chiploop.experiments.sweeps.lock.exclusive`: another gets DirectoryBusy).
    An interrupt commits what finished, stops the engine and raises :class:`StudyInterrupted`.
    Runs that differ only in seed train as one population (``population``, default the study's own
    switch; how runs are grouped: :mod:`~chiploop.experiments.sweeps.population`), each still with
    its own run dir and ledger row.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    specs = dict(study.runs)
    with exclusive(out_dir), Ledger(out_dir / "ledger.sqlite") as ledger:
        write_atomic(out_dir / "sweep.json", json.dumps({
            "kind": study.kind, "source": study.source, "swept": list(study.columns),
            "categorical": list(study.categorical), "spec": study.spec}, indent=2) + "\n")
        done = ledger.done_ids()
        todo = [run_id for run_id in specs if run_id not in done]
        root = out_dir.resolve()  # absolute: workers may run in another directory
        jobs = population_jobs(specs, todo, root, study.population if population is None else population)

        def record(item: Any, outcome: Any) -> None:
            runs = members(item)
            if isinstance(outcome, BaseException):
                outcome = {"status": "failed", "message": f"{type(outcome).__name__}: {outcome}"}
            outcomes = outcome if is_population(item) and isinstance(outcome, list) else [outcome] * len(runs)
            for job, one in zip(runs, outcomes):
                ledger.put(Path(job[1]).name, job[0], one)

        if jobs:  # a finished study starts no engine; it only re-exports the table
            bar = tqdm(total=len(todo), desc=study.kind, disable=not progress)
            engine = executor or SerialExecutor()
            try:
                with engine, bar:
                    try:
                        for job, outcome in engine.imap_unordered(run_item, jobs):
                            record(job, outcome)
                            bar.update(len(members(job)))
                    except KeyboardInterrupt:
                        _hold_signals()  # stopping is not interrupted: it keeps what finished
                        for job, outcome in engine.finished():
                            record(job, outcome)
                        raise
            except KeyboardInterrupt:
                _hold_signals()
                try:
                    committed = ledger.done_ids()
                    for run_id in todo:  # finished by a worker while the engine was stopping
                        path = run_dir(root, run_id) / OUTCOME
                        if run_id not in committed and path.is_file():
                            ledger.put(run_id, specs[run_id].to_dict(), json.loads(path.read_text()))
                    export_table(ledger, study, out_dir / "results.parquet")
                    counts = _counts(ledger, study, todo)
                finally:
                    _release_signals()
                raise StudyInterrupted(out_dir, counts) from None
            finally:
                _release_signals()
        export_table(ledger, study, out_dir / "results.parquet")
        return _counts(ledger, study, todo)


def _counts(ledger: Ledger, study: Study, todo: list[str]) -> dict:
    """runs, already_done, ran (of ``todo``, those now in the ledger), and the ledger's ok, diverged, failed."""
    statuses = {row["id"]: row["status"] for row in ledger.rows(study.ids)}
    counts = {"runs": len(study.ids), "already_done": len(study.ids) - len(todo),
              "ran": sum(run_id in statuses for run_id in todo)}
    return counts | {s: sum(v == s for v in statuses.values()) for s in STATUSES}


class StudyInterrupted(KeyboardInterrupt):
    """A study stopped by an interrupt; every run that finished is in ``out_dir``'s ledger."""

    def __init__(self, out_dir: Path, counts: dict):
        self.out_dir, self.counts = out_dir, counts
        finished = sum(counts[s] for s in STATUSES)
        super().__init__(f"interrupted; {finished} of {counts['runs']} runs are in {out_dir / 'ledger.sqlite'} "
                         f"({status_text(counts)}); run the same command again to do the other "
                         f"{counts['runs'] - finished}")


_HELD: list = []  # signal handlers put aside while a stopped study commits and closes


def _hold_signals() -> None:
    """Ignore SIGINT and SIGTERM (a second Ctrl-C must not lose the runs being committed); main thread only."""
    if threading.current_thread() is threading.main_thread() and not _HELD:
        _HELD.extend((sig, signal.signal(sig, signal.SIG_IGN)) for sig in (signal.SIGINT, signal.SIGTERM))


def _release_signals() -> None:
    while _HELD:
        sig, handler = _HELD.pop()
        signal.signal(sig, handler)


def status_text(counts: dict) -> str:
    """``10 ok, 1 diverged, 1 failed``."""
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES)


def plan_lines(study: Study, out_dir: str | Path) -> list[str]:
    """``chiploop sweep --dry-run``: per run its id, ``done`` or ``todo`` (the ledger in ``out_dir``)
    and the values of the fields the study varies; then the totals."""
    ledger_path = Path(out_dir) / "ledger.sqlite"
    statuses: dict[str, str] = {}
    if ledger_path.is_file():
        with Ledger(ledger_path) as ledger:
            statuses = {row["id"]: row["status"] for row in ledger.rows(study.ids)}
    specs = dict(study.runs)
    lines = []
    for run_id in study.ids:
        data = specs[run_id].to_dict()
        values = "  ".join(f"{key}={label(_lookup(data, key))}" for key in study.columns)
        state = f"done ({statuses[run_id]})" if run_id in statuses else "todo"
        lines.append(f"{run_id}  {state:<15} {values}")
    lines.append(f"{len(study.ids)} runs: {len(statuses)} done, {len(study.ids) - len(statuses)} to do "
                 f"(in {Path(out_dir)})")
    return lines


def counts_text(counts: dict, executor: Executor | None = None) -> str:
    """``12 runs: 3 already done, 9 ran on serial; 10 ok, 1 diverged, 1 failed``: what :func:`run_study`
    did, on which engine, and how the study's runs ended."""
    engine = executor.name if executor is not None else SerialExecutor.name
    text = f"{counts['runs']} runs: {counts['already_done']} already done, {counts['ran']} ran on {engine}"
    return text + (f"; {status_text(counts)}" if "ok" in counts else "")


def run_sweep(sweep: SweepSpec, out_dir: str | Path, source: str = "<sweep>", progress: bool = True,
              executor: Executor | None = None) -> dict:
    """Train a sweep spec's runs into ``out_dir`` (see :func:`run_study`); returns the counts."""
    return run_study(sweep_study(sweep, source), out_dir, progress, executor)


def label(value: Any) -> Any:
    """A table cell for a swept value: numbers and strings as they are; a rule as ``name(k=v, ...)``;
    other mappings and lists as compact JSON."""
    if isinstance(value, Mapping) and set(value) == {"name", "options"}:
        options = ", ".join(f"{k}={v}" for k, v in sorted(value["options"].items()))
        return f"{value['name']}({options})" if options else value["name"]
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def _lookup(data: Mapping, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, Mapping) else None
    return data


def export_table(ledger: Ledger, study: Study, path: str | Path):
    """``results.parquet`` (atomically): one row per run of the study: the device preset and the rule
    by name (also when they are columns), every column of the study, then status, message and metrics
    (a metric named like a column, such as the schedule's last ``lr``, becomes ``final_lr``)."""
    import pandas as pd

    rows = []
    for row in ledger.rows(study.ids):
        fixed = {"device": row["spec"]["device"].get("preset") or "custom", "rule": label(row["spec"]["rule"])}
        swept = {k: fixed[k] if k in fixed else label(_lookup(row["spec"], k)) for k in study.columns}
        final = {f"final_{k}" if k in swept or k in fixed else k: v for k, v in row["final"].items()}
        rows.append({"id": row["id"], **fixed, **swept, "status": row["status"], "message": row["message"],
                     **final, "wall_s": row["wall_s"], "worker": row["worker"]})
    frame = pd.DataFrame(rows)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    write_atomic(path, buf.getvalue())
    return frame
