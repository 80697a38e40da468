"""``chiploop ablate``: which nonideality of a device costs how much accuracy and gradient quality.

The spec is trained as it is, then once with each source of error switched to its ideal value
in turn (docs/science.md §3.13), all with the same seeds: one list of experiment specs, trained by the
sweep runner (ledger, resume, Dask). Each row of the table, read back from the ledger, reports the
mean test accuracy over the seeds that finished with its 95 % confidence interval (Student's t),
its change against the device as it is, and the change of the update probe's physical (device)
relative bias and variance. Seeds that diverged or failed are counted, never averaged in.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

from chiploop.devices.spec import DeviceSpec, nonidealities
from chiploop.experiments.results import csv_text, write_atomic
from chiploop.experiments.spec import ExperimentSpec
from chiploop.experiments.stats import ci95
from chiploop.experiments.sweeps.engine import Executor
from chiploop.experiments.sweeps.ledger import read_rows
from chiploop.experiments.sweeps.runner import Study, by_hash, run_study
from chiploop.learning.diagnostics import DiagnosticsSpec
from chiploop.specs import SpecError

# source of error -> the device fields that make it, each with its ideal value (None: computed)
SOURCES: dict[str, dict[str, object]] = {
    "write noise": {"write_noise_std": 0.0},
    "cycle-to-cycle": {"dw_min_std": 0.0},
    "device-to-device": {"dw_min_dtod": 0.0, "up_down_dtod": 0.0, "w_bound_dtod": 0.0},
    "asymmetry": {"up_down": 0.0},
    "bounds": {"w_min": None, "w_max": None},      # 100x wider: soft bounds become nearly constant steps
    "read noise": {"read_noise": 0.0},
    "DAC/ADC": {"dac_bits": 0, "adc_bits": 0, "out_bound": 0.0},
    "pulse granularity": {"dw_min": None},          # steps 10x finer
    "stuck devices": {"corrupt_devices_prob": 0.0},
    "drift": {"drift": None},                       # no drift
}


def ideal_values(device: DeviceSpec, source: str) -> dict[str, object]:
    """The field values that switch ``source`` off for ``device``."""
    out = {}
    for name, value in SOURCES[source].items():
        if value is None:
            if name in ("w_min", "w_max"):
                value = getattr(device, name) * 100
            elif name == "dw_min":
                value = device.dw_min / 10
            else:  # drift
                value = dataclasses.replace(device.drift, model="none")
        out[name] = value
    return out


def variants(spec: ExperimentSpec) -> dict[str, ExperimentSpec]:
    """The spec as is and one variant per source its device actually has."""
    out = {"as is": spec}
    for source in SOURCES:
        fields = ideal_values(spec.device, source)
        if all(getattr(spec.device, k) == v for k, v in fields.items()):
            continue  # this device has no such error
        out[f"no {source}"] = dataclasses.replace(spec, device=dataclasses.replace(spec.device, **fields))
    return out


def ablation_runs(spec: ExperimentSpec, seeds: int) -> dict[str, list[ExperimentSpec]]:
    """Every variant's runs, seeds ``spec.seed .. spec.seed + seeds - 1``, each named ``NAME, VARIANT``
    (so its run dir and the results table say which variant it is); a light update probe is added
    when the spec has none, since the probe is what splits the error."""
    if spec.diagnostics is None:
        spec = dataclasses.replace(spec, diagnostics=DiagnosticsSpec(every=100, repeats=4))
    return {variant: [dataclasses.replace(s, name=f"{spec.name}, {variant}", seed=spec.seed + k) for k in range(seeds)]
            for variant, s in variants(spec).items()}


def ablation_study(spec: ExperimentSpec, seeds: int, source: str = "<spec>") -> Study:
    """The ablation as a list of runs for the sweep runner; the results table tells them apart by name."""
    if seeds < 1:
        raise SpecError("seeds", seeds, "1 or more seeds per variant")
    runs = [s for group in ablation_runs(spec, seeds).values() for s in group]
    return Study(by_hash(runs), ("name", "seed"), ("name",), "ablation", source,
                 {"experiment": spec.to_dict(), "seeds": seeds})


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def summarise(spec: ExperimentSpec, seeds: int, out_dir: str | Path) -> list[dict]:
    """One row per variant from the ledger in ``out_dir``: test accuracy (mean and 95 % CI over the
    seeds that finished), the physical relative bias and variance, and their changes against as is."""
    rows = read_rows(out_dir)
    finished = {variant: [rows[s.spec_hash()] for s in group if s.spec_hash() in rows]
                for variant, group in ablation_runs(spec, seeds).items()}
    keys = ("test_acc", "physical_rel_bias", "physical_rel_var")
    means = {variant: {k: _mean([r["final"].get(k, math.nan) for r in group if r["status"] == "ok"]) for k in keys}
             for variant, group in finished.items()}
    out = []
    for variant, group in finished.items():
        not_ok = [r["status"] for r in group if r["status"] != "ok"]
        row = {"variant": variant, "test_acc": means[variant]["test_acc"],
               "test_acc_ci95": ci95(r["final"]["test_acc"] for r in group if r["status"] == "ok"),
               "d_test_acc": means[variant]["test_acc"] - means["as is"]["test_acc"]}
        for key in keys[1:]:
            row[key] = means[variant][key]
            row[f"d_{key}"] = means[variant][key] - means["as is"][key]
        row["seeds_ok"] = len(group) - len(not_ok)
        row["not_ok"] = ", ".join(f"{not_ok.count(s)} {s}" for s in dict.fromkeys(not_ok))
        out.append(row)
    return out


def ablate(spec: ExperimentSpec, seeds: int = 3, out_dir: str | Path = "runs/ablate", progress: bool = True,
           executor: Executor | None = None, source: str = "<spec>") -> tuple[list[dict], dict]:
    """Train every variant's runs that ``out_dir``'s ledger lacks on ``executor`` (default: serial),
    then write ``ablation.csv`` and ``ablation.md`` there; returns the summary rows and the runner's counts."""
    out_dir = Path(out_dir)
    counts = run_study(ablation_study(spec, seeds, source), out_dir, progress, executor)
    rows = summarise(spec, seeds, out_dir)
    write_atomic(out_dir / "ablation.csv", csv_text(rows))
    write_atomic(out_dir / "ablation.md", ablation_table(rows, spec, seeds) + "\n")
    return rows, counts


def ablation_table(rows: list[dict], spec: ExperimentSpec, seeds: int) -> str:
    """Markdown: each variant's test accuracy (95% CI), its change, and the device error's change."""
    head = (f"Ablation of {spec.device.preset or 'device'} ({spec.device.algorithm}), rule {spec.rule.name}, "
            f"{spec.epochs} epochs, seeds {spec.seed}-{spec.seed + seeds - 1}\n\n"
            "| variant | test acc (95% CI) | Δ test acc | physical rel. bias | Δ | physical rel. var | Δ |\n"
            "|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['variant']} | {_acc(r)} | {r['d_test_acc']:+.3f} | "
                     f"{r['physical_rel_bias']:.3f} | {r['d_physical_rel_bias']:+.3f} | "
                     f"{r['physical_rel_var']:.3g} | {r['d_physical_rel_var']:+.3g} |"
                     + (f" ({r['not_ok']})" if r["not_ok"] else ""))
    return "\n".join(lines)


def _acc(row: dict) -> str:
    """``0.912 ± 0.015``; one finished seed: the value and ``(1 seed)``; none: ``-``."""
    if row["seeds_ok"] == 0 or math.isnan(row["test_acc"]):
        return "-"
    if math.isnan(row["test_acc_ci95"]):
        return f"{row['test_acc']:.3f} ({row['seeds_ok']} seed{'s' * (row['seeds_ok'] != 1)})"
    return f"{row['test_acc']:.3f} ± {row['test_acc_ci95']:.3f}"


def covered_fields() -> set[str]:
    """Device fields some ablation source switches off (every nonideality must be one)."""
    return {name for fields in SOURCES.values() for name in fields} & set(nonidealities())
