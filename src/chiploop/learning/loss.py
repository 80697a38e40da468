"""Losses of the digital periphery with their exact output gradients ``dL/da_L``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chiploop.lazy import torch


@dataclass(frozen=True)
class Loss:
    """Mean loss over the batch: cross-entropy on logits, mean squared error, or the margin loss.

    Cross-entropy: ``L = -1/N sum_b log softmax(a_b)[y_b]``, ``dL/da = (softmax(a) - onehot(y)) / N``.
    MSE: ``L = 1/(N D) sum (a - y)^2``, ``dL/da = 2 (a - y) / (N D)``.

    Margin (Bernstein & Yue 2021, "Computing the information content of trained neural networks",
    their eq. for GD with a margin scale): binary labels ``c = ±1`` (targets (N, 1)) and a single
    output unit fit ``α c``. The paper writes ``‖f(X) - α c‖₂``; chiploop uses its mean-squared form
    ``L = 1/N sum_b (a_b - α c_b)²``, ``dL/da = 2 (a - α c) / N`` (same minimisers and, for full-batch
    GD, the same path up to a rescaled learning rate). Large α selects large-margin functions;
    accuracy is ``mean[sign(a) = c]``.

    An output with a time axis, (batch, T, out) with targets (batch, T) or (batch, T, out), is a loss
    on every step: the ``N = batch · T`` rows are averaged alike, and a sample's loss is the mean
    over its steps.
    """

    kind: Literal["cross_entropy", "mse", "margin"]
    alpha: float = 1.0  # margin scale α of kind "margin": the output fits α c

    def _target(self, target: torch.Tensor) -> torch.Tensor:
        return self.alpha * target if self.kind == "margin" else target

    def _rows(self, out: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if out.dim() == 3:
            return out.reshape(-1, out.shape[-1]), target.reshape(-1, *target.shape[2:])
        return out, target

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out, target = self._rows(out, target)
        if self.kind == "cross_entropy":
            return torch.nn.functional.cross_entropy(out, target)
        return torch.nn.functional.mse_loss(out, self._target(target))

    def per_sample(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each sample's loss ``L_b`` (batch,); the loss is their mean."""
        batch = len(out)
        out, target = self._rows(out, target)
        if self.kind == "cross_entropy":
            rows = torch.nn.functional.cross_entropy(out, target, reduction="none")
        else:
            rows = ((out - self._target(target)) ** 2).mean(1)
        return rows.view(batch, -1).mean(1) if len(rows) != batch else rows

    def grad(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``dL/d out``, shaped like ``out``: the error at the output layer."""
        shape = out.shape
        out, target = self._rows(out, target)
        if self.kind == "cross_entropy":
            g = torch.softmax(out, dim=1)
            g[torch.arange(len(target)), target] -= 1
            g = g / len(target)
        else:
            g = 2 * (out - self._target(target)) / out.numel()
        return g.view(shape)

    def accuracy(self, out: torch.Tensor, target: torch.Tensor) -> float:
        """Fraction of correct argmax predictions (classification; every step counts), of correct signs
        (margin), NaN for regression."""
        if self.kind == "margin":
            return (torch.sign(out) == target.view(out.shape)).float().mean().item()
        if self.kind != "cross_entropy":
            return float("nan")
        out, target = self._rows(out, target)
        return (out.argmax(1) == target).float().mean().item()
