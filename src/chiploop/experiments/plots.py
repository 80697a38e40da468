"""PNG plots of runs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from chiploop.experiments.results import Result  # noqa: E402


def save(fig, path: str | Path, tight: bool = True) -> Path:
    """Lay out ``fig`` (``tight``), write it as a PNG at ``path`` (folders made) and close it."""
    if tight:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def learning_curves(groups: Mapping[str, Sequence[Result]], path: str | Path, metric: str = "test_acc") -> Path:
    """``metric`` against epoch, one line per group: the mean over its seeds, min-max band."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, results in groups.items():
        n = min(len(r.history) for r in results)
        curves = np.array([[row[metric] for row in r.history[:n]] for r in results])
        epochs = [row["epoch"] for row in results[0].history[:n]]
        ax.plot(epochs, curves.mean(0), label=label)
        ax.fill_between(epochs, curves.min(0), curves.max(0), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " ").replace("acc", "accuracy"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def diagnostics_plots(rows: Sequence[Mapping], out_dir: str | Path) -> list[Path]:
    """Per-layer bias and variance bars (algorithmic, read, write) and the alignment
    ``cos(E[ĝ_applied], g)`` over training, from update-probe rows; PNGs in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers = sorted({r["layer"] for r in rows})
    parts = ("algorithmic", "read", "write")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    width = 0.8 / len(parts)
    for ax, key, label in ((axes[0], "rel_bias", "relative bias ‖E[e]‖/‖g‖"),
                           (axes[1], "rel_var", "relative variance E‖e−E e‖²/‖g‖²")):
        for k, part in enumerate(parts):
            values = [np.mean([r[key] for r in rows if r["layer"] == layer and r["part"] == part]) for layer in layers]
            ax.bar(np.arange(len(layers)) + (k - 1) * width, values, width, label=part)
        ax.set_xticks(range(len(layers)), layers)
        ax.set_ylabel(label)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    bars = save(fig, out_dir / "diagnostics_bias_variance.png")

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for layer in layers:
        mine = [r for r in rows if r["layer"] == layer and r["part"] == "total"]
        ax.plot([r["step"] for r in mine], [r["cos"] for r in mine], marker=".", label=layer)
    ax.set_xlabel("training step")
    ax.set_ylabel("cos(E[ĝ applied], g)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [bars, save(fig, out_dir / "diagnostics_alignment.png")]


def inference_plot(summary: Sequence[Mapping], path: str | Path, reference: float | None = None,
                   title: str = "") -> Path:
    """Test accuracy against time since programming (log x): one line per compensation (mean over
    repeats) with its min-max band; ``reference`` (the trained weights read exactly) dashed."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label in dict.fromkeys(s["compensation"] for s in summary):
        cells = sorted((s for s in summary if s["compensation"] == label), key=lambda s: s["time_s"])
        t = [s["time_s"] for s in cells]
        ax.plot(t, [s["mean"] for s in cells], marker="o", label=f"compensation: {label}")
        ax.fill_between(t, [s["min"] for s in cells], [s["max"] for s in cells], alpha=0.2)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label="trained weights, exact")
    ax.set_xscale("log")
    times = [s["time_s"] for s in summary]
    marks = {t: m for t, m in {1.0: "1 s", 60.0: "1 min", 3600.0: "1 h", 86400.0: "1 d", 2.6e6: "1 mo",
                               3.15e7: "1 y"}.items() if min(times) <= t <= max(times)}
    if len(marks) >= 2:
        ax.set_xticks(list(marks), list(marks.values()))
    ax.set_xlabel("time since programming")
    ax.set_ylabel("test accuracy")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def run_curves(history: Sequence[Mapping], path: str | Path, title: str = "") -> Path:
    """One run's loss (left) and accuracy (right) per epoch on the train, validation and test splits
    (epoch 0: before training); a split or a metric the run lacks is left out."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    epochs = [row["epoch"] for row in history]
    styles = {"train": "-", "val": "--", "test": ":"}
    for ax, kind, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        drawn = False
        for split, style in styles.items():
            values = [row.get(f"{split}_{kind}", float("nan")) for row in history]
            if all(v != v for v in values):  # missing or NaN throughout (no such split; regression accuracy)
                continue
            ax.plot(epochs, values, style, marker="." if len(epochs) <= 30 else None, label=split)
            drawn = True
        losses = [v for row in history for s in styles if (v := row.get(f"{s}_loss", math.nan)) == v]
        if kind == "loss" and losses and min(losses) > 0 and max(losses) / min(losses) > 20:
            ax.set_yscale("log")  # a loss over decades; otherwise linear reads better
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {label} recorded", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)
