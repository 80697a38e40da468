"""Choose learning rates on the *validation* split (never the test split).

    .venv/bin/python experiments/tune_lr.py [--base BASE.yaml] [--devices ...] [--rules ...]
        [--decorrelation off on] [--epochs 20] [--seeds 4] [--lrs ...] [--schedule cosine]
        [--suite OUT.yaml] [--suite-seeds 3] [--out runs/tune_lr] [--workers N | --scheduler ADDRESS]

For every (device, rule, decorrelation) and every lr it trains the base experiment (default: digits
64-64-10; ``--base`` a YAML file with the task, model and batch size of another) for the given
seeds (100, 101, ...; not the evaluation seeds 0-2) and prints the mean validation accuracy; the
best lr is marked (an lr at which some seed diverged or failed is shown with its count and never
chosen). The runs are one sweep (zip over the configurations, grid over lr) trained by the sweep
runner into ``--out``: re-running resumes, and ``chiploop report OUT --x lr`` plots it.
``--suite`` writes a suite file with the chosen lrs and seeds 0 .. suite-seeds - 1, which
``chiploop demo --suite OUT.yaml`` then evaluates on the test split.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import yaml

from chiploop.experiments.cli import engine_options
from chiploop.experiments.sweeps.engine import make_executor
from chiploop.experiments.sweeps.runner import counts_text, run_sweep
from chiploop.experiments.sweeps.spec import SweepSpec
from chiploop.specs import SpecError, from_mapping, load_yaml

DEVICES = ["ideal", "constant-step", "ecram", "reram-sb", "reram-sb-tt", "reram-sb-ttv2",
           "reram-sb-cttv2", "reram-sb-agad", "reram-sb-mp"]
LRS = [0.03, 0.1, 0.2, 0.3, 0.5, 1.0]


def base(args: argparse.Namespace) -> dict:
    """The fields every run shares: ``--base``'s file, else digits 64-64-10, with the schedule."""
    shared = load_yaml(args.base) if args.base else {
        "task": {"name": "digits"}, "model": {"sizes": [64, 64, 10], "activation": "relu"}, "batch_size": 32}
    return {**shared, "schedule": args.schedule}


def describe(data: dict) -> str:
    """``seq_digits, rnn`` / ``digits, mlp 64-64-10``: what the base trains, for the table's title."""
    task, model = data.get("task", "digits"), data.get("model", {})
    task = task if isinstance(task, str) else task.get("name", "digits")
    sizes = "-".join(map(str, model.get("sizes", []))) if model.get("sizes") else ""
    return f"{task}, {model.get('kind', 'mlp')} {sizes}".rstrip()


def parse_rule(text: str) -> dict | str:
    """``name`` or ``name:key=value,key=value`` (values read as YAML) -> a rule spec."""
    name, _, options = text.partition(":")
    if not options:
        return name
    return {"name": name, "options": {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in options.split(","))}}


def variant(device: str, rule: str, decorrelation: str) -> dict:
    name = f"{rule.replace(':', '-')}{'+decor' if decorrelation == 'on' else ''}@{device}"
    out = {"name": name, "device": device, "rule": parse_rule(rule)}
    if decorrelation == "on":
        out["decorrelation"] = {}
    return out


def sweep(args: argparse.Namespace, variants: list[dict]) -> SweepSpec:
    """Every variant (zip) at every lr (grid) with seeds 100, 101, ...: one sweep spec."""
    keys = ("name", "device", "rule", "decorrelation")
    return from_mapping(SweepSpec, {
        "base": {**base(args), "epochs": args.epochs},
        "zip": {k: [v.get(k) for v in variants] for k in keys},
        "grid": {"lr": args.lrs},
        "seeds": list(range(100, 100 + args.seeds))}, source="experiments/tune_lr.py")


def cell(runs: pd.DataFrame) -> tuple[str, float | None]:
    """A table cell (mean validation accuracy over the seeds) and its score for the choice (None: not eligible)."""
    not_ok = runs[runs["status"] != "ok"]["status"].value_counts()
    note = ", ".join(f"{n} {s}" for s, n in not_ok.items())
    ok = runs[runs["status"] == "ok"]["val_acc"]
    mean = float(ok.mean()) if len(ok) else None
    text = (f"{mean:.3f}" if mean is not None else "-") + (f" ({note})" if note else "")
    return text, (mean if not note else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="YAML with the fields every run shares (task, model, batch_size); "
                        "default digits 64-64-10")
    parser.add_argument("--devices", nargs="+", default=DEVICES)
    parser.add_argument("--rules", nargs="+", default=["backprop"],
                        help="rule names, optionally with options: node_perturbation:variant=anp,sigma=0.01")
    parser.add_argument("--decorrelation", nargs="+", default=["off"], choices=["off", "on"])
    parser.add_argument("--lrs", nargs="+", type=float, default=LRS)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--schedule", default="cosine", choices=["constant", "cosine"])
    parser.add_argument("--suite", help="write a suite YAML with the chosen lrs here")
    parser.add_argument("--suite-seeds", type=int, default=3, help="seeds of every run of that suite (default 3)")
    parser.add_argument("--out", default="runs/tune_lr", help="sweep directory (default runs/tune_lr); re-running "
                        "resumes")
    engine_options(parser)
    args = parser.parse_args()

    try:
        variants = [{**base(args), **variant(d, r, c)} for r in args.rules for c in args.decorrelation
                    for d in args.devices]
        spec, executor = sweep(args, variants), make_executor(args.workers, args.scheduler)
        counts = run_sweep(spec, args.out, "experiments/tune_lr.py", progress=False, executor=executor)
    except SpecError as err:
        print(f"tune_lr.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    frame = pd.read_parquet(f"{args.out}/results.parquet")

    print(f"{describe(base(args))}, {args.epochs} epochs, {args.schedule} lr, mean validation accuracy over seeds "
          f"100..{99 + args.seeds} (* = chosen); {counts_text(counts, executor)}")
    print("| run | " + " | ".join(f"lr {lr}" for lr in args.lrs) + " |")
    print("|---|" + "---|" * len(args.lrs))
    chosen = []
    for v in variants:
        cells = {lr: cell(frame[(frame["name"] == v["name"]) & (frame["lr"] == lr)]) for lr in args.lrs}
        eligible = {lr: score for lr, (_, score) in cells.items() if score is not None}
        best = max(eligible, key=eligible.get) if eligible else None
        print(f"| {v['name']} | " + " | ".join(text + ("*" if lr == best else "") for lr, (text, _) in cells.items())
              + " |")
        if best is not None:
            chosen.append({k: val for k, val in {**v, "lr": best}.items() if k not in base(args)})
    if args.suite:
        suite = {"epochs": args.epochs, "seeds": args.suite_seeds, "base": base(args), "runs": chosen}
        origin = f"--base {args.base} " if args.base else ""
        header = (f"# Written by: python experiments/tune_lr.py {origin}--devices {' '.join(args.devices)} --rules "
                  f"{' '.join(args.rules)} --decorrelation {' '.join(args.decorrelation)} --epochs {args.epochs} "
                  f"--seeds {args.seeds} --lrs {' '.join(map(str, args.lrs))} --suite-seeds {args.suite_seeds}\n"
                  f"# (lrs chosen on the validation split); evaluate: chiploop demo --suite {args.suite}\n")
        with open(args.suite, "w") as f:
            f.write(header + yaml.safe_dump(suite, sort_keys=False, default_flow_style=None, width=120))
        print(f"wrote {args.suite}")


if __name__ == "__main__":  # the Dask workers are spawned processes: keep the entry point guarded
    main()
