"""Seed 002: NNGP posterior vs gradient descent with margin scale α on digit parity (Bernstein & Yue 2021).

    .venv/bin/python experiments/implicit_bias.py [--config experiments/implicit_bias.yaml]
        [--n 50 100 ...] [--depths 2 4] [--devices ideal ...] [--alphas ...] [--seeds 0 1 2] [--epochs 500]
        [--out runs/implicit_bias] [--plot docs/implicit_bias.png] [--workers N | --scheduler ADDRESS]

For every training-set size n and depth it computes, on the exact n training points and the whole
test split: the NNGP posterior's average test error (importance-sampled, chiploop.learning.nngp),
the PAC-Bayes bound on it (from the Jensen bound on C = -log P(orthant)), and trains full-batch
backprop with the margin loss mean (f(x) - α c)² at every α, on every device, for every seed (one
sweep per n into OUT/n<n>: re-running resumes). Prints a markdown table (mean ± std over seeds of the
final test error, the fraction of fitted training sets) and draws test error vs n, a panel per
(depth, device).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from chiploop.experiments.cli import engine_options
from chiploop.experiments.spec import TaskSpec
from chiploop.experiments.sweeps.engine import make_executor
from chiploop.experiments.sweeps.ledger import read_rows
from chiploop.experiments.sweeps.runner import counts_text, run_sweep, sweep_study
from chiploop.experiments.sweeps.spec import SweepSpec
from chiploop.experiments.tasks import make_task
from chiploop.learning.nngp import complexity_bound, complexity_estimate, nngp_kernel, pac_bayes_bound, posterior_error
from chiploop.specs import SpecError, from_mapping


def sizes(depth: int, width: int) -> list[int]:
    return [64] + [width] * (depth - 1) + [1]


def lr_at(alpha: float, lr: float) -> float:
    """lr for α ≤ 1, lr / α above (see the config)."""
    return lr / max(1.0, alpha)


def sweep(cfg: dict, n: int) -> SweepSpec:
    """All runs at training-set size n: zip (α, its lr), grid (depth, device), seeds."""
    return from_mapping(SweepSpec, {
        "base": {"task": {"name": cfg["task"], "train_points": n}, "rule": "backprop", "schedule": "constant",
                 "batch_size": n, "epochs": cfg["epochs"], "threads": 1},
        "zip": {"task.margin": [float(a) for a in cfg["alphas"]],
                "lr": [lr_at(a, cfg["lr"]) for a in cfg["alphas"]]},
        "grid": {"model.sizes": [sizes(d, cfg["width"]) for d in cfg["depths"]], "device": list(cfg["devices"])},
        "seeds": list(cfg["seeds"])}, source="experiments/implicit_bias.py")


def sweeps(cfg: dict) -> list[SweepSpec]:
    """The config's sweeps, one per n (tests/test_shipped_specs.py expands them)."""
    return [sweep(cfg, n) for n in cfg["n"]]


def nngp_row(cfg: dict, n: int, depth: int) -> dict:
    """NNGP estimate and bounds at (n, depth) on the very training subset GD sees."""
    task = make_task(TaskSpec(name=cfg["task"], train_points=n))
    X = np.concatenate([task.x_train.numpy(), task.x_test.numpy()]).astype(np.float64)
    c = task.y_train[:, 0].numpy().astype(np.float64)
    c_test = task.y_test[:, 0].numpy().astype(np.float64)
    K = nngp_kernel(X, sizes(depth, cfg["width"]))
    rng = np.random.default_rng(1000 * n + depth)  # seeded by the cell
    samples = cfg["nngp_samples"]
    C_bound = complexity_bound(K[:n, :n], c)
    C_est = complexity_estimate(K[:n, :n], c, samples, rng)
    return {"n": n, "depth": depth, "estimate": posterior_error(K, c, c_test, samples, rng),
            "bound": pac_bayes_bound(C_bound, n, cfg["delta"]), "bound_mc": pac_bayes_bound(C_est, n, cfg["delta"]),
            "C_bound": C_bound, "C_est": C_est}


def outcome(row: dict) -> dict:
    spec, final = row["spec"], row["final"]
    return {"n": spec["task"]["train_points"], "alpha": spec["task"]["margin"], "depth": len(spec["model"]["sizes"]) - 1,
            "device": spec["device"]["preset"] if isinstance(spec["device"], dict) else spec["device"],
            "seed": spec["seed"], "status": row["status"],
            "test_err": 1 - final.get("test_acc", math.nan), "train_acc": final.get("train_acc", math.nan)}


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(cfg: dict, nngp: list[dict], runs: list[dict]) -> str:
    alphas = [float(a) for a in cfg["alphas"]]
    lines = ["| device | depth | n | NNGP bound | NNGP estimate | " + " | ".join(f"GD α={a:g}" for a in alphas) + " |",
             "|---|---|---|---|---|" + "---|" * len(alphas)]
    for device in cfg["devices"]:
        for depth in cfg["depths"]:
            for n in cfg["n"]:
                g = next(r for r in nngp if r["n"] == n and r["depth"] == depth)
                cells = []
                for a in alphas:
                    rs = [r for r in runs if (r["device"], r["depth"], r["n"], r["alpha"]) == (device, depth, n, a)]
                    ok = [r for r in rs if r["status"] == "ok"]
                    fit = sum(r["train_acc"] == 1.0 for r in ok)
                    note = f" (fit {fit}/{len(ok)}" + (f", diverged {len(rs) - len(ok)}" if len(ok) < len(rs) else "") + ")"
                    cells.append(mean_std([r["test_err"] for r in ok]) + note)
                lines.append(f"| {device} | {depth} | {n} | {g['bound']:.3f} | {g['estimate']:.3f} | "
                             + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(cfg: dict, nngp: list[dict], runs: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices, depths, alphas = cfg["devices"], cfg["depths"], [float(a) for a in cfg["alphas"]]
    fig, axes = plt.subplots(len(depths), len(devices), figsize=(4.2 * len(devices), 3.4 * len(depths)),
                             sharex=True, sharey=True, squeeze=False)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(alphas)))
    for i, depth in enumerate(depths):
        g = sorted((r for r in nngp if r["depth"] == depth), key=lambda r: r["n"])
        for j, device in enumerate(devices):
            ax = axes[i][j]
            ns = [r["n"] for r in g]
            ax.plot(ns, [r["bound"] for r in g], "k--", label="NNGP PAC-Bayes bound")
            ax.plot(ns, [r["estimate"] for r in g], "k-o", label="NNGP posterior (estimate)")
            for a, col in zip(alphas, colours):
                m, s, xs = [], [], []
                for n in cfg["n"]:
                    e = [r["test_err"] for r in runs if (r["device"], r["depth"], r["n"], r["alpha"]) ==
                         (device, depth, n, a) and r["status"] == "ok"]
                    if e:
                        xs.append(n), m.append(np.mean(e)), s.append(np.std(e))
                if xs:
                    ax.errorbar(xs, m, yerr=s, color=col, marker=".", capsize=2, label=f"GD α={a:g}")
            ax.set_xscale("log")
            ax.set_title(f"{device}, depth {depth}")
            ax.axhline(0.5, color="grey", lw=0.5)
            if i == len(depths) - 1:
                ax.set_xlabel("training points n")
            if j == 0:
                ax.set_ylabel("test error (parity)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(Path(__file__).with_suffix(".yaml")))
    for key, kind in (("n", int), ("depths", int), ("devices", str), ("alphas", float), ("seeds", int)):
        parser.add_argument(f"--{key}", nargs="+", type=kind, help=f"override the config's {key}")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--out", default="runs/implicit_bias", help="sweep directories OUT/n<n>; re-running resumes")
    parser.add_argument("--plot", default="", help="PNG of test error vs n (none if empty)")
    engine_options(parser)
    args = parser.parse_args()
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    for key in ("n", "depths", "devices", "alphas", "seeds", "epochs"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)

    start = time.perf_counter()
    runs, texts = [], []
    try:
        executor = make_executor(args.workers, args.scheduler)
        for n in cfg["n"]:
            spec, out = sweep(cfg, n), Path(args.out) / f"n{n}"
            texts.append(f"n={n}: " + counts_text(run_sweep(spec, out, "experiments/implicit_bias.py", progress=False,
                                                            executor=executor), executor))
            runs += [outcome(r) for r in read_rows(out, sweep_study(spec).ids).values()]
    except SpecError as err:
        print(f"implicit_bias.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    nngp = [nngp_row(cfg, n, d) for n in cfg["n"] for d in cfg["depths"]]
    wall = time.perf_counter() - start
    print(f"digit parity, full-batch backprop, margin loss mean (f - αc)², width {cfg['width']}, {cfg['epochs']} "
          f"epochs, lr {cfg['lr']} (/α above 1), seeds {cfg['seeds']}; {'; '.join(texts)}; {wall:.0f} s\n")
    print(table(cfg, nngp, runs))
    print("\nNNGP: C = -log P(orthant), Monte Carlo vs Jensen bound; PAC-Bayes bound from each:\n")
    for g in nngp:
        print(f"n={g['n']} depth {g['depth']}: C_est {g['C_est']:.1f}, C_bound {g['C_bound']:.1f}; "
              f"bound(C_est) {g['bound_mc']:.3f}, bound(C_bound) {g['bound']:.3f}, estimate {g['estimate']:.3f}")
    if args.plot:
        plot(cfg, nngp, runs, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":  # the Dask workers are spawned processes: keep the entry point guarded
    main()
