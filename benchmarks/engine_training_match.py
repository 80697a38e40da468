"""Training match of the torch engine against aihwkit (issue #16, acceptance 2).

digits, MLP 64-64-10, backprop, batch 32, on constant-step, ecram and reram-sb, ``--seeds`` seeds
per engine: mean test accuracy of each engine with the 95 % CI (t-interval) of aihwkit's, and
whether the torch engine's mean lies in it. Prints a markdown table; ``--out`` writes it as JSON.

    PYTHONPATH=src python benchmarks/engine_training_match.py --seeds 5 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from tqdm import tqdm

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train

LR = {"constant-step": 0.3, "ecram": 0.3, "reram-sb": 0.1}
T975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


def ci95(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95 % t-interval."""
    m = statistics.fmean(values)
    h = T975.get(len(values), 2.0) * statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return m, m - h, m + h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--devices", nargs="+", default=list(LR))
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    jobs = [(dev, eng, s) for dev in args.devices for eng in ("aihwkit", "torch") for s in range(args.seeds)]
    acc: dict[tuple[str, str], list[float]] = {}
    wall: dict[tuple[str, str], float] = {}
    for dev, eng, seed in tqdm(jobs, desc="runs"):
        spec = experiment_from_data({"device": {"preset": dev, "engine": eng}, "model": {"sizes": [64, 64, 10]},
                                     "rule": {"name": "backprop"}, "epochs": args.epochs, "lr": LR[dev],
                                     "batch_size": 32, "seed": seed})
        t = time.perf_counter()
        result = train(spec, progress=False)
        wall[dev, eng] = wall.get((dev, eng), 0.0) + time.perf_counter() - t
        acc.setdefault((dev, eng), []).append(result.final["test_acc"])
    rows = []
    print("| device | lr | aihwkit mean [95 % CI] | torch mean [95 % CI] | torch mean in aihwkit CI | wall s (aihwkit / torch) |")
    print("|---|---|---|---|---|---|")
    for dev in args.devices:
        a, t = ci95(acc[dev, "aihwkit"]), ci95(acc[dev, "torch"])
        inside = a[1] <= t[0] <= a[2]
        rows.append({"device": dev, "aihwkit": acc[dev, "aihwkit"], "torch": acc[dev, "torch"], "inside": inside})
        print(f"| {dev} | {LR[dev]} | {a[0]:.4f} [{a[1]:.4f}, {a[2]:.4f}] | {t[0]:.4f} [{t[1]:.4f}, {t[2]:.4f}] | "
              f"{'yes' if inside else 'no'} | {wall[dev, 'aihwkit']:.0f} / {wall[dev, 'torch']:.0f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
