"""A leaky rate RNN on three crossbars, the second final network (docs/science.md §5.2; seed 001).

With ``α = dt/τ`` in (0, 1], zero initial state and ``x`` (batch, T, in), the drive of step t is
``u_t = W_in x_t + W_rec h_{t-1} + b`` (two analog reads; b digital, kept beside W_rec), and the
leak acts on the pre-activation (``leak: preactivation``, Bellec et al.'s form) or on the rate
(``leak: rate``, Murray's form)::

    preactivation:  a_t = (1 - α) a_{t-1} + α u_t,     h_t = f(a_t)
    rate:           h_t = (1 - α) h_{t-1} + α f(u_t)
    y_t = W_out h_t + b_out                              (readout ``last``: t = T only; ``every``: each t)

Backward walk (BPTT), with the transposed reads of ``W_out`` and ``W_rec`` done by ``read``; ``c_t``
is what the leak carries (``dL/da_t`` or ``dL/dh_t``) and ``d_t`` the error at the drive ``u_t``::

    e_t = read(W_out, δ_t)   (δ_t = dL/dy_t, 0 where there is no loss),   r_t = read(W_rec, d_{t+1})
    preactivation:  c_t = f'(a_t) ⊙ (e_t + r_t) + (1 - α) c_{t+1},    d_t = α c_t
    rate:           c_t = e_t + r_t + (1 - α) c_{t+1},                 d_t = α f'(u_t) ⊙ c_t
    ΔW_in = -lr Σ_t d_tᵀ x_t,   ΔW_rec = -lr Σ_t d_tᵀ h_{t-1},   ΔW_out = -lr Σ_t δ_tᵀ h_t

``horizon = k`` truncates: an error that enters at step s reaches back to step s - k + 1 and no
further (through the recurrent read and the leak alike). Time steps are stacked time-major in the
trace (row ``t·B + b``); outputs keep the data's layout, (batch, out) or (batch, T, out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, final

from chiploop.lazy import torch

from chiploop.emulator.chip import Chip, CrossbarFactory
from chiploop.emulator.networks.base import Network, NetworkSpec, Perturbation, Trace, TransposedRead, register
from chiploop.emulator.periphery import ACTIVATIONS
from chiploop.specs import spec_field


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) / math.sqrt(fan_in)


@final
@dataclass(eq=False)
class RNN(Network):
    """A leaky rate RNN whose ``W_in``, ``W_rec``, ``W_out`` are crossbars of ``chip``."""

    kind: ClassVar[str] = "rnn"
    weight_names: ClassVar[tuple[str, ...]] = ("W_in", "W_rec", "W_out")

    n_in: int
    hidden: int
    n_out: int
    alpha: float
    activation: str
    readout: Literal["last", "every"]
    chip: Chip
    leak: Literal["preactivation", "rate"] = "preactivation"

    @classmethod
    def build(cls, n_in: int, hidden: int, n_out: int, alpha: float, activation: str, readout: str,
              factory: CrossbarFactory | None, generator: torch.Generator, leak: str = "preactivation") -> RNN:
        """Weights and biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` of each matrix, as ``torch.nn.Linear``
        draws them (the hidden bias with fan-in ``hidden``)."""
        chip = Chip(factory=factory)
        chip.make("W_in", _uniform((hidden, n_in), n_in, generator), "weight")
        chip.make("W_rec", _uniform((hidden, hidden), hidden, generator), "weight",
                  bias=_uniform((hidden,), hidden, generator))
        chip.make("W_out", _uniform((n_out, hidden), hidden, generator), "weight",
                  bias=_uniform((n_out,), hidden, generator))
        return cls(n_in, hidden, n_out, alpha, activation, readout, chip, leak)

    def f_prime(self, name: str, a: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(a) if name == "W_out" else ACTIVATIONS[self.activation].f_prime(a)

    def _read(self, name: str, t: int, v: torch.Tensor, perturb: Perturbation | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        v_hat, y = self.chip.read(name, v)
        bias = self.chip.biases.get(name)
        if bias is not None:
            y = y + bias
        extra = perturb(name, t, v_hat) if perturb is not None else None
        return v_hat, (y if extra is None else y + extra)

    def unroll(self, x: torch.Tensor, perturb: Perturbation | None = None) -> Trace:
        """``x`` (batch, T, in); ``perturb(name, t, x̂)`` may add a term to any read at step ``t``."""
        if x.dim() != 3 or x.shape[2] != self.n_in:
            raise ValueError(f"an RNN input is (batch, time, {self.n_in}); got {tuple(x.shape)}")
        batch, steps = x.shape[:2]
        f, alpha = ACTIVATIONS[self.activation].f, self.alpha
        a = x.new_zeros(batch, self.hidden)   # a_t (preactivation leak) or u_t (rate leak)
        h = x.new_zeros(batch, self.hidden)
        rec = {"in_x": [], "in_p": [], "rec_x": [], "rec_p": [], "a": [], "h": [h]}
        for t in range(steps):
            x_hat, u_in = self._read("W_in", t, x[:, t], perturb)
            h_hat, u_rec = self._read("W_rec", t, h, perturb)
            if self.leak == "preactivation":
                a = (1 - alpha) * a + alpha * (u_in + u_rec)
                h = f(a)
            else:  # rate: ``a`` holds the drive u_t, f'(u_t) is what the walk needs
                a = u_in + u_rec
                h = (1 - alpha) * h + alpha * f(a)
            for key, value in (("in_x", x_hat), ("in_p", u_in), ("rec_x", h_hat), ("rec_p", u_rec), ("a", a),
                               ("h", h)):
                rec[key].append(value)
        hs = torch.stack(rec["h"][1:])                                   # (T, batch, hidden)
        if self.readout == "last":
            h_out, out = self._read("W_out", steps - 1, h, perturb)
            output = out                                                 # (batch, out)
        else:
            outs = [self._read("W_out", t, hs[t], perturb) for t in range(steps)]
            h_out, out = torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
            output = out.view(steps, batch, -1).transpose(0, 1)          # (batch, T, out)
        return Trace(inputs={"W_in": torch.cat(rec["in_x"]), "W_rec": torch.cat(rec["rec_x"]), "W_out": h_out},
                     preacts={"W_in": torch.cat(rec["in_p"]), "W_rec": torch.cat(rec["rec_p"]), "W_out": out},
                     output=output,
                     states={"pre": torch.stack(rec["a"]), "h": torch.stack(rec["h"]), "x": x})

    def output_errors(self, trace: Trace, delta: torch.Tensor) -> torch.Tensor:
        """``δ`` shaped like the output as rows of ``W_out``'s inputs: (batch, out) or (T·batch, out)."""
        return delta if self.readout == "last" else delta.transpose(0, 1).reshape(-1, delta.shape[-1])

    def backward(self, trace: Trace, delta: torch.Tensor, read: TransposedRead, horizon: int | None = None
                 ) -> dict[str, torch.Tensor]:
        pre = trace.states["pre"]                                        # (T, batch, hidden): a_t or u_t
        steps, batch, hidden = pre.shape
        f_prime, alpha, rate = ACTIVATIONS[self.activation].f_prime, self.alpha, self.leak == "rate"
        d_out = self.output_errors(trace, delta)
        e = read("W_out", d_out)
        entering = {steps - 1: e} if self.readout == "last" else dict(enumerate(e.view(steps, batch, hidden)))
        full = horizon is None
        ages = 1 if full else min(horizon, steps)     # full BPTT: one bucket; truncated: one per age
        carry = pre.new_zeros(ages, batch, hidden)    # c_{t+1} by the age of the error in it
        rec = pre.new_zeros(ages, batch, hidden)      # read(W_rec, d_{t+1}) by age
        d_u = []
        for t in reversed(range(steps)):
            fp = f_prime(pre[t])
            inflow = rec.clone()                      # bucket j: what entered j steps later
            if full:
                inflow[0] += entering.get(t, 0)
                older = carry
            else:                                     # every bucket ages by one; the oldest falls off
                inflow = torch.cat([inflow.new_zeros(1, batch, hidden), inflow[:-1]])
                if t in entering:
                    inflow[0] = entering[t]
                older = torch.cat([carry.new_zeros(1, batch, hidden), carry[:-1]])
            carry = (inflow if rate else fp * inflow) + (1 - alpha) * older
            d = alpha * fp * carry if rate else alpha * carry
            d_u.append(d.sum(0))
            live = d if full else d[:-1]              # the oldest bucket cannot reach further back
            if t and len(live):
                back = read("W_rec", live.reshape(-1, hidden)).view(len(live), batch, hidden)
                rec = back if full else torch.cat([back, back.new_zeros(1, batch, hidden)])
        d = torch.cat(d_u[::-1])                                         # (T·batch, hidden), time-major
        return {"W_in": d, "W_rec": d, "W_out": d_out}


@final
@register
@dataclass(frozen=True)
class RNNSpec(NetworkSpec):
    """A leaky rate RNN: ``model: {kind: rnn, hidden: 64, alpha: 0.5, activation: relu, readout: last}``."""

    sequential: ClassVar[bool] = True

    kind: Literal["rnn"] = spec_field("rnn", doc="network class: rnn")
    n_in: int = spec_field(8, doc="input features per time step", low=1)
    hidden: int = spec_field(64, doc="recurrent units", low=1)
    n_out: int = spec_field(10, doc="outputs (classes or regression targets)", low=1)
    alpha: float = spec_field(0.5, doc="leak α = dt/τ of a_t = (1-α) a_{t-1} + α u_t", low=0.0, high=1.0,
                              low_open=True)
    activation: Literal["relu", "tanh", "sigmoid"] = spec_field("relu", doc="f of h_t = f(a_t)")
    readout: Literal["last", "every"] = spec_field("last", doc="loss on the last step's output or on every step's")
    leak: Literal["preactivation", "rate"] = spec_field(
        "preactivation", doc="the leak acts on a_t (h_t = f(a_t); Bellec et al.) or on the rate h_t (Murray)")

    @property
    def dims(self) -> tuple[int, int]:
        return self.n_in, self.n_out

    def build(self, factory: CrossbarFactory | None, generator: torch.Generator) -> RNN:
        return RNN.build(self.n_in, self.hidden, self.n_out, self.alpha, self.activation, self.readout, factory,
                         generator, self.leak)

    def attach(self, chip: Chip) -> RNN:
        return RNN(self.n_in, self.hidden, self.n_out, self.alpha, self.activation, self.readout, chip, self.leak)
