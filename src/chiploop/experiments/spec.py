"""Experiment specs: task, model, device, rule and schedule, loaded from YAML and validated."""

from __future__ import annotations

import hashlib
import json
import math
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chiploop.devices.spec import DeviceSpec
from chiploop.emulator.networks import MLPSpec, NetworkSpec
from chiploop.learning.decorrelation import DecorrelationSpec
from chiploop.learning.diagnostics import DiagnosticsSpec
from chiploop.learning import RULES, make_rule
from chiploop.learning.injected import InjectedSpec
from chiploop.remote.spec import ChipSpec
from chiploop.specs import (Spec, SpecError, from_mapping, identity, load_yaml, parse_override, set_dotted, spec_field,
                            to_plain)


@dataclass(frozen=True)
class TaskSpec(Spec):
    """The data set. ``digits``: sklearn's 8x8 digits, pixels scaled to [0, 1], stratified split.
    ``teacher_student``: inputs uniform in [0, 1]^d labelled by a random teacher MLP. Sequences (for
    recurrent networks, (samples, time, features)): ``seq_digits`` (the digits read row by row),
    ``mnist1d`` (Greydanus 2020, generated from its templates), ``delayed_xor`` (two cues ``delay``
    steps apart), ``pattern_generation`` (a sum of sinusoids from frozen random spikes). Spikes (for
    spiking networks, (samples, steps, 64) in {0, 1}): ``spike_digits`` (the digits as Poisson trains,
    rate ∝ pixel, ``presentation / dt`` steps).

    Your own data (:mod:`chiploop.experiments.data`): ``file`` (``path`` a ``.npz`` with arrays
    ``x`` and ``y`` by key, or a ``.csv``/``.parquet`` with input columns by prefix ``x`` or by name
    ``x_columns`` and the target column ``y``), ``idx`` (MNIST-format IDX files, plain or gzip,
    uint8 pixels / 255), ``arrays`` (arrays given to :mod:`chiploop.api` from Python). Their splits
    are the files (or arrays) given as ``val``/``test``, else drawn from the data with ``seed``
    (stratified for classification); ``scale`` is fitted on the training split only. A 3-D input
    array or ``time_steps`` makes sequences for recurrent networks."""

    name: Literal["digits", "digits01", "digits_parity", "teacher_student", "seq_digits", "mnist1d", "delayed_xor", "pattern_generation",
                  "spike_digits", "file", "idx", "arrays"] = spec_field("digits", doc="data set")
    seed: int = spec_field(0, doc="seed of the data split and the teacher (fixed across run seeds)", low=0)
    train_points: int = spec_field(0, doc="digits and the binary tasks (digits01, digits_parity): n training "
                                   "points drawn from the training split with seed; 0 = the whole split",
                                   low=0)
    margin: float = spec_field(1.0, doc="binary tasks: margin scale α of the loss mean (f(x) - α c)², labels c = ±1 "
                               "(Bernstein & Yue 2021)", low=0.0, high=1e6, low_open=True)
    val_fraction: float = spec_field(0.15, doc="share of the non-test data held out for validation",
                                     low=0.0, high=0.9)
    test_fraction: float = spec_field(0.2, doc="share of all data held out for testing", low=0.0, high=0.9,
                                      low_open=True)
    teacher_sizes: tuple[int, ...] = spec_field((20, 32, 5), doc="teacher MLP widths, input first")
    n_samples: int = spec_field(2000, doc="teacher-student sample count", low=10)
    kind: Literal["classification", "regression"] = spec_field(
        "classification", doc="teacher-student and data tasks: class labels (cross-entropy) or real targets (MSE)")
    label_noise: float = spec_field(0.0, doc="share of labels redrawn at random (classification) or std of "
                                    "added Gaussian noise (regression)", low=0.0, high=10.0)
    delay: int = spec_field(5, doc="delayed_xor: steps between the two cues", unit="steps", low=0, high=1000)
    steps: int = spec_field(50, doc="pattern_generation: sequence length", unit="steps", low=2, high=100000)
    channels: int = spec_field(20, doc="pattern_generation: input spike channels", low=1)
    outputs: int = spec_field(2, doc="pattern_generation: target signals", low=1)
    path: str = spec_field("", doc="file: the data file, .npz, .csv or .parquet (relative to the working directory)")
    x: str = spec_field("x", doc="file: the inputs' array key (.npz) or the prefix of the input columns (tables)")
    x_columns: tuple[str, ...] = spec_field((), doc="file: input columns by name (tables; instead of the prefix x)")
    y: str = spec_field("y", doc="file: the targets' array key (.npz) or column (tables)")
    val: str = spec_field("", doc="file: a file like path (same keys or columns) used as the validation split")
    test: str = spec_field("", doc="file: a file like path (same keys or columns) used as the test split")
    train_images: str = spec_field("", doc="idx: training images (IDX, plain or .gz)")
    train_labels: str = spec_field("", doc="idx: training labels (IDX, plain or .gz)")
    test_images: str = spec_field("", doc="idx: test images (IDX, plain or .gz)")
    test_labels: str = spec_field("", doc="idx: test labels (IDX, plain or .gz)")
    data: str = spec_field("", doc="arrays: the digest under which chiploop.api registered Python arrays")
    classes: int = spec_field(0, doc="data tasks: number of classes, labels 0..classes-1 (0: the largest label + 1)",
                              low=0)
    scale: Literal["none", "standard", "minmax"] = spec_field(
        "none", doc="data tasks: inputs standardised ((x - mean) / std) or min-max scaled to [0, 1] per feature, "
        "fitted on the training split")
    time_steps: int = spec_field(0, doc="data tasks: read each sample's features as this many time steps "
                                 "(samples, time, features/time) for recurrent networks; 0 = as stored", low=0)
    dt: float = spec_field(1.0, doc="spike_digits: time step (the spiking network's dt)", unit="ms", low=0.0,
                           high=100.0, low_open=True)
    presentation: float = spec_field(50.0, doc="spike_digits: presentation time of a digit", unit="ms", low=0.0,
                                     high=10000.0, low_open=True)
    max_rate: float = spec_field(200.0, doc="spike_digits: Poisson rate of a pixel of full intensity", unit="Hz",
                                 low=0.0, high=1000.0, low_open=True)

    def check(self) -> None:
        if not self.binary:
            for f, off in (("train_points", 0), ("margin", 1.0)):
                if getattr(self, f) != off and not (f == "train_points" and self.name == "digits"):
                    raise SpecError(f, getattr(self, f), f"{off!r} for task {self.name} (the field is for the "
                                    "binary tasks digits01 and digits_parity" + (", and digits" if f == "train_points"
                                                                                 else "") + ")")
        if self.train_points:
            from chiploop.experiments.binary import binary_split_sizes
            available = binary_split_sizes(self.name, self.test_fraction, self.val_fraction, self.seed)[0]
            if self.train_points > available:
                raise SpecError("train_points", self.train_points, f"at most the {available} points of "
                                f"{self.name}'s training split (test_fraction {self.test_fraction}, "
                                f"val_fraction {self.val_fraction})")
        if len(self.teacher_sizes) < 2 or min(self.teacher_sizes) < 1:
            raise SpecError("teacher_sizes", list(self.teacher_sizes), "at least two positive widths")
        if self.kind == "classification" and self.teacher_sizes[-1] < 2:
            raise SpecError("teacher_sizes", list(self.teacher_sizes), "at least 2 outputs (classes)")
        if self.kind == "classification" and self.label_noise > 1:
            raise SpecError("label_noise", self.label_noise, "0 <= value <= 1 for classification")
        for name, fields in DATA_FIELDS.items():
            for f in fields:
                if getattr(self, f) and self.name != name:
                    raise SpecError(f, getattr(self, f), f"only with name: {name} (this task is {self.name})")
        if self.name == "file" and not self.path:
            raise SpecError("path", self.path, "the data file (.npz, .csv or .parquet) of task file")
        if self.name == "idx":
            for f in DATA_FIELDS["idx"]:
                if not getattr(self, f):
                    raise SpecError(f, getattr(self, f), "an IDX file (MNIST format, plain or .gz) of task idx")
        if self.name == "arrays" and not self.data:
            raise SpecError("data", self.data, "the key chiploop.api registered Python arrays under")
        if not self.is_data:
            for f, off in (("classes", 0), ("scale", "none"), ("time_steps", 0)):
                if getattr(self, f) != off:
                    raise SpecError(f, getattr(self, f), f"{off!r} for task {self.name} (the field is for file, idx "
                                    "and arrays tasks)")
        if self.kind == "regression" and self.classes:
            raise SpecError("classes", self.classes, "0 for kind: regression (classes are for classification)")
        if self.is_data:
            from chiploop.experiments.data.load import load
            from chiploop.experiments.data.splits import split_indices
            split_indices(load(self), self)  # read, checked and split now: bad data is a spec error
        if self.max_rate * self.dt > 1000.0:
            raise SpecError("max_rate", self.max_rate, f"at most 1000 / dt = {1000.0 / self.dt:g} Hz (one spike "
                            "per step)")
        if self.presentation < self.dt:
            raise SpecError("presentation", self.presentation, f"at least one time step (dt = {self.dt} ms)")

    @classmethod
    def from_value(cls, value: Any, name: str = "task") -> TaskSpec:
        """A task name (``task: digits``) or a mapping (``task: {name: digits, seed: 1}``)."""
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, Mapping):
            names = ", ".join(typing.get_args(typing.get_type_hints(cls)["name"]))
            raise SpecError(name, value, f"a task name ({names}) or a mapping such as {{name: digits, seed: 0}}")
        return from_mapping(cls, value, prefix=name + ".")

    @property
    def binary(self) -> bool:
        """Whether labels are ``c = ±1`` for one output unit, trained with the margin loss."""
        return self.name in ("digits01", "digits_parity")

    @property
    def is_data(self) -> bool:
        """Whether the data come from files or Python arrays (``file``, ``idx``, ``arrays``)."""
        return self.name in ("file", "idx", "arrays")

    @property
    def sequential(self) -> bool:
        """Whether samples are sequences (samples, time, features), for recurrent networks."""
        if self.is_data:
            from chiploop.experiments.data.load import load
            return load(self).sequential
        return self.name in ("seq_digits", "mnist1d", "delayed_xor", "pattern_generation", "spike_digits")

    @property
    def spiking(self) -> bool:
        """Whether samples are spike trains (samples, steps, channels) in {0, 1}, for spiking networks."""
        return self.name == "spike_digits"

    @property
    def dims(self) -> tuple[int, int]:
        """(input width, output width) the model must have (per time step for sequences)."""
        fixed = {"digits": (64, 10), "digits01": (64, 1), "digits_parity": (64, 1), "seq_digits": (8, 10), "mnist1d": (1, 10), "delayed_xor": (2, 2),
                 "spike_digits": (64, 10)}
        if self.name in fixed:
            return fixed[self.name]
        if self.is_data:
            from chiploop.experiments.data.load import load
            return load(self).dims
        if self.name == "pattern_generation":
            return self.channels, self.outputs
        return self.teacher_sizes[0], self.teacher_sizes[-1]

    @property
    def train_samples(self) -> int | None:
        """Samples in the training split of a data or binary task (or ``train_points``), None for the others."""
        if self.train_points:
            return self.train_points
        if self.binary:
            from chiploop.experiments.binary import binary_split_sizes
            return binary_split_sizes(self.name, self.test_fraction, self.val_fraction, self.seed)[0]
        if not self.is_data:
            return None
        from chiploop.experiments.data.load import load
        from chiploop.experiments.data.splits import split_indices
        return len(split_indices(load(self), self)[0])

    def describe(self) -> str:
        """The task in an error message: its name, and its file for a file task."""
        where = {"file": self.path, "idx": self.train_images, "arrays": self.data}.get(self.name)
        return f"{self.name} ({where})" if where else self.name


# the fields only a data task reads, by task name
DATA_FIELDS = {"file": ("path", "x_columns", "val", "test"),
               "idx": ("train_images", "train_labels", "test_images", "test_labels"), "arrays": ("data",)}


ModelSpec = MLPSpec  # the default network's spec


def check_model_fits_task(model: NetworkSpec, task: TaskSpec) -> None:
    """The network's input and output widths must be the task's, and a sequence task needs a network
    that reads sequences."""
    spiking = getattr(model, "spiking", False)
    if task.spiking != spiking:
        kinds = "a spiking network (kind: snn)" if task.spiking else \
            "a recurrent network (kind: rnn)" if task.sequential else "a feedforward network (kind: mlp)"
        raise SpecError("model.kind", model.kind, f"{kinds} for task {task.describe()}")
    if task.sequential != model.sequential:
        kinds = "a recurrent network (kind: rnn)" if task.sequential else "a feedforward network (kind: mlp)"
        raise SpecError("model.kind", model.kind, f"{kinds} for task {task.describe()}")
    if spiking and model.dt != task.dt:
        raise SpecError("model.dt", model.dt, f"the task's time step task.dt = {task.dt} ms")
    n_in, n_out = task.dims
    if model.dims != (n_in, n_out):
        if hasattr(model, "sizes"):
            raise SpecError("model.sizes", list(model.sizes),
                            f"widths starting with {n_in} and ending with {n_out} for task {task.describe()}")
        raise SpecError("model", list(model.dims), f"{n_in} inputs and {n_out} outputs for task {task.describe()}")


@dataclass(frozen=True)
class CurvatureSpec(Spec):
    """When to measure the curvature of the training loss, and how hard (docs/science.md §6.2)."""

    when: Literal["off", "end", "epochs"] = spec_field("off", doc="never, after training, or after every epoch")
    alone: tuple[str, ...] = spec_field((), doc="weight crossbars whose Hessian is also measured by itself, "
                                        "the others held (e.g. [W_rec]: hessian_top_eig_W_rec, hessian_trace_W_rec)")
    iters: int = spec_field(100, doc="power-iteration steps for the top eigenvalue", low=1, high=100000)
    samples: int = spec_field(1000, doc="Hutchinson probes for the trace", low=1, high=1000000)

    @classmethod
    def from_value(cls, value: Any, name: str = "curvature") -> CurvatureSpec:
        """``curvature: end`` is short for ``curvature: {when: end}``."""
        return from_mapping(cls, {"when": value} if isinstance(value, str) else value, prefix=name + ".")


@dataclass(frozen=True)
class RuleSpec(Spec):
    """A registered learning rule and its options, e.g. ``{name: backprop}``."""

    name: str = spec_field("backprop", doc="registered rule name")
    options: dict = spec_field(default_factory=dict, doc="the rule's own options (its fields)")

    def check(self) -> None:
        make_rule(self.name, self.options, field="")  # the name is registered, the options are its fields

    @classmethod
    def from_value(cls, value: Any, name: str = "rule") -> RuleSpec:
        """``rule: NAME``, ``rule: {name: NAME, OPTION: value, ...}`` (options flat, like a device's
        fields) or ``rule: {name: NAME, options: {OPTION: value}}``: all three mean the same."""
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, Mapping):
            raise SpecError(name, value, "a rule name or a mapping such as {name: feedback_alignment, "
                            "feedback: analog}")
        flat = {k: v for k, v in value.items() if k not in ("name", "options")}
        if flat:
            if "options" in value:
                raise SpecError(f"{name}.options", value["options"], "options either beside name "
                                f"({', '.join(flat)}) or under options:, not both")
            value = {"name": value.get("name", "backprop"), "options": flat}
        return from_mapping(cls, value, prefix=name + ".")


# 1 s, 1 hour, 1 day, 1 month, 1 year
DEFAULT_TIMES: tuple[float, ...] = (1.0, 3600.0, 86400.0, 2.6e6, 3.15e7)


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
    """One training run: a task, a network on a chip of ``device`` crossbars, a rule and a schedule."""

    name: str = spec_field("run", doc="a label for the run")
    task: TaskSpec = spec_field(default_factory=TaskSpec, doc="data set")
    model: NetworkSpec = spec_field(default_factory=MLPSpec, doc="network: {kind: mlp, sizes, activation} "
                                    "(kind defaults to mlp)")
    device: DeviceSpec = spec_field(default_factory=lambda: DeviceSpec.from_value("ideal"),
                                    doc="crossbar device: a preset name or {preset: NAME, field: value}")
    crossbar: Literal["auto", "ideal", "analog"] = spec_field(
        "auto", doc="emulator: ideal (float torch), analog (aihwkit tiles), auto (ideal for float devices)")
    chip: ChipSpec | None = spec_field(
        None, doc="a chip served over gRPC, {remote: HOST:PORT, token_file: FILE}; null = emulated here")
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
    curvature: CurvatureSpec = spec_field(
        default_factory=lambda: CurvatureSpec(), doc="top Hessian eigenvalue, Hessian trace and output margin of "
        "the training loss: off, end, epochs, or {when: end, alone: [W_rec], samples: 200, iters: 50}")
    lr: float = spec_field(0.1, doc="learning rate of the weight updates", low=0.0, high=1e3, low_open=True)
    schedule: Literal["constant", "cosine"] = spec_field(
        "constant", doc="lr over epochs: constant, or cosine from lr towards 0 (Loshchilov & Hutter 2017)")
    batch_size: int | Literal["all"] = spec_field(
        32, doc="mini-batch size, or all: full-batch gradient descent (every step the whole training set, "
        "one step per epoch)", unit="samples", low=1)
    epochs: int = spec_field(10, doc="passes over the training set (with batch_size all: steps)", low=1)
    seed: int = spec_field(0, doc="seed of weights, batch order and the rule's own draws", low=0)
    threads: int = spec_field(1, doc="torch threads (aihwkit kernels are single-threaded)", low=1, high=256)

    def check(self) -> None:
        check_model_fits_task(self.model, self.task)
        if self.batch_size != "all" and (self.task.is_data or self.task.binary or self.task.train_points) \
                and self.task.train_samples < self.batch_size:
            raise SpecError("batch_size", self.batch_size, f"at most the {self.task.train_samples} training samples "
                            f"of task {self.task.describe()}")
        kinds = getattr(RULES.get(self.rule.name), "networks", None)  # refused here, before anything is built
        excluded = getattr(RULES.get(self.rule.name), "excludes", ())
        if isinstance(excluded, tuple) and self.model.kind in excluded:
            raise SpecError("rule.name", self.rule.name, f"a rule that trains {self.model.kind} networks (this one "
                            f"trains none of: {', '.join(excluded)})")
        if isinstance(kinds, tuple) and self.model.kind not in kinds:
            raise SpecError("rule.name", self.rule.name, f"a rule that trains {self.model.kind} networks (this one "
                            f"trains: {', '.join(kinds)})")
        if self.chip is not None and self.crossbar != "auto":
            raise SpecError("crossbar", self.crossbar, "auto with a remote chip (the chip builds its own crossbars "
                            "for its device)")
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
        """A run's identity: a hash of what the resolved spec sets apart from the defaults
        (:func:`chiploop.specs.identity`), so a field added later with a default keeps every id."""
        text = json.dumps(identity(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def experiment_from_data(data: Mapping, overrides: Iterable[str] = (), source: str | None = None) -> ExperimentSpec:
    """Validate a mapping (plus ``key=value`` overrides) into an ExperimentSpec. An error in a field an
    override set names ``--set KEY=VALUE``, not the file."""
    overrides = list(overrides)
    data, keys = apply_overrides(data, overrides)
    try:
        return from_mapping(ExperimentSpec, data)
    except SpecError as err:
        raise attribute(err, dict(zip(keys, overrides)), source or "<spec>") from None


def attribute(err: SpecError, overrides: Mapping[str, str], source: str) -> SpecError:
    """``err`` attributed to the ``--set KEY=VALUE`` that set its field (or a parent of it), else to ``source``."""
    for key, text in overrides.items():
        if err.field == key or err.field.startswith(key + "."):
            return err.in_source(f"--set {text}")
    return err.in_source(source)


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


SHORTHANDS = {"device": "preset", "rule": "name", "task": "name"}  # `device: reram-sb` = `device: {preset: reram-sb}`


def set_override(data: Mapping, dotted_key: str, value: Any) -> dict:
    """``data`` with ``a.b.c`` set to ``value``; a shorthand (``device: reram-sb``) is expanded first
    so that overriding one of its fields keeps the rest."""
    data = dict(data)
    head = dotted_key.split(".", 1)[0]
    if "." in dotted_key and head in SHORTHANDS and isinstance(data.get(head), str):
        data[head] = {SHORTHANDS[head]: data[head]}
    return set_dotted(data, dotted_key, value)


def load_experiment(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentSpec:
    """Read an experiment YAML file, apply ``--set`` overrides, validate everything. An empty file is
    an error (it would silently train every default)."""
    data = load_yaml(path)
    if not data:
        raise SpecError("<file>", str(path), "an experiment spec with at least one field, e.g. "
                        "`task: digits`, `device: reram-sb`, `rule: backprop` (see experiments/*.yaml)", str(path))
    return experiment_from_data(data, overrides, source=str(path))

