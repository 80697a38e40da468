"""Direct feedback alignment (Nøkland 2016, "Direct feedback alignment provides learning in deep
neural networks", NeurIPS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, final

from chiploop.lazy import torch

from chiploop.emulator import CrossbarRequest, LayerSignal, Network, Trace
from chiploop.learning.feedback import feedback_name, random_feedback
from chiploop.learning.loss import Loss
from chiploop.learning.rule import LearningRule
from chiploop.specs import spec_field


@final
@dataclass(frozen=True)
class DirectFeedbackAlignment(LearningRule):
    """Every hidden layer gets the output error through its own fixed random matrix::

        e = δ_L = dL/da_L,    δ_l = (B_l e) ⊙ f'(a_l)  for l < L,    ΔW_l = -lr δ_l^T x̂_{l-1}

    ``B_l`` (n_out x out_l; on the chip as ``feedback/layer{l}``, read with ``backward``) is drawn
    once. With one hidden layer and ``B_1 = W_2`` this is backprop. The last weight crossbar is the
    output layer (a layer chain: MLPs).
    """

    deterministic: ClassVar[bool] = True
    networks: ClassVar[tuple[str, ...]] = ("mlp",)

    feedback: Literal["digital", "analog"] = spec_field(
        "digital", doc="where B lives: digital periphery, or a read-only crossbar of the chip's devices")

    def crossbars(self, network: Network, generator: torch.Generator) -> list[CrossbarRequest]:
        *hidden, last = network.weight_names
        n_out = network.chip.crossbars[last].shape[0]
        shapes = [(name, (n_out, network.chip.crossbars[name].shape[0])) for name in hidden]
        return random_feedback(shapes, generator, self.feedback)

    def signals(self, network: Network, trace: Trace, batch, loss: Loss, state: Any
                ) -> tuple[list[LayerSignal], Any]:
        e = loss.grad(trace.output, batch[1])
        *hidden, last = network.weight_names
        out = [LayerSignal(name, trace.inputs[name], network.chip.crossbars[feedback_name(name)].backward(e)
                           * network.f_prime(name, trace.preacts[name])) for name in hidden]
        out.append(LayerSignal(last, trace.inputs[last], e))
        return out, state
