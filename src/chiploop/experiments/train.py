"""One training run: build the chip, then per batch forward -> rule signals -> crossbar updates."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from chiploop.emulator import Network, chip_factory
from chiploop.emulator.crossbar import ChipLost, ChipRefused
from chiploop.emulator.ledger import ChipLedger, metered
from chiploop.experiments.deploy import evaluate_over_time, exact_accuracy, final_metrics, summarise
from chiploop.experiments.plots import diagnostics_plots, inference_plot
from chiploop.experiments.results import Result
from chiploop.experiments.spec import ExperimentSpec
from chiploop.experiments.tasks import Task, make_task
from chiploop.experiments.weights import save_weights
from chiploop.learning import chain, decorrelate, inject, make_rule
from chiploop.learning.curvature import curvature_report
from chiploop.learning.diagnostics import diagnostics_summary, probe
from chiploop.learning.learner import Learner
from chiploop.learning.rule import LearningRule
from chiploop.specs import SpecError


@dataclass(eq=False)
class Run:
    """Everything a training run holds: its spec, data, the learner (network on its chip, rule and
    its state) and the run's generator."""

    spec: ExperimentSpec
    task: Task
    learner: Learner
    generator: torch.Generator
    ledger: ChipLedger = field(default_factory=ChipLedger)  # what the chip's verbs cost (calls, bytes, energy)
    remote: Any = None                               # the RemoteChip session when the chip is served over gRPC
    steps: int = 0                                   # training steps taken
    diagnostics: list[dict] = field(default_factory=list)  # one row per (probe, layer, part)

    @classmethod
    def build(cls, spec: ExperimentSpec) -> Run:
        """Draw weights, the rule's crossbars (feedback), its state and the batch order from one
        generator seeded by ``spec.seed``, in that order."""
        generator = torch.Generator().manual_seed(spec.seed)
        ledger = ChipLedger(spec.device, remote=spec.chip is not None)
        remote = None
        if spec.chip is not None:  # the crossbars live on a chip server; the rule stays here
            from chiploop.remote.client import RemoteChip

            remote = RemoteChip.from_spec(spec.chip, spec.device, ledger)
            factory = remote.factory
        else:
            factory = metered(chip_factory(spec.device, spec.ideal_crossbars, spec.seed), ledger)
        try:
            with ledger.in_phase("setup"):  # making and programming the crossbars
                network = spec.model.build(factory, generator)
                task = make_task(spec.task)
                unknown = [name for name in spec.curvature.alone if name not in network.weight_names]
                if unknown:
                    raise SpecError("curvature.alone", list(spec.curvature.alone),
                                    f"weight crossbars of the network: {', '.join(network.weight_names)}")
                learner = Learner.create(network, experiment_rule(spec), task.loss, generator, spec.rule.name)
        except BaseException:
            if remote is not None:
                remote.close()
            raise
        return cls(spec, task, learner, generator, ledger, remote)

    def close(self) -> None:
        """Free the remote chip's session (nothing to do for an emulated chip)."""
        if self.remote is not None:
            self.remote.close()

    @property
    def network(self) -> Network:
        return self.learner.network

    @property
    def rule(self) -> LearningRule:
        return self.learner.rule

    @property
    def state(self) -> Any:
        return self.learner.state

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float, epoch: int = 0) -> None:
        """One mini-batch (probed first, on clones, every ``diagnostics.every`` steps)."""
        every = self.spec.diagnostics
        if every is not None and self.steps % every.every == 0:
            with self.ledger.in_phase("probe"):
                rows = probe(self.network, self.rule, self.state, (x, y), self.task.loss, lr, every.repeats)
            self.diagnostics += [{"step": self.steps, "epoch": epoch, **row} for row in rows]
        self.steps += 1
        self.learner.step(x, y, lr)

    def epoch(self, epoch: int = 1) -> None:
        """Pass ``epoch`` (1-based) over the training set in a seeded random order."""
        lr = self.spec.lr_at(epoch)
        for x, y in self.task.batches(self.spec.batch_size, generator=self.generator):
            self.step(x, y, lr, epoch)

    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy of the chip (its own noisy reads) on every split, and the rule's report."""
        row = dict(self.rule.report(self.state))
        for split in ("train", "val", "test"):
            x, y = self.task.split(split)
            if len(x):
                with self.ledger.in_phase("evaluate"):
                    scores = self.learner.evaluate(x, y)
                row[f"{split}_loss"], row[f"{split}_acc"] = scores["loss"], scores["acc"]
        if "test_loss" in row:
            row["gen_gap"] = row["test_loss"] - row["train_loss"]
        return row

    def curvature(self) -> dict[str, float]:
        """Curvature and margin of the training loss at the chip's exact weights (its digital shadow)."""
        with torch.enable_grad(), self.ledger.in_phase("evaluate"):
            return curvature_report(self.network, self.task.x_train, self.task.y_train, self.task.loss,
                                    torch.Generator().manual_seed(self.spec.seed), iters=self.spec.curvature.iters,
                                    samples=self.spec.curvature.samples, alone=self.spec.curvature.alone)


def experiment_rule(spec: ExperimentSpec) -> LearningRule:
    """The spec's rule, then decorrelation, then injected bias/variance (it perturbs the estimate
    of the rule as run, decorrelation's own updates left alone)."""
    return chain(make_rule(spec.rule.name, spec.rule.options),
                 decorrelate(spec.decorrelation) if spec.decorrelation is not None else None,
                 inject(spec.injected) if spec.injected is not None else None)


DIVERGED = 100.0  # a training loss this many times the untrained one ends the run as diverged


def diverged(row: dict, first: dict) -> bool:
    """Whether an epoch's ``row`` ends the run as diverged: a non-finite training loss, or one over
    ``DIVERGED`` times that of the untrained chip (``first``, the epoch-0 row)."""
    return not math.isfinite(row["train_loss"]) or row["train_loss"] > DIVERGED * first["train_loss"]


def train(spec: ExperimentSpec, out_dir: str | Path | None = None, progress: bool = True,
          on_epoch: Callable[[dict], None] | None = None) -> Result:
    """Train ``spec`` to the end (or until the loss diverges); write the run dir if ``out_dir``.
    ``on_epoch(row)`` is called with each finished epoch's history row.

    An interrupt (KeyboardInterrupt) during the epochs ends the run with status ``interrupted``: the
    finished epochs are written like any result, then :class:`RunInterrupted` is raised. A chip that
    stops answering (:class:`ChipLost`, a remote chip) ends it with status ``chip_lost`` the same way,
    then :class:`RunChipLost` is raised."""
    torch.set_num_threads(spec.threads)
    start = time.perf_counter()
    run = Run.build(spec)
    history: list[dict] = []
    status, lost = "ok", ""
    # the bar counts an epoch when it is done and redraws then, however fast epochs are; it stays on screen
    bar = tqdm(total=spec.epochs, desc=f"{spec.name} [{spec.device.preset or 'device'}]", unit="epoch",
               disable=not progress, leave=True)
    epoch = 0
    try:
        with torch.no_grad():
            history.append({"epoch": 0, "lr": 0.0, **run.evaluate(), "wall_s": time.perf_counter() - start})
            if spec.curvature.when == "epochs":
                history[0].update(run.curvature())
            for epoch in range(1, spec.epochs + 1):
                run.epoch(epoch)
                row = {"epoch": epoch, "lr": spec.lr_at(epoch), **run.evaluate()}
                if spec.curvature.when == "epochs":
                    row.update(run.curvature())
                row["wall_s"] = time.perf_counter() - start
                history.append(row)
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", test_acc=f"{row.get('test_acc', float('nan')):.3f}",
                                refresh=False)
                bar.update()
                bar.refresh()
                if on_epoch is not None:
                    on_epoch(row)
                if diverged(row, history[0]):
                    status = "diverged"
                    break
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into one by the CLI: keep the finished epochs
        status = "interrupted"
    except ChipLost as err:  # the chip stopped answering: keep the finished epochs
        status, lost = "chip_lost", f"{err} at step {run.steps} (epoch {epoch})"
    except ChipRefused as err:  # a non-finite update (diverged), or a chip that no longer serves this run
        status, lost = "diverged" if err.diverged else "chip_lost", f"{err} at step {run.steps} (epoch {epoch})"
    finally:
        bar.close()
    try:
        final = {k: v for k, v in history[-1].items() if k != "epoch"} if history else {}
        if spec.curvature.when == "end" and status == "ok":
            final.update(run.curvature())
        if run.diagnostics:
            final.update(diagnostics_summary(run.diagnostics))
        inference = []
        if spec.inference is not None and status == "ok":  # deploy: program, drift, evaluate (docs/science.md §3.11)
            inference = evaluate_over_time(run.network, run.task, spec.device, spec.inference.times,
                                           spec.inference.repeats, torch.Generator().manual_seed(spec.seed))
            final["inf_exact_acc"] = exact_accuracy(run.network, run.task)
            final.update(final_metrics(summarise(inference)))
        ledger = run.ledger.summary(run.steps)
        final.update({f"chip_{k}_per_step": v for k, v in ledger.get("per_step", {}).items()})
        result = Result(spec.to_dict(), spec.spec_hash(), status, history, final, time.perf_counter() - start,
                        diagnostics=run.diagnostics, inference=inference, ledger=ledger,
                        error=lost)
        if out_dir is not None:
            result.write(out_dir)
            if status != "chip_lost":  # a lost chip's weights cannot be read any more
                save_weights(run.network.chip, Path(out_dir) / "weights.npz")
            if result.diagnostics:
                diagnostics_plots(result.diagnostics, out_dir)
            if result.inference:
                inference_plot(summarise(result.inference), Path(out_dir) / "inference.png", final["inf_exact_acc"],
                               f"{spec.name}: {spec.device.inference.noise_model} inference tiles")
    finally:
        run.close()
    if status == "interrupted":
        raise RunInterrupted(result, out_dir)
    if status == "chip_lost":
        raise RunChipLost(result, out_dir, lost)
    return result


class RunChipLost(RuntimeError):
    """A run whose chip stopped answering after ``len(result.history) - 1`` finished epochs; ``result``
    (status ``chip_lost``, ``result.error`` the one line naming verb, crossbar and step) was written to
    ``out_dir`` when there was one."""

    def __init__(self, result: Result, out_dir: str | Path | None, message: str):
        super().__init__(message)
        self.result, self.out_dir = result, out_dir


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by an interrupt after ``len(result.history) - 1`` epochs; ``result`` (status
    ``interrupted``) was written to ``out_dir`` when there was one. A KeyboardInterrupt, so code that
    catches ``Exception`` (a sweep recording failed runs) lets it through."""

    def __init__(self, result: Result, out_dir: str | Path | None):
        super().__init__(f"interrupted after {len(result.history) - 1} epochs")
        self.result, self.out_dir = result, out_dir
