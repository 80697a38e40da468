"""Train with injected relative bias b and relative variance σ² (Ghosh et al. 2023, seed 000) over a grid.

    .venv/bin/python experiments/injected_grid.py [--biases 0 0.25 0.5 1] [--sigmas 0 0.5 1 2]
        [--tasks teacher_student digits] [--seeds 3] [--lr 0.1] [--epochs-ts 200] [--epochs-digits 60]
        [--out runs/injected_grid] [--workers N | --scheduler ADDRESS]

Ideal chip, ideal backprop wrapped by the injected estimator ``ĝ' = ĝ + ξ - b ||ĝ|| u``
(``||ξ|| = σ ||ĝ||``), constant lr, seeds 0, 1, 2, ... For every task it prints the final training
loss and the final test loss (mean ± std over seeds; rows b, columns σ), and whether some
(b, σ) ≠ (0, 0) ends with a lower mean test loss than plain backprop (0, 0), by how much, and how
that compares with the spread over seeds. The runs are one sweep (zip over the tasks, grid over b
and σ) trained by the sweep runner into ``--out``: re-running resumes, ``chiploop report OUT`` plots it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

from chiploop.experiments.cli import engine_options
from chiploop.experiments.sweeps.engine import make_executor
from chiploop.experiments.sweeps.ledger import read_rows
from chiploop.experiments.sweeps.runner import counts_text, run_sweep, sweep_study
from chiploop.experiments.sweeps.spec import SweepSpec
from chiploop.specs import SpecError, from_mapping

TASKS = {
    "teacher_student": {"task": {"name": "teacher_student", "teacher_sizes": [20, 32, 5], "n_samples": 2000,
                                 "kind": "classification", "label_noise": 0.05},
                        "model": {"sizes": [20, 64, 5], "activation": "relu"}},
    "digits": {"task": {"name": "digits"}, "model": {"sizes": [64, 64, 10], "activation": "relu"}},
}


def sweep(args: argparse.Namespace, epochs: dict[str, int]) -> SweepSpec:
    """Every task (zip: its data, model and epochs) at every (b, σ) (grid) with seeds 0, 1, ...: one sweep spec."""
    return from_mapping(SweepSpec, {
        "base": {"device": "ideal", "rule": "backprop", "lr": args.lr, "schedule": "constant", "batch_size": 32,
                 "threads": 1, "injected": {"bias": 0.0, "variance": 0.0}},
        "zip": {"name": list(args.tasks), "task": [TASKS[t]["task"] for t in args.tasks],
                "model": [TASKS[t]["model"] for t in args.tasks], "epochs": [epochs[t] for t in args.tasks]},
        "grid": {"injected.bias": args.biases, "injected.variance": args.sigmas},
        "seeds": list(range(args.seeds))}, source="experiments/injected_grid.py")


def outcome(row: dict) -> dict:
    """One ledger row as (task, b, σ, seed), its status, final losses and accuracy (NaN when it failed)."""
    spec, final = row["spec"], row["final"]
    return {"task": spec["name"], "b": spec["injected"]["bias"], "sigma": spec["injected"]["variance"],
            "seed": spec["seed"], "status": row["status"], "wall_s": row["wall_s"],
            **{k: final.get(k, math.nan) for k in ("train_loss", "test_loss", "test_acc")}}


def stats(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(cells: dict, biases: list[float], sigmas: list[float], metric: str) -> str:
    """Rows b, columns σ: mean ± std over seeds; diverged runs (stopped early) are left out and counted."""
    lines = ["| b \\ σ | " + " | ".join(f"{s:g}" for s in sigmas) + " |",
             "|---|" + "---|" * len(sigmas)]
    for b in biases:
        row = []
        for s in sigmas:
            runs = cells[b, s]
            ok = [r[metric] for r in runs if r["status"] == "ok"]
            diverged = len(runs) - len(ok)
            notes = (["1 seed"] if len(ok) == 1 else []) + ([f"diverged {diverged}/{len(runs)}"] if diverged else [])
            text = " ".join(([f"{stats(ok)[0]:.3f}" + (f" ± {stats(ok)[1]:.3f}" if len(ok) > 1 else "")] if ok else [])
                            + ([f"({', '.join(notes)})"] if notes else []))
            row.append(text)
        lines.append(f"| {b:g} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def comparison(cells: dict, n_seeds: int) -> str:
    """Best (b, σ) ≠ (0, 0) by mean test loss against (0, 0), with the seeds' spread.

    Every cell with seed s starts from the same weights and sees the same batch order (the
    injected noise has its own generator), so the per-seed differences are paired as well."""
    base = cells[0.0, 0.0]
    base_mean, base_std = stats([r["test_loss"] for r in base])
    base_acc = statistics.mean(r["test_acc"] for r in base)
    means = {k: stats([r["test_loss"] for r in v]) for k, v in cells.items()
             if k != (0.0, 0.0) and all(r["status"] == "ok" for r in v)}
    n_diverged = sum(any(r["status"] != "ok" for r in v) for v in cells.values())
    lower = sorted((k for k, (m, _) in means.items() if m < base_mean), key=lambda k: means[k][0])
    head = (f"(0, 0): test loss {base_mean:.3f} ± {base_std:.3f}, test acc {base_acc:.3f}; "
            f"{n_diverged} of {len(cells)} settings had a diverged seed and are left out. ")
    if not lower:
        return head + f"No (b, σ) ≠ (0, 0) of the {len(means)} others has a lower mean test loss."
    (b, s) = lower[0]
    mean, std = means[b, s]
    acc = statistics.mean(r["test_acc"] for r in cells[b, s])
    diff = base_mean - mean
    pooled = math.sqrt((base_std ** 2 + std ** 2) / 2)
    paired = [x["test_loss"] - y["test_loss"] for x, y in zip(sorted(base, key=lambda r: r["seed"]),
                                                              sorted(cells[b, s], key=lambda r: r["seed"]))]
    p_mean, p_std = stats(paired)
    t = p_mean / (p_std / math.sqrt(len(paired))) if p_std > 0 else float("inf")
    return (head + f"{len(lower)} of {len(means)} others have a lower mean test loss: "
            + ", ".join(f"({bb:g}, {ss:g})" for bb, ss in lower)
            + f". The lowest, (b, σ) = ({b:g}, {s:g}): {mean:.3f} ± {std:.3f} (test acc {acc:.3f}), lower by "
            f"{diff:.3f} ({diff / base_mean:.1%}) = {diff / pooled:.1f}x the pooled std over seeds; per seed "
            f"(paired: same init and batch order) lower by {p_mean:.3f} ± {p_std:.3f}, t = {t:.1f} with "
            f"{len(paired) - 1} dof. It is the best of {len(means)}, so part of the gap is selection by chance.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--biases", nargs="+", type=float, default=[0.0, 0.25, 0.5, 1.0])
    parser.add_argument("--sigmas", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs-ts", type=int, default=200, help="epochs on teacher_student")
    parser.add_argument("--epochs-digits", type=int, default=60, help="epochs on digits")
    parser.add_argument("--out", default="runs/injected_grid", help="sweep directory (default runs/injected_grid); "
                        "re-running resumes")
    engine_options(parser)
    args = parser.parse_args()
    if 0.0 not in args.biases or 0.0 not in args.sigmas:
        parser.error("the grid must contain b = 0 and σ = 0 (the reference)")

    epochs = {"teacher_student": args.epochs_ts, "digits": args.epochs_digits}
    start = time.perf_counter()
    try:
        spec, executor = sweep(args, epochs), make_executor(args.workers, args.scheduler)
        counts = run_sweep(spec, args.out, "experiments/injected_grid.py", progress=False, executor=executor)
    except SpecError as err:
        print(f"injected_grid.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    wall = time.perf_counter() - start
    rows = [outcome(row) for row in read_rows(args.out, sweep_study(spec).ids).values()]

    print(f"injected bias b and variance σ² on ideal backprop, ideal chip, constant lr {args.lr}, batch 32, "
          f"seeds 0..{args.seeds - 1}; {counts_text(counts, executor)} in {wall:.0f} s")
    for task in args.tasks:
        cells = {(b, s): [r for r in rows if r["task"] == task and r["b"] == b and r["sigma"] == s]
                 for b in args.biases for s in args.sigmas}
        sizes = TASKS[task]["model"]["sizes"]
        print(f"\n### {task} ({'-'.join(map(str, sizes))}, {epochs[task]} epochs)\n")
        print("Final training loss (mean ± std over seeds; rows b, columns σ):\n")
        print(table(cells, args.biases, args.sigmas, "train_loss"))
        print("\nFinal test loss:\n")
        print(table(cells, args.biases, args.sigmas, "test_loss"))
        print("\n" + comparison(cells, args.seeds))


if __name__ == "__main__":  # the Dask workers are spawned processes: keep the entry point guarded
    main()
