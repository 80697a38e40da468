"""Ablations and suites run on the sweep engine: ledger, resume after SIGKILL, --workers/--scheduler,
and a directory `chiploop report` reads."""

import sys

import pandas as pd
import pytest
from processes import kill_after_rows, ledger_rows

from chiploop.experiments.cli import main
from chiploop.experiments.spec import load_experiment
from chiploop.experiments.sweeps.ablation import ablation_study
from chiploop.experiments.sweeps.suite import load_suite, suite_study

# an ideal chip still has two ablation variants (100x wider bounds, 10x finer steps); the probe
# at every step makes each run take about half a second, so a kill lands between runs
TINY = ("name: tiny\ndevice: ideal\nepochs: 4\nlr: 0.3\nmodel: {sizes: [64, 16, 10]}\n"
        "diagnostics: {every: 1, repeats: 8}\n")
SUITE = """
epochs: 2
seeds: 2
base: {model: {sizes: [64, 16, 10]}, device: ideal}
runs:
  - {name: fast, lr: 0.3}
  - {name: slow, lr: 0.05}
  - {name: wild, lr: 1000.0}
target_from: fast
metrics: [train_loss]
"""


def test_an_ablation_and_a_suite_are_lists_of_distinct_runs_named_by_what_they_vary(spec_file):
    ablation = ablation_study(load_experiment(spec_file(TINY)), seeds=4)
    assert len(ablation.ids) == 12 and ablation.columns == ("name", "seed")
    assert sorted({s.name for _, s in ablation.runs}) == ["tiny, as is", "tiny, no bounds", "tiny, no pulse granularity"]
    suite = suite_study(load_suite(spec_file(SUITE)))
    assert len(suite.ids) == 6 and {(s.name, s.seed) for _, s in suite.runs} == {
        (n, k) for n in ("fast", "slow", "wild") for k in (0, 1)}


def test_an_ablation_killed_with_sigkill_resumes_running_only_the_missing_runs(spec_file, tmp_path, capsys):
    path = spec_file(TINY)
    out = tmp_path / "ablation"
    command = ["ablate", str(path), "--seeds", "4", "--out", str(out), "--quiet"]
    expected = set(ablation_study(load_experiment(path), seeds=4).ids)
    before = kill_after_rows([sys.executable, "-m", "chiploop.experiments.cli", *command, "--workers", "2"],
                             out / "ledger.sqlite", rows=3)
    assert 3 <= len(before) < 12, "the kill came after some, not all, runs had finished"

    assert main([*command, "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"12 runs: {len(before)} already done, {12 - len(before)} ran on serial" in printed
    after = ledger_rows(out / "ledger.sqlite")
    assert set(after) == expected and {k: after[k] for k in before} == before  # finished runs were not re-run
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == 12 and table["id"].is_unique and (table["status"] == "ok").all()
    assert printed.count("\n| no ") == 2 and "| as is |" in printed  # the ablation table, over every run
    assert all((out / "runs" / run_id / "result.json").is_file() for run_id in expected)
    assert main(["report", str(out)]) == 0 and "| ideal | tiny, no bounds |" in (out / "report.md").read_text()


def test_a_suite_resumes_and_its_directory_reports_like_a_sweep(spec_file, tmp_path, capsys):
    path, out = spec_file(SUITE), tmp_path / "suite"
    command = ["demo", "--suite", str(path), "--out", str(out), "--workers", "0", "--quiet"]
    assert main(command) == 0
    first = capsys.readouterr().out
    assert "6 runs: 0 already done, 6 ran on serial" in first
    assert "| wild | ideal | float | backprop | no seed finished | 0 of 2 (2 diverged) |" in first
    stamps = ledger_rows(out / "ledger.sqlite")

    assert main(command) == 0
    second = capsys.readouterr().out
    assert "6 runs: 6 already done, 0 ran on serial" in second and ledger_rows(out / "ledger.sqlite") == stamps
    table = first.split("\n6 runs")[0]
    assert table == second.split("\n6 runs")[0] and "| fast |" in table and "epochs to" in table
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG" and (out / "summary.md").is_file()

    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| ideal | fast |" in report and "| ideal | wild | - | **2 diverged** (no seed finished) | 0/2 |" in report
    assert report.split("## Runs that did not finish")[1].count("| wild |") == 2


@pytest.mark.parametrize("command", [["ablate", "SPEC"], ["demo", "--suite", "SUITE"]])
@pytest.mark.parametrize("flags, field", [(["--scheduler", "localhost:8786"], "--scheduler"),
                                          (["--workers", "-1"], "--workers"),
                                          (["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "--workers")])
def test_ablate_and_demo_take_the_engine_options_and_a_bad_one_exits_2_with_one_line(
        spec_file, tmp_path, capsys, command, flags, field):
    files = {"SPEC": str(spec_file(TINY)), "SUITE": str(spec_file(SUITE, "suite.yaml"))}
    argv = [files.get(a, a) for a in command] + ["--out", str(tmp_path / "out"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and field in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_ablate_and_demo_run_on_an_existing_dask_cluster(spec_file, tmp_path, loopback_cluster, capsys):
    spec, suite = spec_file(TINY.replace("every: 1", "every: 20")), spec_file(SUITE, "suite.yaml")
    assert main(["ablate", str(spec), "--seeds", "1", "--out", str(tmp_path / "a"), "--quiet",
                 "--scheduler", loopback_cluster]) == 0
    assert main(["demo", "--suite", str(suite), "--out", str(tmp_path / "d"), "--quiet",
                 "--scheduler", loopback_cluster]) == 0
    out = capsys.readouterr().out
    assert out.count(f"ran on dask {loopback_cluster}") == 2
    assert "3 runs: 0 already done, 3 ran" in out and "6 runs: 0 already done, 6 ran" in out
