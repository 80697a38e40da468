"""What each rule and each device do to one update: bias and variance split into parts.

    .venv/bin/python experiments/probe_rules.py [--repeats 16] [--devices ideal constant-step reram-sb]

For every registered rule (default options) on each device, at the untrained chip (seed 0) and one
digits batch of 32, the update probe (chiploop.learning.diagnostics) repeats the step K times on
clones and prints, averaged over the two layers of a 64-64-10 MLP, each part's relative bias
||E[e]||/||g|| and relative variance E||e - E e||²/||g||², and the cosine of the applied update
with the true gradient.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run
from chiploop.learning import RULES
from chiploop.learning.diagnostics import probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=16)
    parser.add_argument("--devices", nargs="+", default=["ideal", "constant-step", "reram-sb"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| rule | device | algorithmic bias / var | read bias / var | write bias / var | cos(applied, g) |")
    print("|---|---|---|---|---|---|")
    for device in args.devices:
        for rule in sorted(name for name, cls in RULES.items() if cls.networks is None or "mlp" in cls.networks):
            run = Run.build(experiment_from_data({"device": device, "rule": rule, "seed": 0}))
            batch = (run.task.x_train[:32], run.task.y_train[:32])
            rows = probe(run.network, run.rule, run.state, batch, run.task.loss, 0.1, args.repeats)

            def mean(part: str, key: str) -> float:
                return statistics.mean(r[key] for r in rows if r["part"] == part)
            cells = [f"{mean(p, 'rel_bias'):.3g} / {mean(p, 'rel_var'):.3g}" for p in ("algorithmic", "read", "write")]
            print(f"| {rule} | {device} | " + " | ".join(cells) + f" | {mean('total', 'cos'):.3f} |")


if __name__ == "__main__":
    main()
