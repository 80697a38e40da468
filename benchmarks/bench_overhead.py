"""How much slower is a chiploop training epoch than the same training written directly?

Two comparisons on the digits MLP 64-64-10 (ReLU), batch 32, lr 0.1, the digits train split of
chiploop's ``make_task``, the same initial weights and the same batch order on both sides:

* ``analog``: chiploop backprop on the ``constant-step`` preset vs. raw aihwkit
  (``AnalogSequential`` of ``AnalogLinear(bias=True)`` with the very same RPUConfig from
  ``to_rpu_config``, digital bias, ``AnalogSGD`` + ``regroup_param_groups``, ``F.cross_entropy``).
  Target: ratio <= 1.05.
* ``ideal``: chiploop backprop on the ``ideal`` device (pure-torch ``IdealCrossbar``) vs. plain
  torch (``nn.Sequential(nn.Linear, nn.ReLU, nn.Linear)`` + ``torch.optim.SGD``). Target: ratio <= 1.10.

Each timed repeat is one full training epoch (training steps only, no evaluation): ``run.epoch()``
under ``torch.no_grad()`` as ``train`` runs it, and an equivalent loop over the same batches for the
baseline. After one warm-up epoch per side, the two sides alternate repeat by repeat (so machine load
hits both alike) and the medians are compared. Single-threaded torch, as chiploop runs use.

Run: ``make bench`` (= ``.venv/bin/python benchmarks/bench_overhead.py``), optionally ``--repeats N``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from aihwkit.nn import AnalogLinear, AnalogSequential
from aihwkit.optim import AnalogSGD
from torch import nn

from chiploop.devices import load_device
from chiploop.devices.aihwkit import to_rpu_config
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run
from timing import interleaved_medians  # benchmarks/timing.py

SIZES, LR, BATCH = (64, 64, 10), 0.1, 32
TARGETS = {"analog": 1.05, "ideal": 1.10}


def build_run(device: str) -> Run:
    spec = experiment_from_data({"task": {"name": "digits"}, "model": {"sizes": list(SIZES), "activation": "relu"},
                                 "device": device, "lr": LR, "batch_size": BATCH})
    return Run.build(spec)


def baseline_epoch(run: Run, model: nn.Module, opt: torch.optim.Optimizer) -> Callable[[], None]:
    """An epoch of ``model`` over the batches ``run.epoch()`` sees: a generator mirroring the run's."""
    generator = torch.Generator()
    generator.set_state(run.generator.get_state())
    x, y = run.task.x_train, run.task.y_train

    def epoch() -> None:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH):
            idx = order[start:start + BATCH]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()

    return epoch


def chiploop_epoch(run: Run) -> Callable[[], None]:
    def epoch() -> None:
        with torch.no_grad():  # as chiploop's train() runs its epochs
            run.epoch()
    return epoch


def copy_weights(run: Run, layers: list[nn.Module]) -> None:
    """Start the baseline from the run's initial weights and biases."""
    chip = run.network.chip
    for name, layer in zip(run.network.weight_names, layers, strict=True):
        W, b = chip.weights()[name], chip.biases[name].clone()
        if isinstance(layer, AnalogLinear):
            layer.set_weights(W, b)
        else:
            with torch.no_grad():
                layer.weight.copy_(W)
                layer.bias.copy_(b)


def analog_pair() -> tuple[Callable[[], None], Callable[[], None]]:
    run = build_run("constant-step")
    config = to_rpu_config(load_device("constant-step"))
    layers = [AnalogLinear(i, o, bias=True, rpu_config=config) for i, o in zip(SIZES[:-1], SIZES[1:])]
    copy_weights(run, layers)
    model = AnalogSequential(layers[0], nn.ReLU(), layers[1])
    model.train()
    opt = AnalogSGD(model.parameters(), lr=LR)
    opt.regroup_param_groups(model)
    return chiploop_epoch(run), baseline_epoch(run, model, opt)


def ideal_pair() -> tuple[Callable[[], None], Callable[[], None]]:
    run = build_run("ideal")
    layers = [nn.Linear(i, o) for i, o in zip(SIZES[:-1], SIZES[1:])]
    copy_weights(run, layers)
    model = nn.Sequential(layers[0], nn.ReLU(), layers[1])
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    return chiploop_epoch(run), baseline_epoch(run, model, opt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed epochs per side (>= 5)")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    torch.set_num_threads(1)

    rows = [("analog", "raw aihwkit", analog_pair), ("ideal", "plain torch", ideal_pair)]
    print(f"median of {args.repeats} epochs, digits {'-'.join(map(str, SIZES))}, batch {BATCH}, lr {LR}")
    print(f"{'config':<8} {'baseline':<12} {'chiploop ms':>11} {'baseline ms':>11} {'ratio':>6} {'target':>7}  met")
    for config, baseline, make_pair in rows:
        ours, theirs = interleaved_medians(list(make_pair()), args.repeats)
        ratio, target = ours / theirs, TARGETS[config]
        print(f"{config:<8} {baseline:<12} {ours * 1e3:>11.2f} {theirs * 1e3:>11.2f} {ratio:>6.3f} "
              f"{'<= ' + format(target, '.2f'):>7}  {'yes' if ratio <= target else 'NO'}")


if __name__ == "__main__":
    main()
