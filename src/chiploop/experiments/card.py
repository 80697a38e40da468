"""Rule cards: a learning rule tuned for a device, exported from runs, carried to another model or chip.

A :class:`RuleCard` holds what a run needs to be repeated elsewhere — the rule and its options,
decorrelation, lr, schedule, batch size, epochs and the fully resolved device — together with
what it achieved (``metrics``: the seed means of the run's final numbers) and where it came from
(``provenance``: versions, spec hash, source runs, date), plus the original task and model for
reference. A card is plain YAML with a short header comment; it is read with ``yaml.safe_load``
only and validated like every spec, so loading never executes anything and a bad card stops with
one :class:`SpecError` naming the file, the field, the value and what is allowed::

    card = best_card(["runs/a-s0", "runs/a-s1", "runs/a-s2"])   # or card_from_run("runs/a-s0")
    write_card(card, "card.yaml")
    card = load_card("card.yaml")
    rule = card_rule(card)                                          # on your own network
    spec = experiment_from_card(card, ["model.sizes=[64, 32, 10]", "seed=1"])
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from chiploop.devices.spec import DeviceSpec
from chiploop.emulator.networks import NetworkSpec
from chiploop.experiments.results import Result, write_atomic
from chiploop.experiments.spec import (ExperimentSpec, RuleSpec, TaskSpec, apply_overrides,
                                      check_model_fits_task, experiment_from_data)
from chiploop.experiments.stats import higher_is_better
from chiploop.learning import make_rule
from chiploop.learning.decorrelation import DecorrelationSpec
from chiploop.specs import Spec, SpecError, from_mapping, load_yaml, set_dotted, spec_field, to_plain

CARD_FORMAT = 1  # format_version this chiploop writes and the newest it reads

_SCALARS = (str, int, float, bool, type(None), datetime.date)


@dataclass(frozen=True)
class RuleCard(Spec):
    """A learning rule tuned for a device: everything needed to train with it again, what it
    measured and where it came from."""

    format_version: int = spec_field(doc="card format; this chiploop reads up to "
                                     f"{CARD_FORMAT}", low=1, high=CARD_FORMAT)
    rule: RuleSpec = spec_field(doc="registered rule name and its options")
    lr: float = spec_field(doc="learning rate of the weight updates", low=0.0, high=1e3, low_open=True)
    schedule: Literal["constant", "cosine"] = spec_field(doc="lr over epochs: constant or cosine")
    batch_size: int | Literal["all"] = spec_field(doc="mini-batch size, or all (full batch)", unit="samples", low=1)
    epochs: int = spec_field(doc="passes over the training set", low=0)
    device: DeviceSpec = spec_field(doc="the fully resolved device; `preset` records the preset it came from")
    task: TaskSpec = spec_field(doc="data set of the original run (for reference)")
    model: NetworkSpec = spec_field(doc="network of the original run (for reference)")
    decorrelation: DecorrelationSpec | None = spec_field(None, doc="decorrelation of every layer's input; null = off")
    metrics: dict = spec_field(default_factory=dict, doc="measured: mean over seeds of the runs' final numbers "
                               "(test_acc, val_acc, ...) and test/val accuracy min, max and std over seeds")
    provenance: dict = spec_field(default_factory=dict, doc="chiploop/torch/aihwkit versions, spec_hash (one "
                                  "run: its own; several: their shared spec's with seed 0), run_hashes, "
                                  "source_runs, seeds, run_name, status, created (ISO-8601 UTC)")
    loihi: dict | None = spec_field(None, doc="an STDP rule as a Loihi 2 (Lava) learning rule: the sum-of-products "
                                    "dw string, trace impulses and time constants (steps), dt_ms; null for other rules")

    def check(self) -> None:
        for key, value in self.metrics.items():
            if not isinstance(key, str):
                raise SpecError("metrics", key, "metric names (strings)")
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise SpecError(f"metrics.{key}", value, "a number")
        for key, value in self.provenance.items():
            if not isinstance(key, str):
                raise SpecError("provenance", key, "names (strings)")
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(v, _SCALARS) for v in items):
                raise SpecError(f"provenance.{key}", value, "a string, a number or a list of them")
        check_model_fits_task(self.model, self.task)
        if self.loihi is not None:
            from chiploop.learning.loihi import parse_dw
            parse_dw(self.loihi.get("dw"))
            for key, value in self.loihi.items():
                if key != "dw" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                    raise SpecError(f"loihi.{key}", value, "a number (impulse, tau in steps, t_epoch, dt_ms)")


# ----------------------------------------------------------------------------------------- loading

def _unpinned_device(data: Any) -> tuple[Any, str | None]:
    """A card's device mapping without its ``preset`` label when it lists every device field.

    Such a device is complete: the preset is provenance only, so the card loads even where that
    preset is not shipped. Returns the mapping to validate and the label to put back (None: keep).
    """
    names = {f.name for f in dataclasses.fields(DeviceSpec)}
    if isinstance(data, Mapping) and set(data) == names and isinstance(data.get("preset"), str):
        return {k: v for k, v in data.items() if k != "preset"}, data["preset"]
    return data, None


def card_from_mapping(data: Any, source: str = "<card>") -> RuleCard:
    """Validate a mapping (a card file's YAML) into a RuleCard; any problem is one SpecError."""
    if not isinstance(data, Mapping):
        raise SpecError("<top level>", data, "a mapping of RuleCard fields", source)
    version = data.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > CARD_FORMAT:
        raise SpecError("format_version", version, f"at most {CARD_FORMAT}: this card was written by a newer "
                        "chiploop; upgrade chiploop to read it", source)
    data = dict(data)
    data["device"], preset = _unpinned_device(data.get("device"))
    if data["device"] is None:
        del data["device"]  # missing: from_mapping names it
    card = from_mapping(RuleCard, data, source=source)
    if preset is not None:
        card = dataclasses.replace(card, device=dataclasses.replace(card.device, preset=preset))
    return card


def load_card(path: str | Path) -> RuleCard:
    """Read a rule card (``yaml.safe_load`` only: no tags, no code) and validate every field."""
    return card_from_mapping(load_yaml(path), source=str(path))


# ----------------------------------------------------------------------------------------- writing

class _CardDumper(yaml.SafeDumper):
    """Block style, except lists of numbers (``sizes: [64, 64, 10]``) on one line."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = bool(data) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_CardDumper.add_representer(list, _represent_list)

_ORDER = ("format_version", "rule", "decorrelation", "lr", "schedule", "batch_size", "epochs", "device",
          "metrics", "provenance", "task", "model", "loihi")


def card_text(card: RuleCard) -> str:
    """The card as the YAML text :func:`write_card` writes, header comment first."""
    plain = to_plain(card)
    data = {k: plain[k] for k in _ORDER if k != "loihi" or plain[k] is not None}
    model = card.model
    sizes = ("MLP " + "-".join(map(str, model.sizes)) if hasattr(model, "sizes")
             else f"{model.kind} " + "-".join(map(str, (model.n_in, getattr(model, "hidden", "?"), model.n_out))))
    runs = card.provenance.get("seeds")
    n = f"mean of {len(runs)} seeds" if isinstance(runs, list) and len(runs) > 1 else "one run"
    acc = card.metrics.get("test_acc")
    measured = f"test_acc {acc:.4f} ({n})" if isinstance(acc, (int, float)) else "no test accuracy recorded"
    decorr = " + decorrelation" if card.decorrelation else ""
    header = (f"# chiploop rule card (format {card.format_version}): rule {card.rule.name}{decorr} tuned for "
              f"device {card.device.preset or '(custom)'}\n"
              f"# measured on {card.task.name}, {sizes}: {measured}\n"
              "# Plain YAML, read with yaml.safe_load. Train with it: chiploop run --card THIS_FILE "
              "[--set key=value ...]\n"
              "# or in Python: chiploop.experiments.card.load_card(path), then card_rule(card)\n")
    body = yaml.dump(data, Dumper=_CardDumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=100)
    return header + body


def write_card(card: RuleCard, path: str | Path) -> Path:
    """Write ``card`` as human-readable YAML, atomically."""
    write_atomic(path, card_text(card))
    return Path(path)


# ------------------------------------------------------------------------------------ from runs

@dataclass(frozen=True)
class _Run:
    path: Path
    result: Result
    spec: ExperimentSpec

    @property
    def group(self) -> str:
        """Hash of the spec with the seed taken out: runs that differ only by seed share it."""
        return dataclasses.replace(self.spec, seed=0).spec_hash()


def read_run(run_dir: str | Path) -> _Run:
    """A run dir's result and its spec, validated; a missing or malformed run is a SpecError."""
    result = Result.read(run_dir)
    return _Run(Path(run_dir), result, experiment_from_data(result.spec, source=str(Path(run_dir) / "result.json")))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _card_from_group(runs: Sequence[_Run], metric: str = "test_acc") -> RuleCard:
    spec = runs[0].spec
    finals = [r.result.final for r in runs]
    metrics: dict[str, float] = {}
    for key in finals[0]:
        if key == "lr" or not all(_number(f.get(key)) for f in finals):  # lr: that of the last epoch
            continue
        mean = statistics.fmean(f[key] for f in finals)
        if math.isfinite(mean):
            metrics[key] = mean
    for key in dict.fromkeys(("test_acc", "val_acc", metric)):
        values = [f.get(key) for f in finals]
        if key in metrics and all(math.isfinite(v) for v in values):
            metrics[f"{key}_min"], metrics[f"{key}_max"] = min(values), max(values)
            metrics[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0

    def joined(name: str) -> str:
        return ", ".join(dict.fromkeys(str(r.result.versions.get(name, "?")) for r in runs))

    statuses = [r.result.status for r in runs]
    provenance = {
        "chiploop": joined("chiploop"), "torch": joined("torch"), "aihwkit": joined("aihwkit"),
        "spec_hash": runs[0].group if len(runs) > 1 else runs[0].result.spec_hash,
        "run_hashes": [r.result.spec_hash for r in runs],
        "source_runs": [str(r.path.resolve()) for r in runs],
        "seeds": [r.spec.seed for r in runs],
        "run_name": spec.name,
        "status": "ok" if set(statuses) == {"ok"} else f"{statuses.count('diverged')} of {len(runs)} diverged",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if spec.injected is not None:  # the metrics include injected bias/variance the card does not carry
        provenance["injected"] = json.dumps(to_plain(spec.injected))
    rule = make_rule(spec.rule.name, spec.rule.options)
    loihi = rule.loihi(spec.lr, spec.model.dt) if hasattr(rule, "loihi") else None
    return RuleCard(format_version=CARD_FORMAT, rule=spec.rule, lr=spec.lr, schedule=spec.schedule,
                    batch_size=spec.batch_size, epochs=spec.epochs, device=spec.device, task=spec.task,
                    model=spec.model, decorrelation=spec.decorrelation, metrics=metrics, provenance=provenance,
                    loihi=loihi)


def card_from_run(run_dir: str | Path) -> RuleCard:
    """The card of one run: its rule, device and schedule, and its final metrics."""
    return _card_from_group([read_run(run_dir)])


def selection_metric(run_dirs: Iterable[str | Path], metric: str | None = None) -> tuple[str, str]:
    """The metric that picks the best configuration and a note for the user: ``metric`` when given,
    else ``val_acc`` (the validation split: the test split stays unseen by the choice), else
    ``test_acc`` when no run has a validation accuracy (``val_fraction: 0``), which the note says."""
    if metric is not None:
        return metric, ""
    for run_dir in run_dirs:
        try:
            value = json.loads((Path(run_dir) / "result.json").read_text()).get("final", {}).get("val_acc")
        except (OSError, ValueError):
            continue
        if _number(value) and math.isfinite(value):
            return "val_acc", ""
    return "test_acc", "no run has a validation accuracy (task.val_fraction 0): picked by test_acc"


def best_card(run_dirs: Iterable[str | Path], metric: str = "test_acc", device: str | None = None) -> RuleCard:
    """The card of the best configuration among ``run_dirs``.

    Runs whose specs are identical except for the seed form one configuration (grouped by the hash
    of the spec with the seed removed); a configuration's score is the mean of ``metric`` over its
    runs (accuracies and cosines are maximised, everything else minimised; a missing or non-finite
    value ranks last). ``device`` keeps only the runs on that device preset.
    """
    runs = [read_run(d) for d in run_dirs]
    if not runs:
        raise SpecError("RUN_DIR", [], "at least one run directory")
    if device is not None:
        presets = sorted({r.spec.device.preset or "(custom)" for r in runs})
        runs = [r for r in runs if r.spec.device.preset == device]
        if not runs:
            raise SpecError("--device", device, "a device preset of the given runs: " + ", ".join(presets))
    known = sorted({k for r in runs for k, v in r.result.final.items() if _number(v)})
    if metric not in known:
        raise SpecError("--metric", metric, "a final metric of the given runs: " + ", ".join(known))
    groups: dict[str, list[_Run]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)

    def score(group: list[_Run]) -> float:
        values = [r.result.final.get(metric) for r in group]
        if not all(_number(v) and math.isfinite(v) for v in values):
            return -math.inf
        mean = statistics.fmean(values)
        return mean if higher_is_better(metric) else -mean

    best = max(groups.values(), key=score)  # first of equals
    return _card_from_group(sorted(best, key=lambda r: r.spec.seed), metric)


# ------------------------------------------------------------------------------------- using one

def card_rule(card: RuleCard):
    """The card's learning rule object (decorrelation chained), ready for ``chip.install(rule.crossbars(
    network, generator))``, ``rule.init(network, generator)`` and ``rule.signals(...)`` on your own network."""
    from chiploop.learning import chain, decorrelate, make_rule
    return chain(make_rule(card.rule.name, card.rule.options),
                 decorrelate(card.decorrelation) if card.decorrelation is not None else None)


def experiment_from_card(card: RuleCard, overrides: Iterable[str] = (), source: str = "<card>") -> ExperimentSpec:
    """An experiment with the card's rule, device, lr, schedule, batch size, epochs and decorrelation on
    the card's task and model, then ``key=value`` overrides (``task.name=teacher_student``,
    ``model.sizes=[64, 32, 10]``, ``seed=2``, ``device=reram-sb``).

    When the overrides change the task but not the model, the model keeps its hidden widths and
    takes the new task's input and output widths.
    """
    name = card.provenance.get("run_name")
    device, preset = _unpinned_device(to_plain(card.device))
    data = {"name": f"{name}-card" if isinstance(name, str) and name else "card",
            "task": to_plain(card.task), "model": to_plain(card.model), "device": device,
            "rule": to_plain(card.rule), "decorrelation": to_plain(card.decorrelation), "lr": card.lr,
            "schedule": card.schedule, "batch_size": card.batch_size, "epochs": card.epochs}
    data, keys = apply_overrides(data, overrides)
    if (hasattr(card.model, "sizes") and not any(k == "model" or k.startswith("model.sizes") for k in keys)
            and isinstance(data.get("task"), Mapping)):
        task = from_mapping(TaskSpec, data["task"], source=source, prefix="task.")
        sizes = list(card.model.sizes)
        if (sizes[0], sizes[-1]) != task.dims:
            data = set_dotted(data, "model.sizes", [task.dims[0], *sizes[1:-1], task.dims[1]])
    spec = experiment_from_data(data, source=source)
    if preset is not None and isinstance(data.get("device"), Mapping) and "preset" not in data["device"]:
        spec = dataclasses.replace(spec, device=dataclasses.replace(spec.device, preset=preset))
    return spec


# --------------------------------------------------------------------------- weights and conductances

def export_weights(run_dir: str | Path, path: str | Path) -> dict[str, Any]:
    """Write a run's trained weights and their conductance-pair targets to ``path`` (``.npz``).

    The file holds every array of the run's ``weights.npz`` unchanged (``crossbar/<name>``,
    ``bias/<name>``; float32; ``chip.json``, the chip's roles and decorrelator links) and, for each
    crossbar that is a device array of the chip by its role (every ``weight`` crossbar, and the
    ``decorrelator`` ones when the decorrelation was on chip), the single-pair targets of
    :mod:`chiploop.devices.conductance`: ``g_plus_uS/<name>``, ``g_minus_uS/<name>`` (µS, float64)
    and ``w_scale/<name>`` (max |W|, weight units), plus ``g_max_uS``. Read with ``allow_pickle=False``;
    returns the arrays written.
    """
    import numpy as np

    from chiploop.devices.conductance import G_MAX_US, conductance_pair
    from chiploop.experiments.weights import CHIP_KEY, load_layout, load_weights, npz_bytes

    run_dir = Path(run_dir)
    arrays = {k: v.numpy() for k, v in load_weights(run_dir / "weights.npz").items()}
    roles = load_layout(run_dir / "weights.npz").get("roles", {})
    on_chip = False
    if (run_dir / "result.json").exists():
        decorr = read_run(run_dir).spec.decorrelation
        on_chip = decorr is not None and decorr.on_chip
    devices = {"weight", "decorrelator"} if on_chip else {"weight"}
    out: dict[str, Any] = dict(arrays)
    with np.load(run_dir / "weights.npz", allow_pickle=False) as data:
        out[CHIP_KEY] = data[CHIP_KEY].copy()
    for key in arrays:
        name = key.split("/", 1)[1] if key.startswith("crossbar/") else None
        if name is None or roles.get(name) not in devices:
            continue
        g_plus, g_minus, w_scale = conductance_pair(arrays[key], G_MAX_US)
        out[f"g_plus_uS/{name}"], out[f"g_minus_uS/{name}"] = g_plus, g_minus
        out[f"w_scale/{name}"] = np.float64(w_scale)
    out["g_max_uS"] = np.float64(G_MAX_US)
    write_atomic(path, npz_bytes(out))
    return out
