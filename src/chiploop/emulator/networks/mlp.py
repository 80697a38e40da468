"""The multilayer perceptron, the first final :class:`~chiploop.emulator.networks.base.Network`.

Layer ``l`` (docs/science.md §5.1), with weight crossbar ``layer{l}``::

    x̂_{l-1} = R_l h_{l-1}            (the chip's decorrelator of layer l, if it has one)
    a_l = W_l x̂_{l-1} + b_l          (analog read of crossbar l, digital bias b_l)
    h_l = f(a_l)                      (digital activation; the last layer is linear: logits)

Backward walk (what backprop, feedback alignment and sign symmetry share)::

    d_L = δ_out,    d_{l-1} = read(layer_l, d_l) ⊙ f'(a_{l-1})

The transposed read goes through the weight crossbar only: an error is not sent back through a
decorrelator (R is periphery that the weight rule does not learn through; the update probe's
autograd ground truth does include it, so it shows what that costs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, final

from chiploop.lazy import torch

from chiploop.emulator.chip import Chip, CrossbarFactory
from chiploop.emulator.networks.base import Network, NetworkSpec, Perturbation, Trace, TransposedRead, register
from chiploop.emulator.periphery import ACTIVATIONS
from chiploop.specs import SpecError, spec_field


def init_weights(sizes: Sequence[int], generator: torch.Generator, init: str = "torch"
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The layers' ``(W_l, b_l)`` from ``generator``::

        torch:   W_l, b_l ~ U(-1/sqrt(in), 1/sqrt(in))      (as torch.nn.Linear draws them)
        kaiming: W_l ~ U(-sqrt(6/in), sqrt(6/in)),  b_l = 0  (He et al. 2015, "Delving deep into
                 rectifiers": Var W = 2/in keeps a ReLU layer's second moment, E a_l² = E a_{l-1}²)

    ``torch``'s Var W = 1/(3 in) shrinks a ReLU layer's second moment six-fold, so a deep ReLU net
    starts with vanishing outputs and gradients (the slow start of seed 004, docs/results.md).
    """
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / math.sqrt(n_in) if init == "torch" else math.sqrt(6 / n_in)
        W = (torch.rand(n_out, n_in, generator=generator) * 2 - 1) * bound
        if init == "torch":
            b = (torch.rand(n_out, generator=generator) * 2 - 1) * bound
        else:
            b = torch.zeros(n_out)
        params.append((W, b))
    return params


@final
@dataclass(eq=False)
class MLP(Network):
    """A multilayer perceptron whose weight layers are the crossbars ``layer0``, ``layer1``, ... of ``chip``."""

    kind: ClassVar[str] = "mlp"

    sizes: tuple[int, ...]
    activation: str
    chip: Chip

    @classmethod
    def build(cls, sizes: Sequence[int], activation: str, factory: CrossbarFactory | None,
              generator: torch.Generator, init: str = "torch") -> MLP:
        """A new chip with one crossbar per layer (``factory(name, out, in)``, default exact float),
        programmed with seeded weights (``init`` as in :func:`init_weights`)."""
        chip = Chip(factory=factory)
        for l, (W, b) in enumerate(init_weights(sizes, generator, init)):
            chip.make(f"layer{l}", W, "weight", bias=b)
        return cls(tuple(sizes), activation, chip)

    @property
    def weight_names(self) -> tuple[str, ...]:
        return tuple(f"layer{l}" for l in range(len(self.sizes) - 1))

    def crossbar(self, l: int):
        """Layer ``l``'s weight crossbar."""
        return self.chip.crossbars[f"layer{l}"]

    def f_prime(self, name: str, a: torch.Tensor) -> torch.Tensor:
        if name == self.weight_names[-1]:
            return torch.ones_like(a)
        return ACTIVATIONS[self.activation].f_prime(a)

    def unroll(self, x: torch.Tensor, perturb: Perturbation | None = None) -> Trace:
        """One time step: ``x`` (batch, in) through every layer; ``perturb(name, 0, x̂)`` may add a
        term to layer ``name``'s pre-activation."""
        inputs, preacts = {}, {}
        f = ACTIVATIONS[self.activation].f
        h = x
        names = self.weight_names
        for name in names:
            x_hat, y = self.chip.read(name, h)
            a = y + self.chip.biases[name]
            if perturb is not None:
                extra = perturb(name, 0, x_hat)
                if extra is not None:
                    a = a + extra
            inputs[name], preacts[name] = x_hat, a
            h = a if name == names[-1] else f(a)
        return Trace(inputs, preacts, h)

    def backward(self, trace: Trace, delta: torch.Tensor, read: TransposedRead) -> dict[str, torch.Tensor]:
        f_prime = ACTIVATIONS[self.activation].f_prime
        names = self.weight_names
        out = {}
        for l in reversed(range(len(names))):
            out[names[l]] = delta
            if l:
                delta = read(names[l], delta) * f_prime(trace.preacts[names[l - 1]])
        return out


@final
@register
@dataclass(frozen=True)
class MLPSpec(NetworkSpec):
    """An MLP: layer widths (input first) and the hidden activation; the output layer is linear."""

    kind: Literal["mlp"] = spec_field("mlp", doc="network class: mlp")
    sizes: tuple[int, ...] = spec_field((64, 64, 10), doc="layer widths, input first")
    activation: Literal["relu", "tanh", "sigmoid"] = spec_field("relu", doc="hidden activation f")
    init: Literal["torch", "kaiming"] = spec_field(
        "torch", doc="weight init: torch (U(±1/sqrt(in)), as torch.nn.Linear) or kaiming (He uniform, Var W = 2/in, b = 0)")

    def check(self) -> None:
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise SpecError("sizes", list(self.sizes), "at least two positive widths, e.g. [64, 64, 10]")

    @property
    def dims(self) -> tuple[int, int]:
        return self.sizes[0], self.sizes[-1]

    def build(self, factory: CrossbarFactory | None, generator: torch.Generator) -> MLP:
        return MLP.build(self.sizes, self.activation, factory, generator, self.init)

    def attach(self, chip: Chip) -> MLP:
        return MLP(self.sizes, self.activation, chip)
