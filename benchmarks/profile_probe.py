"""Where one update probe spends its time: mean milliseconds per probe and a cProfile listing.

Digits MLP 64-64-10, backprop, batch 32, K = 8 repeats, on the chosen device (untrained chip).
Complements bench_diagnostics.py, which gives the probe's cost relative to training.

Run: ``.venv/bin/python benchmarks/profile_probe.py [--device constant-step] [--probes 20]``
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import torch

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run
from chiploop.learning.backprop import Backprop
from chiploop.learning.diagnostics import probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="constant-step")
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = Run.build(experiment_from_data({"device": args.device, "model": {"sizes": [64, 64, 10]}, "lr": 0.3}))
    batch = run.task.x_train[:32], run.task.y_train[:32]

    def probes() -> None:
        for _ in range(args.probes):
            probe(run.network, Backprop(), None, batch, run.task.loss, 0.3, 8)

    probes()  # warm-up
    start = time.perf_counter()
    probes()
    print(f"{args.device}: {(time.perf_counter() - start) / args.probes * 1e3:.1f} ms per probe (K = 8)\n")
    profile = cProfile.Profile()
    profile.runcall(probes)
    pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
