"""Per-step time of every learning rule divided by analog backprop's, on the same chip, one run.

Digits MLP 64-64-10 on ``constant-step`` crossbars, batch 32, lr 0.1: each timed repeat is 20
training steps (forward, the rule's signals, pulsed updates) of one rule; all rules are timed
interleaved repeat by repeat so that machine load hits them alike, and medians are compared.
Targets (reported, not asserted): FA and DFA <= 1.0, NP <= 1.5.

Run: ``.venv/bin/python benchmarks/bench_rules.py [--repeats 7] [--device constant-step]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run
from chiploop.learning import RULES
from timing import interleaved_medians  # benchmarks/timing.py

TARGETS = {"feedback_alignment": 1.0, "direct_feedback_alignment": 1.0, "node_perturbation": 1.5}
STEPS, BATCH, LR = 20, 32, 0.1


def steps_of(rule: str, device: str, decorrelation: bool) -> Callable[[], None]:
    data = {"device": device, "rule": rule, "model": {"sizes": [64, 64, 10]}, "batch_size": BATCH}
    if decorrelation:
        data["decorrelation"] = {}
    run = Run.build(experiment_from_data(data))
    x, y = run.task.x_train, run.task.y_train

    def steps() -> None:
        with torch.no_grad():
            for k in range(STEPS):
                run.step(x[k * BATCH:(k + 1) * BATCH], y[k * BATCH:(k + 1) * BATCH], LR)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="constant-step")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mlp_rules = sorted(name for name, cls in RULES.items() if cls.networks is None or "mlp" in cls.networks)
    cases = [(rule, False) for rule in mlp_rules] + [("backprop", True), ("node_perturbation", True)]
    times = interleaved_medians([steps_of(r, args.device, d) for r, d in cases], args.repeats)
    reference = times[cases.index(("backprop", False))]
    print(f"{args.device}, digits 64-64-10, batch {BATCH}: median of {args.repeats} x {STEPS} steps")
    print(f"{'rule':<40} {'ms/step':>8} {'÷ backprop':>10}  target")
    for (rule, decorrelated), t in zip(cases, times):
        name = rule + (" + decorrelation" if decorrelated else "")
        target = TARGETS.get(rule) if not decorrelated else None
        verdict = "" if target is None else f"<= {target:.2f} {'yes' if t / reference <= target else 'NO'}"
        print(f"{name:<40} {t / STEPS * 1e3:>8.2f} {t / reference:>10.2f}  {verdict}")


if __name__ == "__main__":
    main()
