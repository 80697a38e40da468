"""Train a population of small chips in one process: P runs that differ only in ``seed`` and in the
device fields drawn once at creation (``construction_seed``, bounds, device-to-device spreads,
stuck-device probability) advance as one tensor program with a leading axis P
(docs/torch_engine.md, Populations).

Member p is built exactly as :meth:`Run.build` builds the single run of its spec (one generator
seeded by its ``seed`` draws the weights, the rule's crossbars, its state and then its batch order;
torch-engine device draws from its own seeds), then the members' chips are stacked into one
:class:`~chiploop.emulator.population.PopulationChip` and every step is one unroll, one rule walk
and one pulsed update of all P chips, each on its own batch::

    x (P, B, in), y (P, B)  ->  a_l[p] = W_l[p] x̂_{l-1}[p] + b_l[p]  ->  W_l[p] -= lr d_l[p]^T x̂_{l-1}[p]

Each member gets a :class:`Result` in the single run's format (history, final metrics with the
ledger's per-step costs, weights). On the ideal chip a member's numbers are those of its single run
(to float rounding of the batched matmuls); on the torch engine the population draws its read and
pulse noise from one stream of its own (seeded from the members' seeds), so a member is a run *like*
its single run, not the same one, and a population re-run is the same bit for bit.

Supported (:func:`population_refusal`): MLPs, rules backprop / feedback_alignment /
direct_feedback_alignment without decorrelation or injection, the torch engine or the ideal chip, no
remote chip, no update probes, curvature or inference deployment. A member whose loss diverges keeps
its history up to there (status ``diverged``) while the others train on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from chiploop.emulator.ledger import MeteredCrossbar
from chiploop.emulator.population import PopulationChip, metered_population
from chiploop.emulator.torch_engine.devices import DRAWN_FIELDS
from chiploop.experiments.results import Result
from chiploop.experiments.spec import ExperimentSpec
from chiploop.experiments.train import Run, diverged
from chiploop.experiments.weights import save_weights
from chiploop.learning.population import POPULATION_NETWORKS, PopulationLoss, population_step
from chiploop.specs import SpecError

POPULATION_RULE_NAMES = ("backprop", "feedback_alignment", "direct_feedback_alignment")


def member_key(spec: ExperimentSpec) -> dict:
    """The spec as plain data without what may differ inside one population: ``seed``, ``name`` and
    the device fields read only when the devices are drawn (``construction_seed``, ``w_max``,
    ``w_min``, ``w_bound_dtod``, ``dw_min_dtod``, ``up_down_dtod``, ``corrupt_devices_prob``:
    :data:`~chiploop.emulator.torch_engine.devices.DRAWN_FIELDS`)."""
    data = spec.to_dict()
    data.pop("seed", None)
    data.pop("name", None)
    device = data.get("device", {})
    if isinstance(device, dict):
        for field in DRAWN_FIELDS:
            device.pop(field, None)
    return data


def population_refusal(spec: ExperimentSpec) -> tuple[str, object, str] | None:
    """Why runs of ``spec`` cannot train as a population: (field, value, what a population allows),
    or None when they can."""
    if spec.model.kind not in POPULATION_NETWORKS:
        return "model.kind", spec.model.kind, f"a population trains {', '.join(POPULATION_NETWORKS)}"
    if spec.rule.name not in POPULATION_RULE_NAMES:
        return "rule.name", spec.rule.name, f"a population runs {', '.join(POPULATION_RULE_NAMES)}"
    if spec.chip is not None:
        return "chip", "set", "none (a remote chip serves one run)"
    if not (spec.ideal_crossbars or spec.device.engine == "torch"):
        return ("device.engine", spec.device.engine,
                "torch, or the ideal chip (aihwkit steps one tile at a time) for a population")
    for field, value in (("decorrelation", spec.decorrelation), ("injected", spec.injected),
                         ("diagnostics", spec.diagnostics), ("inference", spec.inference)):
        if value is not None:
            return field, "set", "none in a population (train these runs one by one)"
    if spec.curvature.when != "off":
        return "curvature.when", spec.curvature.when, "off in a population"
    return None


def check_population(specs: Sequence[ExperimentSpec]) -> None:
    """One SpecError if ``specs`` cannot train as one population."""
    if not specs:
        raise SpecError("seeds", [], "at least one run")
    refusal = population_refusal(specs[0])
    if refusal is not None:
        raise SpecError(*refusal)
    key = member_key(specs[0])
    for s in specs[1:]:
        if member_key(s) != key:
            raise SpecError("population", s.name,
                            f"runs whose specs differ only in seed and the device fields {', '.join(DRAWN_FIELDS)}")


def train_population(specs: Sequence[ExperimentSpec], out_dirs: Sequence[str | Path | None] | None = None,
                     progress: bool = True) -> list[Result]:
    """Train ``specs`` (one population, see the module docstring) to the end; one :class:`Result` per
    member, in order, each written to ``out_dirs[p]`` (result.json, history.csv, weights.npz) if given."""
    specs = list(specs)
    check_population(specs)
    out_dirs = list(out_dirs) if out_dirs is not None else [None] * len(specs)
    if len(out_dirs) != len(specs):
        raise ValueError(f"{len(out_dirs)} run dirs for {len(specs)} runs")
    first = specs[0]
    torch.set_num_threads(first.threads)
    start = time.perf_counter()
    runs = [Run.build(s) for s in specs]
    P = len(runs)
    ledgers = [run.ledger for run in runs]
    metered = [k for k, xb in runs[0].network.chip.crossbars.items() if isinstance(xb, MeteredCrossbar)]
    chip = metered_population(PopulationChip.stack([run.network.chip for run in runs]), ledgers, metered)
    network = runs[0].network.on(chip)
    rule, state, loss = runs[0].rule, runs[0].state, runs[0].task.loss
    ploss = PopulationLoss.of(loss)
    histories: list[list[dict]] = [[] for _ in runs]
    status = ["ok"] * P
    bar = tqdm(total=first.epochs, desc=f"{first.name} [population of {P}]", unit="epoch", disable=not progress)

    def evaluate(epoch: int, lr: float) -> None:
        rows: list[dict] = [{"epoch": epoch, "lr": lr} for _ in runs]
        with torch.no_grad(), ExitStack() as phases:
            for ledger in ledgers:
                phases.enter_context(ledger.in_phase("evaluate"))
            for split in ("train", "val", "test"):
                x, y = runs[0].task.split(split)
                if not len(x):
                    continue
                out = network.unroll(x).output
                for p, row in enumerate(rows):
                    row[f"{split}_loss"] = loss(out[p], y).item()
                    row[f"{split}_acc"] = loss.accuracy(out[p], y)
        for p, row in enumerate(rows):
            if "test_loss" in row:
                row["gen_gap"] = row["test_loss"] - row["train_loss"]
            row["wall_s"] = time.perf_counter() - start
            if status[p] == "ok":
                histories[p].append(row)
                if epoch and diverged(row, histories[p][0]):
                    status[p] = "diverged"

    try:
        evaluate(0, 0.0)
        with torch.no_grad():
            for epoch in range(1, first.epochs + 1):
                lr = first.lr_at(epoch)
                streams = [run.task.batches(s.batch_size, generator=run.generator) for run, s in zip(runs, specs)]
                for batches in zip(*streams):
                    x = torch.stack([b[0] for b in batches])
                    y = torch.stack([b[1] for b in batches])
                    _, state = population_step(network, rule, state, ploss, x, y, lr)
                    for run in runs:
                        run.steps += 1
                evaluate(epoch, lr)
                bar.update()
                if "ok" not in status:
                    break
    finally:
        bar.close()
    wall = time.perf_counter() - start
    results = []
    for p, (run, spec, out_dir) in enumerate(zip(runs, specs, out_dirs)):
        history = histories[p]
        final = {k: v for k, v in history[-1].items() if k != "epoch"}
        ledger = run.ledger.summary(run.steps)
        final.update({f"chip_{k}_per_step": v for k, v in ledger.get("per_step", {}).items()})
        result = Result(spec.to_dict(), spec.spec_hash(), status[p], history, final, wall, ledger=ledger)
        if out_dir is not None:
            result.write(out_dir)
            save_weights(chip.member(p), Path(out_dir) / "weights.npz")
        results.append(result)
    return results


def seeded(spec: ExperimentSpec, seeds: Sequence[int]) -> list[ExperimentSpec]:
    """``spec`` once per seed."""
    return [replace(spec, seed=int(s)) for s in seeds]


__all__ = ["check_population", "member_key", "population_refusal", "seeded", "train_population"]
