"""``chiploop demo``: digits trained with ideal backprop and with analog backprop on pulsed devices."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from chiploop.experiments.plots import learning_curves
from chiploop.experiments.results import Result, write_atomic
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train
from chiploop.specs import Spec, SpecError, from_mapping, load_yaml, spec_field


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


def run_suite(suite: SuiteSpec, out_dir: Path, source: str, progress: bool = True) -> dict[str, list[Result]]:
    """Train every run of ``suite`` with every seed; run dirs go to ``out_dir/NAME-sSEED``."""
    specs = [experiment_from_data({**suite.base, "epochs": suite.epochs, **run, "seed": seed},
                                  source=f"{source}: runs[{i}]")
             for i, run in enumerate(suite.runs) for seed in range(suite.seeds)]  # validate all first
    groups: dict[str, list[Result]] = {}
    for spec in tqdm(specs, desc="runs", disable=not progress):
        result = train(spec, out_dir / f"{spec.name}-s{spec.seed}", progress=progress)
        groups.setdefault(spec.name, []).append(result)
    return groups


def mean_curve(results: list[Result], metric: str = "test_acc") -> list[float]:
    """``metric`` per epoch, averaged over seeds (epoch 0 first)."""
    n = min(len(r.history) for r in results)
    return [statistics.mean(r.history[e][metric] for r in results) for e in range(n)]


def epochs_to(target: float, results: list[Result]) -> int | None:
    """The first epoch whose seed-mean test accuracy reaches ``target`` (None if none does)."""
    return next((e for e, acc in enumerate(mean_curve(results)) if acc >= target), None)


def summary_table(groups: dict[str, list[Result]], target_from: str = "", targets: tuple[float, ...] = (),
                  metrics: tuple[str, ...] = ()) -> str:
    """A markdown table: device, algorithm, rule, test accuracy (mean ± std over seeds), wall s;
    then the epochs each run needs to reach ``target_from``'s final mean accuracy and each of
    ``targets`` (seed-mean test accuracy; 'not reached' if it never does)."""
    columns = [(statistics.mean(r.final["test_acc"] for r in groups[target_from]), f" ({target_from})")] \
        if target_from else []
    columns += [(t, "") for t in targets]
    lines = ["| run | device | algorithm | rule | test acc (mean ± std) | seeds | wall s / run |"
             + "".join(f" epochs to {t:.3f}{label} |" for t, label in columns) + "".join(f" {m} |" for m in metrics),
             "|---|---|---|---|---|---|---|" + "---|" * (len(columns) + len(metrics))]
    for name, results in groups.items():
        accs = [r.final["test_acc"] for r in results]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        spec = results[0].spec
        device, rule = spec["device"], spec["rule"]["name"] + (" + decorrelation" if spec["decorrelation"] else "")
        wall = statistics.mean(r.wall_s for r in results)
        row = (f"| {name} | {device['preset']} | {device['algorithm']} | {rule} | "
               f"{statistics.mean(accs):.3f} ± {std:.3f} | {len(accs)} | {wall:.1f} |")
        for target, _ in columns:
            reached = epochs_to(target, results)
            row += f" {reached if reached is not None else 'not reached'} |"
        for metric in metrics:
            row += f" {statistics.mean(r.final.get(metric, float('nan')) for r in results):.4g} |"
        lines.append(row)
    return "\n".join(lines)


def run_demo(out_dir: Path = Path("runs/demo"), epochs: int | None = None, seeds: int | None = None,
             progress: bool = True, suite_path: str | None = None) -> dict[str, list[Result]]:
    """Run the demo suite (or another suite file), print its table, write ``summary.md`` and
    ``learning_curves.png``."""
    path = suite_path or demo_path()
    data = load_yaml(path)
    data.update({k: v for k, v in (("epochs", epochs), ("seeds", seeds)) if v is not None})
    suite = from_mapping(SuiteSpec, data, source=path)
    groups = run_suite(suite, out_dir, path, progress)
    table = summary_table(groups, suite.target_from, suite.targets, suite.metrics)
    print(table)
    write_atomic(out_dir / "summary.md", f"# {Path(path).name}\n\n{table}\n")
    png = learning_curves(groups, out_dir / "learning_curves.png")
    print(f"wrote {out_dir / 'summary.md'} and {png}")
    return groups
