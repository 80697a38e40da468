"""The ``chiploop`` command: run, sweep, report, ablate, evaluate, export, devices, rules, demo, serve.

Bad input: one line on stderr, exit code 2, before anything is trained. An interrupt (Ctrl-C, or
SIGTERM as a batch scheduler sends it) keeps what finished, says so in one line on stderr and
exits with 130. Heavy libraries (torch, aihwkit, pandas, Dask, matplotlib) are imported only by
the commands that use them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import tempfile
from pathlib import Path

from chiploop.specs import SpecError


class Interrupted(KeyboardInterrupt):
    """An interrupt with the one line the CLI prints about what was kept."""


# ----------------------------------------------------------------------------------------- run

def _writable_dir(path: Path, flag: str, value: str) -> bool:
    """Make sure ``path`` can be a directory we write into (made now if missing); True if we made it."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "it is a file" if existing == path else f"{existing} is a file"
        raise SpecError(flag, value, f"a directory to write the run into ({where})")
    made = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".chiploop-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise SpecError(flag, value, f"a writable directory ({err.strerror})") from None
    return made


def run_dir_for(name: str, spec_hash: str, out: str | None, overwrite: bool) -> tuple[Path, str]:
    """Where ``chiploop run`` writes, and a note when that is not the default: ``--out`` as given
    (refused if it holds a finished run, unless ``overwrite``), else ``runs/NAME-HASH``, or
    ``runs/NAME-HASH-2`` (-3, ...) when that already holds a result: a re-run is a new sample."""
    if out is not None:
        path = Path(out)
        if (path / "result.json").is_file() and not overwrite:
            raise SpecError("--out", out, f"a directory without a finished run ({path / 'result.json'} exists; "
                            "--overwrite replaces it)")
        _writable_dir(path, "--out", out)
        return path, ""
    base = Path("runs") / f"{name}-{spec_hash}"
    path, k = base, 1
    while (path / "result.json").exists() or (path.exists() and not path.is_dir()):
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    _writable_dir(path, "--out", str(path))
    note = (f"{base} already holds a run of this spec; writing {path} (an analog re-run is a new sample; "
            "--out DIR --overwrite replaces one)") if k > 1 else ""
    return path, note


def _fmt(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


def run_summary(name: str, result) -> str:
    """One line: status, epochs, train/val/test loss and accuracy, wall time (the rest is in result.json)."""
    final, epochs = result.final, len(result.history) - 1
    parts = [f"{name}: {result.status} after {epochs} epoch{'s' * (epochs != 1)}"]
    for kind in ("loss", "acc"):
        splits = [s for s in ("train", "val", "test") if f"{s}_{kind}" in final]
        values = [final[f"{s}_{kind}"] for s in splits]
        if splits and any(v == v for v in values):
            label = "loss" if kind == "loss" else "accuracy"
            parts.append(f"{label} " + " / ".join(f"{s} {_fmt(v)}" for s, v in zip(splits, values)))
    parts.append(f"{result.wall_s:.1f} s")
    return "; ".join(parts)


def run_files(result) -> list[str]:
    """The files a run wrote into its directory."""
    files = ["result.json", "history.csv", "weights.npz"]
    if result.diagnostics:
        files += ["diagnostics.csv", "diagnostics_bias_variance.png", "diagnostics_alignment.png"]
    if result.inference:
        files += ["inference.csv", "inference.png"]
    return files


def _read_first(path: str | None) -> None:
    """A missing, unreadable or malformed YAML file is reported before torch and the specs are imported."""
    from chiploop.specs import load_yaml

    if path is not None:
        load_yaml(path)


def _cmd_run(args: argparse.Namespace) -> int:
    if (args.spec is None) == (args.card is None):
        raise SpecError("SPEC / --card", [args.spec, args.card],
                        "exactly one of an experiment YAML file (SPEC) or --card CARD.yaml")
    _read_first(args.spec or args.card)
    from chiploop.experiments.spec import load_experiment

    if args.card is not None:
        from chiploop.experiments.card import experiment_from_card, load_card
        spec = experiment_from_card(load_card(args.card), args.set, source=args.card)
    else:
        spec = load_experiment(args.spec, args.set)
    if spec.chip is not None:  # address, token and device are checked before a run directory is made
        from chiploop.remote.client import RemoteChip

        RemoteChip.from_spec(spec.chip, spec.device).close()
    out, note = run_dir_for(spec.name, spec.spec_hash(), args.out, args.overwrite)
    if note:
        print(note)

    from chiploop.emulator.crossbar import ChipLost, ChipRefused
    from chiploop.experiments.train import RunChipLost, RunInterrupted, train

    try:
        try:
            result = train(spec, out_dir=out, progress=not args.quiet)
        finally:
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # made for this run, which stopped before writing anything: no empty run dir
    except RunChipLost as lost:
        done = len(lost.result.history) - 1
        print(f"chiploop: error: {lost}; wrote {out} (status chip_lost, {max(done, 0)} finished epoch"
              f"{'s' * (done != 1)} kept)", file=sys.stderr)
        return 2
    except (ChipLost, ChipRefused) as lost:  # while the chip was being set up: nothing trained or written
        print(f"chiploop: error: {lost} while setting up the run; nothing written", file=sys.stderr)
        return 2
    except RunInterrupted as stop:
        done = len(stop.result.history) - 1
        raise Interrupted(f"interrupted after {done} of {spec.epochs} epochs; wrote {out} (status interrupted)"
                          ) from None
    except KeyboardInterrupt:
        state = f"{out} holds no result" if not (out / "result.json").is_file() else f"{out} may be incomplete"
        raise Interrupted(f"interrupted before the run was written; {state}") from None
    from chiploop.experiments.plots import run_curves

    run_curves(result.history, out / "learning_curves.png", f"{spec.name} ({spec.device.preset or 'device'}, "
               f"rule {spec.rule.name})")
    print(run_summary(spec.name, result))
    print(f"wrote {out}/: " + ", ".join([*run_files(result), "learning_curves.png"]))
    return 0


# ----------------------------------------------------------------------------------------- serve

def _can_listen(host: str, port: int) -> None:
    """Refuse an address this machine cannot listen on before the gRPC core tries (and logs)."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, port))
    except OSError as err:
        raise SpecError("--host/--port", f"{host}:{port}", f"an address this machine can listen on "
                        f"({err.strerror or err})") from None


def _cmd_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise SpecError("--port", args.port, "a port from 0 (any free one) to 65535")
    if not args.session_timeout > 0:
        raise SpecError("--session-timeout", args.session_timeout, "seconds > 0")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SpecError("--tls-cert / --tls-key", [args.tls_cert, args.tls_key], "both files (TLS) or neither")
    tls = None
    if args.tls_cert is not None:
        files = []
        for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
            try:
                files.append(Path(path).read_bytes())
            except OSError as err:
                raise SpecError(flag, path, f"a readable PEM file ({err.strerror})") from None
        tls = (files[0], files[1])
    from chiploop.remote.client import read_token

    token = read_token(args.token_file, "--token-file")
    _can_listen(args.host, args.port)
    _read_first(args.device if args.device.endswith((".yaml", ".yml")) else None)
    from chiploop.devices import load_device
    from chiploop.specs import load_yaml

    if args.device.endswith((".yaml", ".yml")):
        device = load_device(load_yaml(args.device) or {}, source=args.device)
    else:
        try:
            device = load_device(args.device)
        except SpecError as err:
            raise SpecError("--device", args.device, err.allowed) from None
    import torch

    from chiploop.remote.server import ChipServer, serve_forever

    torch.set_num_threads(args.threads)
    try:
        server = ChipServer.start(device, token, args.host, args.port, args.session_timeout, tls=tls,
                                  log=lambda line: print(f"chiploop serve: {line}", file=sys.stderr, flush=True))
    except (OSError, RuntimeError) as err:
        raise SpecError("--host/--port", f"{args.host}:{args.port}", f"an address this machine can listen on ({err})"
                        ) from None
    print(f"chiploop serve: {device.preset or 'custom'} device on {args.host}:{server.port}"
          f"{' (TLS)' if tls else ''}; sessions freed after {args.session_timeout:g} s without a call", flush=True)
    serve_forever(server)
    return 0


# ----------------------------------------------------------------------------------------- export

def run_dirs(paths: list[str]) -> tuple[list[Path], int]:
    """Run directories from the command line: a run dir (result.json) as it is, a sweep directory
    (runs/*/result.json of sweep, ablate or demo) as its runs that trained to the end (ok or diverged).
    Returns them and how many sweep directories were expanded."""
    import json

    out, sweeps = [], 0
    for text in paths:
        path = Path(text)
        if (path / "result.json").is_file():
            out.append(path)
            continue
        found = sorted(p.parent for p in path.glob("runs/*/result.json")) if path.is_dir() else []
        if not found:
            raise SpecError("RUN_DIR", text, "a run directory (result.json, from chiploop run) or a sweep directory "
                            "(runs/*/result.json, from chiploop sweep, ablate or demo)")
        kept = []
        for run in found:
            try:
                if json.loads((run / "result.json").read_text()).get("status") in ("ok", "diverged"):
                    kept.append(run)
            except (OSError, ValueError):
                continue
        if not kept:
            raise SpecError("RUN_DIR", text, "a sweep directory with at least one run that trained to the end")
        out += kept
        sweeps += 1
    return out, sweeps


def _cmd_export(args: argparse.Namespace) -> int:
    if not args.out and not args.weights and not args.fusion and not args.nir:
        raise SpecError("-o / --weights / --fusion / --nir", None, "at least one output: -o CARD.yaml, --weights "
                        "OUT.npz, --fusion OUT.csv or --nir OUT.nir")
    if args.fusion:
        if len(args.runs) != 1 or not (Path(args.runs[0]) / "weights.npz").is_file():
            raise SpecError("--fusion", args.runs, "exactly one RUN_DIR with weights.npz (the run whose weights "
                            "to export)")
        if not args.fusion.endswith(".csv"):
            raise SpecError("--fusion", args.fusion, "a .csv file name (Fusion's format; OUT.params.npz is "
                            "written beside it)")
        _writable_dir(Path(args.fusion).parent, "--fusion", args.fusion)
    if args.nir:
        if len(args.runs) != 1 or not (Path(args.runs[0]) / "result.json").is_file():
            raise SpecError("--nir", args.runs, "exactly one RUN_DIR with result.json (the spiking run to export)")
        _writable_dir(Path(args.nir).parent, "--nir", args.nir)
    if args.weights:
        if len(args.runs) != 1 or not (Path(args.runs[0]) / "result.json").is_file():
            raise SpecError("--weights", args.runs, "exactly one RUN_DIR with result.json (the run whose weights "
                            "to export)")
        _writable_dir(Path(args.weights).parent, "--weights", args.weights)
    runs = run_dirs(args.runs)[0] if args.out else []
    from chiploop.experiments.card import best_card, export_weights, selection_metric, write_card

    if args.out:
        _writable_dir(Path(args.out).parent, "-o", args.out)
        metric, note = selection_metric(runs, args.metric)
        card = best_card(runs, metric=metric, device=args.device)
        write_card(card, args.out)
        m, seeds = card.metrics, card.provenance["seeds"]
        spread = (f" (mean of {len(seeds)} seeds, {m[metric + '_min']:.4f}-{m[metric + '_max']:.4f})"
                  if len(seeds) > 1 and metric + "_min" in m else "")
        value = f"{metric} {m[metric]:.4f}{spread}" if metric in m else f"{metric} n/a"
        test = f", test_acc {m['test_acc']:.4f}" if metric != "test_acc" and "test_acc" in m else ""
        print(f"wrote {args.out}: {card.rule.name} on {card.device.preset or 'custom device'}, lr {card.lr:g} "
              f"{card.schedule}, {card.epochs} epochs; best of {len(runs)} runs by {value}{test}"
              + (f" ({note})" if note else ""))
    if args.fusion:
        from chiploop.experiments.fusion import export_fusion, params_path

        names = export_fusion(args.runs[0], args.fusion)
        print(f"wrote {args.fusion} (IBM Fusion chip conductances, µS, of {', '.join(names.values())}) and "
              f"{params_path(args.fusion)} (what aihwkit's fusion_import needs to read them back)")
    if args.weights:
        arrays = export_weights(args.runs[0], args.weights)
        layers = sorted(k.split("/", 1)[1] for k in arrays if k.startswith("g_plus_uS/"))
        print(f"wrote {args.weights}: weights, the chip's roles and conductance pairs G+/G- (µS, g_max 25) of "
              f"{', '.join(layers)}")
    if args.nir:
        from chiploop.experiments.nir_export import export_nir

        graph = export_nir(args.runs[0], args.nir)
        print(f"wrote {args.nir}: NIR graph of {len(graph.nodes)} nodes ({', '.join(graph.nodes)})")
    return 0


# ----------------------------------------------------------------------------------------- studies

def _check_seeds(seeds: int | None) -> None:
    if seeds is not None and seeds < 1:
        raise SpecError("--seeds", seeds, "1 or more seeds per run")


def _cmd_ablate(args: argparse.Namespace) -> int:
    from chiploop.experiments.sweeps.engine import make_executor

    _check_seeds(args.seeds)
    executor = make_executor(args.workers, args.scheduler)
    _read_first(args.spec)
    from chiploop.experiments.spec import load_experiment

    spec = load_experiment(args.spec, args.set)
    out = Path(args.out) if args.out else Path("runs") / f"ablate-{spec.name}-{spec.spec_hash()}"

    from chiploop.experiments.sweeps.ablation import ablate, ablation_table
    from chiploop.experiments.sweeps.runner import counts_text

    rows, counts = ablate(spec, seeds=args.seeds, out_dir=out, progress=not args.quiet, executor=executor,
                          source=args.spec)
    print(ablation_table(rows, spec, args.seeds))
    print(f"{counts_text(counts, executor)}; wrote {out / 'ablation.md'}, {out / 'ablation.csv'} and "
          f"{out / 'results.parquet'} (chiploop report {out})")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from chiploop.experiments.sweeps.engine import make_executor

    executor = make_executor(args.workers, args.scheduler)
    _read_first(args.spec)
    from chiploop.experiments.sweeps.runner import counts_text, plan_lines, run_study, sweep_study
    from chiploop.experiments.sweeps.spec import load_sweep

    sweep = load_sweep(args.spec)
    study = sweep_study(sweep, args.spec, args.set)
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{Path(args.spec).stem}"
    if args.dry_run:
        print("\n".join(plan_lines(study, out)))
        return 0
    counts = run_study(study, out, progress=not args.quiet, executor=executor,
                       population=False if args.no_population else None)
    print(f"{counts_text(counts, executor)}; wrote {out / 'ledger.sqlite'} and {out / 'results.parquet'}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    for name in ("results.parquet", "sweep.json"):  # before pandas and torch are imported
        if not (Path(args.sweep_dir) / name).is_file():
            raise SpecError("SWEEP_DIR", args.sweep_dir, f"a sweep directory with {name} (written by chiploop "
                            "sweep, ablate or demo)")
    from chiploop.experiments.sweeps.report import report

    path, figures = report(args.sweep_dir, args.out, x=args.x, y=args.y, hue=args.hue, metric=args.metric)
    print(path.read_text().split("## Every configuration")[0].rstrip())
    print(f"\nwrote {path}" + "".join(f"\nwrote {fig.path}  ({fig.title})" for fig in figures))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from chiploop.experiments.sweeps.engine import make_executor

    _check_seeds(args.seeds)
    if args.epochs is not None and args.epochs < 1:
        raise SpecError("--epochs", args.epochs, "1 or more epochs per run")
    executor = make_executor(args.workers, args.scheduler)
    _read_first(args.suite)
    from chiploop.experiments.sweeps.suite import run_demo

    run_demo(out_dir=Path(args.out), epochs=args.epochs, seeds=args.seeds, progress=not args.quiet,
             suite_path=args.suite, executor=executor)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if not (Path(args.run_dir) / "result.json").is_file():  # before torch is imported
        raise SpecError("RUN_DIR", args.run_dir, "a run directory with result.json and weights.npz (from chiploop "
                        "run, or a sweep's runs/ID)")
    from chiploop.experiments.deploy import evaluate_run, summary_table

    summary, reference = evaluate_run(args.run_dir, args.times, args.repeats)
    print(summary_table(summary, reference))
    run_dir = Path(args.run_dir)
    print(f"wrote {run_dir / 'result.json'} (inference, final inf_*), {run_dir / 'inference.csv'} and "
          f"{run_dir / 'inference.png'}")
    return 0


# ------------------------------------------------------------------------------- devices and rules

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
        if args.name:
            raise SpecError("devices list", args.name, "no argument (devices show NAME shows one preset)")
        print(f"{'preset':<16} {'algorithm':<16} {'response':<14} {'mirrors'}")
        for name in preset_names():
            spec = load_device(name)
            print(f"{name:<16} {spec.algorithm:<16} {spec.response:<14} {spec.mirrors or '-'}")
        return 0
    if not args.name:
        raise SpecError("devices show NAME", None, "a preset name (see `chiploop devices list`)")
    try:
        spec = load_device(args.name)
    except SpecError as err:
        raise SpecError("devices show NAME", args.name, err.allowed) from None
    print("\n".join(_field_lines(spec)))
    return 0


def _first_line(text: str | None) -> str:
    """A docstring's first sentence as plain text (no reST markup), for a one-line listing."""
    paragraph = " ".join((text or "").strip().split("\n\n")[0].split())
    paragraph = paragraph.replace("``", "").replace(":class:", "").replace(":mod:", "").replace("`", "")
    if paragraph.endswith("::"):
        paragraph = paragraph[:-2].rstrip(":") + "."
    end = paragraph.find(". ")
    sentence = paragraph[:end + 1] if end >= 0 else paragraph
    colon = sentence.find(": ", 20)
    return sentence[:colon] + "." if len(sentence) > 100 and colon > 0 else sentence


def _allowed(f: dataclasses.Field, tp) -> str:
    """What an option accepts: a Literal's values, a numeric range, or the type's name."""
    import types
    import typing

    from chiploop.specs import describe_range

    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]
    parts = []
    for arg in args:
        if typing.get_origin(arg) is typing.Literal:
            parts.append(" | ".join(str(v) for v in typing.get_args(arg)))
        elif arg in (int, float):
            rng = describe_range(f)
            parts.append(f"{arg.__name__}, {rng}" if rng != "any value" else arg.__name__)
        else:
            parts.append(getattr(arg, "__name__", str(arg)))
    if union and len(args) < len(typing.get_args(tp)):
        parts.append("null")
    return " | ".join(parts)


def rule_options(rule_class) -> list[tuple[str, str, str, str]]:
    """(option, default, allowed values, doc) of every option (init field) of a rule class."""
    import typing

    hints = typing.get_type_hints(rule_class)
    out = []
    for f in dataclasses.fields(rule_class):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        unit = f" [{f.metadata['unit']}]" if f.metadata.get("unit") else ""
        out.append((f.name, "null" if default is None else str(default).lower() if isinstance(default, bool)
                    else str(default), _allowed(f, hints[f.name]) + unit, f.metadata.get("doc", "")))
    return out


def rule_networks(rule_class) -> str:
    from chiploop.emulator.networks import NETWORKS

    kinds = rule_class.networks if isinstance(rule_class.networks, tuple) else tuple(sorted(NETWORKS))
    return ", ".join(k for k in kinds if k not in getattr(rule_class, "excludes", ()))


def _cmd_rules(args: argparse.Namespace) -> int:
    from chiploop.learning import RULES

    if args.action == "list":
        if args.name:
            raise SpecError("rules list", args.name, "no argument (rules show NAME shows one rule)")
        width = max(map(len, RULES))
        print(f"{'rule':<{width}}  {'trains':<10}  what it is")
        for name, cls in sorted(RULES.items()):
            print(f"{name:<{width}}  {rule_networks(cls):<10}  {_first_line(cls.__doc__)}")
        return 0
    if not args.name:
        raise SpecError("rules show NAME", None, "a rule name (see `chiploop rules list`)")
    if args.name not in RULES:
        import difflib

        close = difflib.get_close_matches(args.name, RULES, 1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SpecError("rules show NAME", args.name, "one of " + ", ".join(sorted(RULES)) + hint)
    cls = RULES[args.name]
    print(f"{args.name}: {_first_line(cls.__doc__)}")
    print(f"trains: {rule_networks(cls)} networks")
    options = rule_options(cls)
    if not options:
        print("options: none")
        return 0
    print(f"options (rule: {{name: {args.name}, OPTION: value}}):")
    w = [max(len(o[i]) for o in options) for i in range(3)]
    for name, default, allowed, doc in options:
        print(f"  {name:<{w[0]}} = {default:<{w[1]}}  {allowed:<{w[2]}}  {doc}".rstrip())
    return 0


# ----------------------------------------------------------------------------------------- parser

def engine_options(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--scheduler``: where the runs of sweep, ablate and demo execute."""
    parser.add_argument("--workers", type=int, help="local Dask worker processes (default one per core, the same "
                        "for sweep, ablate and demo: the runs are independent, and on 2 cores 2 workers finish "
                        "about 1.9x sooner than 1 after ~5 s to start them, docs/results.md); 0: serial in this "
                        "process, for debugging")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing Dask cluster, e.g. "
                        "tcp://HOST:8786 (started with `dask scheduler` and `dask worker`, or dask-jobqueue)")


def _version() -> str:
    import chiploop
    from chiploop.experiments.results import package_version

    return (f"chiploop {chiploop.__version__} (torch {package_version('torch')}, "
            f"aihwkit {package_version('aihwkit')}, Python {sys.version.split()[0]})")


class _Version(argparse.Action):
    """``--version``: read only when asked (package metadata; nothing is imported)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(_version())
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line and exit code 2."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chiploop", description="Train networks on emulated analog crossbar chips.")
    parser.add_argument("--version", action=_Version, help="chiploop's version, with torch's, aihwkit's and Python's")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="train one experiment spec")
    run.add_argument("spec", nargs="?", help="experiment YAML file (or give --card)")
    run.add_argument("--card", help="train with a rule card instead of a spec (its rule, device, lr, schedule, "
                     "batch size, epochs, decorrelation; task and model as recorded unless --set)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a field with a dotted key, e.g. --set device.dw_min=0.001")
    run.add_argument("--out", help="run directory (default runs/NAME-HASH; runs/NAME-HASH-2, -3, ... when that "
                     "already holds a run: an analog re-run is a new sample)")
    run.add_argument("--overwrite", action="store_true", help="let --out replace a finished run (refused otherwise)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)

    exp = sub.add_parser("export", help="export a rule card from run or sweep dirs, or a run's weights and "
                         "conductances")
    exp.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, or sweep directories (their "
                     "runs); several runs: the best configuration, seeds averaged")
    exp.add_argument("-o", "--out", help="rule card YAML to write")
    exp.add_argument("--weights", help=".npz to write: the run's weights, its chip's roles and the conductance-pair "
                     "targets (µS)")
    exp.add_argument("--fusion", metavar="OUT.csv", help="the run's weight crossbars in IBM's Fusion chip CSV "
                     "format (aihwkit fusion_export), with OUT.params.npz for fusion_import")
    exp.add_argument("--nir", help=".nir (HDF5) to write: the run's spiking network as a NIR graph (Linear weights, "
                     "LIF nodes; nir.read loads it)")
    exp.add_argument("--device", help="consider only runs on this device preset")
    exp.add_argument("--metric", help="final metric that picks the best configuration (default val_acc, the "
                     "validation split; test_acc when no run has one; accuracies and cosines maximised, others "
                     "minimised)")
    exp.set_defaults(func=_cmd_export)

    swp = sub.add_parser("sweep", help="run every configuration of a sweep spec; re-running resumes")
    swp.add_argument("spec", help="sweep YAML file (base, grid, zip, random, samples, seeds)")
    swp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a field of the base experiment, e.g. --set epochs=2 (not a swept one)")
    swp.add_argument("--out", help="sweep directory (default runs/sweep-NAME)")
    engine_options(swp)
    swp.add_argument("--dry-run", action="store_true", help="list the runs (id, done or todo, swept values)")
    swp.add_argument("--quiet", action="store_true", help="no progress bar")
    swp.add_argument("--no-population", action="store_true",
                     help="train every run by itself (default: torch-engine runs that differ only in seed train "
                          "as one population of chips; see the spec's population field)")
    swp.set_defaults(func=_cmd_sweep)

    rep = sub.add_parser("report", help="summarise a sweep: best configuration per device by validation accuracy "
                         "(mean ± 95%% CI over seeds) with its test accuracy, every configuration, failed runs; "
                         "PNG plots")
    rep.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a directory written by chiploop sweep, ablate or demo "
                     "(results.parquet, sweep.json)")
    rep.add_argument("--out", help="where to write report.md and the plots (default SWEEP_DIR)")
    rep.add_argument("--x", help="swept field on the x axis (default: the numeric one with the most values)")
    rep.add_argument("--y", help="second swept field: heatmap rows and line-plot panels (default: the next one)")
    rep.add_argument("--hue", help="field with one line per value (default: the swept rules/devices/zip axes)")
    rep.add_argument("--metric", help="final metric to report and plot (default test_acc; the best configuration "
                     "is picked by val_acc)")
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

    rules = sub.add_parser("rules", help="list the learning rules or show one's options")
    rules.add_argument("action", choices=["list", "show"])
    rules.add_argument("name", nargs="?", help="rule name (for show)")
    rules.set_defaults(func=_cmd_rules)

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

    srv = sub.add_parser("serve", help="serve an emulated chip over gRPC (proto/chiploop_chip.proto) for runs with "
                         "chip: {remote: HOST:PORT, token_file: FILE}")
    srv.add_argument("--device", default="ideal", help="device preset name or device YAML file (default ideal)")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine "
                     "only; 0.0.0.0 opens it to the network: use TLS there)")
    srv.add_argument("--port", type=int, default=50051, help="port (default 50051; 0 picks a free one, printed)")
    srv.add_argument("--token-file", required=True, help="file holding the token every client must send "
                     "(compared in constant time)")
    srv.add_argument("--tls-cert", help="PEM certificate chain: serve over TLS (with --tls-key)")
    srv.add_argument("--tls-key", help="PEM private key of --tls-cert")
    srv.add_argument("--session-timeout", type=float, default=60.0, help="seconds without a call after which a "
                     "session and its crossbars are freed (clients send heartbeats; default 60)")
    srv.add_argument("--threads", type=int, default=1, help="torch threads of the server (default 1)")
    srv.set_defaults(func=_cmd_serve)
    return parser


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a batch scheduler's SIGTERM stops a run like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = None
    try:
        import threading

        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _sigterm)
    except ValueError:  # not the main thread of the main interpreter
        previous = None
    try:
        return args.func(args)
    except SpecError as err:
        print(f"chiploop: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        text = str(stop) if isinstance(stop, Interrupted) or stop.args else "interrupted"
        if not text.startswith("interrupted"):
            text = f"interrupted: {text}"
        print(f"chiploop: {text}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `chiploop rules list | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
