"""A chip: named crossbars, each with a role, and the digital parameters beside them.

A network reads its weights through :meth:`Chip.read`; a learning rule's update signals reach the
crossbars through :meth:`Chip.apply` and nothing else writes a weight. Roles say what a crossbar
is for, so that nobody has to guess it from its name:

* ``weight``: a weight matrix of the network (``layer0``, ``W_rec``, ...), with a digital bias;
* ``decorrelator``: ``R`` read before a weight crossbar, ``x̂ = R x`` (docs/science.md §4.7);
* ``feedback``: a fixed matrix a rule reads errors through (feedback alignment's ``B``).

Crossbars beyond the network's own are *requested* by the learning rule
(:class:`CrossbarRequest`) and made by :meth:`Chip.install` with the chip's technology (or a
digital one, or a device of their own), so a rule never mutates the chip it is handed.
:meth:`Chip.shadow` is the one exact float copy that the update probe, curvature, deployment and
weight export use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chiploop.lazy import torch

from chiploop.emulator.crossbar import Crossbar
from chiploop.emulator.ideal import IdealCrossbar
from chiploop.emulator.ledger import MeteredCrossbar, unwrap
from chiploop.emulator.torch_engine.group import apply_updates

Role = Literal["weight", "decorrelator", "feedback"]
ROLES: tuple[str, ...] = ("weight", "decorrelator", "feedback")

# factory(name, out, in) -> a crossbar of the chip's technology; its device draws derive from ``name``
CrossbarFactory = Callable[[str, int, int], Crossbar]


def ideal_factory(name: str, out_size: int, in_size: int) -> Crossbar:
    """Exact float crossbars (the ideal chip)."""
    return IdealCrossbar(torch.zeros(out_size, in_size))


@dataclass(frozen=True)
class CrossbarRequest:
    """A crossbar a learning rule needs beside the network's weights, and its initial matrix.

    ``technology``: ``chip`` makes it with the chip's own factory (same devices as the weights),
    ``digital`` as an exact float matrix in the periphery, ``device`` with ``make(name, out, in)``
    (a decorrelator on a device of its own, say). A ``decorrelator`` names the weight crossbar it
    reads before (``feeds``).
    """

    name: str
    role: Role
    W: torch.Tensor                                   # (out, in), programmed once at install
    technology: Literal["chip", "digital", "device"] = "chip"
    make: CrossbarFactory | None = None               # for technology "device"
    feeds: str | None = None                          # decorrelator: the weight crossbar it feeds


@dataclass(frozen=True)
class LayerSignal:
    """What a learning rule hands to crossbar ``name``'s update: ``ΔW = -lr * d^T x``.

    A crossbar with a digital bias moves it by ``-lr * bias_grad`` (``d.sum(0)`` unless given).
    ``lr`` overrides the run's learning rate (decorrelation uses its own ``eta``).
    """

    name: str        # crossbar key in the chip, e.g. "layer0"
    x: torch.Tensor  # (rows, in)
    d: torch.Tensor  # (rows, out), an estimate of dL/da (gradient-descent sign)
    lr: float | None = None
    bias_grad: torch.Tensor | None = None  # (out,)


@dataclass(eq=False)
class Chip:
    """Crossbars by name with their roles, digital biases, and which decorrelator feeds which weight."""

    crossbars: dict[str, Crossbar] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    biases: dict[str, torch.Tensor] = field(default_factory=dict)   # weight name -> (out,)
    decorrelators: dict[str, str] = field(default_factory=dict)     # weight name -> decorrelator name
    factory: CrossbarFactory | None = None

    def add(self, name: str, crossbar: Crossbar, role: Role, bias: torch.Tensor | None = None) -> Crossbar:
        """Put ``crossbar`` on the chip as ``name`` with ``role`` (and a digital bias)."""
        if name in self.crossbars:
            raise ValueError(f"the chip already has a crossbar named {name!r}")
        if role not in ROLES:
            raise ValueError(f"role {role!r}: allowed {', '.join(ROLES)}")
        self.crossbars[name], self.roles[name] = crossbar, role
        if bias is not None:
            self.biases[name] = bias
        return crossbar

    def make(self, name: str, W: torch.Tensor, role: Role, bias: torch.Tensor | None = None) -> Crossbar:
        """A crossbar of the chip's technology named ``name``, programmed with ``W`` (out, in)."""
        xb = (self.factory or ideal_factory)(name, *W.shape)
        xb.program(W)
        return self.add(name, xb, role, bias)

    def install(self, requests: Sequence[CrossbarRequest]) -> None:
        """Make and program every requested crossbar (see :class:`CrossbarRequest`)."""
        for r in requests:
            if r.technology == "chip":
                self.make(r.name, r.W, r.role)
            else:
                xb = IdealCrossbar(torch.zeros(r.W.shape)) if r.technology == "digital" else r.make(r.name, *r.W.shape)
                xb.program(r.W)
                self.add(r.name, xb, r.role)
            if r.role == "decorrelator":
                if r.feeds not in self.crossbars or self.roles[r.feeds] != "weight":
                    raise ValueError(f"decorrelator {r.name!r} feeds {r.feeds!r}, which is not a weight crossbar")
                self.decorrelators[r.feeds] = r.name

    def named(self, role: Role) -> list[str]:
        """The names of the crossbars with ``role``, in the order they were added."""
        return [name for name, r in self.roles.items() if r == role]

    # ------------------------------------------------------------------ what a network does
    def read(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward read of weight crossbar ``name``: ``(x̂, W x̂)`` with ``x̂ = R x`` read on its
        decorrelator first when it has one, else ``x̂ = x``. ``x`` is (rows, in)."""
        R = self.decorrelators.get(name)
        x_hat = x if R is None else self.crossbars[R].forward(x)
        return x_hat, self.crossbars[name].forward(x_hat)

    # ------------------------------------------------------------------ what the training loop does
    def apply(self, signals: Sequence[LayerSignal], lr: float) -> None:
        """Hand each signal to its crossbar's pulsed update (then the device's per-batch step; the
        torch engine steps crossbars that can go together as one program, torch_engine/group.py);
        digital biases update as ``b -= lr * bias_grad``."""
        steps = [lr if s.lr is None else s.lr for s in signals]
        # a signal without rows moves only the digital parameter (an adaptive threshold)
        apply_updates([(self.crossbars[s.name], s.x, s.d, step) for s, step in zip(signals, steps) if len(s.x)])
        for s, step in zip(signals, steps):
            bias = self.biases.get(s.name)
            if bias is not None:
                bias.sub_(step * (s.d.sum(0) if s.bias_grad is None else s.bias_grad))

    # ------------------------------------------------------------------ what the experimenter does
    def weights(self) -> dict[str, torch.Tensor]:
        """The exact weights of every crossbar."""
        return {k: xb.weights() for k, xb in self.crossbars.items()}

    def _like(self, crossbars: dict[str, Crossbar], biases: dict[str, torch.Tensor],
              factory: CrossbarFactory | None = None) -> Chip:
        return Chip(crossbars, dict(self.roles), biases, dict(self.decorrelators), factory)

    def clone(self) -> Chip:
        """An exact, independent copy of every crossbar's device state and every bias."""
        return self._like({k: xb.clone() for k, xb in self.crossbars.items()},
                          {k: b.clone() for k, b in self.biases.items()}, self.factory)

    def restore(self, source: Chip) -> None:
        """Put this chip, a :meth:`clone` of ``source``, back into ``source``'s exact state, in place."""
        for name, xb in self.crossbars.items():
            src = source.crossbars[name]  # an unmetered copy restores from the crossbar a ledger meters
            xb.restore(src if isinstance(xb, MeteredCrossbar) else unwrap(src))
        for name, b in self.biases.items():
            b.copy_(source.biases[name])

    def shadow(self, dtype: torch.dtype | None = None) -> Chip:
        """The chip's digital shadow: every crossbar an exact :class:`IdealCrossbar` of its exact
        weights in ``dtype``, biases copied. Its reads are exact, so a network unrolled on it is a
        plain float network that autograd can differentiate (set ``requires_grad`` on its tensors).
        ``dtype`` defaults to float64."""
        dtype = torch.float64 if dtype is None else dtype
        return self._like({k: IdealCrossbar(xb.weights().to(dtype)) for k, xb in self.crossbars.items()},
                          {k: b.to(dtype, copy=True) for k, b in self.biases.items()}, ideal_factory)

    def replaced(self, make: Callable[[str, Crossbar], Crossbar], role: Role = "weight") -> Chip:
        """A copy whose ``role`` crossbars are ``make(name, crossbar)`` (fresh inference tiles, say)
        and whose other crossbars are exact float copies; biases copied."""
        crossbars = {k: make(k, xb) if self.roles[k] == role else IdealCrossbar(xb.weights().to(torch.float32))
                     for k, xb in self.crossbars.items()}
        return self._like(crossbars, {k: b.clone() for k, b in self.biases.items()})

    def describe(self) -> dict[str, Any]:
        """Roles and decorrelator links as plain data (saved beside the weights)."""
        return {"roles": dict(self.roles), "decorrelators": dict(self.decorrelators)}
