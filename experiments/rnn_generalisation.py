"""Seed 001 on chips (Liu, Ghosh, Richards, Shea-Brown & Lajoie 2022): do temporal rules that follow
the gradient less closely generalise worse and more variably, and end in sharper regions?

    .venv/bin/python experiments/rnn_generalisation.py runs/rnn_rules [--out docs] [--png rnn_rules.png]

Reads a suite directory written by ``chiploop demo --suite experiments/rnn_rules.yaml --out DIR``
(runs named ``RULE@DEVICE``, several seeds, curvature at the end over all weights and over W_rec
alone; ``experiments/rnn_rules_xor.yaml`` is the same study on delayed XOR) and prints, per device and rule: test accuracy (mean ± 95 % CI over seeds), the
generalisation gap (test − train loss; mean and spread over seeds), the top Hessian eigenvalue and
the trace over W_rec. It writes ``rnn_rules.png``: the gap against λ_max(W_rec), a point per
(rule, seed), coloured by rule, a panel per device (the paper's central figure), and prints the
Spearman rank correlation of gap and λ_max(W_rec) over all points of a device.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr

from chiploop.experiments.plots import save
from chiploop.experiments.stats import ci95

RULE_ORDER = ["bptt", "bptt-truncate=2", "eprop", "eprop-feedback=random", "rflo"]
DEVICE_ORDER = ["ideal", "constant-step", "reram-sb"]


def devices(frame: pd.DataFrame) -> list[str]:
    """The devices of the table, the known ones in DEVICE_ORDER, then the others as they come."""
    found = list(dict.fromkeys(frame["device_label"]))
    return [d for d in DEVICE_ORDER if d in found] + [d for d in found if d not in DEVICE_ORDER]


def load(out_dir: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out_dir / "results.parquet")
    frame = frame[frame["status"] == "ok"].copy()
    frame[["rule_label", "device_label"]] = frame["name"].str.split("@", n=1, expand=True)
    return frame


def table(frame: pd.DataFrame) -> str:
    lines = ["| device | rule | seeds | test acc (95% CI) | gen. gap mean (std) | λ_max(W_rec) | tr H(W_rec) | "
             "λ_max(all) |", "|---|---|---|---|---|---|---|---|"]
    for device in devices(frame):
        by_device = frame[frame["device_label"] == device]
        for rule in [r for r in RULE_ORDER if r in set(by_device["rule_label"])]:
            runs = by_device[by_device["rule_label"] == rule]
            acc, gap = list(runs["test_acc"]), list(runs["gen_gap"])
            spread = statistics.stdev(gap) if len(gap) > 1 else float("nan")
            lines.append(f"| {device} | {rule} | {len(runs)} | {statistics.mean(acc):.3f} ± {ci95(acc):.3f} | "
                         f"{statistics.mean(gap):.3f} ({spread:.3f}) | {runs['hessian_top_eig_W_rec'].mean():.3g} | "
                         f"{runs['hessian_trace_W_rec'].mean():.3g} | {runs['hessian_top_eig'].mean():.3g} |")
    return "\n".join(lines)


def correlations(frame: pd.DataFrame) -> list[str]:
    out = []
    for device in devices(frame):
        runs = frame[frame["device_label"] == device]
        rho, p = spearmanr(runs["hessian_top_eig_W_rec"], runs["gen_gap"])
        out.append(f"{device}: Spearman rho(gap, λ_max(W_rec)) = {rho:.2f} (p = {p:.2g}, {len(runs)} runs)")
    return out


def scatter(frame: pd.DataFrame, path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    panels = devices(frame)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4), squeeze=False)
    colours = dict(zip(RULE_ORDER, plt.get_cmap("tab10").colors))
    for ax, device in zip(axes[0], panels):
        runs = frame[frame["device_label"] == device]
        for rule in [r for r in RULE_ORDER if r in set(runs["rule_label"])]:
            mine = runs[runs["rule_label"] == rule]
            ax.scatter(mine["hessian_top_eig_W_rec"], mine["gen_gap"], label=rule, color=colours[rule], alpha=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # a narrow log range labels its minor ticks on top of each other
        ax.set_title(device)
        ax.set_xlabel("top Hessian eigenvalue over W_rec (log)")
        ax.set_ylabel("generalisation gap (test - train loss)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{title}: gap against curvature, a point per (rule, seed)")
    return save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="where to write the plot (default SUITE_DIR)")
    parser.add_argument("--png", default="rnn_rules.png", help="the plot's file name (default rnn_rules.png)")
    args = parser.parse_args()
    frame = load(args.suite_dir)
    print(table(frame))
    print()
    print("\n".join(correlations(frame)))
    task = json.loads((args.suite_dir / "sweep.json").read_text())["spec"]["base"]["task"]
    title = f"{task if isinstance(task, str) else task['name']} RNN"
    print(f"wrote {scatter(frame, (args.out or args.suite_dir) / args.png, title)}")


if __name__ == "__main__":
    main()
