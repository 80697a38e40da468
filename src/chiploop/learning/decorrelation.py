"""Decorrelation layers before every weight layer (Ahmad, Schrader & van Gerven 2023, "Constrained
parameter inference as a principle for learning", TMLR; Ahmad 2024, "Correlations are ruining
your gradient descent"; Dalm, van Gerven & Ahmad 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from chiploop.devices.spec import DeviceSpec
from chiploop.emulator import MLP, LayerSignal, Trace, make_crossbar
from chiploop.learning.loss import Loss
from chiploop.learning.rule import LearningRule
from chiploop.specs import Spec, spec_field

DECORRELATOR_INDEX = 200  # factory index of the first on-chip R (distinct device draws)


@dataclass(frozen=True)
class DecorrelationSpec(Spec):
    """How every layer's input is decorrelated: ``x̂ = R x``, R learned locally."""

    eta: float = spec_field(1e-3, doc="learning rate of R", low=0.0, high=10.0, low_open=True)
    kappa: float = spec_field(0.5, doc="weight of the unit-variance term against decorrelation",
                              low=0.0, high=1.0)
    on_chip: bool = spec_field(False, doc="R on its own crossbar (true) or in digital periphery (false)")
    device: DeviceSpec | None = spec_field(None, doc="device of the R crossbars when on_chip (default: "
                                           "the chip's own)")


@dataclass(frozen=True)
class Decorrelated:
    """Wraps a rule: the chip reads ``x̂_{l-1} = R_l h_{l-1}`` before every weight layer, and::

        C = <x̂ x̂^T>_batch
        R <- R - eta [(1 - kappa) offdiag(C) + kappa diag(<x̂²> - 1)] R  =:  R - eta M R

    (the variance term is left out for units silent over the whole batch).

    R starts at the identity. The update ``M R = sum_j M[:, j] R[j, :]`` is applied as a pulsed
    update of R's crossbar with rows ``R[j, :]`` read by R's own transposed read of one-hot
    vectors (``R.backward(I)``), so an on-chip R learns through the same three verbs as W. The
    wrapped rule sees the decorrelated inputs ``x̂`` in the trace.
    """

    rule: LearningRule
    spec: DecorrelationSpec

    @property
    def deterministic(self) -> bool:
        return getattr(self.rule, "deterministic", False)

    def init(self, model: MLP, generator: torch.Generator) -> Any:
        chip = model.chip
        for l, n_in in enumerate(model.sizes[:-1]):
            if self.spec.on_chip:
                device = self.spec.device
                xb = (chip.factory(n_in, n_in, DECORRELATOR_INDEX + l) if device is None
                      else make_crossbar(device, n_in, n_in, device.is_float, DECORRELATOR_INDEX + l))
            else:
                xb = make_crossbar(None, n_in, n_in, ideal=True)
            xb.program(torch.eye(n_in))
            chip.crossbars[f"decorr{l}"] = xb
        return self.rule.init(model, generator)

    def decorrelation_signal(self, model: MLP, l: int, x_hat: torch.Tensor) -> LayerSignal:
        """R_l's update ``ΔR = -eta M R`` as ``(x, d) = (R.backward(I), M^T)``."""
        n = x_hat.shape[1]
        C = x_hat.T @ x_hat / len(x_hat)
        second_moment = torch.diagonal(C)
        # units silent over the batch (dead ReLUs, blank pixels) get no variance push: otherwise their
        # rows of R grow without bound and blow up the input the moment the unit fires again
        variance_push = torch.where(second_moment > 0, second_moment - 1, torch.zeros_like(second_moment))
        M = (1 - self.spec.kappa) * (C - torch.diag(second_moment)) + self.spec.kappa * torch.diag(variance_push)
        R = model.chip.crossbars[f"decorr{l}"]
        rows = R.backward(torch.eye(n))  # (n, n): row j is R[j, :] as the chip reads it
        return LayerSignal(f"decorr{l}", rows, M.T, lr=self.spec.eta)

    def signals(self, model: MLP, trace: Trace, batch, loss: Loss, state: Any) -> tuple[list[LayerSignal], Any]:
        signals, state = self.rule.signals(model, trace, batch, loss, state)
        extra = [self.decorrelation_signal(model, l, x_hat) for l, x_hat in enumerate(trace.inputs)]
        return signals + extra, state

    def report(self, state: Any) -> dict[str, float]:
        return self.rule.report(state) if hasattr(self.rule, "report") else {}


def decorrelate(rule: LearningRule, spec: DecorrelationSpec | None = None, **options: Any) -> Decorrelated:
    """``rule`` with decorrelation layers; options as in :class:`DecorrelationSpec`."""
    return Decorrelated(rule, spec or DecorrelationSpec(**options))


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
