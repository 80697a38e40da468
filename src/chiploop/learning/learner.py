"""One learning rule training one network on its chip: the step every training loop takes.

::

    learner = Learner.create(network, rule, loss, generator)   # the rule's crossbars installed, its state drawn
    for x, y in batches:
        learner.step(x, y, lr)          # unroll on the chip -> the rule's signals -> pulsed updates

Use it directly to write your own loop; ``chiploop.experiments.train`` runs it for a spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chiploop.lazy import torch

from chiploop.emulator import LayerSignal, Network
from chiploop.learning.loss import Loss
from chiploop.learning.rule import LearningRule


@dataclass(eq=False)
class Learner:
    """A network, the rule that trains it, the loss, and the rule's state."""

    network: Network
    rule: LearningRule
    loss: Loss
    state: Any

    @classmethod
    def create(cls, network: Network, rule: LearningRule, loss: Loss, generator: torch.Generator,
               rule_name: str | None = None) -> Learner:
        """Check that ``rule`` can train ``network``, install the crossbars it asks for, then draw its
        state, both from ``generator`` (in that order)."""
        rule.check_network(network, "rule.name", rule_name)
        network.chip.install(rule.crossbars(network, generator))
        return cls(network, rule, loss, rule.init(network, generator))

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> list[LayerSignal]:
        """One mini-batch: the rule's updates before it (if any), then unroll ``x`` on the chip, ask the rule
        for its signals, apply them."""
        with torch.no_grad():
            early, self.state = self.rule.before(self.network, self.state)
            if early:
                self.network.chip.apply(early, lr)
            trace = self.network.unroll(x)
            signals, self.state = self.rule.signals(self.network, trace, (x, y), self.loss, self.state)
            self.network.chip.apply(signals, lr)
        return signals

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Loss and accuracy of the chip (its own reads) on ``(x, y)``."""
        with torch.no_grad():
            out = self.network.unroll(x).output
        return {"loss": self.loss(out, y).item(), "acc": self.loss.accuracy(out, y)}
