"""Backpropagation through time on the chip (Werbos 1990, "Backpropagation through time: what it
does and how to do it", Proc. IEEE 78(10)), full or truncated (Williams & Peng 1990)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, final

from chiploop.lazy import torch

from chiploop.emulator import LayerSignal, Network, Trace
from chiploop.learning.backprop import FeedbackRule
from chiploop.learning.loss import Loss
from chiploop.learning.rule import weight_signals
from chiploop.specs import spec_field


@final
@dataclass(frozen=True)
class BPTT(FeedbackRule):
    """The recurrent network's own backward walk with ``W_recᵀ`` and ``W_outᵀ`` read on the chip at
    every step (docs/science.md §4.9)::

        g_t = f'(a_t) ⊙ (W_outᵀ δ_t + W_recᵀ α g_{t+1}) + (1 - α) g_{t+1}
        ΔW_rec = -lr Σ_t (α g_t)ᵀ h_{t-1},   ΔW_in = -lr Σ_t (α g_t)ᵀ x_t,   ΔW_out = -lr Σ_t δ_tᵀ h_t

    one rank-1 row per (time step, sample). ``truncate: k`` stops every error ``k`` steps after it
    entered (through the recurrent read and the leak alike); ``null`` is full BPTT, the exact gradient
    on an ideal chip.
    """

    networks: ClassVar[tuple[str, ...]] = ("rnn",)

    truncate: int | None = spec_field(None, doc="steps an error travels back before it is dropped; null = full",
                                      unit="steps", low=1)

    def feedback_read(self, network: Network, name: str, delta: torch.Tensor, state: Any) -> torch.Tensor:
        return network.chip.crossbars[name].backward(delta)

    def signals(self, network: Network, trace: Trace, batch, loss: Loss, state: Any
                ) -> tuple[list[LayerSignal], Any]:
        delta = loss.grad(trace.output, batch[1])
        deltas = network.backward(trace, delta, lambda name, d: self.feedback_read(network, name, d, state),
                                  horizon=self.truncate)
        return weight_signals(network, trace, deltas), state
