"""The ``chiploop`` command: run, sweep, report, ablate, evaluate, export, devices, demo.

Bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from chiploop.specs import SpecError


def _cmd_run(args: argparse.Namespace) -> int:
    from chiploop.experiments.spec import load_experiment
    from chiploop.experiments.train import train

    if (args.spec is None) == (args.card is None):
        raise SpecError("SPEC / --card", [args.spec, args.card],
                        "exactly one of an experiment YAML file (SPEC) or --card CARD.yaml")
    if args.card is not None:
        from chiploop.experiments.card import experiment_from_card, load_card
        spec = experiment_from_card(load_card(args.card), args.set, source=args.card)
    else:
        spec = load_experiment(args.spec, args.set)
    out = Path(args.out) if args.out else Path("runs") / f"{spec.name}-{spec.spec_hash()}"
    result = train(spec, out_dir=out, progress=not args.quiet)
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in result.final.items() if k != "wall_s")
    print(f"{spec.name}: {result.status}  {metrics}  wall {result.wall_s:.1f} s")
    print(f"wrote {out / 'result.json'} and {out / 'history.csv'}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from chiploop.experiments.card import best_card, export_weights, write_card

    if not args.out and not args.weights:
        raise SpecError("-o / --weights", None, "at least one output: -o CARD.yaml or --weights OUT.npz")
    if args.weights and len(args.runs) != 1:
        raise SpecError("--weights", args.runs, "exactly one RUN_DIR (the run whose weights to export)")
    if args.out:
        card = best_card(args.runs, metric=args.metric, device=args.device)
        write_card(card, args.out)
        m, seeds = card.metrics, card.provenance["seeds"]
        spread = (f" (mean of {len(seeds)} seeds, {m[args.metric + '_min']:.4f}-{m[args.metric + '_max']:.4f})"
                  if len(seeds) > 1 and args.metric + "_min" in m else "")
        value = f"{args.metric} {m[args.metric]:.4f}{spread}" if args.metric in m else f"{args.metric} n/a"
        print(f"wrote {args.out}: {card.rule.name} on {card.device.preset or 'custom device'}, lr {card.lr:g} "
              f"{card.schedule}, {card.epochs} epochs; {value}")
    if args.weights:
        arrays = export_weights(args.runs[0], args.weights)
        layers = sorted(k.split("/", 1)[1] for k in arrays if k.startswith("g_plus_uS/"))
        print(f"wrote {args.weights}: weights and conductance pairs G+/G- (µS, g_max 25) of {', '.join(layers)}")
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from chiploop.experiments.spec import load_experiment
    from chiploop.experiments.sweeps.ablation import ablate, ablation_table
    from chiploop.experiments.sweeps.engine import make_executor
    from chiploop.experiments.sweeps.runner import counts_text

    spec = load_experiment(args.spec, args.set)
    if args.seeds < 1:
        raise SpecError("--seeds", args.seeds, "1 or more seeds per variant")
    executor = make_executor(args.workers, args.scheduler)
    out = Path(args.out) if args.out else Path("runs") / f"ablate-{spec.name}-{spec.spec_hash()}"
    rows, counts = ablate(spec, seeds=args.seeds, out_dir=out, progress=not args.quiet, executor=executor,
                          source=args.spec)
    print(ablation_table(rows, spec, args.seeds))
    print(f"{counts_text(counts, executor)}; wrote {out / 'ablation.md'}, {out / 'ablation.csv'} and "
          f"{out / 'results.parquet'} (chiploop report {out})")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from chiploop.experiments.sweeps.engine import make_executor
    from chiploop.experiments.sweeps.ledger import Ledger
    from chiploop.experiments.sweeps.runner import counts_text, run_sweep
    from chiploop.experiments.sweeps.spec import expand, load_sweep

    sweep = load_sweep(args.spec)
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{Path(args.spec).stem}"
    executor = make_executor(args.workers, args.scheduler)
    if args.dry_run:
        specs = expand(sweep, args.spec)
        ledger_path = out / "ledger.sqlite"
        done = set()
        if ledger_path.exists():
            ledger = Ledger(ledger_path)
            done = ledger.done_ids()
            ledger.close()
        for spec in specs:
            print(f"{spec.spec_hash()}  {'done' if spec.spec_hash() in done else 'todo'}  {spec.name} seed {spec.seed}")
        print(f"{len(specs)} runs, {sum(s.spec_hash() in done for s in specs)} done")
        return 0
    counts = run_sweep(sweep, out, args.spec, progress=not args.quiet, executor=executor)
    print(f"{counts_text(counts, executor)}; wrote {out / 'ledger.sqlite'} and {out / 'results.parquet'}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from chiploop.experiments.sweeps.report import report

    path, figures = report(args.sweep_dir, args.out, x=args.x, y=args.y, hue=args.hue, metric=args.metric)
    print(path.read_text().split("## Every configuration")[0].rstrip())
    print(f"\nwrote {path}" + "".join(f"\nwrote {fig.path}  ({fig.title})" for fig in figures))
    return 0


def _field_lines(obj, prefix: str = "") -> list[str]:
    """``field = value  [unit]  doc`` for every field of a spec, nested ones dotted."""
    lines = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            lines += _field_lines(value, prefix + f.name + ".")
            continue
        unit = f" [{f.metadata['unit']}]" if f.metadata.get("unit") else ""
        lines.append(f"{prefix + f.name:<22} = {value!s:<22}{unit:<26} {f.metadata.get('doc', '')}".rstrip())
    return lines


def _cmd_devices(args: argparse.Namespace) -> int:
    from chiploop.devices import load_device, preset_names

    if args.action == "list":
        print(f"{'preset':<16} {'algorithm':<16} {'response':<14} {'mirrors'}")
        for name in preset_names():
            spec = load_device(name)
            print(f"{name:<16} {spec.algorithm:<16} {spec.response:<14} {spec.mirrors or '-'}")
        return 0
    if not args.name:
        raise SpecError("devices show NAME", None, "a preset name (see `chiploop devices list`)")
    print("\n".join(_field_lines(load_device(args.name))))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from chiploop.experiments.sweeps.engine import make_executor
    from chiploop.experiments.sweeps.suite import run_demo

    executor = make_executor(args.workers, args.scheduler)
    run_demo(out_dir=Path(args.out), epochs=args.epochs, seeds=args.seeds, progress=not args.quiet,
             suite_path=args.suite, executor=executor)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from chiploop.experiments.deploy import evaluate_run, summary_table

    summary, reference = evaluate_run(args.run_dir, args.times, args.repeats)
    print(summary_table(summary, reference))
    run_dir = Path(args.run_dir)
    print(f"wrote {run_dir / 'result.json'} (inference, final inf_*), {run_dir / 'inference.csv'} and "
          f"{run_dir / 'inference.png'}")
    return 0


def engine_options(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--scheduler``: where the runs of sweep, ablate and demo execute."""
    parser.add_argument("--workers", type=int, help="local Dask worker processes (default one per core, the same "
                        "for sweep, ablate and demo: the runs are independent, and on 2 cores 2 workers finish "
                        "about 1.9x sooner than 1 after ~5 s to start them, docs/results.md); 0: serial in this "
                        "process, for debugging")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing Dask cluster, e.g. "
                        "tcp://HOST:8786 (started with `dask scheduler` and `dask worker`, or dask-jobqueue)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chiploop", description="Train networks on emulated analog crossbar chips.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train one experiment spec")
    run.add_argument("spec", nargs="?", help="experiment YAML file (or give --card)")
    run.add_argument("--card", help="train with a rule card instead of a spec (its rule, device, lr, schedule, "
                     "batch size, epochs, decorrelation; task and model as recorded unless --set)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a field with a dotted key, e.g. --set device.dw_min=0.001")
    run.add_argument("--out", help="run directory (default runs/NAME-HASH)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)

    exp = sub.add_parser("export", help="export a rule card from run dirs, or a run's weights and conductances")
    exp.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (several: the best configuration, "
                     "seeds averaged)")
    exp.add_argument("-o", "--out", help="rule card YAML to write")
    exp.add_argument("--weights", help=".npz to write: the run's weights and their conductance-pair targets (µS)")
    exp.add_argument("--device", help="consider only runs on this device preset")
    exp.add_argument("--metric", default="test_acc", help="final metric that picks the best configuration "
                     "(default test_acc; accuracies and cosines maximised, others minimised)")
    exp.set_defaults(func=_cmd_export)

    swp = sub.add_parser("sweep", help="run every configuration of a sweep spec; re-running resumes")
    swp.add_argument("spec", help="sweep YAML file (base, grid, zip, random, samples, seeds)")
    swp.add_argument("--out", help="sweep directory (default runs/sweep-NAME)")
    engine_options(swp)
    swp.add_argument("--dry-run", action="store_true", help="list the runs and which are done")
    swp.add_argument("--quiet", action="store_true", help="no progress bar")
    swp.set_defaults(func=_cmd_sweep)

    rep = sub.add_parser("report", help="summarise a sweep: best configuration per device (mean ± 95% CI over "
                         "seeds), every configuration, failed runs; PNG plots")
    rep.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a directory written by chiploop sweep, ablate or demo "
                     "(results.parquet, sweep.json)")
    rep.add_argument("--out", help="where to write report.md and the plots (default SWEEP_DIR)")
    rep.add_argument("--x", help="swept field on the x axis (default: the numeric one with the most values)")
    rep.add_argument("--y", help="second swept field: heatmap rows and line-plot panels (default: the next one)")
    rep.add_argument("--hue", help="field with one line per value (default: the swept rules/devices/zip axes)")
    rep.add_argument("--metric", help="final metric to report (default test_acc)")
    rep.set_defaults(func=_cmd_report)

    abl = sub.add_parser("ablate", help="train a spec with each device nonideality switched off in turn")
    abl.add_argument("spec", help="experiment YAML file")
    abl.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    abl.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    abl.add_argument("--out", help="output directory (default runs/ablate-NAME-HASH); re-running resumes")
    engine_options(abl)
    abl.add_argument("--quiet", action="store_true", help="no progress bar")
    abl.set_defaults(func=_cmd_ablate)

    dev = sub.add_parser("devices", help="list the shipped device presets or show one")
    dev.add_argument("action", choices=["list", "show"])
    dev.add_argument("name", nargs="?", help="preset name (for show)")
    dev.set_defaults(func=_cmd_devices)

    demo = sub.add_parser("demo", help="digits on ideal and analog chips: table and learning curves")
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo); re-running resumes")
    demo.add_argument("--epochs", type=int, default=None, help="epochs per run (default from demo.yaml)")
    demo.add_argument("--seeds", type=int, default=None, help="seeds per configuration (default from demo.yaml)")
    demo.add_argument("--suite", help="another suite file of the same form (base, runs, seeds, epochs)")
    engine_options(demo)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_cmd_demo)

    ev = sub.add_parser("evaluate", help="program a trained run's weights into inference tiles and evaluate "
                        "them as they drift")
    ev.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (result.json and weights.npz)")
    ev.add_argument("--times", type=float, nargs="+", metavar="SECONDS",
                    help="seconds after programming (default: the spec's inference.times, else 1 s, 1 h, 1 d, "
                    "1 month, 1 year)")
    ev.add_argument("--repeats", type=int, help="programmings of the chip (default: the spec's, else 5)")
    ev.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as err:
        print(f"chiploop: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
