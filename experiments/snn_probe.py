"""Update probe of the spiking network's rules (docs/results.md, seed 003): how far supervised symmetric STDP
is from the surrogate gradient, and how much the chip adds, against the surrogate-gradient walk itself.

For each device (ideal, constant-step, reram-sb) and rule (sym_stdp, backprop = surrogate-gradient BPTT), on
the network of experiments/snn_rules.yaml: ``--warmup`` training steps from seed 0, then the update probe
(chiploop.learning.diagnostics.probe) on the next batch of 16 with ``--repeats`` repeats. The ground truth is
autograd through the unroll on the chip's shadow, i.e. the surrogate gradient of the spike-count
cross-entropy. Prints one line per (device, rule, layer): the algorithmic, physical and total relative bias,
relative variance and cosine with the surrogate gradient.

Run: ``PYTHONPATH=src .venv/bin/python experiments/snn_probe.py [--warmup 20] [--repeats 3]``
"""

from __future__ import annotations

import argparse

import torch

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run
from chiploop.learning.diagnostics import probe
from chiploop.specs import load_yaml

from pathlib import Path

SUITE = Path(__file__).resolve().parent / "snn_rules.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    suite = load_yaml(SUITE)
    print(f"{'device':14} {'rule':9} {'layer':6} {'alg bias':>9} {'alg cos':>8} {'phys bias':>9} {'phys var':>9} "
          f"{'total cos':>9}")
    for device in ("ideal", "constant-step", "reram-sb"):
        for run in suite["runs"]:
            data = {**suite["base"], **{k: v for k, v in run.items() if k != "name"}, "device": device, "seed": 0}
            r = Run.build(experiment_from_data(data))
            batches = r.task.batches(16, generator=r.generator)
            with torch.no_grad():
                for _ in range(args.warmup):
                    x, y = next(batches)
                    r.learner.step(x, y, r.spec.lr)
                x, y = next(batches)
                rows = probe(r.network, r.rule, r.state, (x, y), r.task.loss, r.spec.lr, args.repeats)
            by = {(row["layer"], row["part"]): row for row in rows}
            for layer in r.network.weight_names:
                alg, phys, tot = by[layer, "algorithmic"], by[layer, "physical"], by[layer, "total"]
                print(f"{device:14} {run['rule'] if isinstance(run['rule'], str) else run['rule']['name']:9} "
                      f"{layer:6} {alg['rel_bias']:9.3g} {alg['cos']:8.3f} {phys['rel_bias']:9.3g} "
                      f"{phys['rel_var']:9.3g} {tot['cos']:9.3f}", flush=True)


if __name__ == "__main__":
    main()
