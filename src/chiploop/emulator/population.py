"""P chips of one network as one chip with a leading population axis (docs/torch_engine.md, Populations).

A *population chip* holds, for every crossbar name, one crossbar whose state has a leading axis P
(a :class:`~chiploop.emulator.torch_engine.crossbar.TorchCrossbar` with ``population = P``, or an
:class:`IdealPopulation`), and digital biases shaped ``(P, 1, out)``. Its reads take ``(B, in)``
(the same batch for every chip) or ``(P, B, in)`` and return ``(P, B, out)``, so an MLP's unroll
and backward walk run unchanged with a leading axis on every activation and error::

    a_l[p] = W_l[p] x̂_{l-1}[p] + b_l[p],      d_{l-1}[p] = W_l[p]^T d_l[p] ⊙ f'(a_{l-1}[p])

and one pulsed update steps all P chips, ``W_l[p] <- W_l[p] - lr d_l[p]^T x̂_{l-1}[p]``, with the
biases ``b_l[p] <- b_l[p] - lr Σ_b d_l[p, b]``. Only crossbars that hold a population can be used
here: an aihwkit tile (one chip per tile) or a remote chip cannot (:func:`population_error` says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from chiploop.lazy import torch

from chiploop.emulator.chip import Chip, LayerSignal
from chiploop.emulator.ideal import IdealCrossbar
from chiploop.emulator.ledger import unwrap
from chiploop.emulator.torch_engine.crossbar import TorchCrossbar
from chiploop.emulator.torch_engine.devices import DRAWN_FIELDS
from chiploop.emulator.torch_engine.group import apply_updates


@dataclass(eq=False)
class IdealPopulation:
    """P exact float crossbars: ``W`` (P, out, in); reads ``x W_pᵀ``, updates ``W_p -= lr d_pᵀ x_p``."""

    W: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.W.shape[1:])

    @property
    def population(self) -> int:
        return self.W.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.W.dtype) @ self.W.transpose(-1, -2)

    def backward(self, d: torch.Tensor) -> torch.Tensor:
        return d.to(self.W.dtype) @ self.W

    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        self.W.sub_(lr * (d.to(self.W.dtype).transpose(-1, -2) @ x.to(self.W.dtype)))

    def weights(self) -> torch.Tensor:
        return self.W.clone()

    def read_weights(self) -> torch.Tensor:
        return self.W.clone()

    def post_update_step(self) -> None:
        pass

    def member(self, p: int) -> IdealCrossbar:
        return IdealCrossbar(self.W[p].clone())


def population_error(chip: Chip) -> str | None:
    """Why ``chip`` cannot be expanded into a population (None if it can): every crossbar must be
    a torch-engine or an exact float crossbar (a ledger's meter is looked through), and no weight
    crossbar may read through a decorrelator."""
    for name, xb in chip.crossbars.items():
        inner = unwrap(xb)
        if not isinstance(inner, (TorchCrossbar, IdealCrossbar)):
            return f"crossbar {name!r} is a {type(inner).__name__} (populations need engine: torch or the ideal chip)"
        if isinstance(inner, TorchCrossbar) and inner.population != 1:
            return f"crossbar {name!r} already holds {inner.population} chips"
        if isinstance(inner, IdealCrossbar) and inner.W.dim() != 2:
            return f"crossbar {name!r} is not a single (out, in) matrix"
    if chip.decorrelators:
        return "decorrelators (population chips read no decorrelator)"
    return None


def _expand(xb, population: int):
    inner = unwrap(xb)
    if isinstance(inner, TorchCrossbar):
        return inner.expand(population)
    return IdealPopulation(inner.W.expand(population, *inner.W.shape).clone())


def _stack(crossbars: Sequence):
    inners = [unwrap(xb) for xb in crossbars]
    if all(isinstance(c, TorchCrossbar) for c in inners):
        return stack_torch(inners)
    if all(isinstance(c, IdealCrossbar) for c in inners):
        return IdealPopulation(torch.stack([c.W for c in inners]))
    raise ValueError("a population needs crossbars of one kind: all torch engine, or all ideal")


def stack_torch(crossbars: Sequence[TorchCrossbar]) -> TorchCrossbar:
    """``TorchCrossbar.stack`` of crossbars whose device specs may differ in the fields the engine
    reads only when it draws the devices (:data:`~chiploop.emulator.torch_engine.devices.DRAWN_FIELDS`:
    ``construction_seed``, the bounds and the device-to-device spreads; they act at ``create``, and
    the members keep their own draws): the first member's spec stands for all."""
    first = crossbars[0].spec
    same = {f: getattr(first, f) for f in DRAWN_FIELDS}
    crossbars = [TorchCrossbar(first, c.W, c.par, c.generator, c.seed, c.persistent, c.clones)
                 if c.spec != first and replace(c.spec, **same) == first else c for c in crossbars]
    return TorchCrossbar.stack(list(crossbars))


@dataclass(eq=False)
class PopulationChip(Chip):
    """A chip whose crossbars and biases carry a leading population axis P (see the module docstring)."""

    population: int = 1

    @classmethod
    def expand(cls, chip: Chip, population: int) -> PopulationChip:
        """P exact copies of ``chip`` (fresh noise streams of their own: each torch crossbar's
        ``expand`` clones with a generator of its own; the chip's own streams do not move)."""
        error = population_error(chip)
        if error is not None:
            raise ValueError(f"cannot make a population of this chip: {error}")
        crossbars = {k: _expand(xb, population) for k, xb in chip.crossbars.items()}
        biases = {k: b.expand(population, 1, *b.shape).clone() for k, b in chip.biases.items()}
        return cls(crossbars, dict(chip.roles), biases, dict(chip.decorrelators), None, population)

    @classmethod
    def stack(cls, chips: Sequence[Chip]) -> PopulationChip:
        """The chips (one network each, same names and shapes; their own devices, weights and biases)
        as one population, chip p = ``chips[p]``."""
        for chip in chips:
            error = population_error(chip)
            if error is not None:
                raise ValueError(f"cannot make a population of this chip: {error}")
        first = chips[0]
        crossbars = {k: _stack([c.crossbars[k] for c in chips]) for k in first.crossbars}
        biases = {k: torch.stack([c.biases[k] for c in chips]).unsqueeze(1) for k in first.biases}
        return cls(crossbars, dict(first.roles), biases, dict(first.decorrelators), None, len(chips))

    def apply(self, signals: Sequence[LayerSignal], lr: float) -> None:
        """Every chip's pulsed update in one call per crossbar (``d`` (P, B, out), ``x`` (B, in) or
        (P, B, in)); bias p moves by ``-lr Σ_b d[p, b]`` (or ``-lr bias_grad[p]``)."""
        steps = [lr if s.lr is None else s.lr for s in signals]
        apply_updates([(self.crossbars[s.name], s.x, s.d, step) for s, step in zip(signals, steps) if s.x.shape[-2]])
        for s, step in zip(signals, steps):
            bias = self.biases.get(s.name)
            if bias is not None:
                grad = s.d.sum(-2, keepdim=True) if s.bias_grad is None else s.bias_grad.reshape(bias.shape)
                bias.sub_(step * grad)

    def member_weights(self, p: int) -> dict[str, torch.Tensor]:
        """Chip p's exact weights (out, in) by crossbar name."""
        out = {}
        for k, xb in self.crossbars.items():
            w = xb.weights()
            out[k] = w[p] if w.dim() == 3 else w
        return out

    def member(self, p: int) -> Chip:
        """Chip p as a chip of its own (copies; torch crossbars with a generator of their own)."""
        crossbars = {k: xb.member(p) for k, xb in self.crossbars.items()}
        biases = {k: b[p, 0].clone() for k, b in self.biases.items()}
        return Chip(crossbars, dict(self.roles), biases, dict(self.decorrelators))

    def clone(self) -> Chip:
        raise NotImplementedError("a population chip is not cloned: expand or stack single chips instead")

    def restore(self, source: Chip) -> None:
        raise NotImplementedError("a population chip is not restored: expand or stack single chips instead")


@dataclass(eq=False)
class PopulationMeter:
    """A population crossbar whose verbs are entered in every member's :class:`ChipLedger` as the
    member's own single-chip verbs would be (rows = its B rows, its own ``x_p``, ``d_p``)."""

    inner: Any
    ledgers: list

    @property
    def shape(self) -> tuple[int, int]:
        return self.inner.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for ledger in self.ledgers:
            ledger.read("forward", x.shape[-2], self.shape[1], self.shape[0])
        return self.inner.forward(x)

    def backward(self, d: torch.Tensor) -> torch.Tensor:
        for ledger in self.ledgers:
            ledger.read("backward", d.shape[-2], self.shape[0], self.shape[1])
        return self.inner.backward(d)

    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        self.record_update(x, d, lr)
        self.inner.update(x, d, lr)

    def record_update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        """The ledgers' half of :meth:`update` (for an update applied to the inner crossbar elsewhere)."""
        for p, ledger in enumerate(self.ledgers):
            ledger.update(x[p] if x.dim() == 3 else x, d[p], lr)

    def weights(self) -> torch.Tensor:
        return self.inner.weights()

    def read_weights(self) -> torch.Tensor:
        for ledger in self.ledgers:
            ledger.record("read_weights", 0, 4 * self.shape[0] * self.shape[1])
        return self.inner.read_weights()

    def post_update_step(self) -> None:
        for ledger in self.ledgers:
            ledger.record("post_update_step")
        self.inner.post_update_step()

    def member(self, p: int):
        return self.inner.member(p)


def metered_population(chip: PopulationChip, ledgers: Sequence, names: Sequence[str]) -> PopulationChip:
    """``chip`` with the verbs of crossbars ``names`` (those a member's ledger meters) entered in the
    members' ledgers (``ledgers[p]``: chip p's)."""
    crossbars = {k: PopulationMeter(xb, list(ledgers)) if k in names else xb for k, xb in chip.crossbars.items()}
    return PopulationChip(crossbars, chip.roles, chip.biases, chip.decorrelators, None, chip.population)
