"""Sweeps train runs that differ only in seed as one population (chiploop.experiments.sweeps.population):
how runs are grouped, a real small sweep with its run dirs, ledger rows, resume and report, and the
switch that turns it off."""

import json
from pathlib import Path

import pandas as pd

from chiploop.experiments.cli import main
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.sweeps.ledger import Ledger
from chiploop.experiments.sweeps.population import is_population, jobs, members
from chiploop.experiments.sweeps.runner import by_hash, run_sweep
from chiploop.experiments.sweeps.spec import load_sweep

SWEEP = """
base: {device: {preset: constant-step, engine: torch}, epochs: 1, batch_size: 64, model: {sizes: [64, 8, 10]}}
grid: {lr: [0.1, 0.3]}
seeds: [0, 1, 2]
"""


def test_runs_are_grouped_when_they_differ_only_in_seed(tmp_path):
    torch_dev = {"preset": "constant-step", "engine": "torch"}
    data = [{"device": torch_dev, "lr": lr, "seed": s} for lr in (0.1, 0.3) for s in (0, 1)]
    data += [{"device": {**torch_dev, "construction_seed": 5 + s}, "lr": 0.2, "seed": s} for s in (0, 1)]
    data += [{"device": {**torch_dev, "w_bound_dtod": 0.1 * s}, "lr": 0.5, "seed": s} for s in (0, 1)]  # drawn field
    data += [{"device": {**torch_dev, "dw_min": 0.001 * (s + 1)}, "lr": 0.6, "seed": s} for s in (0, 1)]  # per step: single
    data += [{"device": torch_dev, "lr": 0.4, "seed": 0}]                                     # alone: single
    data += [{"device": torch_dev, "rule": "sign_symmetry", "seed": s} for s in (0, 1)]         # rule: single
    data += [{"device": "constant-step", "seed": s} for s in (0, 1)]                           # aihwkit: single
    data += [{"device": "ideal", "seed": s} for s in (0, 1)]                                   # ideal chip: single
    specs = dict(by_hash(experiment_from_data(d) for d in data))
    items = jobs(specs, list(specs), tmp_path)
    populations = [item for item in items if is_population(item)]
    assert sorted(len(members(p)) for p in populations) == [2, 2, 2, 2]
    for p in populations:
        runs = [experiment_from_data(d) for d, _ in members(p)]
        assert len({(r.lr, r.rule.name) for r in runs}) == 1 and len({r.seed for r in runs}) == len(runs)
    assert sum(len(members(i)) for i in items) == len(specs)  # every run once
    assert all(not is_population(i) for i in jobs(specs, list(specs), tmp_path, population=False))


def test_a_small_sweep_trains_populations_and_every_run_keeps_its_dir_and_row(spec_file, tmp_path):
    path = spec_file(SWEEP)
    counts = run_sweep(load_sweep(path), tmp_path, str(path), progress=False)
    assert counts == {"runs": 6, "already_done": 0, "ran": 6, "ok": 6, "diverged": 0, "failed": 0}
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        rows = list(ledger.rows())
    assert len(rows) == 6 and all("population of 3" in row["worker"] for row in rows)
    for row in rows:
        run = tmp_path / "runs" / row["id"]
        result = json.loads((run / "result.json").read_text())
        assert result["spec_hash"] == row["id"] and result["status"] == "ok"
        assert json.loads((run / "outcome.json").read_text())["final"] == row["final"]
        assert (run / "weights.npz").is_file() and (run / "history.csv").is_file()
        assert row["final"]["test_acc"] > 0.1
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert len(table) == 6 and table.groupby("lr")["seed"].nunique().tolist() == [3, 3]
    assert len(set(table["test_acc"])) > 2  # six different runs, not one copied
    # resume: nothing to do; a sweep with more seeds trains only the new runs, as a population of them
    assert run_sweep(load_sweep(path), tmp_path, str(path), progress=False)["ran"] == 0
    more = spec_file(SWEEP.replace("[0, 1, 2]", "[0, 1, 2, 3, 4]"), "more.yaml")
    counts = run_sweep(load_sweep(more), tmp_path, str(more), progress=False)
    assert counts == {"runs": 10, "already_done": 6, "ran": 4, "ok": 10, "diverged": 0, "failed": 0}
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert sum("population of 2" in row["worker"] for row in ledger.rows()) == 4
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 0


def test_the_switch_trains_every_run_by_itself(spec_file, tmp_path, capsys):
    path = spec_file(SWEEP.replace("seeds: [0, 1, 2]", "seeds: [0, 1]").replace("[0.1, 0.3]", "[0.1]"))
    assert main(["sweep", str(path), "--out", str(tmp_path / "cli"), "--workers", "0", "--quiet",
                 "--no-population"]) == 0
    off = spec_file(Path(path).read_text() + "population: false\n", "off.yaml")
    run_sweep(load_sweep(off), tmp_path / "spec", progress=False)
    for out in ("cli", "spec"):
        with Ledger(tmp_path / out / "ledger.sqlite") as ledger:
            rows = list(ledger.rows())
        assert len(rows) == 2 and not any("population" in row["worker"] for row in rows)
