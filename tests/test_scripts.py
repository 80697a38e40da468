"""The scripts in experiments/ that train grids run on the sweep engine: a second call resumes."""

import re
import runpy
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent.parent / "experiments"


def _script(name: str, argv: list[str], monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(SCRIPTS / name), run_name="__main__")
    return capsys.readouterr().out


@pytest.mark.parametrize("name, argv, runs", [
    ("tune_lr.py", ["--devices", "ideal", "--rules", "backprop", "feedback_alignment", "--lrs", "0.3", "1000",
                    "--epochs", "1", "--seeds", "2"], 8),
    ("injected_grid.py", ["--biases", "0", "0.5", "--sigmas", "0", "1", "--tasks", "teacher_student", "--seeds", "2",
                          "--epochs-ts", "2"], 8),
])
def test_a_script_grid_resumes_from_its_ledger(name, argv, runs, tmp_path, monkeypatch, capsys):
    argv = [*argv, "--out", str(tmp_path), "--workers", "0"]
    first = _script(name, argv, monkeypatch, capsys)
    assert f"{runs} runs: 0 already done, {runs} ran on serial" in first
    second = _script(name, argv, monkeypatch, capsys)
    assert f"{runs} runs: {runs} already done, 0 ran on serial" in second
    assert first.split("\n", 1)[1] == second.split("\n", 1)[1]  # the same tables, from the ledger
    assert (tmp_path / "results.parquet").is_file()


def test_tune_lr_never_chooses_an_lr_at_which_a_seed_diverged(tmp_path, monkeypatch, capsys):
    out = _script("tune_lr.py", ["--devices", "ideal", "--lrs", "0.3", "1000", "--epochs", "1", "--seeds", "1",
                                 "--out", str(tmp_path), "--workers", "0", "--suite", str(tmp_path / "s.yaml")],
                  monkeypatch, capsys)
    assert re.search(r"^\| backprop@ideal \| 0\.\d+\* \| - \(1 diverged\) \|$", out, re.M), out
    assert "lr: 0.3" in (tmp_path / "s.yaml").read_text()


def test_implicit_bias_script_resumes_and_reports_the_nngp(tmp_path, monkeypatch, capsys):
    argv = ["--n", "20", "--depths", "2", "--devices", "ideal", "--alphas", "1", "10", "--seeds", "0", "1",
            "--epochs", "2", "--out", str(tmp_path), "--workers", "0", "--plot", str(tmp_path / "ib.png")]
    first = _script("implicit_bias.py", argv, monkeypatch, capsys)
    assert "n=20: 4 runs: 0 already done, 4 ran on serial" in first
    second = _script("implicit_bias.py", argv, monkeypatch, capsys)
    assert "n=20: 4 runs: 4 already done, 0 ran on serial" in second
    assert first.split("\n", 1)[1] == second.split("\n", 1)[1]  # same table: the ledger and the seeded NNGP
    row = re.search(r"^\| ideal \| 2 \| 20 \| ([\d.]+) \| ([\d.]+) \|", first, re.M)
    assert row and 0 < float(row[2]) <= float(row[1]) <= 1  # the bound is not below the estimate
    assert (tmp_path / "ib.png").stat().st_size > 0
