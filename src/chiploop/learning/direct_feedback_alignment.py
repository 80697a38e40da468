"""Direct feedback alignment (Nøkland 2016, "Direct feedback alignment provides learning in deep
neural networks", NeurIPS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from chiploop.emulator import MLP, LayerSignal, Trace
from chiploop.learning.feedback import random_feedback
from chiploop.learning.loss import Loss
from chiploop.specs import Spec, spec_field


@dataclass(frozen=True)
class DirectFeedbackAlignment(Spec):
    """Every hidden layer gets the output error through its own fixed random matrix::

        e = δ_L = dL/da_L,    δ_l = (B_l e) ⊙ f'(a_l)  for l < L,    ΔW_l = -lr δ_l^T x̂_{l-1}

    ``B_l`` (out_l x n_out; stored as its transpose, read with ``backward``) is drawn once. With
    one hidden layer and ``B_1 = W_2^T`` this is backprop.
    """

    deterministic: ClassVar[bool] = True

    feedback: Literal["digital", "analog"] = spec_field(
        "digital", doc="where B lives: digital periphery, or a read-only crossbar of the chip's devices")

    def init(self, model: MLP, generator: torch.Generator) -> Any:
        n_out = model.sizes[-1]
        return random_feedback(model, [(n_out, width) for width in model.sizes[1:-1]], generator, self.feedback)

    def signals(self, model: MLP, trace: Trace, batch, loss: Loss, state: Any) -> tuple[list[LayerSignal], Any]:
        e = loss.grad(trace.output, batch[1])
        last = len(model.names) - 1
        out = [LayerSignal(model.names[l], trace.inputs[l], state[l].backward(e) * model.f_prime(trace.preacts[l]))
               for l in range(last)]
        out.append(LayerSignal(model.names[last], trace.inputs[last], e))
        return out, state
