"""Sweeps: deterministic expansion, stable run ids, a ledger that makes re-runs resume."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from chiploop.experiments.sweeps.runner import run_sweep
from chiploop.experiments.sweeps.spec import expand, load_sweep
from chiploop.specs import SpecError

SWEEP = """
base: {device: ideal, epochs: 1, lr: 0.3, model: {sizes: [64, 8, 10]}}
grid:
  lr: [0.1, 0.3]
  device.dw_min: [0.001, 0.002, 0.004]
zip:
  batch_size: [16, 32]
  name: [small, large]
random:
  model.activation: {kind: choice, values: [relu, tanh]}
  device.read_noise: {kind: log_uniform, low: 0.001, high: 0.1}
samples: 2
random_seed: 7
seeds: [0, 1]
"""


def test_expansion_counts_grid_zip_random_and_seeds(spec_file):
    specs = expand(load_sweep(spec_file(SWEEP)))
    assert len(specs) == 2 * 3 * 2 * 2 * 2  # grid x zip x random samples x seeds
    assert len({s.spec_hash() for s in specs}) == len(specs)
    assert {(s.batch_size, s.name) for s in specs} == {(16, "small"), (32, "large")}
    assert {s.device.dw_min for s in specs} == {0.001, 0.002, 0.004}
    assert all(0.001 <= s.device.read_noise <= 0.1 for s in specs)


def test_run_ids_are_the_same_in_another_process(spec_file):
    path = spec_file(SWEEP)
    here = [s.spec_hash() for s in expand(load_sweep(path))]
    code = ("import json, sys; from chiploop.experiments.sweeps.spec import expand, load_sweep; "
            "print(json.dumps([s.spec_hash() for s in expand(load_sweep(sys.argv[1]))]))")
    there = json.loads(subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                                      check=True).stdout)
    assert here == there


@pytest.mark.parametrize("text, field", [
    ("grid: {lr: 0.1}", "grid.lr"),
    ("zip: {lr: [0.1, 0.2], seed: [1]}", "zip"),
    ("random: {lr: {kind: normal}}", "random.lr.kind"),
    ("random: {lr: {kind: log_uniform, low: 0, high: 1}}", "random.lr.low"),
    ("grid: {lr: [-1]}", "lr"),
    ("seeds: 3", "seeds"),
])
def test_bad_sweeps_raise_one_clear_error(spec_file, text, field):
    with pytest.raises(SpecError) as info:
        expand(load_sweep(spec_file(text)))
    assert info.value.field == field


def test_rerunning_a_sweep_runs_only_what_is_missing(spec_file, tmp_path):
    path = spec_file("base: {device: ideal, epochs: 1}\ngrid: {lr: [0.1, 0.5]}\nseeds: [0, 1]\n")
    sweep = load_sweep(path)
    first = run_sweep(sweep, tmp_path, progress=False)
    assert first == {"runs": 4, "already_done": 0, "ran": 4, "ok": 4, "diverged": 0, "failed": 0}
    assert run_sweep(sweep, tmp_path, progress=False) == {"runs": 4, "already_done": 4, "ran": 0, "ok": 4, "diverged": 0,
                                                         "failed": 0}
    bigger = load_sweep(spec_file("base: {device: ideal, epochs: 1}\ngrid: {lr: [0.1, 0.5, 1.0]}\nseeds: [0, 1]\n"))
    assert run_sweep(bigger, tmp_path, progress=False) == {"runs": 6, "already_done": 4, "ran": 2, "ok": 6, "diverged": 0,
                                                          "failed": 0}
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert len(table) == 6 and {"lr", "seed", "status", "test_acc"} <= set(table.columns)
    assert sorted(table["lr"].unique()) == [0.1, 0.5, 1.0] and (table["status"] == "ok").all()


def test_a_diverging_run_is_recorded_with_its_status_and_the_sweep_goes_on(spec_file, tmp_path):
    path = spec_file("base: {device: ideal, epochs: 1}\ngrid: {lr: [0.1, 1000.0]}\n")
    run_sweep(load_sweep(path), tmp_path, progress=False)
    table = pd.read_parquet(tmp_path / "results.parquet").set_index("lr")
    assert table.loc[0.1, "status"] == "ok" and table.loc[1000.0, "status"] == "diverged"


def test_cli_sweep_dry_run_lists_runs_and_what_is_done(spec_file, tmp_path, capsys):
    from chiploop.experiments.cli import main
    path = spec_file("base: {device: ideal, epochs: 1}\ngrid: {lr: [0.1, 0.5]}\n")
    assert main(["sweep", str(path), "--out", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    ids = [s.spec_hash() for s in expand(load_sweep(path))]
    assert lines[-1].startswith("2 runs: 0 done, 2 to do") and len(set(lines)) == 3
    assert [line.split()[:2] for line in lines[:2]] == [[ids[0], "todo"], [ids[1], "todo"]]
    assert lines[0].endswith("lr=0.1  seed=0") and lines[1].endswith("lr=0.5  seed=0")
    assert main(["sweep", str(path), "--out", str(tmp_path), "--quiet", "--workers", "0"]) == 0
    assert "2 runs: 0 already done, 2 ran on serial; 2 ok, 0 diverged, 0 failed" in capsys.readouterr().out
    assert main(["sweep", str(path), "--out", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("2 runs: 2 done, 0 to do") and all(" done (ok) " in line for line in lines[:2])
    assert main(["sweep", str(path), "--out", str(tmp_path), "--workers", "-1"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_sweep_set_overrides_the_base_of_every_run(spec_file, tmp_path, capsys):
    from chiploop.experiments.cli import main
    path = spec_file("base: {device: ideal, epochs: 1}\ngrid: {lr: [0.1, 0.5]}\n")
    assert main(["sweep", str(path), "--out", str(tmp_path), "--set", "epochs=2", "--set", "batch_size=64",
                 "--dry-run"]) == 0
    specs = expand(load_sweep(path), overrides=["epochs=2", "batch_size=64"])
    assert [(s.epochs, s.batch_size, s.lr) for s in specs] == [(2, 64, 0.1), (2, 64, 0.5)]
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[:2]] == [s.spec_hash() for s in specs]
    with pytest.raises(SpecError, match=r"^--set epochs=0: field 'epochs'"):
        expand(load_sweep(path), overrides=["epochs=0"])
    with pytest.raises(SpecError, match=r"field '--set': got 'lr=1'.*lr is swept"):
        expand(load_sweep(path), overrides=["lr=1"])


def test_sweeping_a_field_of_a_preset_keeps_the_preset(spec_file):
    specs = expand(load_sweep(spec_file("base: {device: reram-sb, rule: backprop}\n"
                                        "grid: {device.write_noise_std: [0.0, 14.0], rule.name: [backprop]}\n")))
    assert [s.device.write_noise_std for s in specs] == [0.0, 14.0]
    assert all(s.device.preset == "reram-sb" and s.device.response == "soft_bounds" for s in specs)


def test_a_swept_device_or_rule_is_named_in_the_table(spec_file, tmp_path):
    path = spec_file("base: {epochs: 1}\ngrid: {device: [ideal, constant-step]}\n"
                     "zip: {rule: [backprop, {name: node_perturbation, options: {variant: anp}}], lr: [0.3, 1.0]}\n")
    run_sweep(load_sweep(path), tmp_path, progress=False)
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert sorted(table["device"]) == ["constant-step", "constant-step", "ideal", "ideal"]
    assert sorted(set(table["rule"])) == ["backprop", "node_perturbation(variant=anp)"]
