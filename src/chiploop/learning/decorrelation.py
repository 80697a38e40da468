"""Decorrelation layers before every weight layer (Ahmad, Schrader & van Gerven 2023, "Constrained
parameter inference as a principle for learning", TMLR; Ahmad 2024, "Correlations are ruining
your gradient descent"; Dalm, van Gerven & Ahmad 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, final

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
    variance: Literal["unit", "mean"] = spec_field(
        "unit", doc="unit: push every unit's <x̂_i²> to target (diag term); mean: push only their mean "
        "(a scalar times I, the authors' first 'full' update), which rescales R as a whole")
    target: float = spec_field(1.0, doc="the second moment <x̂²> the variance term aims at",
                               low=0.0, high=100.0, low_open=True)
    normalise: bool = spec_field(False, doc="divide the decorrelation term by n - 1 (n inputs), so its "
                                 "step does not grow with the layer's width (the authors' 'normalized' method)")
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

        C = <x̂ x̂^T>_batch,   m_i = C_ii = <x̂_i²>,   n = len(x̂)
        R <- R - eta [(1 - kappa) offdiag(C) / s + kappa V] R  =:  R - eta M R
        variance unit:  V = diag(m - t)        (left out for units silent over the whole batch)
        variance mean:  V = (mean_i m_i - t) I
        s = n - 1 if normalise else 1,         t = target (1 by default)

    The defaults (unit, t = 1, s = 1) are the update of Ahmad 2024, eq. for decorrelation with the
    variance constraint. ``normalise`` and ``mean`` follow the authors' code (artcogsys/decorbp,
    the 'normalized' and the first 'full' update). Why they matter (docs/results.md, seed 004):
    for un-centred ReLU inputs ``offdiag(C)`` has an eigenvalue ≈ (n - 1) <h>² along the mean
    direction, so the explicit step is stable only for ``eta (1-kappa) (n-1) <h>² < 2``;
    dividing by ``n - 1`` removes the width from that bound and lets eta be large enough to track
    the weights. A per-unit variance term whitens, amplifying directions of small variance (rarely
    active units) without bound; the scalar term only sets R's overall gain. ``target`` sets the
    scale of x̂, and with it the size of a weight update ``lr δ x̂ᵀ`` relative to W.

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
        offdiag = C - torch.diag(second_moment)
        if self.spec.normalise and n > 1:
            offdiag = offdiag / (n - 1)
        if self.spec.variance == "mean":
            variance = (second_moment.mean() - self.spec.target) * torch.eye(n, dtype=C.dtype)
        else:
            # units silent over the batch (dead ReLUs, blank pixels) get no variance push: otherwise their
            # rows of R grow without bound and blow up the input the moment the unit fires again
            push = torch.where(second_moment > 0, second_moment - self.spec.target, torch.zeros_like(second_moment))
            variance = torch.diag(push)
        M = (1 - self.spec.kappa) * offdiag + self.spec.kappa * variance
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
