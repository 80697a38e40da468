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

import torch

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
           "task", "train"]


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


def task(name: str = "digits", **options: Any) -> Task:
    """A data set's train/validation/test splits and its loss (:mod:`chiploop.experiments.tasks`)."""
    return make_task(TaskSpec.from_value({"name": name, **options}))


def learner(network: Network, rule: LearningRule, loss: Loss, seed: int = 0) -> Learner:
    """``rule`` ready to train ``network``: the crossbars it needs installed on the chip and its state
    drawn with ``seed`` (:mod:`chiploop.learning.learner`)."""
    return Learner.create(network, rule, loss, torch.Generator().manual_seed(seed))


def spec(experiment: Mapping[str, Any] | str | Path | ExperimentSpec, **overrides: Any) -> ExperimentSpec:
    """A validated experiment spec from a dict, a YAML file or a spec, with fields overridden by
    keyword (dotted keys as ``device__dw_min=0.002``: ``__`` for ``.``)."""
    sets = [f"{k.replace('__', '.')}={_yaml(v)}" for k, v in overrides.items()]
    if isinstance(experiment, ExperimentSpec):
        return experiment_from_data(experiment.to_dict(), sets)
    if isinstance(experiment, (str, Path)):
        return load_experiment(experiment, sets)
    return experiment_from_data(experiment, sets)


def train(experiment: Mapping[str, Any] | str | Path | ExperimentSpec, out: str | Path | None = None,
          progress: bool = True, **overrides: Any) -> Result:
    """Train one experiment (see :func:`spec`); ``out`` writes the run directory
    (:func:`chiploop.experiments.train.train`)."""
    return train_spec(spec(experiment, **overrides), out, progress=progress)


def _yaml(value: Any) -> str:
    import json
    return json.dumps(value)  # JSON is YAML: lists, numbers, strings and booleans read back as they were
