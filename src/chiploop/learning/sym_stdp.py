"""Supervised symmetric STDP with synaptic scaling and a dynamic threshold (Hao, Huang, Dong & Xu 2020,
"A biologically plausible supervised learning method for spiking neural networks using the symmetric STDP
rule", Neural Networks 121:387-395; docs/science.md §4.12), for the spiking network of
:mod:`chiploop.emulator.networks.snn`.

Three small pieces, each its own function:

* :func:`stdp_rows` — trace-based symmetric STDP as rank-1 terms, one pair per time step;
* :func:`scaling_signals` — synaptic scaling of every neuron's incoming weights, a read then an update;
* :func:`threshold_step` — the dynamic threshold (intrinsic plasticity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, final

from chiploop.lazy import torch

from chiploop.emulator import LayerSignal, Network, Trace
from chiploop.learning.loss import Loss
from chiploop.learning.rule import LearningRule, own_generator
from chiploop.specs import spec_field


def stdp_traces(spikes: torch.Tensor, impulse: float, decay: float) -> torch.Tensor:
    """``x(t) = decay · x(t-1) + impulse · s(t)`` over the first axis (T, ...), this step's spikes included."""
    out = torch.empty_like(spikes)
    x = torch.zeros_like(spikes[0])
    for t in range(len(spikes)):
        x = decay * x + impulse * spikes[t]
        out[t] = x
    return out


def stdp_rows(pre: torch.Tensor, post: torch.Tensor, a_pre: float, a_post: float, tau: float, dt: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The rank-1 terms ``(x, d)`` of symmetric STDP for pre spikes (T, batch, in) and post spikes
    (T, batch, out), time-major, the two terms of a step side by side, rows without a spike dropped::

        x_pre(t) = e^{-dt/τ} x_pre(t-1) + a_pre s_pre(t),    x_post likewise with a_post
        ΔW = lr Σ_t [ s_post(t) ⊗ x_pre(t)  +  x_post(t) ⊗ s_pre(t) ]
           = -lr dᵀx  with rows  (x = x_pre(t), d = -s_post(t))  and  (x = s_pre(t), d = -x_post(t))

    so one pre spike at ``t_pre`` and one post spike at ``t_post`` change ``W`` by ``lr a exp(-|Δt|/τ)``
    (``a = a_pre`` when post follows pre, ``a_post`` when it precedes it; both terms, ``lr (a_pre + a_post)``,
    at Δt = 0): the potentiation-only window of symmetric STDP, τ in ms.
    """
    decay = math.exp(-dt / tau)
    x_pre, x_post = stdp_traces(pre, a_pre, decay), stdp_traces(post, a_post, decay)
    steps, batch = pre.shape[:2]
    x = torch.stack([x_pre, pre], 1).reshape(steps * 2 * batch, -1)          # (T·2·batch, in)
    d = -torch.stack([post, x_post], 1).reshape(steps * 2 * batch, -1)       # (T·2·batch, out)
    keep = (x != 0).any(1) & (d != 0).any(1)
    return x[keep], d[keep]


def scaling_signals(network: Network, name: str, target: float, lr_full: float | None = None) -> LayerSignal:
    """Synaptic scaling of crossbar ``name``: every neuron's incoming weights (a row of ``W``) scaled to
    sum to ``target``, on a chip: read ``Ŵ`` (``read_weights``: forward reads of the columns), then one
    pulsed update per input column (``x = e_j``, ``d_j = -ΔW[:, j]``, lr 1)::

        ΔW = Ŵ ⊙ (target / Σ_j Ŵ_ij - 1)    (rows with Σ_j Ŵ_ij ≤ 0 left alone)

    With ``lr_full`` the signal is sent at the run's scheduled lr with ``d`` divided by ``lr_full``: the
    step is ``(lr / lr_full) ΔW``, all of it while ``lr = lr_full`` and none once the schedule reaches 0.
    """
    W = network.chip.crossbars[name].read_weights()
    sums = W.sum(1, keepdim=True)
    factor = torch.where(sums > 0, target / sums.clamp(min=1e-12), torch.ones_like(sums))
    delta = W * (factor - 1)                                                  # (out, in)
    eye = torch.eye(W.shape[1], dtype=W.dtype)
    d = -delta.T.contiguous() if lr_full is None else -delta.T.contiguous() / lr_full
    return LayerSignal(name, eye, d, lr=1.0 if lr_full is None else None,
                       bias_grad=torch.zeros(W.shape[0], dtype=W.dtype))


def threshold_step(theta: torch.Tensor, counts: torch.Tensor, theta_plus: float, decay: float) -> torch.Tensor:
    """The change of the adaptive thresholds θ (mV) over a batch: each spike raises its neuron's θ by
    ``theta_plus``, and θ decays by ``decay`` (= exp(-batch · T · dt / τ_θ)) meanwhile::

        Δθ = θ (decay - 1) + theta_plus Σ_b n_b        (n_b: a neuron's spike count in sample b)
    """
    return theta * (decay - 1) + theta_plus * counts


@final
@dataclass(frozen=True)
class SymSTDP(LearningRule):
    """Supervised symmetric STDP on both crossbars of the spiking network (Hao et al. 2020)::

        ΔW = lr Σ_t [ s_post(t) ⊗ x_pre(t) + x_post(t) ⊗ s_pre(t) ]     (window lr·a·exp(-|Δt|/τ))

    ``W_in`` learns from the input and hidden spikes (unsupervised, with lateral inhibition); ``W_out`` from
    the hidden spikes and the teacher: the true label's output neuron firing as a ``teacher_rate`` Poisson
    source, the others silent (drawn from the rule's own generator). Updates are pulsed rank-1 terms, one
    pair per time step in time order, applied after the sample's presentation (its reads see the weights
    of its start). Only potentiation: weights stay ≥ 0, and the device bounds (or, on the ideal chip,
    the scaling) keep them below ``g_max``. ``W_out`` learns ``out_rate`` times faster than ``W_in``
    (``ΔW_out = out_rate · lr Σ_t [...]``; the authors' code uses η_EC / η_PE = 0.04 / 0.005 = 8).

    Before every batch (:meth:`before`) each neuron's incoming weights are scaled to ``target_in`` /
    ``target_out`` (a read, then one pulsed update per input column: its cost is in :meth:`report`).
    Each signal also moves the dynamic thresholds θ (the chip's digital parameters beside ``W_in`` and
    ``W_out``) by :func:`threshold_step`.

    Scaling and θ act in full at every step (``anneal: null``), whatever the lr schedule does to STDP; with
    ``anneal: η₀`` (the run's initial lr) both act with weight ``lr(t) / η₀``, so they fade with the schedule
    and the network settles as the cosine takes lr to 0::

        ΔW_scaling = (lr / η₀) Ŵ ⊙ (target / Σ_j Ŵ_ij - 1),    Δθ = (lr / η₀) [θ (decay - 1) + θ⁺ Σ_b n_b]
    """

    networks: ClassVar[tuple[str, ...]] = ("snn",)

    tau: float = spec_field(20.0, doc="STDP trace time constant τ of the window exp(-|Δt|/τ)", unit="ms",
                            low=0.0, high=1e4, low_open=True)
    a_pre: float = spec_field(1.0, doc="presynaptic trace impulse (window amplitude when post follows pre)",
                              low=0.0, high=1e3)
    a_post: float = spec_field(1.0, doc="postsynaptic trace impulse (window amplitude when pre follows post)",
                               low=0.0, high=1e3)
    teacher_rate: float = spec_field(200.0, doc="Poisson rate of the true label's output neuron in training",
                                     unit="Hz", low=0.0, high=1000.0, low_open=True)
    target_in: float | None = spec_field(2.0, doc="sum of every hidden neuron's incoming weights after scaling "
                                  "(null: no scaling)", low=0.0, high=1e4, low_open=True)
    target_out: float | None = spec_field(25.0, doc="sum of every output neuron's incoming weights after scaling "
                                   "(null: no scaling)", low=0.0, high=1e4, low_open=True)
    out_rate: float = spec_field(1.0, doc="ratio of W_out's STDP rate to W_in's (η_out = out_rate · lr; the "
                                 "authors' code: 8 = 0.04 / 0.005 for 100-400 hidden neurons)", low=0.0, high=1e3,
                                 low_open=True)
    theta_plus: float = spec_field(0.5, doc="rise of a hidden neuron's threshold θ per spike", unit="mV", low=0.0,
                                   high=100.0)
    theta_plus_out: float = spec_field(0.02, doc="rise of an output neuron's threshold θ per spike", unit="mV",
                                       low=0.0, high=100.0)
    tau_theta: float = spec_field(1e4, doc="decay time constant of θ", unit="ms", low=0.0, high=1e9,
                                  low_open=True)
    anneal: float | None = spec_field(None, doc="lr at which synaptic scaling and the dynamic threshold act in "
                                      "full: they act with weight lr / anneal, fading with the schedule (set "
                                      "it to the run's lr; null: always in full)", low=0.0, high=1e3,
                                      low_open=True)

    def init(self, network: Network, generator: torch.Generator) -> dict[str, Any]:
        return {"generator": own_generator(generator), "samples": 0, "stdp_rows": 0, "scaling_rows": 0,
                "scaling_reads": 0, "spikes": 0.0}

    def before(self, network: Network, state: dict[str, Any]) -> tuple[list[LayerSignal], dict[str, Any]]:
        """Synaptic scaling before the batch: one read of each scaled crossbar and its pulsed correction."""
        signals = [scaling_signals(network, name, target, self.anneal)
                   for name, target in (("W_in", self.target_in), ("W_out", self.target_out)) if target is not None]
        state = dict(state)
        state["scaling_rows"] += sum(len(s.x) for s in signals)
        state["scaling_reads"] += sum(len(s.x) for s in signals)  # read_weights: one forward read per column
        return signals, state

    def teacher(self, labels: torch.Tensor, steps: int, n_out: int, dt: float, generator: torch.Generator,
                dtype: torch.dtype) -> torch.Tensor:
        """Teacher spikes (T, batch, n_out): the label's neuron fires with probability rate·dt each step."""
        p = self.teacher_rate * dt / 1000.0
        draw = (torch.rand(steps, len(labels), generator=generator) < p).to(dtype)
        out = torch.zeros(steps, len(labels), n_out, dtype=dtype)
        out[:, torch.arange(len(labels)), labels] = draw
        return out

    def signals(self, network: Network, trace: Trace, batch, loss: Loss, state: dict[str, Any]
                ) -> tuple[list[LayerSignal], dict[str, Any]]:
        st, p = trace.states, network.neuron
        steps, size = st["s_h"].shape[:2]
        dtype = st["s_h"].dtype
        state = dict(state)
        generator = torch.Generator()
        generator.set_state(state["generator"].get_state())
        z = self.teacher(batch[1].long(), steps, network.n_out, p.dt, generator, dtype)
        state["generator"] = generator
        pre_in = trace.inputs["W_in"].view(steps, size, -1)
        pre_out = trace.inputs["W_out"].view(steps, size, -1)
        decay = math.exp(-size * steps * p.dt / self.tau_theta)
        signals = []
        for name, pre, post, fired, plus, rate in (
                ("W_in", pre_in, st["s_h"], st["s_h"], self.theta_plus, 1.0),
                ("W_out", pre_out, z, st["s_o"], self.theta_plus_out, self.out_rate)):
            x, d = stdp_rows(pre, post, self.a_pre, self.a_post, self.tau, p.dt)
            d = d * rate if rate != 1.0 else d
            signals.append(LayerSignal(name, x, d, bias_grad=torch.zeros(post.shape[2], dtype=dtype)))
            theta = network.chip.biases[name]
            step = threshold_step(theta.to(dtype), fired.sum((0, 1)), plus, decay)
            full = 1.0 if self.anneal is None else self.anneal
            signals.append(LayerSignal(name, x.new_zeros(0, x.shape[1]), d.new_zeros(0, d.shape[1]),
                                       lr=1.0 if self.anneal is None else None, bias_grad=-step / full))
            state["stdp_rows"] += len(x)
        state["samples"] += size
        state["spikes"] += float(st["s_h"].sum() + st["s_o"].sum())
        return signals, state

    def loihi(self, lr: float, dt: float) -> dict[str, Any]:
        """The STDP part as a Loihi 2 (Lava) rule (:mod:`chiploop.learning.loihi`): ``dw`` with the run's ``lr``
        and the traces' impulses and time constants in steps of ``dt`` ms (scaling and the threshold are
        not part of it: they run in the periphery)::

            dw = lr * y0 * x1 + lr * x0 * y1,   x1: impulse a_pre, tau τ/dt;   y1: impulse a_post, tau τ/dt
        """
        return {"dw": f"{lr!r} * y0 * x1 + {lr!r} * x0 * y1", "x1_impulse": self.a_pre, "x1_tau": self.tau / dt,
                "y1_impulse": self.a_post, "y1_tau": self.tau / dt, "t_epoch": 1, "dt_ms": dt}

    def report(self, state: dict[str, Any]) -> dict[str, float]:
        n = max(state["samples"], 1)
        return {"pulsed_rows_per_sample": (state["stdp_rows"] + state["scaling_rows"]) / n,
                "stdp_rows_per_sample": state["stdp_rows"] / n, "scaling_rows_per_sample": state["scaling_rows"] / n,
                "scaling_reads_per_sample": state["scaling_reads"] / n, "train_spikes_per_sample": state["spikes"] / n}
