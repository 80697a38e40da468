"""Backpropagation through the crossbars' transposed reads (Rumelhart, Hinton & Williams 1986), and
the family of rules that walk the network's graph backwards with another transposed read."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, final

from chiploop.lazy import torch

from chiploop.emulator import LayerSignal, Network, Trace
from chiploop.learning.loss import Loss
from chiploop.learning.rule import LearningRule, weight_signals


class FeedbackRule(LearningRule):
    """Errors sent back through the network's own graph (``network.backward``), each transposed
    read done by :meth:`feedback_read`; every weight crossbar gets ``(x̂, d)`` from the walk."""

    deterministic: ClassVar[bool] = True

    @abc.abstractmethod
    def feedback_read(self, network: Network, name: str, delta: torch.Tensor, state: Any) -> torch.Tensor:
        """The error sent back through weight crossbar ``name`` (``W^T δ`` for backprop)."""

    def signals(self, network: Network, trace: Trace, batch, loss: Loss, state: Any
                ) -> tuple[list[LayerSignal], Any]:
        delta = loss.grad(trace.output, batch[1])
        deltas = network.backward(trace, delta, lambda name, d: self.feedback_read(network, name, d, state))
        return weight_signals(network, trace, deltas), state


@final
@dataclass(frozen=True)
class Backprop(FeedbackRule):
    """Error backpropagation with the transposed read done on the chip::

        δ_L = dL/da_L
        δ_l = backward_{l+1}(δ_{l+1}) ⊙ f'(a_l),   backward_{l+1}(δ) = W_{l+1}^T δ
        ΔW_l = -lr δ_l^T x̂_{l-1}

    On an :class:`~chiploop.emulator.IdealCrossbar` this is exact backprop (the reference); on an
    analog chip the transposed read carries read noise and DAC/ADC limits.
    """

    def feedback_read(self, network: Network, name: str, delta: torch.Tensor, state: Any) -> torch.Tensor:
        return network.chip.crossbars[name].backward(delta)
