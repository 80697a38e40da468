"""The torch engine's cost against aihwkit's (issue #16, acceptance 4). Reported, never asserted.

1. step: one training step (backprop, digits MLP 64-64-10, batch 32) on the torch engine ÷ on
   aihwkit (target <= 1.5 on CPU), timed over blocks of ``--block`` consecutive steps of one engine
   (as training runs them), and again with the engines alternating step by step. The two differ:
   alternating, every step starts with the other engine's data in the caches, which slows aihwkit's
   step about twice as much as the torch engine's (measured 1.1 against 0.55-0.65 ms per aihwkit step),
   so the alternating ratio flatters the torch engine;
2. diagnostics: a torch-engine run with ``diagnostics: {every: 50, repeats: 8}`` ÷ without
   (target <= 1.25);
3. population: P = 32 chips (64-64-10, backprop by hand on the crossbar verbs) stepped as one
   population program ÷ 32 aihwkit chips stepped one after the other: throughput ratio (target >= 2).

``--cuda`` runs 3. with P = 1,024 chips on a CUDA device against one aihwkit CPU chip, or says that
there is no CUDA device and exits 0.

Every measure is timed twice in the same interleaved repeats: wall-clock (``time.perf_counter``) and
the process's CPU time (``time.process_time``). On a machine shared with other jobs the wall-clock
ratios move with the load (a short step is preempted at random); the CPU-time ratios are what the
two engines cost. The load average is printed with the results. Threads: ``torch.set_num_threads(1)``
for both engines (aihwkit's CPU tiles are single-threaded; the issue's targets are per core).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_engine.py [--device constant-step] [--cuda]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

from chiploop.devices.spec import load_device
from chiploop.emulator import make_crossbar
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run, train



def interleaved_medians(fns: list[Callable[[], None]], repeats: int) -> tuple[list[float], list[float]]:
    """Median wall-clock and CPU seconds per call of each fn: one warm-up call each, then ``repeats``
    rounds alternating the order (as benchmarks/timing.py, with the process's CPU time as well)."""
    for fn in fns:
        fn()
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        order = list(range(len(fns)))
        for i in (order if r % 2 == 0 else order[::-1]):
            w, c = time.perf_counter(), time.process_time()
            fns[i]()
            cpu[i].append(time.process_time() - c)
            wall[i].append(time.perf_counter() - w)
    return [statistics.median(t) for t in wall], [statistics.median(t) for t in cpu]


def _batches(run: Run, size: int):
    """The training set's mini-batches in order, round and round (every timed step sees new data)."""
    x, y = run.task.x_train, run.task.y_train
    starts = list(range(0, len(x) - size + 1, size))
    i = 0
    while True:
        s = starts[i % len(starts)]
        i += 1
        yield x[s:s + size], y[s:s + size]


def step_ratio(device: str, sizes: list[int], repeats: int, lr: float, block: int = 1
               ) -> tuple[list[float], list[float]]:
    """(wall, cpu) medians of one training step, [aihwkit, torch]: each timed call runs ``block``
    consecutive steps of one engine (1: the engines alternate step by step, so each step starts with
    the other engine's data in the caches; a block of steps runs as training runs them)."""
    runs = {}
    for engine in ("aihwkit", "torch"):
        spec = experiment_from_data({"device": {"preset": device, "engine": engine}, "model": {"sizes": sizes},
                                     "lr": lr, "epochs": 1})
        runs[engine] = Run.build(spec)
    data = {engine: _batches(run, 32) for engine, run in runs.items()}

    def steps(engine: str) -> Callable[[], None]:
        def run() -> None:
            for _ in range(block):
                runs[engine].learner.step(*next(data[engine]), lr)
        return run

    wall, cpu = interleaved_medians([steps("aihwkit"), steps("torch")], repeats)
    return [t / block for t in wall], [t / block for t in cpu]


def diagnostics_ratio(device: str, sizes: list[int], epochs: int, repeats: int, lr: float
                      ) -> tuple[list[float], list[float]]:
    """(wall, cpu) medians of a torch-engine run, [without, with diagnostics]."""
    base = {"device": {"preset": device, "engine": "torch"}, "model": {"sizes": sizes}, "lr": lr, "epochs": epochs}
    plain = experiment_from_data(base)
    probed = experiment_from_data({**base, "diagnostics": {"every": 50, "repeats": 8}})
    return interleaved_medians([lambda: train(plain, progress=False), lambda: train(probed, progress=False)],
                               repeats)


def _mlp_step(layers, x, y, lr):
    """Backprop on crossbar verbs: x (..., B, in), y (B,) labels; works for one chip or a population."""
    h = layers[0].forward(x)
    a = torch.relu(h)
    z = layers[1].forward(a)
    e = (torch.softmax(z, -1) - torch.nn.functional.one_hot(y, z.shape[-1]).to(z)) / y.shape[0]
    dh = layers[1].backward(e) * (h > 0)
    layers[1].update(a, e, lr)
    layers[0].update(x, dh, lr)


def population_ratio(device: str, sizes: list[int], population: int, repeats: int, lr: float,
                     engine_device: str = "cpu", sequential: int | None = None) -> tuple[list[float], list[float]]:
    """(wall, cpu) medians, [``sequential`` aihwkit chips one after the other, one population step]."""
    sequential = population if sequential is None else sequential
    spec_a = load_device({"preset": device})
    spec_t = load_device({"preset": device, "engine": "torch", "engine_device": engine_device})
    g = torch.Generator().manual_seed(0)
    Ws = [torch.randn(o, i, generator=g) / i ** 0.5 for i, o in zip(sizes[:-1], sizes[1:])]
    chips = []
    for c in range(sequential):
        layers = [make_crossbar(spec_a, *W.shape, name=f"layer{k}") for k, W in enumerate(Ws)]
        for xb, W in zip(layers, Ws):
            xb.program(W)
        chips.append(layers)
    pop = [make_crossbar(spec_t, *W.shape, name=f"layer{k}", seed=1) for k, W in enumerate(Ws)]
    for xb, W in zip(pop, Ws):
        xb.program(W)
    pop = [xb.expand(population) for xb in pop]
    run = Run.build(experiment_from_data({"device": "ideal", "model": {"sizes": sizes}, "epochs": 1}))
    seq_data, pop_data = _batches(run, 32), _batches(run, 32)

    def sequential_step():
        x, y = next(seq_data)
        for layers in chips:
            _mlp_step(layers, x, y, lr)

    def population_step():
        x, y = next(pop_data)
        _mlp_step(pop, x.to(engine_device).expand(population, -1, -1), y.to(engine_device), lr)
        if engine_device != "cpu":
            torch.cuda.synchronize()

    return interleaved_medians([sequential_step, population_step], repeats)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="constant-step", help="device preset (default constant-step)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 64, 10])
    ap.add_argument("--lr", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=45, help="interleaved repeats of each timed step (45: one epoch)")
    ap.add_argument("--block", type=int, default=20,
                    help="consecutive steps of one engine per timing in 1. (default 20); also reported: 1 (alternating)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs of the diagnostics comparison")
    ap.add_argument("--run-repeats", type=int, default=5, help="repeats of the diagnostics comparison runs")
    ap.add_argument("--population", type=int, default=32)
    ap.add_argument("--cuda", action="store_true", help="P = 1,024 chips on CUDA against one aihwkit CPU chip")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.cuda:
        if not torch.cuda.is_available():
            print("no CUDA device on this machine: the --cuda comparison needs one; nothing run")
            return 0
        (t_one, t_pop), _ = population_ratio(args.device, args.sizes, 1024, args.repeats, args.lr, "cuda", sequential=1)
        print(f"P = 1024 chips on CUDA, one step {t_pop * 1e3:.2f} ms; one aihwkit CPU chip {t_one * 1e3:.2f} ms; "
              f"throughput ratio {1024 * t_one / t_pop:.1f}")
        return 0
    t = time.perf_counter()
    print(f"{args.device}, MLP {'-'.join(map(str, args.sizes))}, batch 32, torch.set_num_threads(1); "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    (w_a, w_t), (c_a, c_t) = step_ratio(args.device, args.sizes, max(5, args.repeats // 4), args.lr,
                                        args.block)
    print(f"1. training step, aihwkit / torch engine (ratio torch ÷ aihwkit, target <= 1.5), {args.block} consecutive "
          f"steps per timing: CPU {c_a * 1e3:.2f} / {c_t * 1e3:.2f} ms, ratio {c_t / c_a:.2f}; wall {w_a * 1e3:.2f} / "
          f"{w_t * 1e3:.2f} ms, ratio {w_t / w_a:.2f}")
    (w_a, w_t), (c_a, c_t) = step_ratio(args.device, args.sizes, args.repeats, args.lr)
    print(f"   the engines alternating step by step: CPU {c_a * 1e3:.2f} / {c_t * 1e3:.2f} ms, ratio {c_t / c_a:.2f}; "
          f"wall {w_a * 1e3:.2f} / {w_t * 1e3:.2f} ms, ratio {w_t / w_a:.2f}")
    (w_plain, w_probed), (c_plain, c_probed) = diagnostics_ratio(args.device, args.sizes, args.epochs,
                                                                 args.run_repeats, args.lr)
    print(f"2. torch-engine run of {args.epochs} epochs, with {{every: 50, repeats: 8}} / without (target <= 1.25): "
          f"CPU {c_probed:.2f} / {c_plain:.2f} s, ratio {c_probed / c_plain:.2f}; "
          f"wall {w_probed:.2f} / {w_plain:.2f} s, ratio {w_probed / w_plain:.2f}")
    (w_seq, w_pop), (c_seq, c_pop) = population_ratio(args.device, args.sizes, args.population,
                                                      max(3, args.repeats // 4), args.lr)
    print(f"3. P = {args.population} chips, {args.population} aihwkit steps one after the other / one population "
          f"step, throughput ratio (target >= 2): CPU {c_seq * 1e3:.1f} / {c_pop * 1e3:.1f} ms, ratio "
          f"{c_seq / c_pop:.2f}; wall {w_seq * 1e3:.1f} / {w_pop * 1e3:.1f} ms, ratio {w_seq / w_pop:.2f}")
    print(f"(bench took {time.perf_counter() - t:.0f} s; load average {os.getloadavg()[0]:.1f} at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
