"""The digital periphery beside the crossbars, as pure functions (in the style of norse).

**Activations** are pairs ``(f, f')`` acting elementwise on pre-activations ``a`` (any shape):
rules that backpropagate an error multiply by ``f'(a)`` (docs/science.md §4), networks apply ``f``.

**Neuron models** live here too, as pure step functions with explicit parameters and state::

    output, state = step(input, state, parameters)

``parameters`` and ``state`` are NamedTuples of tensors, nothing is kept between calls, and
units are given in the docstring (ms, mV). The spiking network adds its leaky integrate-and-fire
neuron in this form; a network shell only threads the state through its time steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from chiploop.lazy import torch


class Activation(NamedTuple):
    """An elementwise nonlinearity ``f`` and its derivative ``f'`` (both of the pre-activation)."""

    f: Callable[[torch.Tensor], torch.Tensor]
    f_prime: Callable[[torch.Tensor], torch.Tensor]


# the functions are wrapped (not ``torch.relu`` itself) so that this table does not load torch
def _relu(a: torch.Tensor) -> torch.Tensor:
    return torch.relu(a)


def _tanh(a: torch.Tensor) -> torch.Tensor:
    return torch.tanh(a)


def _sigmoid(a: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(a)


def _relu_grad(a: torch.Tensor) -> torch.Tensor:
    return (a > 0).to(a.dtype)


def _tanh_grad(a: torch.Tensor) -> torch.Tensor:
    return 1 - torch.tanh(a) ** 2


def _sigmoid_grad(a: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s * (1 - s)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(_relu, _relu_grad),             # f(a) = max(a, 0),        f' = 1[a > 0]
    "tanh": Activation(_tanh, _tanh_grad),             # f(a) = tanh a,           f' = 1 - tanh² a
    "sigmoid": Activation(_sigmoid, _sigmoid_grad),  # f(a) = 1 / (1 + e^-a),  f' = f (1 - f)
}


class NeuronStep(Protocol):
    """A neuron model's update over one time step: pure, with its state passed in and out."""

    def __call__(self, input: torch.Tensor, state: Any, parameters: Any) -> tuple[torch.Tensor, Any]:
        """``(output, new_state)`` for the synaptic ``input`` (batch, n) of this step."""
