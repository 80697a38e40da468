"""``chiploop ablate``: which nonideality of a device costs how much accuracy and gradient quality.

The spec is trained as it is, then once with each source of error switched to its ideal value
in turn (SCIENCE.md §2), all with the same seeds. Each row reports the mean test accuracy with a
95 % confidence interval over seeds, its change against the device as it is, and the change of
the update probe's physical (device) relative bias and variance.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from tqdm import tqdm

from chiploop.devices.spec import DeviceSpec, nonidealities
from chiploop.experiments.results import Result, csv_text, write_atomic
from chiploop.experiments.spec import ExperimentSpec
from chiploop.experiments.stats import ci95
from chiploop.experiments.train import train
from chiploop.learning.diagnostics import DiagnosticsSpec

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


def ablate(spec: ExperimentSpec, seeds: int = 3, out_dir: Path | None = None, progress: bool = True) -> list[dict]:
    """Train every variant with seeds ``spec.seed .. spec.seed + seeds - 1``; one summary row each."""
    if spec.diagnostics is None:  # the probe is what splits the error; keep it light
        spec = dataclasses.replace(spec, diagnostics=DiagnosticsSpec(every=100, repeats=4))
    runs = variants(spec)
    results: dict[str, list[Result]] = {}
    jobs = [(name, dataclasses.replace(s, seed=spec.seed + k)) for name, s in runs.items() for k in range(seeds)]
    for name, s in tqdm(jobs, desc="ablation", disable=not progress):
        run_dir = None if out_dir is None else out_dir / f"{name.replace(' ', '_').replace('/', '_')}-s{s.seed}"
        results.setdefault(name, []).append(train(s, run_dir, progress=False))
    base = results["as is"]
    rows = []
    for name, group in results.items():
        acc = [r.final["test_acc"] for r in group]
        row = {"variant": name, "test_acc": statistics.mean(acc), "test_acc_ci95": ci95(acc),
               "d_test_acc": statistics.mean(acc) - statistics.mean(r.final["test_acc"] for r in base)}
        for key in ("physical_rel_bias", "physical_rel_var"):
            mine = statistics.mean(r.final.get(key, float("nan")) for r in group)
            row[key] = mine
            row[f"d_{key}"] = mine - statistics.mean(r.final.get(key, float("nan")) for r in base)
        row["diverged"] = sum(r.status != "ok" for r in group)
        rows.append(row)
    if out_dir is not None:
        write_atomic(out_dir / "ablation.csv", csv_text(rows))
        write_atomic(out_dir / "ablation.md", ablation_table(rows, spec, seeds) + "\n")
    return rows


def ablation_table(rows: list[dict], spec: ExperimentSpec, seeds: int) -> str:
    """Markdown: each variant's test accuracy (95 % CI), its change, and the device error's change."""
    head = (f"Ablation of {spec.device.preset or 'device'} ({spec.device.algorithm}), rule {spec.rule.name}, "
            f"{spec.epochs} epochs, seeds {spec.seed}-{spec.seed + seeds - 1}\n\n"
            "| variant | test acc (95% CI) | Δ test acc | physical rel. bias | Δ | physical rel. var | Δ |\n"
            "|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['test_acc']:.3f} ± {r['test_acc_ci95']:.3f} | {r['d_test_acc']:+.3f} | "
                     f"{r['physical_rel_bias']:.3f} | {r['d_physical_rel_bias']:+.3f} | "
                     f"{r['physical_rel_var']:.3g} | {r['d_physical_rel_var']:+.3g} |"
                     + (f" ({r['diverged']} diverged)" if r["diverged"] else ""))
    return "\n".join(lines)


def covered_fields() -> set[str]:
    """Device fields some ablation source switches off (every nonideality must be one)."""
    return {name for fields in SOURCES.values() for name in fields} & set(nonidealities())
