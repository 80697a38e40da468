"""The one ground truth: autograd through ``network.unroll`` on the chip's digital shadow.

The shadow (:meth:`~chiploop.emulator.Chip.shadow`) holds every crossbar's exact weights as float
tensors and reads them exactly, so unrolling the network on it is a plain differentiable float
network, whatever the architecture. The parameters are the weight crossbars' matrices and their
digital biases, in graph order::

    θ = (W_a, b_a, W_b, b_b, ...)      for the weight crossbars a, b, ... (b only where there is a bias)

Decorrelators and feedback matrices are part of the shadow but not of θ: the loss is not trained
through them. The update probe takes its true gradient ``g = ∂L/∂W`` from :func:`true_gradient`,
the curvature its Hessian-vector products from :func:`shadow_loss`; neither has a forward or
backward pass of its own.
"""

from __future__ import annotations

from chiploop.lazy import torch

from chiploop.emulator import IdealCrossbar, Network
from chiploop.learning.loss import Loss


def parameter_names(network: Network) -> list[tuple[str, str]]:
    """``[(crossbar, "W"), (crossbar, "b"), ...]``: the order of θ."""
    out = []
    for name in network.weight_names:
        out.append((name, "W"))
        if name in network.chip.biases:
            out.append((name, "b"))
    return out


def shadow_parameters(network: Network, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """θ: fresh ``dtype`` (default float64) copies of the chip's exact weights and biases."""
    dtype = torch.float64 if dtype is None else dtype
    weights = {name: network.chip.crossbars[name].weights() for name in network.weight_names}
    return [(weights[name] if part == "W" else network.chip.biases[name]).detach().to(dtype).clone()
            for name, part in parameter_names(network)]


def with_parameters(network: Network, params: list[torch.Tensor]) -> Network:
    """The network on its shadow (in ``params``' dtype) with θ replaced by ``params`` (used as they are,
    so gradients flow back to them)."""
    names = parameter_names(network)
    if len(params) != len(names):
        raise ValueError(f"expected {len(names)} parameters ({', '.join(f'{n}.{p}' for n, p in names)}), "
                         f"got {len(params)}")
    chip = network.chip.shadow(params[0].dtype)
    for (name, part), p in zip(names, params):
        if part == "W":
            chip.crossbars[name] = IdealCrossbar(p)
        else:
            chip.biases[name] = p
    return network.on(chip)


def _target(y: torch.Tensor, loss: Loss, dtype: torch.dtype) -> torch.Tensor:
    return y.long() if loss.kind == "cross_entropy" else y.to(dtype)


def shadow_output(params: list[torch.Tensor], network: Network, x: torch.Tensor) -> torch.Tensor:
    """The shadow network's output for parameters θ; differentiable."""
    return with_parameters(network, params).unroll(x.to(params[0].dtype)).output


def shadow_loss(params: list[torch.Tensor], network: Network, x: torch.Tensor, y: torch.Tensor,
                loss: Loss) -> torch.Tensor:
    """The training loss ``L(θ)`` of the shadow network on ``(x, y)``: a differentiable scalar."""
    return loss(shadow_output(params, network, x), _target(y, loss, params[0].dtype))


def true_gradient(network: Network, batch: tuple[torch.Tensor, torch.Tensor], loss: Loss,
                  dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """``g = ∂L/∂W`` of every weight crossbar at the chip's exact weights, by autograd on the shadow."""
    params = [p.requires_grad_(True) for p in shadow_parameters(network, dtype)]
    with torch.enable_grad():
        value = shadow_loss(params, network, batch[0], batch[1], loss)
        grads = torch.autograd.grad(value, params, allow_unused=True)
    return {name: (torch.zeros_like(p) if g is None else g)
            for (name, part), p, g in zip(parameter_names(network), params, grads) if part == "W"}
