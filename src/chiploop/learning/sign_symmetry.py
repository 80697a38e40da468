"""Sign-concordant feedback (Liao, Leibo & Poggio 2016, "How important is weight symmetry in
backpropagation?", AAAI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, final

from chiploop.lazy import torch

from chiploop.emulator import Network
from chiploop.learning.backprop import FeedbackRule
from chiploop.specs import spec_field


@final
@dataclass(frozen=True)
class SignSymmetry(FeedbackRule):
    """Backprop whose feedback keeps only the signs of the forward weights::

        δ_l = (B_{l+1}^T δ_{l+1}) ⊙ f'(a_l),   B = s · sign(Ŵ)

    ``Ŵ`` is read from the chip (``read_weights``: noisy forward reads on an analog chip) every
    ``refresh_every`` steps; ``s`` is 1 (``magnitude: unit``) or the mean ``|Ŵ|`` of the layer
    (``mean_abs``), which keeps the feedback on the scale of backprop's.
    """

    magnitude: Literal["unit", "mean_abs"] = spec_field("mean_abs", doc="scale s of the sign feedback")
    refresh_every: int = spec_field(1, doc="steps between reads of the forward weights", unit="steps", low=1)

    def init(self, network: Network, generator: torch.Generator) -> Any:
        return {"step": 0, "B": {}}

    def feedback_read(self, network: Network, name: str, delta: torch.Tensor, state: Any) -> torch.Tensor:
        if name not in state["B"] or state["step"] % self.refresh_every == 0:
            W = network.chip.crossbars[name].read_weights()
            scale = W.abs().mean() if self.magnitude == "mean_abs" else 1.0
            state["B"][name] = torch.sign(W) * scale
        return delta @ state["B"][name].to(delta.dtype)

    def signals(self, network, trace, batch, loss, state):
        signals, state = super().signals(network, trace, batch, loss, state)
        state["step"] += 1
        return signals, state
