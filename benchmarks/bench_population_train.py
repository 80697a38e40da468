"""Training a population of P small chips in one process ÷ P single runs one after the other (issue #16,
"An API to train a population"). Reported, never asserted.

P runs of one torch-engine experiment (digits, MLP 64-64-10, backprop, batch 32, constant-step)
that differ only in seed: ``chiploop.experiments.population.train_population`` against ``train``
once per seed, in wall seconds and in this process's CPU seconds (the machine is shared).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_population_train.py [--population 32] [--epochs 1]``
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from chiploop.experiments.population import seeded, train_population
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="constant-step")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 64, 10])
    ap.add_argument("--population", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    spec = experiment_from_data({"device": {"preset": args.device, "engine": "torch"}, "model": {"sizes": args.sizes},
                                 "lr": 0.3, "epochs": args.epochs})
    specs = seeded(spec, range(args.population))
    train(specs[0], progress=False)  # warm-up: data set and imports
    seq = timed(lambda: [train(s, progress=False) for s in specs])
    pop = timed(lambda: train_population(specs, progress=False))
    print(f"{args.device} (torch engine), MLP {'-'.join(map(str, args.sizes))}, {args.epochs} epoch(s), "
          f"P = {args.population}, torch.set_num_threads(1)")
    for i, unit in enumerate(("wall", "CPU")):
        print(f"{unit}: {args.population} single runs {seq[i]:.2f} s, one population {pop[i]:.2f} s, "
              f"throughput ratio {seq[i] / pop[i]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
