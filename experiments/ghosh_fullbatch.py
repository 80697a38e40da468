"""Seed 000 at full batch: Ghosh et al. (2023) Fig. 1 at our scale, and where two analog devices sit on its map.

    PYTHONPATH=src .venv/bin/python experiments/ghosh_fullbatch.py [--widths 16 64 256]
        [--biases 0 1e-8 1e-6 1e-4 1e-3 1e-2] [--sigmas 0 1e-3 1e-2 0.1 1 3 10 100] [--seeds 5] [--lr 0.5]
        [--steps 200] [--train-points 200] [--dw-mins 0.001 0.01] [--out runs/ghosh_fullbatch]
        [--plots docs] [--workers N | --scheduler ADDRESS]

Ghosh, Lajoie & Richards, "How gradient estimator variance and bias impact learning in neural
networks", ICLR 2023 (linclab/approximateGradients, ``Fig1/``): full-batch gradient descent with the
corrupted estimate ``ĝ = g + σ ||g|| u - b ||g|| 1`` (one norm over the whole network, ``u`` a fresh
unit direction, ``1`` the all-ones vector: the same offset on every parameter; ``injected:
{convention: ghosh}``), test accuracy over a grid of ``b`` and ``σ`` spanning decades. Their claim:
relative noise cannot settle in sharp minima (``η λ_max > 2 / (1 + INR)``), so some ``σ > 0`` (and
small ``b``) generalises better than exact GD, and the harm of variance falls with width.

Here: 10-class digits with ``train_points`` training images (a seeded stratified-split subset, the
same for every run, drawn from the 1437 non-test images (no validation split); test on the 360
held-out images), MLP 64-W-10 (ReLU) for each width W, ideal
chip, ideal backprop, ``batch_size: all`` (one step per epoch, ``--steps`` steps), constant ``lr``.
Every run ends with the top Hessian eigenvalue ``λ_max`` of the training loss. Then the same nets,
no injection, on ``constant-step`` crossbars (analog backprop) at each ``--dw-mins``, probed every
50 steps (``diagnostics``); the probe's physical relative bias and variance, combined over the
layers, are put on the same axes (:func:`device_point`).

Two sweeps (the injected grid and the device points) run with the sweep engine into ``--out``/grid
and ``--out``/device: re-running resumes. Prints the tables and the verdict (markdown) and writes
``ghosh_fullbatch_w{W}.png`` per width into ``--plots``.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from chiploop.experiments.cli import engine_options
from chiploop.experiments.stats import ci95
from chiploop.experiments.sweeps.engine import make_executor
from chiploop.experiments.sweeps.ledger import read_rows
from chiploop.experiments.sweeps.runner import counts_text, run_dir, run_sweep, sweep_study
from chiploop.experiments.sweeps.spec import SweepSpec
from chiploop.specs import SpecError, from_mapping

PROBE_EVERY = 50


def base(args: argparse.Namespace) -> dict:
    return {"task": {"name": "digits", "train_points": args.train_points, "val_fraction": 0.0}, "rule": "backprop",
            "lr": args.lr, "schedule": "constant", "batch_size": "all", "epochs": args.steps, "threads": 1,
            "curvature": "end"}


def widths_zip(widths: list[int]) -> dict:
    return {"name": [f"w{w}" for w in widths], "model": [{"sizes": [64, w, 10], "activation": "relu"} for w in widths]}


def grid_sweep(args: argparse.Namespace) -> SweepSpec:
    """Every width (zip) at every (b, σ) (grid), seeds 0, 1, ...; ideal chip, injected with convention ghosh."""
    return from_mapping(SweepSpec, {
        "base": {**base(args), "device": "ideal",
                 "injected": {"bias": 0.0, "variance": 0.0, "convention": "ghosh"}},
        "zip": widths_zip(args.widths),
        "grid": {"injected.bias": args.biases, "injected.variance": args.sigmas},
        "seeds": list(range(args.seeds))}, source="experiments/ghosh_fullbatch.py")


def device_sweep(args: argparse.Namespace) -> SweepSpec:
    """Every width at every dw_min on constant-step crossbars, no injection, probed every PROBE_EVERY steps."""
    return from_mapping(SweepSpec, {
        "base": {**base(args), "device": {"preset": "constant-step"},
                 "diagnostics": {"every": PROBE_EVERY, "repeats": 4}},
        "zip": widths_zip(args.widths),
        "grid": {"device.dw_min": args.dw_mins},
        "seeds": list(range(args.seeds))}, source="experiments/ghosh_fullbatch.py")


def n_weights(width: int) -> int:
    """Crossbar weights of 64-W-10 (what the probe sees; the digital biases are not probed)."""
    return 64 * width + width * 10


def n_params(width: int) -> int:
    """Every trained parameter of 64-W-10: weights and digital biases (what convention ghosh's norm is over)."""
    return n_weights(width) + width + 10


def device_point(diagnostics_csv: Path, width: int) -> tuple[list[float], list[float]]:
    """``(b, σ)`` in convention ghosh from one run's probes (part ``physical``: applied update minus
    the rule's exact-read estimate).

    Per probe, the layers' rows combine into the whole network's relative bias and variance
    (``E e`` and the spread add over disjoint layers)::

        B = sqrt(Σ_l (rel_bias_l ||g_l||)²) / sqrt(Σ_l ||g_l||²)      (= ||E e|| / ||g||)
        V = Σ_l rel_var_l ||g_l||² / Σ_l ||g_l||²                       (= E||e - E e||² / ||g||²)

    then ``σ = sqrt(V)`` (``E||σ||g|| u||² = σ² ||g||²``) and ``b = B / sqrt(N)`` with ``N`` the
    probed weights (the offset ``b ||g|| 1`` has norm ``b sqrt(N) ||g||``), each averaged over the
    probes (the lists, in step order, are returned). Only the sizes match: the device's bias is not
    along the all-ones direction, and its error is not relative (it stays while ``||g||`` falls, so
    ``σ`` grows over training)."""
    by_step: dict[int, list[dict]] = {}
    with open(diagnostics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row["part"] == "physical":
                by_step.setdefault(int(row["step"]), []).append(row)
    bs, sigmas = [], []
    for _, rows in sorted(by_step.items()):
        g2 = [float(r["g_norm"]) ** 2 for r in rows]
        total = sum(g2)
        if total <= 0:
            continue
        big_b = math.sqrt(sum(float(r["rel_bias"]) ** 2 * g for r, g in zip(rows, g2)) / total)
        v = sum(float(r["rel_var"]) * g for r, g in zip(rows, g2)) / total
        bs.append(big_b / math.sqrt(n_weights(width)))
        sigmas.append(math.sqrt(v))
    return bs, sigmas


def mean_ci(values: list[float]) -> tuple[float, float]:
    return (statistics.mean(values), ci95(values)) if values else (math.nan, math.nan)


def cell_summary(runs: list[dict]) -> dict:
    ok = [r for r in runs if r["status"] == "ok"]
    out = {"n": len(runs), "diverged": len(runs) - len(ok)}
    for metric in ("test_acc", "test_loss", "train_loss", "train_acc", "hessian_top_eig"):
        out[metric], out[metric + "_ci"] = mean_ci([r["final"][metric] for r in ok if metric in r["final"]])
    return out


def paired_diff(runs: list[dict], ref: list[dict], metric: str) -> tuple[float, float]:
    """Mean and 95 % CI half-width of ``metric(cell) - metric(exact GD)`` per seed (same init, same data)."""
    ref_by_seed = {r["spec"]["seed"]: r for r in ref if r["status"] == "ok"}
    diffs = [r["final"][metric] - ref_by_seed[r["spec"]["seed"]]["final"][metric]
             for r in runs if r["status"] == "ok" and r["spec"]["seed"] in ref_by_seed]
    return mean_ci(diffs) if len(diffs) == len(runs) else (math.nan, math.nan)


def fmt(mean: float, ci: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {ci:.{digits}f}" if math.isfinite(ci) else "")


def table(cells: dict, biases: list[float], sigmas: list[float], metric: str, digits: int = 3) -> str:
    lines = ["| b \\ σ | " + " | ".join(f"{s:g}" for s in sigmas) + " |", "|---|" + "---|" * len(sigmas)]
    for b in biases:
        row = []
        for s in sigmas:
            c = cells[b, s]
            text = fmt(c[metric], c[metric + "_ci"], digits)
            row.append(text + (f" ({c['diverged']}/{c['n']} div.)" if c["diverged"] else ""))
        lines.append(f"| {b:g} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def axis_position(values: list[float], v: float) -> float:
    """Where ``v`` falls on a heatmap axis whose cells are ``values`` (0 first, then decades): linear in
    log10 between the nonzero cells; below the smallest nonzero cell, half way to the 0 cell; above the
    largest, at most 0.45 of a cell past it (the figure says where a point was clipped)."""
    nonzero = [x for x in values if x > 0]
    offset = 1 if 0.0 in values else 0
    if v <= 0:
        return 0.0
    if v < nonzero[0]:
        return offset - 0.5 if offset else 0.0
    last = offset + len(nonzero) - 1
    if v > nonzero[-1]:
        step = math.log10(nonzero[-1] / nonzero[-2]) if len(nonzero) > 1 else 1.0
        return last + min(0.45, math.log10(v / nonzero[-1]) / step)
    return float(np.interp(math.log10(v), [math.log10(x) for x in nonzero], range(offset, last + 1)))


def heatmaps(cells: dict, devices: list[dict], biases: list[float], sigmas: list[float], width: int,
             path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), constrained_layout=True)
    for ax, metric, cmap in ((axes[0], "test_acc", "viridis"), (axes[1], "test_loss", "magma_r")):
        grid = np.array([[cells[b, s][metric] for s in sigmas] for b in biases])
        finite = grid[np.isfinite(grid)]
        norm = (LogNorm(max(finite.min(), 1e-3), finite.max()) if metric == "test_loss" and finite.size
                else None)  # a diverging cell's loss would flatten the rest on a linear scale
        cmap = matplotlib.colormaps[cmap].with_extremes(bad="lightgrey")  # every seed diverged
        im = ax.imshow(grid, origin="lower", cmap=cmap, aspect="auto", norm=norm)
        fig.colorbar(im, ax=ax, label=metric.replace("_", " "))
        for i, b in enumerate(biases):
            for j, s in enumerate(sigmas):
                c = cells[b, s]
                text = "diverged" if c["diverged"] == c["n"] else f"{c[metric]:.3f}" + ("*" if c["diverged"] else "")
                r, g, bl, _ = im.cmap(im.norm(c[metric])) if math.isfinite(c[metric]) else (1, 1, 1, 1)
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="k" if 0.299 * r + 0.587 * g + 0.114 * bl > 0.5 else "w")
        ax.set_xticks(range(len(sigmas)), [f"{s:g}" for s in sigmas])
        ax.set_yticks(range(len(biases)), [f"{b:g}" for b in biases])
        ax.set_xlabel("σ (relative noise, ||ξ|| = σ ||g||)")
        ax.set_ylabel("b (per-parameter bias, offset b ||g|| on each)")
        for d, marker in zip(devices, ("o", "s", "^", "D")):
            x, y = axis_position(sigmas, d["sigma"]), axis_position(biases, d["b"])
            ax.scatter([x], [y], marker=marker, s=120, facecolors="none", edgecolors="red", linewidths=2,
                       label=f"constant-step dw_min {d['dw_min']:g}: b {d['b']:.1e}, σ {d['sigma']:.2f}, "
                       f"acc {d['test_acc']:.3f}")
        ax.set_xlim(-0.5, len(sigmas) - 0.05)  # room past the last cells for device points beyond the grid
        ax.set_ylim(-0.5, len(biases) - 0.05)
        if devices:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    fig.suptitle(f"{title}, hidden width {width} (grey: every seed diverged, * some; red: device points)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", type=int, default=[16, 64, 256])
    parser.add_argument("--biases", nargs="+", type=float, default=[0.0, 1e-8, 1e-6, 1e-4, 1e-3, 1e-2])
    parser.add_argument("--sigmas", nargs="+", type=float, default=[0.0, 1e-3, 1e-2, 0.1, 1.0, 3.0, 10.0, 100.0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=200, help="full-batch steps (= epochs)")
    parser.add_argument("--train-points", type=int, default=200)
    parser.add_argument("--dw-mins", nargs="*", type=float, default=[0.001, 0.01],
                        help="constant-step dw_min of the device points (none: skip them)")
    parser.add_argument("--out", default="runs/ghosh_fullbatch", help="sweep directory; re-running resumes")
    parser.add_argument("--plots", default="docs", help="directory of the heatmap PNGs")
    parser.add_argument("--report-only", action="store_true", help="train nothing: report the runs already in --out")
    engine_options(parser)
    args = parser.parse_args()
    if 0.0 not in args.biases or 0.0 not in args.sigmas:
        parser.error("the grid must contain b = 0 and σ = 0 (exact gradient descent, the reference)")
    if args.seeds < 2:
        parser.error("--seeds: at least 2 (the verdict needs a confidence interval)")
    args.biases, args.sigmas = sorted(set(args.biases)), sorted(set(args.sigmas))

    out = Path(args.out)
    start = time.perf_counter()
    try:
        grid, device = grid_sweep(args), device_sweep(args) if args.dw_mins else None
        executor = None if args.report_only else make_executor(args.workers, args.scheduler)
        if executor is not None:
            dev_counts = (run_sweep(device, out / "device", "experiments/ghosh_fullbatch.py", progress=True,
                                    executor=executor) if device else None)
            counts = run_sweep(grid, out / "grid", "experiments/ghosh_fullbatch.py", progress=True, executor=executor)
    except SpecError as err:
        print(f"ghosh_fullbatch.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    wall = time.perf_counter() - start
    rows = [r for r in read_rows(out / "grid", sweep_study(grid).ids).values() if r["status"] != "failed"]
    dev_rows = ([r for r in read_rows(out / "device", sweep_study(device).ids).values() if r["status"] != "failed"]
                if device and (out / "device").exists() else [])

    ran = (f"grid: {counts_text(counts, executor)}" + (f"; devices: {counts_text(dev_counts, executor)}"
                                                       if dev_counts else "")) if executor is not None else \
        f"report only: {len(rows)} grid runs and {len(dev_rows)} device runs found"
    print(f"Full-batch GD on digits ({args.train_points} training points, 10 classes), MLP 64-W-10 ReLU, ideal "
          f"chip, backprop + injected (convention ghosh), lr {args.lr}, {args.steps} steps, seeds "
          f"0..{args.seeds - 1}; {ran}; {wall:.0f} s")
    Path(args.plots).mkdir(parents=True, exist_ok=True)
    for width in args.widths:
        mine = [r for r in rows if r["spec"]["name"] == f"w{width}"]
        raw = {(b, s): [r for r in mine if r["spec"]["injected"]["bias"] == b
                        and r["spec"]["injected"]["variance"] == s] for b in args.biases for s in args.sigmas}
        cells = {k: cell_summary(v) for k, v in raw.items()}
        exact = raw[0.0, 0.0]
        devices = []
        for dw in args.dw_mins:
            runs = [r for r in dev_rows if r["spec"]["name"] == f"w{width}" and r["spec"]["device"]["dw_min"] == dw]
            ok = [r for r in runs if r["status"] == "ok"]
            if not ok:
                continue
            points = [device_point(run_dir(out / "device", r["id"]) / "diagnostics.csv", width) for r in ok]
            summary = cell_summary(runs)
            devices.append({"dw_min": dw, "b": statistics.mean(x for p in points for x in p[0]),
                            "sigma": statistics.mean(x for p in points for x in p[1]),
                            "sigma_first": statistics.mean(p[1][0] for p in points),
                            "sigma_last": statistics.mean(p[1][-1] for p in points),
                            "b_first": statistics.mean(p[0][0] for p in points),
                            "b_last": statistics.mean(p[0][-1] for p in points),
                            "rel_bias": statistics.mean(r["final"]["physical_rel_bias"] for r in ok),
                            "rel_var": statistics.mean(r["final"]["physical_rel_var"] for r in ok),
                            "acc_diff": paired_diff(runs, exact, "test_acc"), **summary})
        heatmaps(cells, devices, args.biases, args.sigmas, width, Path(args.plots) / f"ghosh_fullbatch_w{width}.png",
                 f"Full-batch GD + injected (b, σ), digits {args.train_points} pts, {args.seeds} seeds")

        e = cells[0.0, 0.0]
        print(f"\n### Width {width} (64-{width}-10, N = {n_params(width)} parameters, sqrt(N) = "
              f"{math.sqrt(n_params(width)):.0f})\n")
        print(f"Exact full-batch GD: test acc {fmt(e['test_acc'], e['test_acc_ci'])}, test loss "
              f"{fmt(e['test_loss'], e['test_loss_ci'])}, train loss {fmt(e['train_loss'], e['train_loss_ci'], 4)}, "
              f"λ_max {fmt(e['hessian_top_eig'], e['hessian_top_eig_ci'], 2)} (mean ± 95 % CI over seeds)\n")
        print("Test accuracy:\n\n" + table(cells, args.biases, args.sigmas, "test_acc"))
        print("\nTest loss:\n\n" + table(cells, args.biases, args.sigmas, "test_loss"))
        print("\nλ_max at the end:\n\n" + table(cells, args.biases, args.sigmas, "hessian_top_eig", 2))
        ranked = []
        for (b, s), runs in raw.items():
            if (b, s) == (0.0, 0.0):
                continue
            d, ci = paired_diff(runs, exact, "test_acc")
            dl, cil = paired_diff(runs, exact, "test_loss")
            ranked.append((d, ci, dl, cil, b, s))
        ranked = sorted((r for r in ranked if math.isfinite(r[0])), key=lambda r: -r[0])
        print("\nBest cells by test accuracy against exact GD (paired over seeds: same init and data; "
              "Δ = cell − exact, ± 95 % CI):\n")
        print("| b | σ | test acc | Δ test acc | Δ test loss | λ_max |\n|---|---|---|---|---|---|")
        for d, ci, dl, cil, b, s in ranked[:5]:
            c = cells[b, s]
            print(f"| {b:g} | {s:g} | {fmt(c['test_acc'], c['test_acc_ci'])} | {d:+.3f} ± {ci:.3f} | "
                  f"{dl:+.3f} ± {cil:.3f} | {fmt(c['hessian_top_eig'], c['hessian_top_eig_ci'], 2)} |")
        beat = [r for r in ranked if r[0] - r[1] > 0]
        worse = [r for r in ranked if r[0] + r[1] < 0]
        print(f"\nVerdict (width {width}): {len(beat)} of {len(ranked)} cells (b, σ) ≠ 0 beat exact GD on test "
              f"accuracy beyond the paired 95 % CI" + (": " + ", ".join(f"({r[4]:g}, {r[5]:g}) {r[0]:+.3f} ± "
                                                                      f"{r[1]:.3f}" for r in beat) if beat else "")
              + f"; {len(worse)} are worse beyond it. (With {len(ranked)} cells, about "
              f"{0.025 * len(ranked):.1f} would pass one side by chance.)")
        if devices:
            print("\nDevice points (constant-step, analog backprop, no injection; probe every "
                  f"{PROBE_EVERY} steps, 4 repeats; physical part):\n")
            print("| dw_min | rel bias (mean over layers) | rel var | b (ghosh): mean (first → last probe) | "
                  "σ: mean (first → last) | test acc | Δ test acc vs exact | test loss | λ_max | diverged |\n"
                  "|---|---|---|---|---|---|---|---|---|---|")
            for d in devices:
                print(f"| {d['dw_min']:g} | {d['rel_bias']:.3f} | {d['rel_var']:.3f} | {d['b']:.1e} "
                      f"({d['b_first']:.1e} → {d['b_last']:.1e}) | {d['sigma']:.2f} ({d['sigma_first']:.2f} → "
                      f"{d['sigma_last']:.2f}) | {fmt(d['test_acc'], d['test_acc_ci'])} | {d['acc_diff'][0]:+.3f} ± "
                      f"{d['acc_diff'][1]:.3f} | {fmt(d['test_loss'], d['test_loss_ci'])} | "
                      f"{fmt(d['hessian_top_eig'], d['hessian_top_eig_ci'], 2)} | {d['diverged']}/{d['n']} |")


if __name__ == "__main__":  # the Dask workers are spawned processes: keep the entry point guarded
    main()
