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

import math
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


class LIFParameters(NamedTuple):
    """Leaky integrate-and-fire parameters (Gerstner & Kistler 2002, ch. 4; units in the names' docs).

    ``tau_m`` membrane time constant (ms), ``v_rest`` resting and ``v_reset`` reset potential (mV),
    ``v_th`` threshold (mV), ``t_ref`` refractory period (ms), ``r_m`` membrane resistance (MΩ, so
    that ``R I`` is in mV for a current in nA), ``dt`` time step (ms), ``theta`` the neurons' adaptive
    threshold offset (mV; a float or a tensor (n,)), ``slope`` of the surrogate derivative (1/mV).
    """

    tau_m: float = 20.0
    v_rest: float = -65.0
    v_reset: float = -65.0
    v_th: float = -52.0
    t_ref: float = 2.0
    r_m: float = 1.0
    dt: float = 1.0
    theta: Any = 0.0
    slope: float = 1.0


class LIFState(NamedTuple):
    """``v`` membrane potential (mV), ``refractory`` time left in the refractory period (ms), and of the
    last step ``u`` the potential before the reset (mV) and ``free`` (1 integrating, 0 refractory), which
    a backward walk needs; all (batch, n)."""

    v: torch.Tensor
    refractory: torch.Tensor
    u: torch.Tensor | None = None
    free: torch.Tensor | None = None


def lif_initial(batch: int, n: int, p: LIFParameters, like: torch.Tensor) -> LIFState:
    """At rest and not refractory."""
    v = like.new_full((batch, n), p.v_rest)
    return LIFState(v, like.new_zeros(batch, n))


_SPIKE: list = []


def spike_function():
    """``H(x)`` forward and the fast-sigmoid surrogate ``dH/dx ≈ 1 / (1 + k|x|)²`` backward (Zenke &
    Ganguli 2018, "SuperSpike", Neural Comput. 30(6)); called as ``spike(x, k)``. Built on first use."""
    if not _SPIKE:
        class Spike(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                ctx.save_for_backward(x)
                ctx.k = k
                return (x > 0).to(x.dtype)

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return grad * surrogate_derivative(x, ctx.k), None

        _SPIKE.append(Spike.apply)
    return _SPIKE[0]


def surrogate_derivative(x: torch.Tensor, k: float) -> torch.Tensor:
    """``σ'(x) = 1 / (1 + k|x|)²`` (x in mV above threshold, k in 1/mV)."""
    return 1.0 / (1.0 + k * x.abs()) ** 2


def lif_step(current: torch.Tensor, state: LIFState, p: LIFParameters) -> tuple[torch.Tensor, LIFState]:
    """One step of ``τ_m dv/dt = (v_rest - v) + R I``, integrated exactly for a current ``I`` (nA) held
    over the step (β = exp(-dt/τ_m))::

        u = v_rest + R I + (v - v_rest - R I) β      (not refractory; else u = v_reset)
        s = H(u - v_th - θ)                          (a spike; surrogate derivative backward)
        v' = v_reset where s else u;  refractory' = t_ref where s else max(refractory - dt, 0)

    The reset uses ``s`` detached (Zenke & Vogels 2021) and the refractory mask is not differentiated.
    A neuron driven by a constant ``I`` with ``R I > v_th - v_rest`` (and ``v_reset = v_rest``) fires at
    ``1 / (t_ref + τ_m ln(R I / (R I - (v_th - v_rest))))`` up to the step's resolution.

    A :class:`NeuronStep`: returns ``(spikes, new_state)``, spikes (batch, n) in {0, 1}.
    """
    beta = math.exp(-p.dt / p.tau_m)
    drive = p.v_rest + p.r_m * current
    free = (state.refractory <= 0.5 * p.dt).to(current.dtype)
    u = free * (drive + (state.v - drive) * beta) + (1 - free) * p.v_reset
    s = spike_function()(u - p.v_th - p.theta, p.slope)
    fired = s.detach()
    v = (1 - fired) * u + fired * p.v_reset
    refractory = torch.where(fired > 0, torch.full_like(u, p.t_ref),
                             (state.refractory - p.dt).clamp(min=0.0)).detach()
    return s, LIFState(v, refractory, u, free)
