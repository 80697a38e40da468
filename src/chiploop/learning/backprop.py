"""Backpropagation through the crossbars' transposed reads (Rumelhart, Hinton & Williams 1986)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from chiploop.emulator.chip import MLP, LayerSignal, Trace
from chiploop.learning.loss import Loss
from chiploop.specs import Spec


@dataclass(frozen=True)
class Backprop(Spec):
    """Error backpropagation with the transposed read done on the chip::

        δ_L = dL/da_L
        δ_l = backward_{l+1}(δ_{l+1}) ⊙ f'(a_l),   backward_{l+1}(δ) = W_{l+1}^T δ
        ΔW_l = -lr δ_l^T x̂_{l-1}

    On an :class:`IdealCrossbar` this is exact backprop (the reference); on an analog chip the
    transposed read carries read noise and DAC/ADC limits. Rules that replace ``W^T`` by other
    feedback override :meth:`feedback_read`.
    """

    deterministic: ClassVar[bool] = True  # no draws of its own: the update probe runs it once per state

    def init(self, model: MLP, generator: torch.Generator) -> Any:
        return None

    def feedback_read(self, model: MLP, l: int, delta: torch.Tensor, state: Any) -> torch.Tensor:
        """The error sent from layer ``l`` to layer ``l-1``: here ``W_l^T δ_l`` read on the chip."""
        return model.crossbar(l).backward(delta)

    def signals(self, model: MLP, trace: Trace, batch, loss: Loss, state: Any
                ) -> tuple[list[LayerSignal], Any]:
        delta = loss.grad(trace.output, batch[1])
        out: list[LayerSignal] = []
        for l in reversed(range(len(trace.inputs))):
            out.append(LayerSignal(model.names[l], trace.inputs[l], delta))
            if l:
                delta = self.feedback_read(model, l, delta, state) * model.f_prime(trace.preacts[l - 1])
        return out[::-1], state
