"""The same 16-run sweep on the default Dask engine with 1 and with 2 local workers, in one run.

Each run trains the digits MLP 64-64-10 with backprop on ``reram-sb`` crossbars (about 9 s of
training). Reported, not asserted:

- speed-up = wall(1 worker) / wall(2 workers), target >= 1.8 on 2 cores;
- the engine's fixed cost: start a LocalCluster, import chiploop (torch, aihwkit) in the
  worker, stop it;
- the engine's overhead per run = (wall(1 worker) - fixed cost - sum of the runs' own training
  seconds) / 16: submitting, shipping results back, the driver's ledger commits;
- how much slower each run trains when two share the machine;
- the serial in-process driver (``--workers 0``) on the same sweep, for reference.

Run: ``.venv/bin/python benchmarks/bench_sweep.py [--repeats 1] [--epochs 60]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from chiploop.experiments.sweeps.engine import DaskExecutor, SerialExecutor
from chiploop.experiments.sweeps.runner import run_sweep
from chiploop.experiments.sweeps.spec import SweepSpec
from chiploop.specs import from_mapping


def sweep_spec(epochs: int) -> SweepSpec:
    return from_mapping(SweepSpec, {
        "base": {"device": {"preset": "reram-sb", "dw_min": 0.0002}, "rule": "backprop", "epochs": epochs,
                 "batch_size": 32, "model": {"sizes": [64, 64, 10]}},
        "grid": {"lr": [0.1, 0.2, 0.3, 0.5]},
        "seeds": [0, 1, 2, 3],
    })


def timed_sweep(sweep: SweepSpec, executor) -> tuple[float, float]:
    """Wall seconds of the whole sweep (fresh directory) and the sum of its runs' training seconds."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        counts = run_sweep(sweep, out, progress=False, executor=executor)
        wall = time.perf_counter() - start
        table = pd.read_parquet(Path(out) / "results.parquet")
    assert counts["ran"] == 16 and (table["status"] == "ok").all(), table["status"].value_counts()
    return wall, float(table["wall_s"].sum())


def _import_chiploop(_: object) -> None:
    import chiploop.experiments.train  # noqa: F401  (torch, aihwkit, scikit-learn: what a worker loads first)


def start_stop(workers: int) -> float:
    """Seconds to start a LocalCluster, have each worker import chiploop, and stop it: the fixed cost."""
    start = time.perf_counter()
    with DaskExecutor(workers=workers) as engine:
        list(engine.imap_unordered(_import_chiploop, range(workers)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="alternating repeats of 1 and 2 workers (median)")
    parser.add_argument("--epochs", type=int, default=60, help="epochs per run (default 60, about 9 s)")
    args = parser.parse_args()
    sweep = sweep_spec(args.epochs)

    walls: dict[str, list[float]] = {"1 worker": [], "2 workers": []}
    trained: dict[str, list[float]] = {"1 worker": [], "2 workers": []}
    for r in range(args.repeats):
        for label in (["1 worker", "2 workers"] if r % 2 == 0 else ["2 workers", "1 worker"]):
            wall, train_s = timed_sweep(sweep, DaskExecutor(workers=int(label[0])))
            walls[label].append(wall)
            trained[label].append(train_s)
            print(f"  {label}: {wall:.1f} s (the runs' own training {train_s:.1f} s)", flush=True)
    serial, serial_train = timed_sweep(sweep, SerialExecutor())
    boot = statistics.median(start_stop(1) for _ in range(3))
    one, two = (statistics.median(walls[k]) for k in ("1 worker", "2 workers"))
    train_one, train_two = (statistics.median(trained[k]) for k in ("1 worker", "2 workers"))
    per_run = (one - boot - train_one) / 16

    print(f"\n16 runs (digits 64-64-10, backprop on reram-sb, {args.epochs} epochs), median of {args.repeats}:")
    print("| engine | wall s | per run s |\n|---|---|---|")
    print(f"| serial, in-process (--workers 0) | {serial:.1f} | {serial / 16:.2f} |")
    print(f"| Dask LocalCluster, 1 worker | {one:.1f} | {one / 16:.2f} |")
    print(f"| Dask LocalCluster, 2 workers | {two:.1f} | {two / 16:.2f} |")
    print(f"\nspeed-up 1 -> 2 workers: {one / two:.2f}  (target >= 1.8)")
    print(f"engine start, worker imports and stop (1 worker, no runs): {boot:.2f} s")
    print(f"engine overhead per run (1 worker, that fixed cost excluded): {per_run:.3f} s "
          f"({100 * per_run / (train_one / 16):.1f} % of a run's {train_one / 16:.2f} s of training)")
    print(f"the runs' own training, 2 workers / 1 worker: {train_two / train_one:.2f} (two runs share the machine)")
    print(f"serial driver overhead per run: {(serial - serial_train) / 16:.3f} s")


if __name__ == "__main__":  # the Dask workers are spawned processes: keep the entry point guarded
    main()
