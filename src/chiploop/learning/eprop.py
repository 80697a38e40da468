"""E-prop (Bellec, Scherr, Subramoney, Hajek, Salaj, Legenstein & Maass 2020, "A solution to the
learning dilemma for recurrent networks of spiking neurons", Nat. Commun. 11:3625), for the leaky
rate RNN of :mod:`chiploop.emulator.networks.rnn`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, final

import torch

from chiploop.emulator import CrossbarRequest, LayerSignal, Network, Trace
from chiploop.learning.feedback import feedback_name
from chiploop.learning.loss import Loss
from chiploop.learning.rule import LearningRule
from chiploop.specs import spec_field


@final
@dataclass(frozen=True)
class EProp(LearningRule):
    """Eligibility traces times an online learning signal; ``W_rec`` is never read transposed.

    With ``h_{t-1}`` treated as a constant in the recurrent input, ``∂a_t/∂W_rec[i, j]`` follows the
    leak alone, so the trace is one vector per presynaptic unit (docs/science.md §4.10)::

        ε_t = (1 - α) ε_{t-1} + α h_{t-1}          (for W_in: x_t; for the bias b: 1)
        L_t = B e_t,   e_t = dL/dy_t               (B = W_outᵀ read on the chip, or fixed random)
        ΔW_rec = -lr Σ_t (f'(a_t) ⊙ L_t)ᵀ ε_t,      ΔW_out = -lr Σ_t e_tᵀ h_t

    so each step with a loss is one rank-1 update ``(x = ε_t, d = f'(a_t) ⊙ L_t)``. With symmetric
    feedback this is exactly the gradient of the loss through the network in which ``h_{t-1}`` is
    detached in ``W_rec h_{t-1}`` (Bellec et al.'s own check). Random feedback ``B`` (hidden x out)
    has entries ``N(0, 1/hidden)``, drawn once, held digitally or on a read-only crossbar.
    """

    deterministic: ClassVar[bool] = True
    networks: ClassVar[tuple[str, ...]] = ("rnn",)

    feedback: Literal["symmetric", "random"] = spec_field(
        "symmetric", doc="learning signal through W_outᵀ read on the chip, or through a fixed random B")
    on_chip: bool = spec_field(False, doc="random B on a read-only crossbar of the chip's devices (else digital)")

    def crossbars(self, network: Network, generator: torch.Generator) -> list[CrossbarRequest]:
        if self.feedback == "symmetric":
            return []
        n_out, hidden = network.chip.crossbars["W_out"].shape
        B = torch.randn(n_out, hidden, generator=generator) / hidden ** 0.5
        return [CrossbarRequest(feedback_name("W_out"), "feedback", B,
                                technology="chip" if self.on_chip else "digital")]

    def signals(self, network: Network, trace: Trace, batch, loss: Loss, state: Any
                ) -> tuple[list[LayerSignal], Any]:
        a = trace.states["a"]                                              # (T, batch, hidden)
        steps, n, hidden = a.shape
        alpha = network.alpha
        e = network.output_errors(trace, loss.grad(trace.output, batch[1]))  # rows of W_out's inputs
        reader = network.chip.crossbars["W_out" if self.feedback == "symmetric" else feedback_name("W_out")]
        learning = reader.backward(e)                                      # L_t: (batch or T·batch, hidden)
        with_loss = [steps - 1] if network.readout == "last" else list(range(steps))
        x_in = trace.inputs["W_in"].view(steps, n, -1)
        x_rec = trace.inputs["W_rec"].view(steps, n, hidden)
        eps_in, eps_rec = torch.zeros_like(x_in[0]), torch.zeros_like(x_rec[0])
        eps_b, rows_in, rows_rec, scales = 0.0, [], [], []
        for t in range(steps):
            eps_in = (1 - alpha) * eps_in + alpha * x_in[t]
            eps_rec = (1 - alpha) * eps_rec + alpha * x_rec[t]
            eps_b = (1 - alpha) * eps_b + alpha
            if t in with_loss:
                rows_in.append(eps_in)
                rows_rec.append(eps_rec)
                scales.append(eps_b)
        fp = network.f_prime("W_rec", a[with_loss])                          # (steps with loss, batch, hidden)
        d = fp * learning.view(len(with_loss), n, hidden)
        bias_grad = (torch.tensor(scales, dtype=d.dtype)[:, None, None] * d).sum((0, 1))
        d = d.reshape(-1, hidden)
        return [LayerSignal("W_in", torch.cat(rows_in), d, bias_grad=None),
                LayerSignal("W_rec", torch.cat(rows_rec), d, bias_grad=bias_grad),
                LayerSignal("W_out", trace.inputs["W_out"], e)], state
