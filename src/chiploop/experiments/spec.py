"""Experiment specs: task, model, device, rule and schedule, loaded from YAML and validated."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chiploop.devices.spec import DeviceSpec
from chiploop.learning.decorrelation import DecorrelationSpec
from chiploop.learning.diagnostics import DiagnosticsSpec
from chiploop.learning import make_rule
from chiploop.learning.injected import InjectedSpec
from chiploop.specs import Spec, SpecError, from_mapping, load_yaml, parse_override, set_dotted, spec_field, to_plain


@dataclass(frozen=True)
class TaskSpec(Spec):
    """The data set. ``digits``: sklearn's 8x8 digits, pixels scaled to [0, 1], stratified split.
    ``teacher_student``: inputs uniform in [0, 1]^d labelled by a random teacher MLP."""

    name: Literal["digits", "teacher_student"] = spec_field("digits", doc="data set")
    seed: int = spec_field(0, doc="seed of the data split and the teacher (fixed across run seeds)", low=0)
    val_fraction: float = spec_field(0.15, doc="share of the non-test data held out for validation",
                                     low=0.0, high=0.9)
    test_fraction: float = spec_field(0.2, doc="share of all data held out for testing", low=0.0, high=0.9,
                                      low_open=True)
    teacher_sizes: tuple[int, ...] = spec_field((20, 32, 5), doc="teacher MLP widths, input first")
    n_samples: int = spec_field(2000, doc="teacher-student sample count", low=10)
    kind: Literal["classification", "regression"] = spec_field(
        "classification", doc="teacher-student target: argmax class or the teacher's output")
    label_noise: float = spec_field(0.0, doc="share of labels redrawn at random (classification) or std of "
                                    "added Gaussian noise (regression)", low=0.0, high=10.0)

    def check(self) -> None:
        if len(self.teacher_sizes) < 2 or min(self.teacher_sizes) < 1:
            raise SpecError("teacher_sizes", list(self.teacher_sizes), "at least two positive widths")
        if self.kind == "classification" and self.teacher_sizes[-1] < 2:
            raise SpecError("teacher_sizes", list(self.teacher_sizes), "at least 2 outputs (classes)")
        if self.kind == "classification" and self.label_noise > 1:
            raise SpecError("label_noise", self.label_noise, "0 <= value <= 1 for classification")

    @property
    def dims(self) -> tuple[int, int]:
        """(input width, output width) the model must have."""
        if self.name == "digits":
            return 64, 10
        return self.teacher_sizes[0], self.teacher_sizes[-1]


@dataclass(frozen=True)
class ModelSpec(Spec):
    """An MLP: layer widths (input first) and the hidden activation; the output layer is linear."""

    sizes: tuple[int, ...] = spec_field((64, 64, 10), doc="layer widths, input first")
    activation: Literal["relu", "tanh", "sigmoid"] = spec_field("relu", doc="hidden activation f")

    def check(self) -> None:
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise SpecError("sizes", list(self.sizes), "at least two positive widths, e.g. [64, 64, 10]")


@dataclass(frozen=True)
class RuleSpec(Spec):
    """A registered learning rule and its options, e.g. ``{name: backprop}``."""

    name: str = spec_field("backprop", doc="registered rule name")
    options: dict = spec_field(default_factory=dict, doc="the rule's own options (its fields)")

    def check(self) -> None:
        make_rule(self.name, self.options, field="")  # the name is registered, the options are its fields

    @classmethod
    def from_value(cls, value: Any, name: str = "rule") -> RuleSpec:
        """A rule name (``backprop``) or a mapping ``{name: ..., options: {...}}``."""
        if isinstance(value, str):
            value = {"name": value}
        return from_mapping(cls, value, prefix=name + ".")


# 1 s, 1 hour, 1 day, 1 month, 1 year
DEFAULT_TIMES: tuple[float, ...] = (1.0, 3600.0, 86400.0, 2.6e6, 3.15e7)


def check_model_fits_task(model: ModelSpec, task: TaskSpec) -> None:
    """Raise a SpecError on ``model.sizes`` unless its first and last widths are the task's input and output."""
    n_in, n_out = task.dims
    if (model.sizes[0], model.sizes[-1]) != (n_in, n_out):
        raise SpecError("model.sizes", list(model.sizes),
                        f"widths starting with {n_in} and ending with {n_out} for task {task.name}")


@dataclass(frozen=True)
class InferenceRunSpec(Spec):
    """After training: program the weights into inference tiles, let them drift, evaluate at each time
    (:mod:`chiploop.experiments.deploy`)."""

    times: tuple[float, ...] = spec_field(DEFAULT_TIMES, doc="seconds after programming at which to evaluate",
                                          unit="s")
    repeats: int = spec_field(5, doc="independent programmings of the whole chip", low=1, high=10000)

    def check(self) -> None:
        check_times(self.times)


def check_times(times: Sequence[float], field: str = "times") -> None:
    """At least one time, all positive and distinct."""
    if len(times) == 0:
        raise SpecError(field, list(times), "at least one time in seconds")
    for t in times:
        if not math.isfinite(t) or t <= 0:
            raise SpecError(field, list(times), "times in seconds, each > 0")
    if len(set(times)) != len(times):
        raise SpecError(field, list(times), "distinct times")


@dataclass(frozen=True)
class ExperimentSpec(Spec):
    """One training run: a task, an MLP on a chip of ``device`` crossbars, a rule and a schedule."""

    name: str = spec_field("run", doc="a label for the run")
    task: TaskSpec = spec_field(default_factory=TaskSpec, doc="data set")
    model: ModelSpec = spec_field(default_factory=ModelSpec, doc="network")
    device: DeviceSpec = spec_field(default_factory=lambda: DeviceSpec.from_value("ideal"),
                                    doc="crossbar device: a preset name or {preset: NAME, field: value}")
    crossbar: Literal["auto", "ideal", "analog"] = spec_field(
        "auto", doc="emulator: ideal (float torch), analog (aihwkit tiles), auto (ideal for float devices)")
    rule: RuleSpec = spec_field(default_factory=RuleSpec, doc="learning rule")
    decorrelation: DecorrelationSpec | None = spec_field(
        None, doc="decorrelate every layer's input (x̂ = R x, R learned locally); null = off")
    injected: InjectedSpec | None = spec_field(
        None, doc="add controlled bias b and variance σ to the rule's estimate (Ghosh et al. 2023); null = off")
    diagnostics: DiagnosticsSpec | None = spec_field(
        None, doc="probe bias and variance of the applied updates, e.g. {every: 50, repeats: 8}; null = off")
    inference: InferenceRunSpec | None = spec_field(
        None, doc="after training: program the weights into the device's inference tiles and evaluate as they "
        "drift, e.g. {times: [1, 3600, 3.15e7], repeats: 5}; null = off")
    curvature: Literal["off", "end", "epochs"] = spec_field(
        "off", doc="top Hessian eigenvalue, Hessian trace and output margin of the training loss: "
        "never, after training, or after every epoch")
    lr: float = spec_field(0.1, doc="learning rate of the weight updates", low=0.0, high=1e3, low_open=True)
    schedule: Literal["constant", "cosine"] = spec_field(
        "constant", doc="lr over epochs: constant, or cosine from lr towards 0 (Loshchilov & Hutter 2017)")
    batch_size: int = spec_field(32, doc="mini-batch size", unit="samples", low=1)
    epochs: int = spec_field(10, doc="passes over the training set", low=0)
    seed: int = spec_field(0, doc="seed of weights, batch order and the rule's own draws", low=0)
    threads: int = spec_field(1, doc="torch threads (aihwkit kernels are single-threaded)", low=1, high=256)

    def check(self) -> None:
        check_model_fits_task(self.model, self.task)
        if self.crossbar == "ideal" and not self.device.is_float:
            raise SpecError("crossbar", self.crossbar, f"'auto' or 'analog' for the pulsed device "
                            f"{self.device.preset or 'spec'} (ideal crossbars are exact float)")

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (1-based): ``lr`` or ``lr (1 + cos(pi (epoch-1)/epochs)) / 2``."""
        if self.schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(self.epochs, 1)))

    @property
    def ideal_crossbars(self) -> bool:
        """Whether the chip is built from exact torch crossbars."""
        return self.crossbar == "ideal" or (self.crossbar == "auto" and self.device.is_float)

    def to_dict(self) -> dict:
        return to_plain(self)

    def spec_hash(self) -> str:
        """A stable hash of the fully resolved spec (a run's identity)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def experiment_from_data(data: Mapping, overrides: Iterable[str] = (), source: str | None = None) -> ExperimentSpec:
    """Validate a mapping (plus ``key=value`` overrides) into an ExperimentSpec."""
    data, _ = apply_overrides(data, overrides)
    return from_mapping(ExperimentSpec, data, source=source or "<spec>")


def apply_overrides(data: Mapping, overrides: Iterable[str]) -> tuple[dict, list[str]]:
    """``data`` with each ``key=value`` of ``overrides`` set in turn (``--set``), and the keys set.

    A malformed override is one SpecError attributed to ``--set``."""
    data, keys = dict(data), []
    for text in overrides:
        try:
            key, value = parse_override(text)
        except SpecError as err:
            raise err.in_source("--set") from None
        keys.append(key)
        data = set_override(data, key, value)
    return data, keys


SHORTHANDS = {"device": "preset", "rule": "name"}  # `device: reram-sb` means `device: {preset: reram-sb}`


def set_override(data: Mapping, dotted_key: str, value: Any) -> dict:
    """``data`` with ``a.b.c`` set to ``value``; a shorthand (``device: reram-sb``) is expanded first
    so that overriding one of its fields keeps the rest."""
    data = dict(data)
    head = dotted_key.split(".", 1)[0]
    if "." in dotted_key and head in SHORTHANDS and isinstance(data.get(head), str):
        data[head] = {SHORTHANDS[head]: data[head]}
    return set_dotted(data, dotted_key, value)


def load_experiment(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentSpec:
    """Read an experiment YAML file, apply ``--set`` overrides, validate everything."""
    return experiment_from_data(load_yaml(path), overrides, source=str(path))

