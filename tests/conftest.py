"""Shared fixtures and helpers.

The helpers are plain functions (tests import them: ``from conftest import ideal_problem``):

* :func:`ideal_problem` — a small MLP on exact float crossbars and a seeded batch, the problem
  most oracle and statistical tests start from (:func:`ideal_rnn_problem`: the same for the RNN);
* :func:`attach` — what a run's builder does with a rule: install the crossbars it requests, then
  draw its state;
* :func:`estimates` — every crossbar's estimate ``ĝ = dᵀx`` for one batch;
* :func:`step` — one training step (unroll, signals, ``chip.apply``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from processes import alive, children, free_port

from chiploop.emulator import MLP, Network
from chiploop.emulator.networks import RNN, SNNSpec
from chiploop.learning import LearningRule, Loss


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def spec_file(tmp_path):
    """Write a YAML text to a file in tmp_path and return its path."""
    def write(text: str, name: str = "spec.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


@pytest.fixture
def loopback_cluster(tmp_path):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1, stopped by process id."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": tmp_path}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              **quiet)]
    procs += [subprocess.Popen([dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                                "--no-dashboard"], **quiet) for _ in range(2)]
    try:
        from distributed import Client
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        everything = set().union(*(children(p.pid) | {p.pid} for p in procs))
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in alive(everything):
            os.kill(pid, signal.SIGKILL)


class Problem(NamedTuple):
    """A network on an ideal chip, one batch ``(x, y)``, its loss, and the generator that drew them
    (it runs on: rule crossbars and rule state drawn from it come after the batch)."""

    net: Network
    batch: tuple[torch.Tensor, torch.Tensor]
    loss: Loss
    generator: torch.Generator


def ideal_problem(sizes: Sequence[int], activation: str = "tanh", seed: int = 0, batch: int = 16,
                  loss: str = "cross_entropy", init: Callable[[MLP, torch.Generator], None] | None = None
                  ) -> Problem:
    """An MLP of ``sizes`` on exact float crossbars and a batch, all from one generator seeded by
    ``seed``, in this order: the weights (``MLP.build``), then ``init(net, generator)`` if given
    (reprogram or zero something before the batch is drawn), then ``x ~ N(0, 1)`` (batch, in),
    then ``y``: class labels for ``cross_entropy``, ``N(0, 1)`` targets (batch, out) for ``mse``."""
    gen = torch.Generator().manual_seed(seed)
    net = MLP.build(sizes, activation, None, gen)
    if init is not None:
        init(net, gen)
    x = torch.randn(batch, sizes[0], generator=gen)
    if loss == "cross_entropy":
        y = torch.randint(0, sizes[-1], (batch,), generator=gen)
    else:
        y = torch.randn(batch, sizes[-1], generator=gen)
    return Problem(net, (x, y), Loss(loss), gen)


def ideal_rnn_problem(n_in: int = 3, hidden: int = 5, n_out: int = 4, steps: int = 5, alpha: float = 0.6,
                      activation: str = "tanh", readout: str = "last", seed: int = 0, batch: int = 16,
                      loss: str = "cross_entropy", leak: str = "preactivation") -> Problem:
    """A leaky RNN on exact float crossbars and a batch of sequences, from one generator seeded by
    ``seed``: the weights, then ``x ~ N(0, 1)`` (batch, steps, n_in), then ``y``: labels (batch,)
    for readout ``last``, (batch, steps) for ``every`` (``mse``: ``N(0, 1)`` targets shaped like the
    output)."""
    gen = torch.Generator().manual_seed(seed)
    net = RNN.build(n_in, hidden, n_out, alpha, activation, readout, None, gen, leak)
    x = torch.randn(batch, steps, n_in, generator=gen)
    shape = (batch,) if readout == "last" else (batch, steps)
    if loss == "cross_entropy":
        y = torch.randint(0, n_out, shape, generator=gen)
    else:
        y = torch.randn(*shape, n_out, generator=gen)
    return Problem(net, (x, y), Loss(loss), gen)


def ideal_snn_problem(hidden: int = 12, steps: int = 20, seed: int = 0, batch: int = 8, rate: float = 0.15
                      ) -> Problem:
    """A spiking network (64 inputs, ``hidden`` LIF neurons, 10 outputs; R = 200 MΩ so that both layers
    fire) on exact float crossbars and a batch of Bernoulli(``rate``) input spikes (batch, steps, 64) with
    labels, from one generator seeded by ``seed`` (weights first)."""
    gen = torch.Generator().manual_seed(seed)
    net = SNNSpec(hidden=hidden, r_m=200.0, inhibition=0.5).build(None, gen)
    x = (torch.rand(batch, steps, 64, generator=gen) < rate).float()
    y = torch.randint(0, 10, (batch,), generator=gen)
    return Problem(net, (x, y), Loss("cross_entropy"), gen)


def attach(rule: LearningRule, net, generator: torch.Generator) -> Any:
    """Install the crossbars ``rule`` requests on ``net``'s chip (drawn from ``generator``), then
    return its state (drawn next), as ``Run.build`` does."""
    net.chip.install(rule.crossbars(net, generator))
    return rule.init(net, generator)


def estimates(rule: LearningRule, net, state: Any, batch, loss: Loss) -> dict[str, torch.Tensor]:
    """``{crossbar: ĝ = dᵀx}`` of every signal the rule hands over for ``batch`` (no update)."""
    with torch.no_grad():
        trace = net.unroll(batch[0])
        signals, _ = rule.signals(net, trace, batch, loss, state)
    return {s.name: s.d.T @ s.x for s in signals}


def step(rule: LearningRule, net, state: Any, batch, loss: Loss, lr: float = 0.1) -> tuple[list, Any]:
    """One training step on ``net``'s chip: unroll, the rule's signals, ``chip.apply``. Returns the
    signals and the rule's new state."""
    with torch.no_grad():
        trace = net.unroll(batch[0])
        signals, state = rule.signals(net, trace, batch, loss, state)
        net.chip.apply(signals, lr)
    return signals, state
