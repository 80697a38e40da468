"""Sweeps on real engines: a Dask LocalCluster, a loopback `dask scheduler` with two `dask worker`
processes, a driver killed with SIGKILL and resumed, and a run that crashes."""

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from processes import free_port, kill_after_rows, ledger_rows

from chiploop.experiments.sweeps.engine import DaskExecutor, make_executor
from chiploop.experiments.sweeps.runner import run_sweep
from chiploop.experiments.sweeps.spec import expand, load_sweep
from chiploop.specs import SpecError

SMALL = "base: {device: ideal, epochs: 2, model: {sizes: [64, 16, 10]}}\ngrid: {lr: [0.1, 0.5]}\nseeds: [0, 1]\n"
METRICS = ["train_loss", "test_loss", "test_acc"]


def _table(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "results.parquet").set_index("id").sort_index()


def test_a_local_dask_cluster_gives_the_serial_results_on_the_ideal_chip(spec_file, tmp_path):
    sweep = load_sweep(spec_file(SMALL))
    run_sweep(sweep, tmp_path / "serial", progress=False)
    counts = run_sweep(sweep, tmp_path / "dask", progress=False, executor=DaskExecutor(workers=2))
    assert counts == {"runs": 4, "already_done": 0, "ran": 4, "ok": 4, "diverged": 0, "failed": 0}
    serial, dask = _table(tmp_path / "serial"), _table(tmp_path / "dask")
    assert list(serial.index) == list(dask.index) and (dask["status"] == "ok").all()
    pd.testing.assert_frame_equal(serial[METRICS], dask[METRICS], atol=1e-6, rtol=0)
    assert dask["worker"].nunique() == 2  # both worker processes ran runs
    assert serial["worker"].nunique() == 1 and serial["worker"].iloc[0].endswith(f":{os.getpid()}")


def test_a_crashing_run_is_recorded_as_failed_and_the_sweep_goes_on(spec_file, tmp_path):
    path = spec_file(SMALL)
    first = expand(load_sweep(path))[0].spec_hash()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / first).write_text("a file where the run directory should be\n")  # writing it raises
    assert run_sweep(load_sweep(path), tmp_path, progress=False)["ran"] == 4
    table = _table(tmp_path)
    assert table.loc[first, "status"] == "failed" and "Error" in table.loc[first, "message"]
    assert pd.isna(table.loc[first, "test_acc"])  # no metrics, not zeros
    assert (table.drop(first)["status"] == "ok").all()


@pytest.mark.parametrize("workers, scheduler, field", [
    (-1, None, "--workers"), (None, "localhost:8786", "--scheduler"), (2, "tcp://127.0.0.1:8786", "--workers")])
def test_bad_engine_options_raise_one_clear_error(workers, scheduler, field):
    with pytest.raises(SpecError) as info:
        make_executor(workers, scheduler)
    assert info.value.field == field


def test_an_unreachable_scheduler_is_a_clear_error(spec_file, tmp_path):
    executor = DaskExecutor(scheduler=f"tcp://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(SpecError) as info:
        run_sweep(load_sweep(spec_file(SMALL)), tmp_path, progress=False, executor=executor)
    assert info.value.field == "--scheduler"


def test_a_sweep_killed_with_sigkill_resumes_without_losing_or_repeating_runs(spec_file, tmp_path):
    path = spec_file("base: {device: constant-step, epochs: 6, model: {sizes: [64, 32, 10]}}\n"
                     "grid: {lr: [0.1, 0.2, 0.3, 0.5]}\nseeds: [0, 1, 2]\n")
    out = tmp_path / "sweep"
    before = kill_after_rows([sys.executable, "-m", "chiploop.experiments.cli", "sweep", str(path), "--out", str(out),
                              "--workers", "2", "--quiet"], out / "ledger.sqlite", rows=3)
    assert 3 <= len(before) < 12, "the kill came after some, not all, runs had finished"

    counts = run_sweep(load_sweep(path), out, progress=False, executor=DaskExecutor(workers=2))
    after = ledger_rows(out / "ledger.sqlite")
    assert counts == {"runs": 12, "already_done": len(before), "ran": 12 - len(before), "ok": 12, "diverged": 0,
                      "failed": 0}
    assert len(after) == 12 and {k: after[k] for k in before} == before  # finished runs were not re-run
    table = _table(out)
    assert len(table) == 12 and table.index.is_unique and (table["status"] == "ok").all()


def test_a_sweep_on_a_loopback_dask_cluster_matches_the_local_default(spec_file, tmp_path, loopback_cluster, capsys):
    from chiploop.experiments.cli import main
    path = spec_file(SMALL)
    assert main(["sweep", str(path), "--out", str(tmp_path / "local"), "--quiet", "--workers", "2"]) == 0
    assert main(["sweep", str(path), "--out", str(tmp_path / "cluster"), "--quiet",
                 "--scheduler", loopback_cluster]) == 0
    assert f"ran on dask {loopback_cluster}" in capsys.readouterr().out
    local, cluster = _table(tmp_path / "local"), _table(tmp_path / "cluster")
    assert list(local.index) == list(cluster.index) and (cluster["status"] == "ok").all()
    pd.testing.assert_frame_equal(local[METRICS], cluster[METRICS], atol=1e-6, rtol=0)
    assert cluster["worker"].nunique() == 2
