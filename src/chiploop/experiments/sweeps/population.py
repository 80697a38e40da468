"""Sweep runs that differ only in seed, trained as one population (docs/torch_engine.md, Populations).

How a study decides (:func:`jobs`), over the runs it still has to do:

* a run is *eligible* when its spec can train in a population
  (:func:`chiploop.experiments.population.population_refusal` is None: an MLP; rule backprop,
  feedback_alignment or direct_feedback_alignment; no decorrelation, injection, probes, curvature,
  inference deployment or remote chip) **and** its device runs on ``engine: torch`` (ideal-chip
  runs are cheap and stay single runs, as every aihwkit run does);
* eligible runs whose resolved specs are equal apart from ``seed``, ``name`` and the device fields
  the engine reads only when it draws the devices (``construction_seed``, ``w_max``, ``w_min``,
  ``w_bound_dtod``, ``dw_min_dtod``, ``up_down_dtod``, ``corrupt_devices_prob``;
  :func:`~chiploop.experiments.population.member_key`) form one group,
  cut into populations of at most :data:`MAX_MEMBERS`; a group of one is a single run;
* everything else is a single run, as before.

Every member still gets its own run dir (result.json, history.csv, weights.npz, outcome.json) and
its own ledger row, so resume, reports and exports work unchanged. A member's numbers are those of
a run like its single run (its own seed for data order, initial weights and device draws; read and
pulse noise from the population's stream), and the same set of runs to do gives the same numbers.
Switch it off with ``population: false`` in the sweep spec or ``chiploop sweep --no-population``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from chiploop.experiments.results import write_atomic
from chiploop.experiments.spec import ExperimentSpec, experiment_from_data

MAX_MEMBERS = 64  # chips in one population program
OUTCOME = "outcome.json"  # in a run dir: its ledger row, written once every other file is there
POPULATION = "population"  # the tag of a population job: (POPULATION, ((spec data, run dir), ...))


def eligible(spec: ExperimentSpec) -> bool:
    """Whether ``spec``'s run may join a population in a sweep (see the module docstring)."""
    from chiploop.experiments.population import population_refusal

    return spec.device.engine == "torch" and not spec.ideal_crossbars and population_refusal(spec) is None


def jobs(specs: dict[str, ExperimentSpec], todo: list[str], root: Path, population: bool = True) -> list[Any]:
    """The executor's items for runs ``todo``: ``(spec data, run dir)`` for a single run, and
    ``(POPULATION, ((spec data, run dir), ...))`` for each population (in the order of ``todo``)."""
    from chiploop.experiments.population import member_key

    singles: list[Any] = []
    groups: dict[str, list[str]] = {}
    for run_id in todo:
        spec = specs[run_id]
        if population and eligible(spec):
            groups.setdefault(json.dumps(member_key(spec), sort_keys=True, default=str), []).append(run_id)
        else:
            singles.append(run_id)
    items: list[Any] = []
    job = lambda run_id: (specs[run_id].to_dict(), str(root / "runs" / run_id))  # noqa: E731
    for ids in groups.values():
        if len(ids) == 1:
            singles.append(ids[0])
            continue
        for start in range(0, len(ids), MAX_MEMBERS):
            chunk = ids[start:start + MAX_MEMBERS]
            items.append((POPULATION, tuple(job(i) for i in chunk)) if len(chunk) > 1 else job(chunk[0]))
    alone = set(singles)
    return [job(run_id) for run_id in todo if run_id in alone] + items


def members(item: Any) -> list[tuple[dict, str]]:
    """The runs ``(spec data, run dir)`` of an executor item."""
    return list(item[1]) if is_population(item) else [item]


def is_population(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and item[0] == POPULATION


def run_population(item: Any) -> list[dict]:
    """Train a population job (in a worker process or in this one) into its members' run dirs; one
    outcome per member, as :func:`~chiploop.experiments.sweeps.runner.run_one` returns; never raises."""
    from chiploop.experiments.population import train_population
    from chiploop.experiments.results import versions

    runs = list(item[1])
    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        for _, path in runs:
            (Path(path) / OUTCOME).unlink(missing_ok=True)
        results = train_population([experiment_from_data(data) for data, _ in runs], [path for _, path in runs],
                                   progress=False)
        outcomes = []
        for result, (_, path) in zip(results, runs):
            outcome = {"status": result.status, "final": result.final, "wall_s": result.wall_s / len(runs),
                       "versions": result.versions, "worker": f"{worker} (population of {len(runs)})"}
            write_atomic(Path(path) / OUTCOME, json.dumps(outcome) + "\n")
            outcomes.append(outcome)
        return outcomes
    except Exception as err:  # a crashing population is a result for each of its runs; the sweep goes on
        failed = {"status": "failed", "message": f"{type(err).__name__}: {err}", "final": {},
                  "wall_s": (time.perf_counter() - start) / len(runs), "versions": versions(), "worker": worker}
        return [failed] * len(runs)
