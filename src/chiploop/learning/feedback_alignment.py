"""Feedback alignment (Lillicrap, Cownden, Tweed & Akerman 2016, Nat. Commun. 7:13276)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, final

from chiploop.lazy import torch

from chiploop.emulator import CrossbarRequest, Network
from chiploop.learning.backprop import FeedbackRule
from chiploop.learning.feedback import feedback_name, random_feedback
from chiploop.specs import spec_field


@final
@dataclass(frozen=True)
class FeedbackAlignment(FeedbackRule):
    """Backprop with a fixed random ``B_l`` in place of ``W_l^T``::

        δ_l = (B_{l+1}^T δ_{l+1}) ⊙ f'(a_l),     ΔW_l = -lr δ_l^T x̂_{l-1}

    ``B_l`` has ``W_l``'s shape and is drawn once from the run's generator (one per weight
    crossbar, the input layer's too, though the walk never reads it). The forward weights come to
    align with ``B`` during learning. With ``B_l = W_l`` this is backprop.
    """

    feedback: Literal["digital", "analog"] = spec_field(
        "digital", doc="where B lives: digital periphery, or a read-only crossbar of the chip's devices")

    def crossbars(self, network: Network, generator: torch.Generator) -> list[CrossbarRequest]:
        shapes = [(name, network.chip.crossbars[name].shape) for name in network.weight_names]
        return random_feedback(shapes, generator, self.feedback)

    def feedback_read(self, network: Network, name: str, delta: torch.Tensor, state: Any) -> torch.Tensor:
        return network.chip.crossbars[feedback_name(name)].backward(delta)
