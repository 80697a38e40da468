"""Learning rules on a population chip (:mod:`chiploop.emulator.population`): what runs there, the
loss with a leading population axis, and one training step of all P chips.

A rule runs on a population when its walk is oblivious to a leading axis on every activation and
error (docs/torch_engine.md, Populations): the network is an MLP (one time step, so an output
(P, B, out) is not mistaken for (B, T, out)), the rule is one of :data:`POPULATION_RULES`
(deterministic walks: backprop, feedback alignment, direct feedback alignment; no transforms), and
the chip has no decorrelator. The loss is member by member, ``δ[p] = dL/da(out[p], y[p])``, so the
batch mean is over member p's own B rows and never over the population axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chiploop.lazy import torch

from chiploop.emulator import LayerSignal, Network
from chiploop.emulator.population import PopulationChip, population_error
from chiploop.learning.backprop import Backprop
from chiploop.learning.direct_feedback_alignment import DirectFeedbackAlignment
from chiploop.learning.feedback_alignment import FeedbackAlignment
from chiploop.learning.loss import Loss
from chiploop.learning.rule import Chain, LearningRule

POPULATION_RULES = (Backprop, FeedbackAlignment, DirectFeedbackAlignment)
POPULATION_NETWORKS = ("mlp",)


def population_refusal(network: Network, rule: LearningRule) -> str | None:
    """What stops ``rule`` on ``network`` from running as a population (None: nothing)."""
    if network.kind not in POPULATION_NETWORKS:
        return f"model.kind {network.kind!r} (populations train: {', '.join(POPULATION_NETWORKS)})"
    if isinstance(rule, Chain):
        return "decorrelation or injected transforms (populations run a rule alone)"
    if not isinstance(rule, POPULATION_RULES):
        names = "backprop, feedback_alignment, direct_feedback_alignment"
        return f"rule {type(rule).__name__} (populations run: {names})"
    return population_error(network.chip)


@dataclass(frozen=True)
class PopulationLoss(Loss):
    """The loss of every member: outputs (P, B, out), targets (P, B[, out]); ``grad`` and the loss
    itself are member p's own, ``dL/da[p] = grad(out[p], y[p])`` (cross-entropy:
    ``(softmax(a[p]) - onehot(y[p])) / B``), stacked."""

    @classmethod
    def of(cls, loss: Loss) -> PopulationLoss:
        return cls(loss.kind, loss.alpha)

    def _base(self) -> Loss:
        return Loss(self.kind, self.alpha)

    def grad(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        base = self._base()
        return torch.stack([base.grad(out[p], target[p]) for p in range(len(out))])

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        base = self._base()
        return torch.stack([base(out[p], target[p]) for p in range(len(out))])

    def member_accuracy(self, out: torch.Tensor, target: torch.Tensor) -> list[float]:
        base = self._base()
        return [base.accuracy(out[p], target[p]) for p in range(len(out))]


def per_member(target: torch.Tensor, population: int) -> torch.Tensor:
    """One batch's targets for every member, (P, B, ...)."""
    return target.expand(population, *target.shape)


def population_step(network: Network, rule: LearningRule, state: Any, loss: PopulationLoss, x: torch.Tensor,
                    y: torch.Tensor, lr: float) -> tuple[list[LayerSignal], Any]:
    """One step of every chip of ``network.chip`` (a :class:`PopulationChip`): unroll ``x`` ((B, in)
    for all, or (P, B, in)), the rule's signals for targets ``y`` (P, B, ...), one pulsed update."""
    if not isinstance(network.chip, PopulationChip):
        raise TypeError("population_step needs a network on a PopulationChip")
    trace = network.unroll(x)
    signals, state = rule.signals(network, trace, (x, y), loss, state)
    network.chip.apply(signals, lr)
    return signals, state


def estimates(signals: list[LayerSignal], keep) -> dict[str, torch.Tensor]:
    """``ĝ[p] = Σ_b d[p, b]ᵀ x[p, b]`` (float64, (P, out, in)) per crossbar whose name ``keep(name)``."""
    out: dict[str, torch.Tensor] = {}
    for s in signals:
        if keep(s.name):
            g = s.d.double().transpose(-1, -2) @ s.x.double()
            out[s.name] = out[s.name] + g if s.name in out else g
    return out
