"""``chiploop demo [--suite FILE]``: named runs over one base spec, each trained with several seeds.

A suite file (``demo.yaml`` is the shipped one) expands into a list of experiment specs, runs x
seeds, that the sweep runner trains into one directory (ledger, resume, Dask). Its table (test
accuracy mean ± std over the seeds that finished, wall seconds, epochs to a target accuracy, more
final metrics) and its learning curves are read back from the ledger and the run dirs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from chiploop.experiments.plots import learning_curves
from chiploop.experiments.results import Result, write_atomic
from chiploop.experiments.spec import ExperimentSpec, experiment_from_data
from chiploop.experiments.sweeps.engine import Executor
from chiploop.experiments.sweeps.ledger import read_rows
from chiploop.experiments.sweeps.runner import Study, by_hash, counts_text, run_dir, run_study
from chiploop.specs import Spec, SpecError, from_mapping, load_yaml, spec_field, to_plain


@dataclass(frozen=True)
class SuiteSpec(Spec):
    """A few named experiment variants of one base spec, each trained with several seeds."""

    base: dict = spec_field(default_factory=dict, doc="experiment fields shared by every run")
    runs: tuple[dict, ...] = spec_field((), doc="per-run fields (name, device, lr, ...) over the base")
    seeds: int = spec_field(1, doc="seeds per run: 0, 1, ...", low=1, high=100)
    epochs: int = spec_field(10, doc="epochs per run", low=0)
    target_from: str = spec_field("", doc="a run whose final mean test accuracy is the target every run's "
                                  "'epochs to target' is counted against; empty = no such column")
    targets: tuple[float, ...] = spec_field((), doc="fixed test accuracies to count 'epochs to' for, too")
    metrics: tuple[str, ...] = spec_field((), doc="more final metrics to tabulate (mean over seeds), e.g. "
                                          "hessian_top_eig, gen_gap, physical_rel_var")

    def check(self) -> None:
        names = [r.get("name") for r in self.runs]
        if self.target_from and self.target_from not in names:
            raise SpecError("target_from", self.target_from, "the name of one of the runs: " + ", ".join(map(str, names)))


def demo_path() -> str:
    return str(resources.files("chiploop.experiments") / "demo.yaml")


def load_suite(path: str | Path, epochs: int | None = None, seeds: int | None = None) -> SuiteSpec:
    """Read and validate a suite file; ``epochs`` and ``seeds`` replace the file's when given."""
    data = load_yaml(path)
    data.update({k: v for k, v in (("epochs", epochs), ("seeds", seeds)) if v is not None})
    return from_mapping(SuiteSpec, data, source=str(path))


def suite_runs(suite: SuiteSpec, source: str = "<suite>") -> dict[str, list[ExperimentSpec]]:
    """Each run's specs, seeds 0 .. seeds - 1, by run name; every spec is validated before any trains."""
    groups: dict[str, list[ExperimentSpec]] = {}
    for i, run in enumerate(suite.runs):
        for seed in range(suite.seeds):
            spec = experiment_from_data({**suite.base, "epochs": suite.epochs, **run, "seed": seed},
                                        source=f"{source}: runs[{i}]")
            groups.setdefault(spec.name, []).append(spec)
    return groups


def suite_study(suite: SuiteSpec, source: str = "<suite>") -> Study:
    """The suite as a list of runs for the sweep runner; the results table tells them apart by name."""
    runs = [s for group in suite_runs(suite, source).values() for s in group]
    return Study(by_hash(runs), ("name", "seed"), ("name",), "suite", source, to_plain(suite))


def read_groups(suite: SuiteSpec, out_dir: str | Path, source: str = "<suite>") -> dict[str, list[Result]]:
    """Each run name's results, by seed, as the ledger in ``out_dir`` has them: ``ok`` and ``diverged``
    runs from their run dirs; a ``failed`` run as a Result with its status and no history."""
    rows = read_rows(out_dir)
    groups: dict[str, list[Result]] = {}
    for name, specs in suite_runs(suite, source).items():
        for spec in specs:
            row = rows.get(spec.spec_hash())
            if row is None:
                continue
            if row["status"] == "failed":
                result = Result(row["spec"], row["id"], "failed", [], {}, row["wall_s"], row["versions"])
            else:
                result = Result.read(run_dir(out_dir, row["id"]))
            groups.setdefault(name, []).append(result)
    return groups


def run_suite(suite: SuiteSpec, out_dir: str | Path, source: str = "<suite>", progress: bool = True,
              executor: Executor | None = None) -> dict[str, list[Result]]:
    """Train every run of ``suite`` that ``out_dir``'s ledger lacks on ``executor`` (default: serial);
    returns every run's result by run name (see :func:`read_groups`)."""
    run_study(suite_study(suite, source), out_dir, progress, executor)
    return read_groups(suite, out_dir, source)


def finished(results: list[Result]) -> list[Result]:
    """The runs that trained to the end (not diverged, not failed)."""
    return [r for r in results if r.status == "ok"]


def mean_curve(results: list[Result], metric: str = "test_acc") -> list[float]:
    """``metric`` per epoch, averaged over seeds (epoch 0 first)."""
    n = min(len(r.history) for r in results)
    return [statistics.mean(r.history[e][metric] for r in results) for e in range(n)]


def epochs_to(target: float, results: list[Result]) -> int | None:
    """The first epoch whose seed-mean test accuracy reaches ``target`` (None if none does)."""
    return next((e for e, acc in enumerate(mean_curve(results)) if acc >= target), None)


def _seeds(results: list[Result]) -> str:
    """``3``, or ``2 of 3 (1 diverged)`` when some seeds did not finish."""
    ok, not_ok = finished(results), [r.status for r in results if r.status != "ok"]
    if not not_ok:
        return str(len(ok))
    return f"{len(ok)} of {len(results)} (" + ", ".join(f"{not_ok.count(s)} {s}" for s in dict.fromkeys(not_ok)) + ")"


def summary_table(groups: dict[str, list[Result]], target_from: str = "", targets: tuple[float, ...] = (),
                  metrics: tuple[str, ...] = ()) -> str:
    """A markdown table: device, algorithm, rule, test accuracy (mean ± std over the seeds that
    finished), wall s; then the epochs each run needs to reach ``target_from``'s final mean accuracy
    and each of ``targets`` (seed-mean test accuracy; 'not reached' if it never does). Seeds that
    diverged or failed are counted in the seeds column, never averaged in."""
    reference = finished(groups.get(target_from, []))
    columns = [(statistics.mean(r.final["test_acc"] for r in reference), f" ({target_from})")] \
        if target_from and reference else []
    columns += [(t, "") for t in targets]
    lines = ["| run | device | algorithm | rule | test acc (mean ± std) | seeds | wall s / run |"
             + "".join(f" epochs to {t:.3f}{label} |" for t, label in columns) + "".join(f" {m} |" for m in metrics),
             "|---|---|---|---|---|---|---|" + "---|" * (len(columns) + len(metrics))]
    for name, results in groups.items():
        spec, ok = results[0].spec, finished(results)
        device, rule = spec["device"], spec["rule"]["name"] + (" + decorrelation" if spec["decorrelation"] else "")
        row = f"| {name} | {device['preset']} | {device['algorithm']} | {rule} | "
        if not ok:
            lines.append(row + f"no seed finished | {_seeds(results)} |" + " |" * (1 + len(columns) + len(metrics)))
            continue
        accs = [r.final["test_acc"] for r in ok]
        spread = f" ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else " (1 seed)"
        wall = statistics.mean(r.wall_s for r in ok)
        row += f"{statistics.mean(accs):.3f}{spread} | {_seeds(results)} | {wall:.1f} |"
        for target, _ in columns:
            reached = epochs_to(target, ok)
            row += f" {reached if reached is not None else 'not reached'} |"
        for metric in metrics:
            row += f" {statistics.mean(r.final.get(metric, float('nan')) for r in ok):.4g} |"
        lines.append(row)
    return "\n".join(lines)


def run_demo(out_dir: str | Path = "runs/demo", epochs: int | None = None, seeds: int | None = None,
             progress: bool = True, suite_path: str | None = None,
             executor: Executor | None = None) -> dict[str, list[Result]]:
    """Run the demo suite (or another suite file) on ``executor`` (default: serial), resuming from
    ``out_dir``'s ledger; print its table, write ``summary.md`` and ``learning_curves.png``."""
    path, out_dir = suite_path or demo_path(), Path(out_dir)
    suite = load_suite(path, epochs, seeds)
    counts = run_study(suite_study(suite, path), out_dir, progress, executor)
    groups = read_groups(suite, out_dir, path)
    table = summary_table(groups, suite.target_from, suite.targets, suite.metrics)
    print(table)
    write_atomic(out_dir / "summary.md", f"# {Path(path).name}\n\n{table}\n")
    curves = {name: ok for name, results in groups.items() if (ok := finished(results))}
    png = learning_curves(curves, out_dir / "learning_curves.png")
    print(f"{counts_text(counts, executor)}; wrote {out_dir / 'summary.md'}, {png} and {out_dir / 'results.parquet'}")
    return groups
