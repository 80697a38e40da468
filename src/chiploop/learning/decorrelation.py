"""Decorrelation layers before every weight layer (Ahmad, Schrader & van Gerven 2023, "Constrained
parameter inference as a principle for learning", TMLR; Ahmad 2024, "Correlations are ruining
your gradient descent"; Dalm, van Gerven & Ahmad 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, final

from chiploop.lazy import torch

from chiploop.devices.spec import DeviceSpec
from chiploop.emulator import CrossbarRequest, LayerSignal, Network, Trace, make_crossbar
from chiploop.learning.loss import Loss
from chiploop.learning.rule import Transform
from chiploop.specs import Spec, spec_field


@dataclass(frozen=True)
class DecorrelationSpec(Spec):
    """How every layer's input is decorrelated: ``x̂ = R x``, R learned locally."""

    eta: float = spec_field(1e-3, doc="learning rate of R", low=0.0, high=10.0, low_open=True)
    kappa: float = spec_field(0.5, doc="weight of the unit-variance term against decorrelation",
                              low=0.0, high=1.0)
    on_chip: bool = spec_field(False, doc="R on its own crossbar (true) or in digital periphery (false)")
    device: DeviceSpec | None = spec_field(None, doc="device of the R crossbars when on_chip (default: "
                                           "the chip's own)")


def decorrelator_name(weight: str) -> str:
    """The decorrelator that reads weight crossbar ``weight``'s input first."""
    return f"decorr/{weight}"


@final
@dataclass(frozen=True)
class Decorrelate(Transform):
    """A decorrelator ``R`` before every weight crossbar: the chip reads ``x̂ = R h`` first (it is a
    ``decorrelator`` crossbar linked to the weight; the network does not know), and::

        C = <x̂ x̂^T>_batch
        R <- R - eta [(1 - kappa) offdiag(C) + kappa diag(<x̂²> - 1)] R  =:  R - eta M R

    (the variance term is left out for units silent over the whole batch).

    R starts at the identity. The update ``M R = sum_j M[:, j] R[j, :]`` is applied as a pulsed
    update of R's crossbar with rows ``R[j, :]`` read by R's own transposed read of one-hot
    vectors (``R.backward(I)``), so an on-chip R learns through the same three verbs as W. The
    rule before this transform sees the decorrelated inputs ``x̂`` in the trace; its signals pass
    through, followed by one signal per R.
    """

    spec: DecorrelationSpec

    def crossbars(self, network: Network, generator: torch.Generator) -> list[CrossbarRequest]:
        out = []
        for weight in network.weight_names:
            n_in = network.chip.crossbars[weight].shape[1]
            name, device = decorrelator_name(weight), self.spec.device
            if not self.spec.on_chip:
                where = {"technology": "digital"}
            elif device is None:
                where = {"technology": "chip"}
            else:
                where = {"technology": "device",
                         "make": lambda n, o, i, d=device: make_crossbar(d, o, i, d.is_float, n)}
            out.append(CrossbarRequest(name, "decorrelator", torch.eye(n_in), feeds=weight, **where))
        return out

    def signal(self, network: Network, weight: str, x_hat: torch.Tensor) -> LayerSignal:
        """The update of the decorrelator before ``weight``: ``ΔR = -eta M R`` as ``(x, d) = (R.backward(I), M^T)``."""
        n = x_hat.shape[1]
        C = x_hat.T @ x_hat / len(x_hat)
        second_moment = torch.diagonal(C)
        # units silent over the batch (dead ReLUs, blank pixels) get no variance push: otherwise their
        # rows of R grow without bound and blow up the input the moment the unit fires again
        variance_push = torch.where(second_moment > 0, second_moment - 1, torch.zeros_like(second_moment))
        M = (1 - self.spec.kappa) * (C - torch.diag(second_moment)) + self.spec.kappa * torch.diag(variance_push)
        name = network.chip.decorrelators[weight]
        rows = network.chip.crossbars[name].backward(torch.eye(n))  # (n, n): row j is R[j, :] as the chip reads it
        return LayerSignal(name, rows, M.T, lr=self.spec.eta)

    def update(self, network: Network, trace: Trace, batch, loss: Loss, signals: list[LayerSignal], state: Any
               ) -> tuple[list[LayerSignal], Any]:
        extra = [self.signal(network, w, trace.inputs[w]) for w in network.weight_names if w in network.chip.decorrelators]
        return signals + extra, state


def decorrelate(spec: DecorrelationSpec | None = None, **options: Any) -> Decorrelate:
    """The decorrelation transform; options as in :class:`DecorrelationSpec`. Use it in
    ``chain(rule, decorrelate(...))``."""
    return Decorrelate(spec or DecorrelationSpec(**options))


def mean_abs_offdiag_correlation(x: torch.Tensor, centered: bool = False) -> float:
    """Mean |off-diagonal correlation| of the columns of ``x`` (batch, n), constant-zero columns left out.

    ``centered=False`` normalises the second moments the rule acts on, ``C_ij / sqrt(C_ii C_jj)``
    with ``C = <x x^T>``; ``centered=True`` gives Pearson correlations (means removed first).
    """
    x = x[:, x.abs().amax(0) > 1e-6]
    if centered:
        x = x[:, x.std(0) > 1e-6]
        x = x - x.mean(0)
    C = x.T @ x / len(x)
    d = torch.diagonal(C).sqrt()
    corr = C / (d[:, None] * d[None, :])
    n = corr.shape[0]
    return (corr.abs().sum() - torch.diagonal(corr).abs().sum()).item() / (n * (n - 1))
