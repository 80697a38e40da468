"""The network abstraction: a graph of crossbar reads and digital periphery that runs on a chip.

A :class:`Network` owns its graph and nothing else. It

* **unrolls** an input over its time steps (one for an MLP) on its chip, recording what every
  weight crossbar was driven with and what came out (:class:`Trace`); a ``perturb`` callback may
  add a term to any crossbar's read (node and weight perturbation), and
* **walks its graph backwards** from an output error, calling a ``read(name, δ)`` it is given for
  every transposed read, and returns the error ``d`` at every weight crossbar's output: the
  ``(x, d)`` pairs of ``ΔW = -lr dᵀx``. With ``read = chip.crossbars[name].backward`` this is
  backprop through the chip; a rule swaps ``read`` (feedback alignment, sign symmetry).

Learning rules see a network only through these two walks, the trace and the chip's roles, so
one rule runs on every architecture whose graph supports it. The ground truth of the update
probe and of the curvature is autograd through :meth:`Network.unroll` on ``chip.shadow()``.

Classes are abstract or final (equinox style): subclass :class:`Network` and register the final
class in ``NETWORKS`` with its spec (:class:`NetworkSpec`).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chiploop.lazy import torch

from chiploop.emulator.chip import Chip, CrossbarFactory
from chiploop.specs import Spec, SpecError, from_mapping

# perturb(name, t, x̂) -> a term added to crossbar ``name``'s read at time step ``t`` (x̂ is what it
# was driven with, (batch, in)), or None
Perturbation = "Callable[[str, int, torch.Tensor], torch.Tensor | None]"
# read(name, δ) -> the error sent back through weight crossbar ``name``: W^T δ on the chip, or B^T δ, ...
TransposedRead = "Callable[[str, torch.Tensor], torch.Tensor]"


@dataclass(frozen=True)
class Trace:
    """What one unroll saw. For every weight crossbar ``name``, over all time steps stacked on the
    first axis (``rows = steps · batch``): ``inputs[name]`` (rows, in), the vectors it was driven
    with (after its decorrelator), and ``preacts[name]`` (rows, out), its read plus digital bias
    (plus any perturbation). ``states`` holds whatever else a temporal network's rules need."""

    inputs: dict[str, torch.Tensor]
    preacts: dict[str, torch.Tensor]
    output: torch.Tensor                                  # (batch, out) or (steps, batch, out)
    states: dict[str, Any] = field(default_factory=dict)


class Network(abc.ABC):
    """A network whose weight matrices are crossbars of ``self.chip`` (see the module docstring)."""

    kind: ClassVar[str]            # registry name, e.g. "mlp"
    chip: Chip

    @property
    @abc.abstractmethod
    def weight_names(self) -> tuple[str, ...]:
        """The weight crossbars, in graph order (input side first)."""

    @abc.abstractmethod
    def unroll(self, x: torch.Tensor, perturb: Perturbation | None = None) -> Trace:
        """Run ``x`` (batch, ...) through the chip's reads and the digital periphery."""

    @abc.abstractmethod
    def backward(self, trace: Trace, delta: torch.Tensor, read: TransposedRead) -> dict[str, torch.Tensor]:
        """Errors ``d`` (rows, out) at every weight crossbar's output, from the output error ``delta``
        (shaped like ``trace.output``), with every transposed read done by ``read(name, δ)``."""

    @abc.abstractmethod
    def f_prime(self, name: str, a: torch.Tensor) -> torch.Tensor:
        """``f'(a)`` of the nonlinearity after weight crossbar ``name`` (1 where there is none)."""

    def on(self, chip: Chip) -> Network:
        """The same graph on another chip (its shadow, deployed inference tiles, a clone)."""
        return dataclasses.replace(self, chip=chip)


@dataclass(frozen=True)
class NetworkSpec(Spec, abc.ABC):
    """The network of an experiment: ``kind`` picks the registered class, the rest are its options.

    In a spec, ``model: {kind: mlp, sizes: [64, 64, 10]}``; without ``kind`` it is an MLP.
    """

    kind: str = "mlp"
    sequential: ClassVar[bool] = False  # reads sequences (batch, time, features)

    @property
    @abc.abstractmethod
    def dims(self) -> tuple[int, int]:
        """(input features, outputs) the task must have."""

    @classmethod
    def from_value(cls, value: Any, name: str = "model") -> NetworkSpec:
        """Validate a mapping into the spec of its ``kind`` (default ``mlp``)."""
        if not isinstance(value, Mapping):
            raise SpecError(name, value, "a mapping such as {kind: mlp, sizes: [64, 64, 10]}")
        kind = value.get("kind", "mlp")
        if kind not in NETWORKS:
            raise SpecError(f"{name}.kind", kind, "one of " + ", ".join(sorted(NETWORKS)))
        return from_mapping(NETWORKS[kind], value, prefix=name + ".")

    @abc.abstractmethod
    def build(self, factory: CrossbarFactory, generator: torch.Generator) -> Network:
        """A new network on a new chip of ``factory``'s crossbars, weights drawn from ``generator``."""

    @abc.abstractmethod
    def attach(self, chip: Chip) -> Network:
        """This network on an existing chip (saved weights, say)."""


# kind -> the spec class that validates a network's options and builds it
NETWORKS: dict[str, type[NetworkSpec]] = {}


def register(spec_class: type[NetworkSpec]) -> type[NetworkSpec]:
    """Class decorator: make ``model: {kind: KIND, ...}`` build ``spec_class``'s network."""
    kind = spec_class.__dataclass_fields__["kind"].default
    NETWORKS[kind] = spec_class
    return spec_class
