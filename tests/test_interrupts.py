"""Ctrl-C (SIGINT) and a batch scheduler's SIGTERM stop `chiploop run` and `chiploop sweep` cleanly:
one line on stderr, exit code 130, every finished epoch or run kept, no process left behind; and a
second sweep on a directory in use stops at once. Real processes and signals, polled on files and
pipes, never timed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
from processes import children, ledger_rows, reap

from chiploop.experiments.sweeps.lock import DirectoryBusy, exclusive
from chiploop.experiments.sweeps.runner import OUTCOME

CLI = [sys.executable, "-m", "chiploop.experiments.cli"]


def _as_from_a_terminal() -> None:
    """SIGINT as a terminal's Ctrl-C finds it: a shell starts background jobs (``make test &``,
    ``nohup ... &``) with SIGINT ignored, and the child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
DEADLINE = 300  # seconds: a bound on a hung process, never a speed check

# a run of many quick epochs: the bar shows each one, and the interrupt lands mid-training
RUN = "name: slow\ndevice: constant-step\nepochs: 400\nlr: 0.05\nmodel: {sizes: [64, 16, 10]}\n"
# twelve runs of a few seconds each on two workers
SWEEP = ("base: {device: constant-step, epochs: 8, model: {sizes: [64, 32, 10]}}\n"
         "grid: {lr: [0.05, 0.1, 0.2, 0.3, 0.4, 0.5]}\nseeds: [0, 1]\n")


class Reader:
    """Collects a pipe's bytes in a thread, so the test can wait for text without blocking on it."""

    def __init__(self, pipe):
        self.data = b""
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe) -> None:
        with pipe:
            while chunk := pipe.read1(4096):
                self.data += chunk

    def text(self) -> str:
        return self.data.decode(errors="replace")


def _wait(proc: subprocess.Popen, ready) -> None:
    deadline = time.monotonic() + DEADLINE
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the process ended before it could be interrupted"
    assert ready(), "the process never got far enough to be interrupted"


def _finish(proc: subprocess.Popen, watched: set[int]) -> None:
    """Wait for ``proc`` and make sure none of ``watched`` outlives it (killed by id if any does)."""
    try:
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = reap(watched, grace=30)
    assert not left, f"processes left behind: {sorted(left)}"


def _lines(stderr: str) -> list[str]:
    """stderr without the progress bar's redraws (a bar line ends in \\r or holds one)."""
    return [line for line in stderr.splitlines() if line and "\r" not in line and "epoch/s" not in line
            and "it/s" not in line and "?epoch" not in line]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_keeps_its_finished_epochs(spec_file, tmp_path, sig):
    out = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "run", str(spec_file(RUN)), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path, preexec_fn=_as_from_a_terminal)
    err, stdout = Reader(proc.stderr), Reader(proc.stdout)
    _wait(proc, lambda: "| 3/400" in err.text() or "| 4/400" in err.text())  # the bar, after 3 epochs or more
    proc.send_signal(sig)
    _finish(proc, set())
    err.thread.join(timeout=30)
    stdout.thread.join(timeout=30)
    assert proc.returncode == 130
    text = err.text()
    assert "Traceback" not in text + stdout.text()
    lines = _lines(text)
    assert len(lines) == 1 and lines[0].startswith("chiploop: interrupted after "), text
    result = json.loads((out / "result.json").read_text())
    epochs = len(result["history"]) - 1
    assert result["status"] == "interrupted" and 3 <= epochs < 400
    assert f"interrupted after {epochs} of 400 epochs; wrote {out} (status interrupted" in lines[0]
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == list(range(epochs + 1))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_sweep_commits_every_finished_run_and_leaves_no_process(spec_file, tmp_path, sig):
    path, out = spec_file(SWEEP), tmp_path / "sweep"
    command = [*CLI, "sweep", str(path), "--out", str(out), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            preexec_fn=_as_from_a_terminal)
    err, stdout = Reader(proc.stderr), Reader(proc.stdout)
    _wait(proc, lambda: len(ledger_rows(out / "ledger.sqlite")) >= 2)
    workers = children(proc.pid)
    proc.send_signal(sig)
    _finish(proc, workers)
    err.thread.join(timeout=30)
    stdout.thread.join(timeout=30)
    assert workers, "the sweep had started its worker processes"
    assert proc.returncode == 130, err.text()
    assert "Traceback" not in err.text() + stdout.text()
    lines = err.text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chiploop: interrupted; "), err.text()

    rows = ledger_rows(out / "ledger.sqlite")
    assert 2 <= len(rows) < 12, "the interrupt came after some, not all, runs had finished"
    finished = {p.parent.name for p in (out / "runs").glob(f"*/{OUTCOME}")}
    assert finished == set(rows)  # every run a worker finished is in the ledger, and only those
    assert f"{len(rows)} of 12 runs are in {out / 'ledger.sqlite'}" in lines[0]

    if sig == signal.SIGTERM:
        return  # resuming is the same after either signal
    rerun = subprocess.run([*command[:-3], "--workers", "0", "--quiet"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=DEADLINE)
    assert rerun.returncode == 0, rerun.stderr
    assert f"12 runs: {len(rows)} already done, {12 - len(rows)} ran on serial; 12 ok" in rerun.stdout
    after = ledger_rows(out / "ledger.sqlite")
    assert len(after) == 12 and {k: after[k] for k in rows} == rows  # the finished runs were not run again


def test_a_second_sweep_on_a_directory_in_use_stops_at_once_naming_the_holder(spec_file, tmp_path):
    path, out = spec_file(SWEEP), tmp_path / "sweep"
    with exclusive(out):  # held by this process, as a running sweep holds it
        proc = subprocess.run([*CLI, "sweep", str(path), "--out", str(out), "--workers", "0", "--quiet"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=DEADLINE)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert f"{out} is in use by chiploop process {os.getpid()}" in proc.stderr
    assert not (out / "ledger.sqlite").exists()  # nothing ran

    # released with the holder: the same command now runs
    with exclusive(out) as lock:
        assert lock == out / ".chiploop.lock" and lock.read_text() == f"{os.getpid()}\n"


def test_a_lock_dies_with_a_killed_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from chiploop.experiments.sweeps.lock import exclusive\n"
                               f"with exclusive({str(tmp_path)!r}):\n"
                               "    print('held', flush=True)\n    time.sleep(600)\n"],
                              stdout=subprocess.PIPE, text=True)
    with holder:
        try:
            assert holder.stdout.readline() == "held\n"
            with pytest.raises(DirectoryBusy, match=f"in use by chiploop process {holder.pid}"):
                with exclusive(tmp_path):
                    pass
        finally:
            holder.kill()
            holder.wait()
    with exclusive(tmp_path):  # the kernel released the flock with the killed process
        pass
