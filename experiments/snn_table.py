"""The seed-003 table of docs/results.md from the run directories of experiments/snn_rules.yaml and
snn_devices.yaml: per (rule, device) the test accuracy (mean ± std over seeds), spikes per test sample
(hidden + output, from the saved weights on the exact shadow), rank-1 pulsed rows sent per training sample
and wall time per epoch.

Rows per sample: sym_stdp counts what it sent (its report: STDP rows with a spike, plus synaptic scaling's
column updates); the surrogate-gradient walk sends every (time step, sample) row to both crossbars, 2 T.

Run: ``PYTHONPATH=src .venv/bin/python experiments/snn_table.py runs/snn runs/snn-devices [RUN_DIR ...]``
(suite directories of ``chiploop demo`` or single run directories of ``chiploop run --out``).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.tasks import make_task
from chiploop.experiments.weights import load_layout, load_weights, shadow_from_weights


def row(run_dir: Path) -> dict:
    result = json.loads((run_dir / "result.json").read_text())
    spec = experiment_from_data(result["spec"])
    x, _ = make_task(spec.task).split("test")
    weights = run_dir / "weights.npz"
    net = shadow_from_weights(load_weights(weights), load_layout(weights), spec.model)
    with torch.no_grad():
        trace = net.unroll(x)
    spikes = float(trace.states["s_h"].sum() + trace.states["s_o"].sum()) / len(x)
    final = result["final"]
    rows = final.get("pulsed_rows_per_sample", 2 * x.shape[1])
    return {"name": spec.name, "acc": final["test_acc"], "spikes": spikes, "rows": rows,
            "epoch_s": result["wall_s"] / spec.epochs, "epochs": spec.epochs}


def main(dirs: list[str]) -> None:
    groups: dict[str, list[dict]] = {}
    for d in dirs:
        found = [Path(d)] if (Path(d) / "result.json").exists() else sorted(Path(d).glob("runs/*/"))
        for run_dir in found:  # a suite's directory, or one run's (chiploop run --out DIR)
            if (run_dir / "result.json").exists():
                r = row(run_dir)
                groups.setdefault(r["name"], []).append(r)
    print("| rule @ device | test acc (mean ± std) | seeds | epochs | spikes / sample | pulsed rows / sample "
          "| wall s / epoch |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in groups.items():
        accs = [r["acc"] for r in rs]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        mean = lambda k: statistics.fmean(r[k] for r in rs)  # noqa: E731
        print(f"| {name} | {statistics.fmean(accs):.3f} ± {std:.3f} | {len(rs)} | {rs[0]['epochs']} | "
              f"{mean('spikes'):.1f} | {mean('rows'):.1f} | {mean('epoch_s'):.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
