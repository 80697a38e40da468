"""The learning-rule interface, and how rules compose.

In the spirit of optax, a rule is a small frozen dataclass (its options are its fields) with a few
pure-ish functions::

    requests = rule.crossbars(network, generator)   # extra crossbars it needs (feedback B, decorrelators R)
    chip.install(requests)                          # the chip builder makes them; the rule never mutates the chip
    state = rule.init(network, generator)           # its own state (generators, counters)
    early, state = rule.before(network, state)      # updates before the batch (synaptic scaling); usually none
    signals, state = rule.signals(network, trace, batch, loss, state)

``LayerSignal(name, x, d)`` asks crossbar ``name`` for ``ΔW = -lr * d^T x`` (docs/science.md §4:
``ĝ = d^T x``). The training loop alone hands them to ``chip.apply``; a rule reads the chip only
through its verbs (``forward``/``backward``/``read_weights``, via the network's walks) and never
writes a weight. Rules that need the loss (perturbation methods) get it, and the batch, from day one.

A :class:`Transform` changes the signals of the rule before it (decorrelation adds the updates of
its ``R``; injected bias/variance perturbs the weight estimates). :func:`chain` composes them in
the order written: ``chain(rule, decorrelate(...), inject(...))`` runs ``rule``, then the
decorrelation transform on its signals, then the injection on the result.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, final

from chiploop.lazy import torch

from chiploop.emulator import CrossbarRequest, LayerSignal, Network, Trace
from chiploop.learning.loss import Loss
from chiploop.specs import Spec, SpecError

Batch = "tuple[torch.Tensor, torch.Tensor]"  # (inputs (batch, in), targets)


def own_generator(generator: torch.Generator) -> torch.Generator:
    """A generator of a rule's own, seeded by one draw from the run's ``generator``."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return torch.Generator().manual_seed(seed)


class LearningRule(Spec, abc.ABC):
    """Produces the ``(x, d)`` pair of every crossbar it trains, for one training step. Its options are
    its dataclass fields, checked when it is built (:class:`~chiploop.specs.Spec`).

    Class attributes a rule may set: ``deterministic`` (no random draws of its own: the update
    probe then runs it once per chip state on the exact shadow), ``networks`` (the network kinds
    whose graph it can train, others are refused by :meth:`check_network`; ``None``: any network,
    because the rule reaches the graph only through ``unroll``, ``backward`` and the trace), and
    ``excludes`` (kinds refused all the same: perturbation rules refuse spiking networks).
    """

    deterministic: ClassVar[bool] = False
    networks: ClassVar[tuple[str, ...] | None] = None
    excludes: ClassVar[tuple[str, ...]] = ()   # kinds refused even when ``networks`` is None (any)

    def check_network(self, network: Network, field: str = "rule.name", value: Any = None) -> None:
        """Refuse a network this rule cannot train: one SpecError naming ``field`` and ``value``."""
        if network.kind in self.excludes:
            raise SpecError(field, value or type(self).__name__,
                            f"a rule that trains {network.kind} networks (this one trains none of: "
                            f"{', '.join(self.excludes)})")
        if self.networks is not None and network.kind not in self.networks:
            raise SpecError(field, value or type(self).__name__,
                            f"a rule that trains {network.kind} networks (this one trains: "
                            f"{', '.join(self.networks)})")

    def crossbars(self, network: Network, generator: torch.Generator) -> list[CrossbarRequest]:
        """Crossbars the rule needs beside the network's weights (drawn from ``generator``)."""
        return []

    def init(self, network: Network, generator: torch.Generator) -> Any:
        """The rule's state (its own generators, counters, ...), drawn from ``generator``."""
        return None

    @abc.abstractmethod
    def signals(self, network: Network, trace: Trace, batch: Batch, loss: Loss, state: Any
                ) -> tuple[list[LayerSignal], Any]:
        """Update signals for the batch whose unroll is ``trace``, and the new state."""

    def before(self, network: Network, state: Any) -> tuple[list[LayerSignal], Any]:
        """Updates to apply before the batch is presented (homeostasis such as synaptic scaling: its
        reads go through the chip's verbs, its writes are signals like any other); none by default."""
        return [], state

    def report(self, state: Any) -> dict[str, float]:
        """Numbers to record per epoch (bytes on the bus, say)."""
        return {}


class Transform(Spec, abc.ABC):
    """Turns a rule's signals into other signals (see :func:`chain`)."""

    deterministic: ClassVar[bool] = True

    def crossbars(self, network: Network, generator: torch.Generator) -> list[CrossbarRequest]:
        return []

    def init(self, network: Network, generator: torch.Generator) -> Any:
        return None

    @abc.abstractmethod
    def update(self, network: Network, trace: Trace, batch: Batch, loss: Loss, signals: list[LayerSignal],
               state: Any) -> tuple[list[LayerSignal], Any]:
        """The transformed signals, and the new state."""

    def report(self, state: Any) -> dict[str, float]:
        return {}


@final
@dataclass(frozen=True)
class Chain(LearningRule):
    """A rule followed by transforms, applied in order; its state is one entry per part."""

    rule: LearningRule
    transforms: tuple[Transform, ...]

    @property
    def parts(self) -> tuple[Any, ...]:
        return (self.rule, *self.transforms)

    @property
    def deterministic(self) -> bool:  # type: ignore[override]
        return all(p.deterministic for p in self.parts)

    @property
    def networks(self) -> tuple[str, ...] | None:  # type: ignore[override]
        return self.rule.networks

    @property
    def excludes(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.rule.excludes

    def check_network(self, network: Network, field: str = "rule.name", value: Any = None) -> None:
        self.rule.check_network(network, field, value)

    def crossbars(self, network: Network, generator: torch.Generator) -> list[CrossbarRequest]:
        return [r for p in self.parts for r in p.crossbars(network, generator)]

    def init(self, network: Network, generator: torch.Generator) -> tuple[Any, ...]:
        return tuple(p.init(network, generator) for p in self.parts)

    def signals(self, network: Network, trace: Trace, batch: Batch, loss: Loss, state: tuple
                ) -> tuple[list[LayerSignal], tuple]:
        signals, first = self.rule.signals(network, trace, batch, loss, state[0])
        states = [first]
        for t, s in zip(self.transforms, state[1:]):
            signals, s = t.update(network, trace, batch, loss, signals, s)
            states.append(s)
        return signals, tuple(states)

    def before(self, network: Network, state: tuple) -> tuple[list[LayerSignal], tuple]:
        signals, first = self.rule.before(network, state[0])
        return signals, (first, *state[1:])

    def report(self, state: tuple) -> dict[str, float]:
        out: dict[str, float] = {}
        for p, s in zip(self.parts, state):
            out.update(p.report(s))
        return out


def chain(rule: LearningRule, *transforms: Transform | None) -> LearningRule:
    """``rule`` followed by ``transforms`` in the order given (``None`` entries are skipped); the
    rule itself when there are none."""
    kept = tuple(t for t in transforms if t is not None)
    for t in kept:
        if not isinstance(t, Transform):
            raise TypeError(f"chain: {t!r} is not a Transform (only the first element is a rule)")
    return Chain(rule, kept) if kept else rule


def weight_signals(network: Network, trace: Trace, deltas: dict[str, torch.Tensor]) -> list[LayerSignal]:
    """``LayerSignal(name, x̂, d)`` for every weight crossbar, ``x̂`` from the trace; a walk that returns
    ``bias/NAME`` (the gradient of a digital parameter that is not an additive bias, such as a spiking
    neuron's threshold) gives that as the signal's ``bias_grad``."""
    return [LayerSignal(name, trace.inputs[name], deltas[name], bias_grad=deltas.get(f"bias/{name}"))
            for name in network.weight_names]


__all__ = ["Batch", "Chain", "LearningRule", "Transform", "chain", "own_generator", "weight_signals"]
