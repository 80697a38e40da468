"""`chiploop report`: best configuration per device with a 95 % CI over seeds, failed runs shown as
failed (never as zeros), and PNG plots whose axes carry the field names and units."""

from pathlib import Path

import pytest

from chiploop.experiments.cli import main
from chiploop.experiments.stats import ci95
from chiploop.experiments.sweeps.report import read_sweep, report
from chiploop.experiments.sweeps.runner import run_sweep
from chiploop.experiments.sweeps.spec import expand, load_sweep

SWEEP = """
base: {device: ideal, epochs: 2, model: {sizes: [64, 16, 10]}}
zip:
  rule: [backprop, feedback_alignment]
  decorrelation: [null, {}]
grid:
  lr: [0.1, 0.5, 1000.0]
  batch_size: [16, 32]
seeds: [0, 1, 2]
"""


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A finished sweep in which lr 1000 diverges and one run crashes (its run dir is a file)."""
    out = tmp_path_factory.mktemp("sweep")
    path = out / "sweep.yaml"
    path.write_text(SWEEP)
    crashed = next(s for s in expand(load_sweep(path)) if s.lr == 0.5 and s.batch_size == 16 and s.seed == 1
                   and s.rule.name == "backprop")
    (out / "runs").mkdir()
    (out / "runs" / crashed.spec_hash()).write_text("not a directory\n")
    run_sweep(load_sweep(path), out, str(path), progress=False)
    return out


def test_report_shows_best_configurations_and_failed_runs_as_failed(sweep_dir):
    path, figures = report(sweep_dir)
    text = path.read_text()
    best = text.split("## Best configuration per device")[1].split("##")[0]
    assert "| ideal |" in best and best.count("| ideal |") == 1  # one device, one best row

    table = read_sweep(sweep_dir).frame
    ok = table[(table["status"] == "ok") & (table["lr"] == 0.5) & (table["batch_size"] == 32)
               & (table["rule"] == "feedback_alignment")]["test_acc"]
    assert len(ok) == 3 and f"{ok.mean():.4f} ± {ci95(ok.to_numpy()):.4f}" in text

    assert (table["status"] == "diverged").sum() == 12 and (table["status"] == "failed").sum() == 1
    every = text.split("## Every configuration")[1].split("##")[0]
    diverged_rows = [line for line in every.splitlines() if "| 1000 |" in line]
    assert len(diverged_rows) == 4 and all("**3 diverged** (no seed finished)" in r and "| 0/3 |" in r
                                           for r in diverged_rows)
    assert "(1 failed)" in every and "| 2/3 |" in every  # the crashed seed is counted, not averaged in
    failed = text.split("## Runs that did not finish")[1]
    assert "| failed | " in failed and "Error" in failed

    assert [f.path.name for f in figures] == ["test_acc_vs_lr.png", "test_acc_heatmap_lr_batch_size.png"]
    for fig in figures:
        assert fig.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert fig.path.name in text
    assert figures[0].xlabel == "lr" and figures[1].ylabel == "batch_size [samples]"


def test_report_axes_follow_the_flags_and_carry_units(sweep_dir, tmp_path):
    _, figures = report(sweep_dir, tmp_path, x="batch_size", y="lr", metric="test_loss")
    assert [f.path.name for f in figures] == ["test_loss_vs_batch_size.png", "test_loss_heatmap_batch_size_lr.png"]
    assert figures[0].xlabel == "batch_size [samples]" and figures[0].ylabel.startswith("test_loss")
    assert (tmp_path / "report.md").is_file()


@pytest.mark.parametrize("flag, value", [("--x", "device.dw_min"), ("--x", "rule"), ("--metric", "accuracy"),
                                         ("--hue", "seed")])
def test_bad_report_options_exit_2_with_one_line(sweep_dir, tmp_path, capsys, flag, value):
    assert main(["report", str(sweep_dir), "--out", str(tmp_path), flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and value in err


def test_report_of_a_directory_that_is_not_a_sweep_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "results.parquet" in capsys.readouterr().err


def test_cli_report_prints_the_summary(sweep_dir, tmp_path, capsys):
    assert main(["report", str(sweep_dir), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Best configuration per device" in out and f"wrote {tmp_path / 'report.md'}" in out


def test_report_on_the_shipped_example_labels_axes_with_fields_and_units(tmp_path):
    """The shipped sweep, cut to 1 epoch and 1 seed: it expands, runs, and its plots carry units."""
    from dataclasses import replace

    from chiploop.experiments.sweeps.spec import SweepSpec

    path = Path(__file__).parent.parent / "experiments" / "sweep_soft_bounds.yaml"
    shipped = load_sweep(path)
    assert len(expand(shipped)) == 180
    quick: SweepSpec = replace(shipped, base={**shipped.base, "epochs": 1}, seeds=(0,))
    run_sweep(quick, tmp_path, str(path), progress=False)
    _, figures = report(tmp_path)
    assert [(f.xlabel, f.ylabel) for f in figures] == [
        ("device.dw_min [weight units / pulse]", "test_acc (mean ± 95 % CI over seeds)"),
        ("device.dw_min [weight units / pulse]", "device.write_noise_std [dw_min]")]


def test_report_has_the_chip_ledger_per_training_step(sweep_dir):
    text = report(sweep_dir)[0].read_text()
    section = text.split("## Chip ledger per training step")[1].split("##")[0]
    table = read_sweep(sweep_dir).frame
    ok = table[(table["status"] == "ok") & (table["lr"] == 0.1) & (table["batch_size"] == 32)
               & (table["rule"] == "backprop")]
    assert len(ok) == 3 and ok["chip_bytes_per_step"].nunique() == 1  # the same bus traffic on every seed
    row = next(line for line in section.splitlines() if "| backprop |" in line and "| 0.1 | 32 |" in line)
    assert f"| {ok['chip_bytes_per_step'].iloc[0]:,.0f} |" in row
