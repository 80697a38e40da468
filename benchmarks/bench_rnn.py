"""The recurrent network's training step against aihwkit's own analog RNN, one run (reported, not asserted).

Same net, batch and sequence: 8 inputs, 64 tanh units with no leak (alpha 1, so
``h_t = tanh(W_in x_t + W_rec h_{t-1} + b)``, aihwkit's ``AnalogVanillaRNNCell``), 10 outputs read at
the last of 8 steps, batch 32 of seq_digits, lr 0.1, on ``constant-step`` devices. chiploop: one
``Learner.step`` with BPTT (transposed reads of W_rec on the chip at every step, rank-1 pulsed
updates for every (step, sample)); aihwkit: ``AnalogRNN(AnalogVanillaRNNCell)`` + ``AnalogLinear``,
autograd, ``AnalogSGD.step``. Also e-prop's step against BPTT's (targets: chiploop BPTT / aihwkit
<= 1.0, e-prop / BPTT <= 1.0). Medians of interleaved repeats of 10 steps.

Run: ``.venv/bin/python benchmarks/bench_rnn.py [--repeats 7]``
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from chiploop.devices.aihwkit import to_rpu_config
from chiploop.devices.spec import load_device
from chiploop.experiments.spec import TaskSpec
from chiploop.experiments.tasks import make_task
from chiploop.learning import Loss, make_rule
from chiploop.learning.learner import Learner
from chiploop.emulator import chip_factory
from chiploop.emulator.networks import RNN
from timing import interleaved_medians  # benchmarks/timing.py

STEPS, BATCH, LR, HIDDEN = 10, 32, 0.1, 64


def batches():
    task = make_task(TaskSpec(name="seq_digits"))
    return [(task.x_train[k * BATCH:(k + 1) * BATCH], task.y_train[k * BATCH:(k + 1) * BATCH]) for k in range(STEPS)]


def chiploop_steps(rule: str, data):
    device = load_device("constant-step")
    net = RNN.build(8, HIDDEN, 10, 1.0, "tanh", "last", chip_factory(device), torch.Generator().manual_seed(0))
    learner = Learner.create(net, make_rule(rule), Loss("cross_entropy"), torch.Generator().manual_seed(0))

    def steps() -> None:
        for x, y in data:
            learner.step(x, y, LR)
    return steps


def aihwkit_steps(data):
    from aihwkit.nn import AnalogLinear, AnalogRNN, AnalogVanillaRNNCell
    from aihwkit.optim import AnalogSGD

    config = to_rpu_config(load_device("constant-step"))
    rnn = AnalogRNN(AnalogVanillaRNNCell, 8, HIDDEN, bias=True, rpu_config=config)
    readout = AnalogLinear(HIDDEN, 10, bias=True, rpu_config=config)
    model = nn.ModuleList([rnn, readout])
    opt = AnalogSGD(model.parameters(), lr=LR)
    opt.regroup_param_groups(model)

    def steps() -> None:
        for x, y in data:
            out, _ = rnn(x.transpose(0, 1).contiguous())      # aihwkit's RNN is time-first
            loss = nn.functional.cross_entropy(readout(out[-1]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = batches()
    bptt, eprop, ref = interleaved_medians([chiploop_steps("bptt", data), chiploop_steps("eprop", data),
                                            aihwkit_steps(data)], args.repeats)
    print(f"constant-step, 8 steps x 8 inputs, {HIDDEN} tanh units, batch {BATCH}: "
          f"median of {args.repeats} x {STEPS} steps")
    print(f"chiploop BPTT   {bptt / STEPS * 1e3:7.2f} ms/step")
    print(f"chiploop e-prop {eprop / STEPS * 1e3:7.2f} ms/step")
    print(f"aihwkit RNN     {ref / STEPS * 1e3:7.2f} ms/step")
    print(f"BPTT / aihwkit  {bptt / ref:.2f}  (target <= 1.0)")
    print(f"e-prop / BPTT   {eprop / bptt:.2f}  (target <= 1.0)")


if __name__ == "__main__":
    main()
