"""Training runs: results on disk, reproducibility on the ideal chip, tasks, the CLI and the demo."""

import csv
import json

import aihwkit
import pandas as pd
import pytest
import torch

import chiploop
from chiploop.experiments.cli import main
from chiploop.experiments.results import Result, write_atomic
from chiploop.experiments.spec import ExperimentSpec, experiment_from_data, load_experiment
from chiploop.experiments.tasks import make_task
from chiploop.experiments.train import train


def test_run_writes_result_and_history(tmp_path):
    spec = experiment_from_data({"name": "t", "device": "constant-step", "epochs": 2, "lr": 0.3})
    result = train(spec, out_dir=tmp_path, progress=False)
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored["spec"]["device"]["preset"] == "constant-step" and stored["spec"]["lr"] == 0.3
    installed = {"chiploop": chiploop.__version__, "torch": torch.__version__, "aihwkit": aihwkit.__version__}
    assert stored["versions"] == installed  # the versions that ran, whatever they are: an upgrade is no bug
    assert [row["epoch"] for row in stored["history"]] == [0, 1, 2]
    assert stored["final"]["test_acc"] == result.final["test_acc"] > 0.3
    assert stored["wall_s"] > 0 and stored["status"] == "ok"
    rows = list(csv.DictReader((tmp_path / "history.csv").read_text().splitlines()))
    assert len(rows) == 3 and {"train_loss", "val_acc", "test_acc"} <= set(rows[0])
    assert Result.read(tmp_path).history == result.history
    assert not list(tmp_path.glob(".*.tmp"))


def test_same_spec_gives_the_same_numbers_on_the_ideal_chip():
    spec = experiment_from_data({"device": "ideal", "epochs": 2, "lr": 0.5, "seed": 4})
    a, b = train(spec, progress=False), train(spec, progress=False)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    c = train(experiment_from_data({"device": "ideal", "epochs": 2, "lr": 0.5, "seed": 5}), progress=False)
    assert c.history[-1]["train_loss"] != a.history[-1]["train_loss"]


def test_digits_split_is_stratified_and_seeded():
    spec = ExperimentSpec().task
    task, again = make_task(spec), make_task(spec)
    assert torch.equal(task.x_train, again.x_train)
    assert len(task.x_train) + len(task.x_val) + len(task.x_test) == 1797
    assert task.x_train.min() >= 0 and task.x_train.max() <= 1
    counts = torch.bincount(task.y_test, minlength=10).float()
    assert counts.min() >= 0.8 * counts.mean()


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_teacher_student_trains(kind):
    spec = experiment_from_data({
        "task": {"name": "teacher_student", "teacher_sizes": [8, 16, 3], "n_samples": 600, "kind": kind,
                 "label_noise": 0.05},
        "model": {"sizes": [8, 32, 3]}, "device": "ideal", "epochs": 20, "lr": 0.5})
    result = train(spec, progress=False)
    assert result.history[-1]["train_loss"] < 0.8 * result.history[0]["train_loss"]
    task = make_task(spec.task)
    assert task.x_train.min() >= 0 and task.x_train.max() <= 1 and task.x_train.shape[1] == 8


def test_label_noise_flips_labels():
    base = {"name": "teacher_student", "teacher_sizes": [8, 16, 3], "n_samples": 2000}
    clean = make_task(experiment_from_data({"task": base, "model": {"sizes": [8, 3]}}).task)
    noisy = make_task(experiment_from_data({"task": {**base, "label_noise": 0.5},
                                            "model": {"sizes": [8, 3]}}).task)
    changed = (clean.y_train != noisy.y_train).float().mean().item()
    assert 0.2 < changed < 0.5  # half are redrawn, two thirds of those land on another class


def test_cli_run_applies_overrides_and_writes_the_run(spec_file, tmp_path, capsys):
    path = spec_file("name: cli\ndevice: ideal\nepochs: 1\n")
    out = tmp_path / "run"
    assert main(["run", str(path), "--set", "lr=0.2", "--set", "model.sizes=[64, 32, 10]",
                 "--out", str(out), "--quiet"]) == 0
    stored = json.loads((out / "result.json").read_text())
    assert stored["spec"]["lr"] == 0.2 and stored["spec"]["model"]["sizes"] == [64, 32, 10]
    summary = capsys.readouterr().out.splitlines()[0]  # one short line: status, epochs, losses, accuracies, time
    assert summary.startswith("cli: ok after 1 epoch; loss train ") and "; accuracy train " in summary


def test_cli_set_device_field_on_a_preset_shorthand(spec_file):
    spec = load_experiment(spec_file("device: reram-sb\n"), ["device.dw_min=1e-3"])
    assert spec.device.preset == "reram-sb" and spec.device.dw_min == 0.001


def test_cli_devices_list_and_show(capsys):
    assert main(["devices", "list"]) == 0
    listing = capsys.readouterr().out
    assert "reram-sb-cttv2" in listing and "c_ttv2" in listing
    assert main(["devices", "show", "reram-sb"]) == 0
    shown = capsys.readouterr().out
    assert "write_noise_std" in shown and "56.0" in shown and "[weight units / pulse]" in shown
    assert "drift.model" in shown


def test_demo_prints_its_table_and_writes_the_plot(tmp_path, capsys):
    """As `make demo` runs it: on the default engine (a local Dask cluster)."""
    assert main(["demo", "--epochs", "1", "--seeds", "1", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    for name in ("ideal", "constant-step", "ecram", "reram-sb", "reram-sb-tt", "reram-sb-cttv2"):
        assert f"| {name} |" in out
    assert "ran on dask LocalCluster" in out
    png = tmp_path / "learning_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_parquet(tmp_path / "results.parquet")
    ideal = table.loc[table["name"] == "ideal", "id"].item()
    assert (tmp_path / "summary.md").exists() and (tmp_path / "runs" / ideal / "result.json").exists()


def test_write_atomic_replaces_whole_files(tmp_path):
    path = tmp_path / "a" / "f.txt"
    write_atomic(path, "first")
    write_atomic(path, "second")
    assert path.read_text() == "second" and [p.name for p in path.parent.iterdir()] == ["f.txt"]


def test_suite_counts_epochs_to_the_target_run(spec_file, tmp_path, capsys):
    suite = spec_file("""
epochs: 3
seeds: 2
target_from: slow
base: {device: ideal}
runs:
  - {name: slow, lr: 0.01}
  - {name: fast, lr: 0.5}
""", "suite.yaml")
    assert main(["demo", "--suite", str(suite), "--out", str(tmp_path), "--quiet", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "epochs to" in out and "(slow)" in out
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in out.splitlines()
            if line.startswith("| slow") or line.startswith("| fast")}
    assert rows["slow"] == "3" and int(rows["fast"]) < 3


def test_suite_target_must_name_a_run(spec_file, capsys):
    suite = spec_file("target_from: nope\nruns:\n  - {name: a}\n", "suite.yaml")
    assert main(["demo", "--suite", str(suite), "--quiet"]) == 2
    assert "target_from" in capsys.readouterr().err


def test_a_blown_up_run_stops_as_diverged():
    spec = experiment_from_data({"device": "ideal", "lr": 1000.0, "epochs": 5})
    result = train(spec, progress=False)
    assert result.status == "diverged" and len(result.history) < 6


def test_run_saves_its_weights_and_they_load_back_exactly(tmp_path):
    from chiploop.experiments.train import Run
    from chiploop.experiments.weights import load_layout, load_weights, shadow_from_weights
    spec = experiment_from_data({"device": "ideal", "epochs": 1, "lr": 0.5, "decorrelation": {}})
    result = train(spec, out_dir=tmp_path, progress=False)
    arrays = load_weights(tmp_path / "weights.npz")
    assert {"crossbar/layer0", "crossbar/layer1", "crossbar/decorr/layer0", "bias/layer1"} <= set(arrays)
    layout = load_layout(tmp_path / "weights.npz")
    assert layout["decorrelators"] == {"layer0": "decorr/layer0", "layer1": "decorr/layer1"}
    assert layout["roles"]["decorr/layer0"] == "decorrelator" and layout["roles"]["layer0"] == "weight"
    net = shadow_from_weights(arrays, layout, spec.model)
    assert net.chip.roles == layout["roles"] and net.chip.decorrelators == layout["decorrelators"]
    task = Run.build(spec).task
    with torch.no_grad():
        out = net.unroll(task.x_test).output
    assert task.loss(out, task.y_test).item() == pytest.approx(result.final["test_loss"], rel=1e-6)


def test_weights_file_never_unpickles(tmp_path):
    import pickle
    from chiploop.experiments.weights import load_weights
    from chiploop.specs import SpecError
    bad = tmp_path / "bad.npz"
    bad.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(SpecError):
        load_weights(bad)
