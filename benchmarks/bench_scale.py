"""chiploop at MNIST scale: one epoch of a 784-256-10 MLP with backprop on ``constant-step`` crossbars
over 60,000 MNIST-shaped samples read from IDX files, against aihwkit's own training loop.

The data: synthetic MNIST-shaped IDX files written from ``--seed`` (60,000 training and 10,000
test images of 28 x 28 uint8 pixels, 10 classes: a random blurred template per class plus
uniform noise; nothing is downloaded). Both sides train on the very same arrays: chiploop's
``idx`` task (pixels / 255, ``val_fraction: 0`` so all 60,000 train), one epoch of ``run.epoch()``
under ``torch.no_grad()`` as ``chiploop run`` does it; the baseline is ``AnalogSequential`` of
``AnalogLinear(bias=True)`` with the same RPUConfig (``to_rpu_config``) and the run's initial
weights, ``AnalogSGD`` + ``regroup_param_groups``, ``F.cross_entropy``, over the same batch order.
Batch 32, lr 0.1, one torch thread. Each side runs in a process of its own, so its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own; the chiploop process holds the data,
the task's splits, the chip and the training. Reported, not asserted: target ratio <= 1.05 and
chiploop peak RSS <= 2 GB.

Run: ``nice .venv/bin/python benchmarks/bench_scale.py`` (``--repeats 2`` alternates the two sides
twice and reports medians; ``--dir`` keeps the IDX files).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES, LR, BATCH = (784, 256, 10), 0.1, 32
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def write_data(root: Path, seed: int, n_train: int = 60000, n_test: int = 10000) -> None:
    """MNIST-shaped IDX files (training plain, test gzip): class templates (uniform noise blurred by a
    5 x 5 box, scaled to 0..160) plus uniform noise 0..95, as uint8."""
    from chiploop.experiments.data.idx import write_idx

    rng = np.random.default_rng(seed)
    raw = rng.random((10, 32, 32))
    templates = sum(raw[:, i:i + 28, j:j + 28] for i in range(5) for j in range(5)) / 25
    templates = ((templates - templates.min()) / np.ptp(templates) * 160).astype(np.uint8)
    for (images, labels), n in zip((FILES[:2], FILES[2:]), (n_train, n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = templates[y] + rng.integers(0, 96, (n, 28, 28), dtype=np.uint8)
        write_idx(root / images, x)
        write_idx(root / labels, y)


def spec_data(root: Path) -> dict:
    return {"name": "scale", "task": {"name": "idx", "val_fraction": 0.0,
                                      **dict(zip(("train_images", "train_labels", "test_images", "test_labels"),
                                                 (str(root / f) for f in FILES)))},
            "model": {"sizes": list(SIZES), "activation": "relu"}, "device": "constant-step", "rule": "backprop",
            "lr": LR, "batch_size": BATCH, "epochs": 1, "seed": 0}


def part(which: str, root: Path) -> dict:
    """One side's epoch, in this process: seconds, test accuracy after it, peak RSS."""
    import torch

    from chiploop.experiments.spec import experiment_from_data
    from chiploop.experiments.train import Run

    torch.set_num_threads(1)
    run = Run.build(experiment_from_data(spec_data(root)))
    x, y = run.task.x_train, run.task.y_train
    if which == "chiploop":
        start = time.perf_counter()
        with torch.no_grad():
            run.epoch(1)
        seconds = time.perf_counter() - start
        acc = run.learner.evaluate(run.task.x_test, run.task.y_test)["acc"]
    else:
        from aihwkit.nn import AnalogLinear, AnalogSequential
        from aihwkit.optim import AnalogSGD
        from torch import nn

        from chiploop.devices import load_device
        from chiploop.devices.aihwkit import to_rpu_config
        from bench_overhead import BATCH as BASELINE_BATCH, baseline_epoch  # benchmarks/bench_overhead.py

        assert BASELINE_BATCH == BATCH, "both benchmarks time batches of the same size"

        config = to_rpu_config(load_device("constant-step"))
        layers = [AnalogLinear(i, o, bias=True, rpu_config=config) for i, o in zip(SIZES[:-1], SIZES[1:])]
        chip = run.network.chip
        for name, layer in zip(run.network.weight_names, layers, strict=True):
            layer.set_weights(chip.weights()[name], chip.biases[name].clone())
        model = AnalogSequential(layers[0], nn.ReLU(), layers[1])
        model.train()
        opt = AnalogSGD(model.parameters(), lr=LR)
        opt.regroup_param_groups(model)
        epoch = baseline_epoch(run, model, opt)  # the batch order run.epoch() would draw, batch BATCH
        start = time.perf_counter()
        epoch()
        seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            acc = (model(run.task.x_test).argmax(1) == run.task.y_test).float().mean().item()
    return {"side": which, "epoch_s": seconds, "test_acc": acc, "samples": len(x), "features": x.shape[1],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--repeats", type=int, default=1, help="epochs per side, alternating (median reported)")
    parser.add_argument("--dir", type=Path, default=None, help="write (or reuse) the IDX files here")
    parser.add_argument("--part", choices=["chiploop", "aihwkit"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        print(json.dumps(part(args.part, args.dir)))
        return
    from tqdm import tqdm

    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if not all((root / f).is_file() for f in FILES):
            write_data(root, args.seed)
        sides = [("chiploop", "aihwkit") if r % 2 == 0 else ("aihwkit", "chiploop") for r in range(args.repeats)]
        rows = []
        for which in tqdm([w for pair in sides for w in pair], desc="epochs (one process each)", unit="epoch"):
            out = subprocess.run([sys.executable, __file__, "--part", which, "--dir", str(root)], check=True,
                                 capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    by = {w: [r for r in rows if r["side"] == w] for w in ("chiploop", "aihwkit")}
    med = {w: statistics.median(r["epoch_s"] for r in by[w]) for w in by}
    rss = {w: max(r["peak_rss_mb"] for r in by[w]) for w in by}
    acc = {w: statistics.median(r["test_acc"] for r in by[w]) for w in by}
    first = rows[0]
    print(f"IDX data (seed {args.seed}): {first['samples']} x {first['features']} train, 10 classes; "
          f"MLP {'-'.join(map(str, SIZES))} backprop, constant-step, batch {BATCH}, lr {LR}; "
          f"{args.repeats} epoch(s) per side, median")
    print(f"{'side':<10} {'epoch s':>8} {'test acc':>9} {'peak RSS MB':>12}")
    for w in ("chiploop", "aihwkit"):
        print(f"{w:<10} {med[w]:>8.1f} {acc[w]:>9.3f} {rss[w]:>12.0f}")
    ratio = med["chiploop"] / med["aihwkit"]
    print(f"chiploop / aihwkit epoch time: {ratio:.3f} (target <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'}); "
          f"chiploop peak RSS {rss['chiploop'] / 1024:.2f} GB (target <= 2 GB: "
          f"{'met' if rss['chiploop'] <= 2048 else 'NOT met'})")


if __name__ == "__main__":
    main()
