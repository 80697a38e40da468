"""Deployment after in-situ training: programming, drift and accuracy over time (docs/science.md §3.11-3.12).

The trained chip's exact weights are programmed into aihwkit inference tiles of the device's
``inference`` technology (programming noise), left to drift for ``t`` seconds (drift and
accumulated 1/f read noise), and read with the device's DAC, ADC and read noise. Decorrelators
and biases stay as they were trained (digital and exact). Each repeat programs fresh tiles.

Within a repeat the compensated and the uncompensated network share one realisation of the
programming and drift noise (the same torch random stream drives aihwkit's noise models for
both), so their difference is the compensation alone (plus independent read noise, which
aihwkit draws from its clock-seeded C++ generator).

Summary keys in a run's ``final`` metrics: ``inf_acc_t{t:g}_{compensation}`` (mean test accuracy
over repeats) and ``..._std``, e.g. ``inf_acc_t3.15e+07_global`` at one year with global drift
compensation and ``inf_acc_t3.15e+07_none`` without.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from chiploop.devices.spec import DeviceSpec
from chiploop.emulator import Network, NetworkSpec
from chiploop.emulator.inference import InferenceCrossbar
from chiploop.experiments.plots import inference_plot
from chiploop.experiments.results import csv_text, write_atomic
from chiploop.experiments.spec import DEFAULT_TIMES, InferenceRunSpec, check_times, experiment_from_data
from chiploop.experiments.tasks import Task, make_task
from chiploop.experiments.weights import load_layout, load_weights, shadow_from_weights
from chiploop.specs import SpecError


def modes(device: DeviceSpec) -> list[tuple[str, bool]]:
    """(label, compensation) pairs evaluated: the device's compensation and none (or none alone)."""
    method = device.inference.drift_compensation
    return [("none", False)] if method == "none" else [(method, True), ("none", False)]


def inference_model(network: Network, device: DeviceSpec, compensation: bool) -> Network:
    """The same network with every weight crossbar on fresh (unprogrammed) inference crossbars;
    decorrelators exact, biases copied."""
    return network.on(network.chip.replaced(
        lambda name, xb: InferenceCrossbar.create(device, *xb.shape, compensation)))


def _test_metrics(network: Network, task: Task) -> tuple[float, float]:
    x, y = task.split("test")
    out = network.unroll(x).output
    return task.loss.accuracy(out, y), task.loss(out, y).item()


def exact_accuracy(network: Network, task: Task) -> float:
    """Test accuracy of the trained weights read exactly (the digital shadow): the reference."""
    with torch.no_grad():
        return _test_metrics(network.on(network.chip.shadow(torch.float32)), task)[0]


def evaluate_over_time(network: Network, task: Task, device_spec: DeviceSpec,
                       times: Sequence[float] = DEFAULT_TIMES, repeats: int = 5,
                       generator: torch.Generator | None = None) -> list[dict]:
    """Program ``network``'s trained weights into inference tiles ``repeats`` times; after each
    programming, drift to every time in ``times`` and measure test accuracy, with and without
    drift compensation.

    Rows ``{time_s, compensation, repeat, test_acc, test_loss}``; ``compensation`` is the
    device's method (``global``, ``per_column``) or ``none``. ``generator`` seeds the noise
    models' torch draws (default: seed 0); aihwkit's read noise is not seedable.
    """
    times = [float(t) for t in times]
    check_times(times)
    if repeats < 1:
        raise SpecError("repeats", repeats, "1 <= value")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    weights = network.chip.weights()
    rows = []
    with torch.no_grad():
        for repeat in range(repeats):
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            for label, compensation in modes(device_spec):
                net = inference_model(network, device_spec, compensation)
                layers = [net.chip.crossbars[name] for name in net.chip.named("weight")]
                with torch.random.fork_rng(devices=[]):  # same noise draws for every compensation mode
                    torch.manual_seed(seed)
                    for name, xb in zip(net.chip.named("weight"), layers):
                        xb.program(weights[name])
                    for t in times:
                        for xb in layers:
                            xb.drift(t)
                        acc, loss = _test_metrics(net, task)
                        rows.append({"time_s": t, "compensation": label, "repeat": repeat,
                                     "test_acc": acc, "test_loss": loss})
    return rows


def summarise(rows: Sequence[dict], metric: str = "test_acc") -> list[dict]:
    """Per (time, compensation), in order of first appearance: mean, sample std (0 for one repeat), min
    and max of ``metric``."""
    groups: dict[tuple[float, str], list[float]] = {}
    for row in rows:
        groups.setdefault((row["time_s"], row["compensation"]), []).append(row[metric])
    return [{"time_s": t, "compensation": c, "n": len(v), "mean": float(np.mean(v)),
             "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
             "min": float(np.min(v)), "max": float(np.max(v))} for (t, c), v in groups.items()]


def final_key(time_s: float, compensation: str) -> str:
    """``inf_acc_t3.15e+07_global``: the key of a summary cell in a run's final metrics."""
    return f"inf_acc_t{time_s:g}_{compensation}"


def final_metrics(summary: Sequence[dict]) -> dict[str, float]:
    """Mean and std of every (time, compensation) cell as flat final-metric keys."""
    out = {}
    for s in summary:
        key = final_key(s["time_s"], s["compensation"])
        out[key], out[key + "_std"] = s["mean"], s["std"]
    return out


def summary_table(summary: Sequence[dict], reference: float | None = None) -> str:
    """A Markdown table: one row per time, one ``mean ± std [min, max]`` column per compensation."""
    labels = list(dict.fromkeys(s["compensation"] for s in summary))
    times = list(dict.fromkeys(s["time_s"] for s in summary))
    cell = {(s["time_s"], s["compensation"]): s for s in summary}
    lines = ["| time | " + " | ".join(f"{c} (mean ± std [min, max])" for c in labels) + " |",
             "|---|" + "---|" * len(labels)]
    for t in times:
        parts = []
        for c in labels:
            s = cell.get((t, c))
            if s is None:
                parts.append("")
            elif s["n"] == 1:
                parts.append(f"{s['mean']:.3f} (1 repeat)")
            else:
                parts.append(f"{s['mean']:.3f} ± {s['std']:.3f} [{s['min']:.3f}, {s['max']:.3f}]")
        lines.append(f"| {time_label(t)} | " + " | ".join(parts) + " |")
    if reference is not None:
        lines.append(f"\ntrained weights read exactly: test acc {reference:.3f}")
    return "\n".join(lines)


def time_label(t: float) -> str:
    """``1 s``, ``1 h``, ``1 d``, ``1 mo`` (2.6e6 s), ``1 y`` (3.15e7 s)."""
    for unit, seconds in (("y", 3.15e7), ("mo", 2.6e6), ("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if t >= seconds:
            return f"{t / seconds:.3g} {unit}"
    return f"{t:g} s"


def evaluate_run(run_dir: str | Path, times: Sequence[float] | None = None, repeats: int | None = None,
                 seed: int | None = None) -> tuple[list[dict], float]:
    """``chiploop evaluate``: re-evaluate a finished run dir over time and store the result.

    Reads ``result.json`` (the resolved spec) and ``weights.npz``; ``times`` and ``repeats``
    default to the spec's ``inference`` block, else to :class:`InferenceRunSpec`'s defaults.
    Replaces the ``inference`` rows and the ``inf_*`` final metrics in ``result.json`` (written
    atomically, every other key kept as it was), and writes ``inference.csv`` and ``inference.png``.
    Returns the summary and the exact-weights reference accuracy.
    """
    run_dir = Path(run_dir)
    path = run_dir / "result.json"
    try:
        stored = json.loads(path.read_text())
    except OSError as err:
        raise SpecError("RUN_DIR", str(run_dir), f"a run directory with a result.json ({err.strerror})") from None
    except ValueError as err:
        raise SpecError("<file>", str(path), f"valid JSON ({err})", str(path)) from None
    if not isinstance(stored, dict) or not isinstance(stored.get("spec"), dict):
        raise SpecError("spec", None, "a result.json with the run's resolved spec", str(path))
    spec = experiment_from_data(stored["spec"], source=str(path))
    run_spec = spec.inference or InferenceRunSpec()
    times = tuple(float(t) for t in times) if times is not None else run_spec.times
    repeats = run_spec.repeats if repeats is None else repeats
    check_times(times, "--times")
    if repeats < 1:
        raise SpecError("--repeats", repeats, "1 <= value")
    arrays = load_weights(run_dir / "weights.npz")
    check_arrays(arrays, spec.model, str(run_dir / "weights.npz"))
    model = shadow_from_weights(arrays, load_layout(run_dir / "weights.npz"), spec.model)
    task = make_task(spec.task)
    torch.set_num_threads(spec.threads)
    rows = evaluate_over_time(model, task, spec.device, times, repeats,
                              torch.Generator().manual_seed(spec.seed if seed is None else seed))
    summary = summarise(rows)
    reference = exact_accuracy(model, task)
    final = {k: v for k, v in stored.get("final", {}).items() if not k.startswith("inf_")}
    final["inf_exact_acc"] = reference
    final.update(final_metrics(summary))
    stored["final"], stored["inference"] = final, rows
    write_atomic(path, json.dumps(stored, indent=2, allow_nan=True) + "\n")
    write_atomic(run_dir / "inference.csv", csv_text(rows))
    inference_plot(summary, run_dir / "inference.png", reference,
                   f"{spec.name}: {spec.device.inference.noise_model} inference tiles")
    return summary, reference


def check_arrays(arrays: dict[str, torch.Tensor], model: NetworkSpec, source: str) -> None:
    """Every weight crossbar and digital bias of the network ``model`` builds is in ``arrays``, with its
    shape, and finite."""
    expected = model.build(None, torch.Generator().manual_seed(0)).chip
    shapes = {f"crossbar/{name}": xb.shape for name, xb in expected.crossbars.items()}
    shapes.update({f"bias/{name}": tuple(b.shape) for name, b in expected.biases.items()})
    for key, shape in shapes.items():
        if key not in arrays:
            raise SpecError(key, None, f"an array of shape {list(shape)}", source)
        if tuple(arrays[key].shape) != tuple(shape):
            raise SpecError(key, list(arrays[key].shape), f"shape {list(shape)}", source)
        if not torch.isfinite(arrays[key]).all():
            raise SpecError(key, "non-finite values", "finite weights (did the run diverge?)", source)
