"""``chiploop report SWEEP_DIR``: a markdown summary and PNG plots of a finished (or partial) sweep directory
(of ``chiploop sweep``, ``ablate`` or ``demo``: every one the runner wrote).

Runs are grouped into configurations (every swept field but the seed). A configuration's metric is
the mean over the seeds that finished, with a 95 % confidence interval from Student's t,
``mean ± t_{0.975, n-1} · s / √n``. Seeds that diverged or failed are counted and shown as such,
never averaged in as zeros. Plots: the metric against one numeric swept field (a line per hue, a
CI band over seeds, a panel per value of a further field), and a heatmap over two numeric fields
(a panel per hue). Axes carry the field names and units from the spec classes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chiploop.experiments.results import write_atomic
from chiploop.experiments.spec import ExperimentSpec
from chiploop.experiments.stats import ci95, higher_is_better
from chiploop.specs import SpecError, field_at

MAX_PANELS = 6


def axis_label(key: str) -> str:
    """``device.dw_min [weight units / pulse]``: the field name and its unit, when the spec has one."""
    f = field_at(ExperimentSpec, key)
    unit = f.metadata.get("unit") if f is not None else ""
    return f"{key} [{unit}]" if unit else key


@dataclass
class SweepTable:
    """A sweep's results table and what its columns mean."""

    frame: pd.DataFrame   # one row per run (results.parquet)
    numeric: list[str]    # swept fields with numeric values on their own axis (grid, random)
    categorical: list[str]  # swept fields that name configurations (strings, mappings, zip axes)
    source: str

    @property
    def fields(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    def metrics(self) -> list[str]:
        skip = {"id", "seed", "status", "message", "worker", "wall_s", "hue", *self.fields}
        return [c for c in self.frame.columns if c not in skip and pd.api.types.is_numeric_dtype(self.frame[c])]


def read_sweep(sweep_dir: str | Path) -> SweepTable:
    """``results.parquet`` and ``sweep.json`` of a sweep directory; the swept fields sorted into kinds."""
    sweep_dir = Path(sweep_dir)
    for name in ("results.parquet", "sweep.json"):
        if not (sweep_dir / name).is_file():
            raise SpecError("SWEEP_DIR", str(sweep_dir), f"a sweep directory with {name} (written by chiploop "
                            "sweep, ablate or demo)")
    frame = pd.read_parquet(sweep_dir / "results.parquet")
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    swept = [k for k in meta["swept"] if k != "seed" and k in frame.columns]
    named = set(meta["categorical"])
    numeric = [k for k in swept if k not in named and pd.api.types.is_numeric_dtype(frame[k])]
    categorical = [k for k in swept if k not in numeric]
    for key in ("device", "rule"):  # always columns; a configuration axis when they vary
        if key not in categorical and frame[key].nunique() > 1 and not any(k.startswith(key + ".") for k in swept):
            categorical.insert(0, key)
    return SweepTable(frame, numeric, categorical, meta.get("source", str(sweep_dir)))


def _missing(value) -> bool:
    """A swept value that is not set: None (a sub-spec switched off), ``null`` or NaN."""
    return value is None or value == "null" or (isinstance(value, float) and math.isnan(value))


def _hue_label(row: pd.Series, keys: list[str]) -> str:
    parts = []
    for key in keys:
        value = row[key]
        if _missing(value):
            continue
        if key in ("device", "rule", "rule.name", "device.preset"):
            parts.append(str(value))
        elif isinstance(value, str) and value.startswith("{"):
            parts.append(key)  # a sub-spec switched on (decorrelation: {...})
        else:
            parts.append(f"{key}={value}")
    return " + ".join(parts) or "all"


def configurations(table: SweepTable, metric: str, select: str | None = None) -> pd.DataFrame:
    """One row per configuration: its fields, runs, finished seeds, mean and 95 % CI of ``metric``
    (and of ``select``, the metric that ranks them, as ``sel_mean`` and ``sel_ci95``)."""
    frame = table.frame
    rows = []
    for key, group in frame.groupby(table.fields, dropna=False, sort=False) if table.fields else [((), frame)]:
        finished = group[group["status"] == "ok"]
        ok = finished[metric].dropna().to_numpy(float)
        not_ok = group[group["status"] != "ok"]["status"].value_counts()
        row = {**dict(zip(table.fields, key if isinstance(key, tuple) else (key,))),
               "device": group["device"].iloc[0], "hue": group["hue"].iloc[0],
               "runs": len(group), "ok": len(finished), "not_ok": ", ".join(f"{n} {s}" for s, n in not_ok.items()),
               "mean": ok.mean() if len(ok) else float("nan"), "ci95": ci95(ok) if len(ok) else float("nan")}
        if select is not None:
            sel = finished[select].dropna().to_numpy(float) if select in finished else np.array([])
            row["sel_mean"] = sel.mean() if len(sel) else float("nan")
            row["sel_ci95"] = ci95(sel) if len(sel) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _stat(mean: float, ci: float, n: int) -> str:
    """``0.9312 ± 0.0120``; one seed: the value alone, ``(1 seed)``; no CI is ever printed as NaN."""
    if math.isnan(mean):
        return "-"
    if n == 1:
        return f"{mean:.4f} (1 seed)"
    return f"{mean:.4f}" + (f" ± {ci:.4f}" if not math.isnan(ci) else "")


def _cell(row: pd.Series, prefix: str = "") -> str:
    if row["ok"] == 0:
        return f"**{row['not_ok'] or 'no runs'}** (no seed finished)"
    text = _stat(row[prefix + "mean"], row[prefix + "ci95"], row["ok"])
    return text + (f" ({row['not_ok']})" if row["not_ok"] else "")


def _value(value) -> str:
    """A swept value in a markdown cell: ``-`` for none, numbers as ``%g``."""
    return "-" if _missing(value) else _tick(value)


def _markdown_table(configs: pd.DataFrame, fields: list[str], metric: str, select: str | None = None) -> list[str]:
    """A row per configuration: its fields, then ``select`` (the ranking metric, when it is another
    one), ``metric`` and the seeds that finished."""
    head = ["device", *[f for f in fields if f != "device"]]
    both = select is not None and select != metric
    values = ([f"{select} (mean ± 95 % CI)"] if both else []) + [f"{metric} (mean ± 95 % CI)"]
    lines = ["| " + " | ".join([*head, *values, "seeds ok"]) + " |", "|" + "---|" * (len(head) + len(values) + 1)]
    for _, row in configs.iterrows():
        if both and row["ok"] > 0:  # the count of seeds that did not finish once, after the last value
            cells = [_stat(row["sel_mean"], row["sel_ci95"], row["ok"]), _cell(row)]
        else:  # no seed finished: say so once, after the last value
            cells = ["-"] * (len(values) - 1) + [_cell(row)]
        lines.append("| " + " | ".join([*(_value(row[f]) for f in head), *cells, f"{row['ok']}/{row['runs']}"])
                     + " |")
    return lines


def selection_metric(table: SweepTable) -> tuple[str | None, str]:
    """The metric that ranks configurations: ``val_acc`` (the validation split, so that the test
    split stays unseen by the choice), else ``test_acc`` when no run has one; and a note saying which."""
    metrics = table.metrics()
    for name in ("val_acc", "test_acc"):
        if name in metrics and table.frame[name].notna().any():
            note = "" if name == "val_acc" else "no run has a validation accuracy (task.val_fraction 0): "
            return name, note + f"configurations ranked by mean {name}"
    return None, ""


@dataclass
class Figure:
    path: Path
    xlabel: str
    ylabel: str
    title: str


def _choose(table: SweepTable, x: str | None, y: str | None, hue: str | None, metric: str | None
            ) -> tuple[str | None, str | None, list[str], str]:
    """The plot axes: the user's, else the numeric swept fields with the most values, hue = the categorical ones."""
    allowed = {"--x": table.numeric, "--y": table.fields, "--hue": [*table.fields, "device", "rule"],
               "--metric": table.metrics()}
    for flag, value in (("--x", x), ("--y", y), ("--hue", hue), ("--metric", metric)):
        if value is not None and value not in allowed[flag]:
            raise SpecError(flag, value, "one of " + ", ".join(dict.fromkeys(allowed[flag])), source=table.source)
    metric = metric or ("test_acc" if "test_acc" in allowed["--metric"] else (table.metrics() or [None])[0])
    if metric is None:
        raise SpecError("--metric", None, "a sweep with at least one finished run", source=table.source)
    ranked = sorted(table.numeric, key=lambda k: -table.frame[k].nunique())
    ranked = [k for k in ranked if table.frame[k].nunique() > 1]
    x = x or (ranked[0] if ranked else None)
    y = y or next((k for k in ranked if k != x), None)
    varied = [k for k in table.categorical if table.frame[k].nunique(dropna=False) > 1 and k not in (x, y)]
    hues = [hue] if hue else varied
    return x, y, hues, metric


def _numeric_axis(ax, values: np.ndarray) -> None:
    """Log scale when positive values span a factor of 20 or more; ticks at the swept values when few."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    positive = values[values > 0]
    if len(positive) == len(values) and len(values) > 1 and positive.max() / positive.min() >= 20:
        ax.set_xscale("log")
    distinct = np.unique(values)
    if len(distinct) <= 8:
        ax.set_xticks(distinct)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelsize=7)


def line_plot(configs: pd.DataFrame, x: str, metric: str, panel: str | None, path: Path) -> Figure:
    """``metric`` against ``x``: a line per hue with its 95 % CI band; one panel per value of ``panel``.

    Other swept fields are averaged over (their configurations' means). A point whose
    configurations have no finished seed is marked with a red x on the axis, not drawn as zero.
    Bands of accuracies and cosines are clipped to the metric's range.
    """
    from chiploop.experiments.plots import plt, save

    panels = sorted(configs[panel].unique()) if panel else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1.0, 4.2), sharey=True, squeeze=False,
                             layout="constrained")
    xlabel, ylabel = axis_label(x), f"{metric} (mean ± 95 % CI over seeds)"
    low, high = (0.0 if "acc" in metric else -1.0, 1.0) if higher_is_better(metric) else (-np.inf, np.inf)
    for ax, value in zip(axes[0], panels):
        part = configs if panel is None else configs[configs[panel] == value]
        for hue, group in part.groupby("hue", sort=True):
            stats = group.groupby(x).agg(mean=("mean", "mean"), ci95=("ci95", "mean"), ok=("ok", "sum")).sort_index()
            xs = stats.index.to_numpy(float)
            line, = ax.plot(xs, stats["mean"], marker="o", label=hue)
            band = stats["ci95"].fillna(0.0)
            ax.fill_between(xs, np.clip(stats["mean"] - band, low, high), np.clip(stats["mean"] + band, low, high),
                            alpha=0.15, color=line.get_color())
            failed = xs[stats["ok"].to_numpy() == 0]
            if len(failed):
                ax.plot(failed, np.zeros_like(failed), "x", color="red", ms=9, mew=2, clip_on=False,
                        transform=ax.get_xaxis_transform(), label=f"{hue}: no seed finished")
        _numeric_axis(ax, configs[x].to_numpy(float))
        ax.set_xlabel(xlabel)
        ax.set_title(f"{axis_label(panel)} = {value}" if panel else "", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            if text not in labels:
                handles.append(handle)
                labels.append(text)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8)
    title = f"{metric} vs {x}"
    fig.suptitle(title, fontsize=10)
    return Figure(save(fig, path, tight=False), xlabel, ylabel, title)


def _tick(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float, np.number)) else str(value)


def heatmap(configs: pd.DataFrame, x: str, y: str, metric: str, path: Path) -> Figure:
    """Mean ``metric`` over two numeric fields, one panel per hue; cells with no finished seed say so."""
    from chiploop.experiments.plots import plt, save

    hues = sorted(configs["hue"].unique())
    fig, axes = plt.subplots(1, len(hues), figsize=(3.8 * len(hues) + 1.5, 3.8), squeeze=False,
                             layout="constrained")
    finite = configs["mean"].dropna()
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    xs, ys = sorted(configs[x].unique()), sorted(configs[y].unique())
    xlabel, ylabel = axis_label(x), axis_label(y)
    image = None
    for ax, hue in zip(axes[0], hues):
        part = configs[configs["hue"] == hue]
        grid = part.groupby([y, x]).agg(mean=("mean", "mean"), ok=("ok", "sum"))
        values = np.full((len(ys), len(xs)), np.nan)
        for (yv, xv), row in grid.iterrows():
            values[ys.index(yv), xs.index(xv)] = row["mean"] if row["ok"] else np.nan
        image = ax.imshow(values, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="viridis")
        for i, j in np.ndindex(values.shape):
            if (ys[i], xs[j]) not in grid.index:
                continue
            text = "failed" if math.isnan(values[i, j]) else f"{values[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="red" if text == "failed" else ("white" if values[i, j] < (vmin + vmax) / 2 else "black"))
        ax.set_xticks(range(len(xs)), [_tick(v) for v in xs], fontsize=7)
        ax.set_yticks(range(len(ys)), [_tick(v) for v in ys], fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(hue, fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), label=f"{metric} (mean over seeds)")
    title = f"{metric} over {x} and {y}"
    fig.suptitle(title, fontsize=10)
    return Figure(save(fig, path, tight=False), xlabel, ylabel, title)


LEDGER = (("chip_calls_per_step", "calls", "{:.1f}"), ("chip_bytes_per_step", "bytes", "{:,.0f}"),
          ("chip_pulses_per_step", "pulses", "{:.3g}"), ("chip_energy_j_per_step", "energy (µJ)", "{:.4g}"))


def ledger_lines(table: SweepTable) -> list[str]:
    """The chip ledger per training step (mean over finished seeds) of each configuration: verb calls,
    bytes across the bus, expected programming pulses, estimated energy (docs/science.md §2.8)."""
    columns = [c for c, _, _ in LEDGER if c in table.frame.columns]
    finished = table.frame[table.frame["status"] == "ok"]
    if not columns or finished.empty:
        return []
    keys = [f for f in table.fields if f in finished.columns] or ["device"]
    means = finished.groupby(keys, sort=False, dropna=False)[columns].mean().reset_index()
    head = [*keys, *(label + " / step" for c, label, _ in LEDGER if c in columns)]
    lines = ["## Chip ledger per training step", "", "Mean over the seeds that finished; bytes are float32 "
             "payloads across the host-chip bus, pulses the expected programming pulses, energy the device spec's "
             "per-operation estimate (`chiploop devices show NAME`, energy.*).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in means.iterrows():
        cells = [(fmt.format(row[c] * 1e6) if c == "chip_energy_j_per_step" else fmt.format(row[c]))
                 for c, _, fmt in LEDGER if c in columns]
        lines.append("| " + " | ".join([*(_value(row[k]) for k in keys), *cells]) + " |")
    return [*lines, ""]


def report(sweep_dir: str | Path, out_dir: str | Path | None = None, x: str | None = None, y: str | None = None,
           hue: str | None = None, metric: str | None = None) -> tuple[Path, list[Figure]]:
    """Write ``report.md`` and the PNG plots for the sweep in ``sweep_dir`` (into ``out_dir``, default the same)."""
    table = read_sweep(sweep_dir)
    out_dir = Path(out_dir or sweep_dir)
    x, y, hues, metric = _choose(table, x, y, hue, metric)
    table.frame["hue"] = table.frame.apply(_hue_label, axis=1, keys=hues) if hues else "all"
    select, note = selection_metric(table)
    configs = configurations(table, metric, select or metric)
    order = configs.sort_values("sel_mean", ascending=not higher_is_better(select or metric), na_position="last")
    finished = order[order["ok"] > 0]
    best = finished.groupby("device", sort=False).head(1)
    best_each = finished.groupby(["device", "hue"], sort=False).head(1)
    counts = table.frame["status"].value_counts()

    figures = []
    if x is not None:
        panel = y if y is not None and configs[y].nunique() <= MAX_PANELS else None
        figures.append(line_plot(configs, x, metric, panel, out_dir / f"{metric}_vs_{x}.png"))
        if y is not None:
            figures.append(heatmap(configs, x, y, metric, out_dir / f"{metric}_heatmap_{x}_{y}.png"))

    better = "higher" if higher_is_better(metric) else "lower"
    lines = [f"# Sweep report: {table.source}", "",
             f"{len(table.frame)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ". "
             f"{len(configs)} configurations; {metric} is the mean over the seeds that finished ± the 95 % "
             f"confidence interval (Student's t); {better} is better; {note or 'configurations ranked by ' + metric}"
             f". Runs that diverged or failed are counted as such, never as zeros.", "",
             "## Best configuration per device", "", *_markdown_table(best, table.fields, metric, select), ""]
    if len(best_each) > len(best):
        lines += [f"## Best configuration per device and {' + '.join(hues)}", "",
                  *_markdown_table(best_each, table.fields, metric, select), ""]
    lines += ledger_lines(table)
    lines += ["## Every configuration", "", *_markdown_table(order, table.fields, metric, select), ""]
    broken = table.frame[table.frame["status"] != "ok"]
    if len(broken):
        lines += ["## Runs that did not finish", "",
                  "| id | " + " | ".join(table.fields) + " | seed | status | message |",
                  "|" + "---|" * (len(table.fields) + 4)]
        for _, row in broken.iterrows():
            message = str(row["message"] or "").replace("|", "/").replace("\n", " ")[:160]
            lines.append(f"| {row['id']} | " + " | ".join(_value(row[f]) for f in table.fields)
                         + f" | {row['seed']} | {row['status']} | {message} |")
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for fig in figures:
            lines += [f"![{fig.title}]({fig.path.name})", "", f"x: {fig.xlabel}; y: {fig.ylabel}.", ""]
    path = out_dir / "report.md"
    write_atomic(path, "\n".join(lines))
    return path, figures
