"""chiploop in a few lines: ``import chiploop.api as cl``.

One call trains a whole experiment (a dict, a YAML file or an :class:`ExperimentSpec`)::

    result = cl.train({"task": "digits", "device": "reram-sb", "rule": "backprop", "lr": 0.3, "epochs": 5})
    result.final["test_acc"]

and the pieces let you write your own loop: a network on a chip of a device's crossbars, a rule,
a learner that takes one step at a time::

    task = cl.task("digits")
    net = cl.mlp([64, 64, 10], device="constant-step", seed=0)
    learner = cl.learner(net, cl.rule("feedback_alignment", feedback="analog"), task.loss, seed=0)
    for epoch in range(3):
        for x, y in task.batches(32, seed=epoch):
            learner.step(x, y, lr=0.1)
    learner.evaluate(*task.split("test"))      # {"loss": ..., "acc": ...}

Everything here is a thin front to the modules that do the work (named in each docstring);
nothing is hidden: ``net.chip`` holds the crossbars, ``learner.rule`` the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from chiploop.devices.spec import DeviceSpec, load_device
from chiploop.emulator import Network, chip_factory
from chiploop.emulator.networks import MLPSpec, RNNSpec
from chiploop.experiments.results import Result
from chiploop.experiments.spec import ExperimentSpec, TaskSpec, experiment_from_data, load_experiment
from chiploop.experiments.tasks import Task, make_task
from chiploop.experiments.train import train as train_spec
from chiploop.learning import LearningRule, Loss, chain, decorrelate, inject, make_rule
from chiploop.learning.learner import Learner

__all__ = ["Learner", "Result", "chain", "decorrelate", "device", "inject", "learner", "mlp", "rnn", "rule", "spec",
           "task", "train", "train_population"]


def device(preset: str | Mapping[str, Any] = "ideal", **fields: Any) -> DeviceSpec:
    """A device spec: a shipped preset (``chiploop devices list``), optionally with fields changed:
    ``device("reram-sb", dw_min=0.002)`` (:mod:`chiploop.devices.spec`)."""
    data = {"preset": preset} if isinstance(preset, str) else dict(preset)
    return load_device({**data, **fields})


def _factory(on: str | Mapping[str, Any] | DeviceSpec, seed: int = 0):
    spec = on if isinstance(on, DeviceSpec) else device(on)
    return chip_factory(spec, ideal=spec.is_float, seed=seed)


def mlp(sizes: Sequence[int], activation: str = "relu", device: str | Mapping[str, Any] | DeviceSpec = "ideal",
        seed: int = 0) -> Network:
    """An MLP whose layers are crossbars of ``device`` (a new chip), weights drawn with ``seed``
    (:mod:`chiploop.emulator.networks.mlp`)."""
    spec = MLPSpec(sizes=tuple(sizes), activation=activation)
    return spec.build(_factory(device, seed), torch.Generator().manual_seed(seed))


def rnn(n_in: int, hidden: int, n_out: int, alpha: float = 0.5, activation: str = "relu", readout: str = "last",
        device: str | Mapping[str, Any] | DeviceSpec = "ideal", seed: int = 0) -> Network:
    """A leaky rate RNN on crossbars of ``device`` (:mod:`chiploop.emulator.networks.rnn`)."""
    spec = RNNSpec(n_in=n_in, hidden=hidden, n_out=n_out, alpha=alpha, activation=activation, readout=readout)
    return spec.build(_factory(device, seed), torch.Generator().manual_seed(seed))


def rule(name: str, **options: Any) -> LearningRule:
    """A registered learning rule with its options, checked (``chiploop rules list``;
    :mod:`chiploop.learning`). Compose with ``chain(rule, decorrelate(...), inject(...))``."""
    return make_rule(name, options)


def task(data: Any = "digits", y: Any = None, **options: Any) -> Task:
    """A data set's train/validation/test splits and its loss (:mod:`chiploop.experiments.tasks`):
    a task by name (``task("digits")``, ``task("file", path="data.npz")``) or your own data, as the
    same checked ``arrays`` task a file gives: ``task(x, y)``, ``task((x, y))``, a
    ``torch.utils.data.Dataset`` of ``(x, y)`` pairs, with NumPy arrays or torch tensors and the data
    tasks' options (``kind``, ``classes``, ``scale``, ``time_steps``, ``seed``, ``val_fraction``,
    ``test_fraction``, and ``val=(x, y)`` / ``test=(x, y)`` for given splits)."""
    if isinstance(data, str) and y is None:
        return make_task(TaskSpec.from_value({"name": data, **options}))
    return make_task(TaskSpec.from_value(task_value(data if y is None else (data, y), **options)))


def task_value(data: Any, **options: Any) -> dict:
    """The spec mapping of Python data (see :func:`task`): the arrays registered in this process
    under their digest (:mod:`chiploop.experiments.data.memory`), ``{"name": "arrays", "data": KEY, ...}``."""
    from chiploop.experiments.data.memory import register

    arrays = dict(zip(("x", "y"), _pair(data, "task")))
    for part in ("val", "test"):
        if options.get(part) is not None:
            arrays[f"x_{part}"], arrays[f"y_{part}"] = _pair(options.pop(part), f"task.{part}")
    return {"name": "arrays", "data": register(arrays), **options}


def _pair(data: Any, field: str) -> tuple[Any, Any]:
    """``(x, y)`` as NumPy arrays from a pair of arrays/tensors or a map-style torch Dataset."""
    from chiploop.specs import SpecError

    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        data = tuple(data.tensors)
    elif isinstance(data, Dataset):
        try:
            items = [data[i] for i in range(len(data))]
        except TypeError as err:
            raise SpecError(field, type(data).__name__, f"a map-style Dataset with len() and [i] ({err})") from None
        if not items or not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items[:1]):
            raise SpecError(field, type(data).__name__, "a Dataset whose items are (x, y) pairs")
        data = (torch.stack([torch.as_tensor(it[0]) for it in items]),
                torch.stack([torch.as_tensor(it[1]) for it in items]))
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise SpecError(field, type(data).__name__, "(x, y): inputs and targets as arrays or tensors, or a "
                        "torch Dataset of (x, y) pairs")
    out = []
    for part, a in zip("xy", data):
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        if a.dtype.kind not in "biuf":
            raise SpecError(f"{field}.{part}", a.dtype.str, "numeric arrays (bool, int or float)")
        out.append(a)
    return out[0], out[1]


def _with_data(experiment: Any) -> Any:
    """An experiment mapping whose ``task`` is Python data (arrays, tensors, a Dataset, or a mapping
    with ``data`` or ``x``/``y`` holding them) with that task registered (:func:`task_value`)."""
    if not isinstance(experiment, Mapping) or "task" not in experiment:
        return experiment
    value = experiment["task"]
    if isinstance(value, str):
        return experiment
    if not isinstance(value, Mapping):
        return {**experiment, "task": task_value(value)}
    if "data" in value and not isinstance(value["data"], str):
        data = value["data"]
    elif "x" in value and not isinstance(value["x"], str):
        data = (value["x"], value.get("y"))
    else:
        return experiment  # a task by name, or arrays already registered
    options = {k: v for k, v in value.items() if k not in ("data", "x", "y", "name")}
    value = task_value(data, **options)
    return {**experiment, "task": value}


def learner(network: Network, rule: LearningRule, loss: Loss, seed: int = 0) -> Learner:
    """``rule`` ready to train ``network``: the crossbars it needs installed on the chip and its state
    drawn with ``seed`` (:mod:`chiploop.learning.learner`)."""
    return Learner.create(network, rule, loss, torch.Generator().manual_seed(seed))


def spec(experiment: Mapping[str, Any] | str | Path | ExperimentSpec, **overrides: Any) -> ExperimentSpec:
    """A validated experiment spec from a dict, a YAML file or a spec, with fields overridden by
    keyword (dotted keys as ``device__dw_min=0.002``: ``__`` for ``.``). In a dict, ``task`` may be
    your own data in place of a task name: ``(x, y)``, a torch Dataset, or ``{"data": (x, y),
    "scale": "standard", "test": (x_test, y_test)}`` (see :func:`task`)."""
    sets = [f"{k.replace('__', '.')}={_yaml(v)}" for k, v in overrides.items()]
    if isinstance(experiment, ExperimentSpec):
        return experiment_from_data(experiment.to_dict(), sets)
    if isinstance(experiment, (str, Path)):
        return load_experiment(experiment, sets)
    return experiment_from_data(_with_data(experiment), sets)


def train(experiment: Mapping[str, Any] | str | Path | ExperimentSpec, out: str | Path | None = None,
          progress: bool = True, **overrides: Any) -> Result:
    """Train one experiment (see :func:`spec`); ``out`` writes the run directory
    (:func:`chiploop.experiments.train.train`)."""
    return train_spec(spec(experiment, **overrides), out, progress=progress)


def train_population(experiment: Mapping[str, Any] | str | Path | ExperimentSpec, seeds: Sequence[int],
                     out: str | Path | None = None, progress: bool = True, **overrides: Any) -> list[Result]:
    """Train one experiment once per seed as one population of chips in this process (MLPs with
    backprop, feedback_alignment or direct_feedback_alignment on the torch engine or the ideal chip:
    :mod:`chiploop.experiments.population`); one :class:`Result` per seed, in order, like
    :func:`train`'s. ``out`` writes ``out/seed-N/`` per member."""
    from chiploop.experiments.population import seeded, train_population as train_members

    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        from chiploop.specs import SpecError
        raise SpecError("seeds", seeds, "distinct seeds, one per member")
    specs = seeded(spec(experiment, **overrides), seeds)
    dirs = None if out is None else [Path(out) / f"seed-{s.seed}" for s in specs]
    return train_members(specs, dirs, progress=progress)


def _yaml(value: Any) -> str:
    import json
    return json.dumps(value)  # JSON is YAML: lists, numbers, strings and booleans read back as they were
