"""The update probe's overhead on the torch engine, population step against the loop (issue #16, acceptance 4.2).

A torch-engine training run (digits, MLP 64-64-10, backprop, batch 32) with
``diagnostics: {every: 50, repeats: 8}`` ÷ the same run without, with the probe's K repeats run as one
population step (the default on the torch engine) and, for comparison, as K clone/step/restore
cycles. Medians of interleaved repeats, in wall seconds and in this process's CPU seconds (the
machine is shared: CPU time is what the run itself costs); reported, never asserted (the same
measurement as ``bench_engine.py``'s item 2, which times the default path in wall seconds).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_population_probe.py [--epochs 5] [--run-repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import chiploop.learning.diagnostics as diagnostics
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train



def medians(fns, repeats: int) -> list[tuple[float, float]]:
    """(wall, CPU) median seconds per call of each fn: one warm-up each, then interleaved repeats."""
    for fn in fns:
        fn()
    times: list[list[tuple[float, float]]] = [[] for _ in fns]
    for r in range(repeats):
        for i in (range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))):
            wall, cpu = time.perf_counter(), time.process_time()
            fns[i]()
            times[i].append((time.perf_counter() - wall, time.process_time() - cpu))
    return [(statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for t in times]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="constant-step")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 64, 10])
    ap.add_argument("--lr", type=float, default=0.3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--run-repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    base = {"device": {"preset": args.device, "engine": "torch"}, "model": {"sizes": args.sizes}, "lr": args.lr,
            "epochs": args.epochs}
    plain = experiment_from_data(base)
    probed = experiment_from_data({**base, "diagnostics": {"every": 50, "repeats": 8}})
    automatic = diagnostics.population_probe_ok

    def looped():
        diagnostics.population_probe_ok = lambda network, rule: False
        try:
            train(probed, progress=False)
        finally:
            diagnostics.population_probe_ok = automatic

    plain_t, pop_t, loop_t = medians([lambda: train(plain, progress=False), lambda: train(probed, progress=False),
                                      looped], args.run_repeats)
    print(f"{args.device} (torch engine), MLP {'-'.join(map(str, args.sizes))}, {args.epochs} epochs, "
          f"median of {args.run_repeats} interleaved runs, torch.set_num_threads(1)")
    for i, unit in enumerate(("wall", "CPU")):
        print(f"{unit}: without diagnostics {plain_t[i]:.2f} s; {{every: 50, repeats: 8}} population probe "
              f"{pop_t[i]:.2f} s, ratio {pop_t[i] / plain_t[i]:.3f} (target <= 1.25); loop probe {loop_t[i]:.2f} s, "
              f"ratio {loop_t[i] / plain_t[i]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
