"""The spiking network's training step: time per simulated second of network activity, on the ideal chip
and on ``constant-step`` devices, and where the time goes (reported, not asserted).

Setup: spike_digits (dt 1 ms, 50 ms presentations, 64 Poisson inputs), ``model: {kind: snn, hidden: 100}``,
batch 16; rules ``sym_stdp`` and ``backprop`` (the surrogate-gradient walk). For each (device, rule): the
wall time of ``Learner.step`` over ``--batches`` batches divided by the simulated time (batches x 16 x
50 ms), and the shares of that wall time spent in crossbar verbs (forward reads, transposed reads,
pulsed updates, weight reads of synaptic scaling) and in the LIF neuron steps, measured by wrapping the
crossbars and the step function in timers within the same run.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_snn.py [--batches 10]``
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch

import chiploop.emulator.networks.snn as snn_module
from chiploop.devices.spec import load_device
from chiploop.emulator import chip_factory
from chiploop.emulator.networks import SNNSpec
from chiploop.experiments.spec import TaskSpec
from chiploop.experiments.tasks import make_task
from chiploop.learning import make_rule
from chiploop.learning.learner import Learner

BATCH, PRESENTATION_MS = 16, 50.0
RULES = {"sym_stdp": ({"target_in": 2.0, "target_out": 25.0}, 0.0005), "backprop": ({}, 0.01)}


class Timed:
    """A crossbar whose verbs add their wall time to ``clock[verb]``."""

    def __init__(self, inner, clock):
        self.inner, self.clock = inner, clock

    def __getattr__(self, attr):
        value = getattr(self.inner, attr)
        if attr not in ("forward", "backward", "update", "read_weights"):
            return value

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                self.clock[attr] += time.perf_counter() - start
        return timed


def measure(device: str, rule: str, batches: int) -> dict[str, float]:
    task = make_task(TaskSpec(name="spike_digits", presentation=PRESENTATION_MS))
    spec = SNNSpec(hidden=100, r_m=200.0, inhibition=0.75)
    dev = load_device(device)
    net = spec.build(chip_factory(dev, ideal=dev.is_float), torch.Generator().manual_seed(0))
    options, lr = RULES[rule]
    learner = Learner.create(net, make_rule(rule, options), task.loss, torch.Generator().manual_seed(0))
    clock: dict[str, float] = defaultdict(float)
    for name in net.weight_names:
        net.chip.crossbars[name] = Timed(net.chip.crossbars[name], clock)
    step = snn_module.lif_step

    def timed_step(*args):
        start = time.perf_counter()
        try:
            return step(*args)
        finally:
            clock["lif"] += time.perf_counter() - start

    snn_module.lif_step = timed_step
    try:
        learner.step(task.x_train[:BATCH], task.y_train[:BATCH], lr)   # warm-up
        clock.clear()
        start = time.perf_counter()
        for k in range(1, batches + 1):
            learner.step(task.x_train[k * BATCH:(k + 1) * BATCH], task.y_train[k * BATCH:(k + 1) * BATCH], lr)
        wall = time.perf_counter() - start
    finally:
        snn_module.lif_step = step
    simulated = batches * BATCH * PRESENTATION_MS / 1000.0
    verbs = sum(v for k, v in clock.items() if k != "lif")
    return {"s_per_simulated_s": wall / simulated, "verbs_share": verbs / wall, "lif_share": clock["lif"] / wall,
            **{f"{k}_share": v / wall for k, v in sorted(clock.items()) if k != "lif"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'device':14} {'rule':9} {'s/sim s':>8} {'verbs':>6} {'LIF':>6}  verbs by kind")
    for device in ("ideal", "constant-step"):
        for rule in RULES:
            r = measure(device, rule, args.batches)
            kinds = ", ".join(f"{k[:-6]} {v:.0%}" for k, v in r.items() if k.endswith("_share")
                              and k not in ("verbs_share", "lif_share"))
            print(f"{device:14} {rule:9} {r['s_per_simulated_s']:8.3f} {r['verbs_share']:6.0%} {r['lif_share']:6.0%}"
                  f"  {kinds}")


if __name__ == "__main__":
    main()
