"""Data sets, made on the machine with no downloads: sklearn's digits, teacher-student data,
sequence tasks for recurrent networks (inputs (samples, time, features)), and your own data from
files or Python arrays (:func:`data_task`)."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from chiploop.emulator.networks import init_weights
from chiploop.experiments.binary import binary_digits_data
from chiploop.experiments.spec import TaskSpec
from chiploop.learning.loss import Loss


@dataclass(frozen=True)
class Task:
    """Train / validation / test splits as float32 inputs (n, in) and targets, plus the loss."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    loss: Loss

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``train``, ``val`` or ``test``."""
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def batches(self, batch_size: int | str, seed: int | None = None, generator: torch.Generator | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the training split in mini-batches, in a random order drawn from ``generator``
        (or a new one seeded by ``seed``); the last batch may be smaller. ``batch_size="all"``: one
        batch, the whole training split in its stored order (full-batch gradient descent; nothing drawn)."""
        if batch_size == "all":
            yield self.x_train, self.y_train
            return
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        x, y = self.x_train, self.y_train
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]


def _split(x: np.ndarray, y: np.ndarray, spec: TaskSpec, stratify: bool, loss: Loss) -> Task:
    """Seeded (stratified) split into train, validation and test."""
    from sklearn.model_selection import train_test_split  # sklearn only when a task is made

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=spec.test_fraction, random_state=spec.seed, stratify=y if stratify else None)
    if spec.val_fraction > 0:
        x_train, x_val, y_train, y_val = train_test_split(
            x_rest, y_rest, test_size=spec.val_fraction, random_state=spec.seed,
            stratify=y_rest if stratify else None)
    else:
        x_train, y_train, x_val, y_val = x_rest, y_rest, x_rest[:0], y_rest[:0]
    target_dtype = torch.long if loss.kind == "cross_entropy" else torch.float32
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.as_tensor(a, dtype=target_dtype)  # noqa: E731
    return Task(as_x(x_train), as_y(y_train), as_x(x_val), as_y(y_val), as_x(x_test), as_y(y_test), loss)


def digits(spec: TaskSpec) -> Task:
    """sklearn's 1797 8x8 digits, pixels / 16 in [0, 1], 10 classes."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return _subset(_split(data.data / 16.0, data.target, spec, stratify=True, loss=Loss("cross_entropy")), spec)


def _subset(task: Task, spec: TaskSpec) -> Task:
    """``train_points = n``: n training points drawn without replacement from the stratified training
    split with ``spec.seed`` (validation and test stay whole); 0 = the whole split."""
    if not spec.train_points:
        return task
    rng = np.random.default_rng(spec.seed)
    pick = torch.as_tensor(np.sort(rng.choice(len(task.x_train), spec.train_points, replace=False)))
    return dataclasses.replace(task, x_train=task.x_train[pick], y_train=task.y_train[pick])


def binary_digits(spec: TaskSpec) -> Task:
    """``digits01`` (0 vs 1, 360 images) or ``digits_parity`` (odd/even over all 1797): labels c = ±1 as
    targets (N, 1) for a single output unit and the margin loss with ``α = spec.margin``
    (Bernstein & Yue 2021). ``train_points = n``: n training points drawn without replacement from
    the stratified training split with ``spec.seed`` (validation and test stay whole)."""
    x, c = binary_digits_data(spec.name)
    return _subset(_split(x, c[:, None], spec, stratify=True, loss=Loss("margin", spec.margin)), spec)


def teacher_student(spec: TaskSpec) -> Task:
    """``x ~ U[0,1]^d``; targets from a random tanh teacher MLP applied to ``2x - 1``.

    Classification: the argmax of the teacher's outputs, a ``label_noise`` share redrawn
    uniformly. Regression: the teacher's outputs plus ``N(0, label_noise^2)``.
    """
    gen = torch.Generator().manual_seed(spec.seed)
    x = torch.rand(spec.n_samples, spec.teacher_sizes[0], generator=gen)
    h = 2 * x - 1
    layers = init_weights(spec.teacher_sizes, gen)
    for l, (W, b) in enumerate(layers):
        h = h @ (W * 3).T + b  # gain 3 so that the teacher is not nearly linear
        if l < len(layers) - 1:
            h = torch.tanh(h)
    if spec.kind == "classification":
        y = h.argmax(1)
        flip = torch.rand(spec.n_samples, generator=gen) < spec.label_noise
        y[flip] = torch.randint(0, spec.teacher_sizes[-1], (int(flip.sum()),), generator=gen)
        return _split(x.numpy(), y.numpy(), spec, stratify=False, loss=Loss("cross_entropy"))
    y = h + spec.label_noise * torch.randn(h.shape, generator=gen)
    return _split(x.numpy(), y.numpy(), spec, stratify=False, loss=Loss("mse"))


def seq_digits(spec: TaskSpec) -> Task:
    """sklearn's digits read row by row: 8 steps of 8 pixels (/ 16), 10 classes; the split of ``digits``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return _split(data.data.reshape(-1, 8, 8) / 16.0, data.target, spec, stratify=True, loss=Loss("cross_entropy"))


def mnist1d(spec: TaskSpec) -> Task:
    """MNIST-1D (Greydanus 2020, "Scaling down deep learning"): 40 steps x 1 input, 10 classes, generated
    by the ``mnist1d`` package's own ``make_dataset`` from its templates with its published arguments
    (5000 samples, seed 42: 4000 train / 1000 test as published; never its download path). The
    validation split is drawn from the 4000 with ``task.seed``. NumPy's global generator, which the
    package seeds, is put back afterwards."""
    from mnist1d.data import get_dataset_args, make_dataset
    from sklearn.model_selection import train_test_split

    state = np.random.get_state()
    py_state = random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
        random.setstate(py_state)
    as_seq = lambda a: a[:, :, None].astype(np.float32)  # noqa: E731
    x_train, x_val, y_train, y_val = train_test_split(as_seq(data["x"]), data["y"], test_size=spec.val_fraction,
                                                      random_state=spec.seed, stratify=data["y"])
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    return Task(as_x(x_train), as_y(y_train), as_x(x_val), as_y(y_val), as_x(as_seq(data["x_test"])),
                as_y(data["y_test"]), Loss("cross_entropy"))


def delayed_xor(spec: TaskSpec) -> Task:
    """Two cues ``c1, c2 = ±1`` on channel 0 at steps 1 and ``2 + delay``, a go signal on channel 1 at the
    last step (``T = delay + 4``); the class is 1 when the cues differ (their XOR), read at the end.
    Inputs carry N(0, 0.1²) noise; ``n_samples`` trials from ``task.seed``."""
    gen = torch.Generator().manual_seed(spec.seed)
    steps, n = spec.delay + 4, spec.n_samples
    cues = torch.randint(0, 2, (n, 2), generator=gen).float() * 2 - 1
    x = 0.1 * torch.randn(n, steps, 2, generator=gen)
    x[:, 1, 0] += cues[:, 0]
    x[:, 2 + spec.delay, 0] += cues[:, 1]
    x[:, -1, 1] += 1.0
    y = (cues[:, 0] != cues[:, 1]).long()
    return _split(x.numpy(), y.numpy(), spec, stratify=True, loss=Loss("cross_entropy"))


def pattern_generation(spec: TaskSpec) -> Task:
    """The e-prop / RFLO demonstration (Bellec et al. 2020, Fig. 2; Murray 2019): from one frozen input of
    ``channels`` random spike trains (each step a spike with probability 0.1), generate ``outputs`` target
    signals, each a sum of three sinusoids (periods 0.5, 1, 2 x the sequence, random phases and amplitudes
    in [0.5, 2]), on every step (MSE). Every sample is that same trial, with fresh N(0, 0.05²) jitter on
    the inputs, so the splits measure how well the pattern is held, not generalisation."""
    gen = torch.Generator().manual_seed(spec.seed)
    steps, n = spec.steps, spec.n_samples
    spikes = (torch.rand(steps, spec.channels, generator=gen) < 0.1).float()
    t = torch.arange(steps, dtype=torch.float32)[:, None]
    periods = torch.tensor([0.5, 1.0, 2.0]) * steps
    phase = torch.rand(spec.outputs, 3, generator=gen) * 2 * math.pi
    amplitude = 0.5 + 1.5 * torch.rand(spec.outputs, 3, generator=gen)
    target = (amplitude[None] * torch.sin(2 * math.pi * t[:, :, None] / periods + phase[None])).sum(2) / 3
    x = spikes[None] + 0.05 * torch.randn(n, steps, spec.channels, generator=gen)
    y = target[None].expand(n, steps, spec.outputs).clone()
    return _split(x.numpy(), y.numpy(), spec, stratify=False, loss=Loss("mse"))


def data_task(spec: TaskSpec) -> Task:
    """A ``file``, ``idx`` or ``arrays`` task: the checked arrays (:mod:`chiploop.experiments.data`),
    the test and validation splits as given or held out with ``spec.seed`` (``ceil(fraction n)``
    samples, stratified for classification, the split of ``digits``), then ``spec.scale`` fitted on
    the training split alone and applied to all three. Each split is indexed out of the data once
    (not at all when nothing is held out); an epoch then indexes each batch out of the training split
    (:meth:`Task.batches`), never copying the whole of it."""
    from chiploop.experiments.data.load import load
    from chiploop.experiments.data.splits import split_indices

    data = load(spec)
    classify = spec.kind == "classification"
    train_idx, val_idx, test_idx = split_indices(data, spec)
    whole = len(train_idx) == len(data.x)  # nothing held out: train on the loaded arrays, no copy
    train = (data.x, data.y) if whole else (data.x[train_idx], data.y[train_idx])
    val = data.val if val_idx is None else (data.x[val_idx], data.y[val_idx])
    test = data.test if test_idx is None else (data.x[test_idx], data.y[test_idx])
    parts = [train, val, test]
    if spec.scale != "none":
        parts = [(scale_fitted(train[0], spec.scale)(x), y) for x, y in parts]
    target = torch.long if classify else torch.float32
    tensors = [t for x, y in parts for t in (torch.as_tensor(x), torch.as_tensor(y, dtype=target))]
    return Task(*tensors, Loss("cross_entropy" if classify else "mse"))


def scale_fitted(x_train: np.ndarray, how: str):
    """``x -> (x - mean) / std`` (``standard``) or ``x -> (x - min) / (max - min)`` (``minmax``), per
    feature (over samples and time steps), fitted on ``x_train``; a constant feature is only shifted."""
    axes = tuple(range(x_train.ndim - 1))
    if how == "standard":
        shift, span = x_train.mean(axes, dtype=np.float64), x_train.std(axes, dtype=np.float64)
    else:
        shift = x_train.min(axes).astype(np.float64)
        span = x_train.max(axes).astype(np.float64) - shift
    span = np.where(span > 0, span, 1.0)
    shift, span = shift.astype(np.float32), span.astype(np.float32)
    return lambda x: (x - shift) / span


def spike_digits(spec: TaskSpec) -> Task:
    """sklearn's digits as Poisson spike trains (Diehl & Cook 2015's encoding): pixel ``p`` / 16 in [0, 1]
    fires in each of the ``T = round(presentation / dt)`` steps with probability ``p · max_rate · dt``
    (rate in Hz, dt in ms / 1000), one frozen draw per sample from ``task.seed`` (the same trains every
    epoch); the split of ``digits``. Inputs (samples, T, 64) in {0, 1}."""
    from sklearn.datasets import load_digits

    data = load_digits()
    steps = max(1, round(spec.presentation / spec.dt))
    prob = torch.as_tensor(data.data / 16.0, dtype=torch.float32) * (spec.max_rate * spec.dt / 1000.0)
    gen = torch.Generator().manual_seed(spec.seed)
    spikes = (torch.rand(len(prob), steps, prob.shape[1], generator=gen) < prob[:, None, :]).float()
    return _split(spikes.numpy(), data.target, spec, stratify=True, loss=Loss("cross_entropy"))


TASKS = {"digits": digits, "digits01": binary_digits, "digits_parity": binary_digits, "teacher_student": teacher_student, "seq_digits": seq_digits, "mnist1d": mnist1d,
         "delayed_xor": delayed_xor, "pattern_generation": pattern_generation, "spike_digits": spike_digits,
         "file": data_task, "idx": data_task, "arrays": data_task}


def make_task(spec: TaskSpec) -> Task:
    """The data of a task spec (deterministic in ``spec.seed``)."""
    return TASKS[spec.name](spec)
