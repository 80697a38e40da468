"""Controlled bias and variance injected into a rule's gradient estimate (Ghosh et al. 2023, "How
gradient estimator variance and bias impact learning in neural networks", ICLR; seed 000)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, final

from chiploop.lazy import torch

from chiploop.emulator import LayerSignal, Network, Trace
from chiploop.learning.loss import Loss
from chiploop.learning.rule import Transform, own_generator
from chiploop.specs import Spec, spec_field


@dataclass(frozen=True)
class InjectedSpec(Spec):
    """How much bias and variance to add to every weight layer's estimate, relative to its norm."""

    bias: float = spec_field(0.0, doc="b: relative bias, the added offset along the all-ones direction "
                             "is b ||ĝ||", low=0.0)
    variance: float = spec_field(0.0, doc="σ: relative noise scale, the added Gaussian noise has "
                                 "||ξ|| = σ ||ĝ|| (relative variance σ²)", low=0.0)
    convention: Literal["per_layer", "ghosh"] = spec_field(
        "per_layer", doc="per_layer: per weight layer, bias b ||ĝ_l|| along the unit all-ones direction; ghosh: "
        "Ghosh et al.'s code, one norm over every trained parameter (weights and digital biases), bias "
        "b ||ĝ|| on each parameter (b_per_layer = b_ghosh sqrt(n) for one layer of n parameters)")


@final
@dataclass(frozen=True)
class Inject(Transform):
    """Every weight crossbar's estimate from the rule before it ``ĝ = d^T x`` (out x in) becomes::

        ĝ' = ĝ + ξ - b ||ĝ|| u,     u = 1 / sqrt(n) (1, ..., 1),  n = out * in
        ξ  = σ ||ĝ|| ζ / ||ζ||,      ζ i.i.d. N(0, 1)

    Ghosh et al. write the estimator as ``ĝ = g + ξ - b ||g|| 1`` around the true gradient
    ``g``; here the reference is the wrapped rule's own estimate ``ĝ`` (with ideal backprop on an
    ideal chip the two coincide), so the injected part's bias and variance are exact with
    respect to it: ``||E[ĝ' - ĝ]|| / ||ĝ|| = b`` (``E ξ = 0``) and
    ``E||ĝ' - E ĝ'||² / ||ĝ||² = ||ξ||² / ||ĝ||² = σ²`` for every draw. The all-ones direction
    is normalised (``||u|| = 1``) so that the offset has norm ``b ||ĝ||`` whatever the layer's
    size; the unnormalised all-ones vector has norm ``sqrt(n)`` and would make the bias grow
    with the layer. ξ is rescaled to norm ``σ ||ĝ||`` exactly (not merely in expectation), so the
    variance each step gets is the one asked for, not a random amount around it.

    The dense ``ĝ'`` is handed to the crossbar with the one-hot trick: ``x = I`` (in x in),
    ``d = ĝ'^T``, so the update ``-lr d^T x = -lr ĝ'`` runs through the same pulsed update as
    any rule's. The digital bias keeps the rule's own gradient (``d.sum(0)``). Signals of
    crossbars that are not weights (decorrelators) pass through unchanged. The noise is drawn
    from the transform's own generator (its state), seeded from the run's.

    ``convention: ghosh`` follows the authors' code (linclab/approximateGradients,
    ``Fig1/train_approx_grad.py``, ``corrupt_gradient``) instead: the estimate of the whole network,
    every weight crossbar's ``ĝ_l`` and every digital bias's gradient ``β_l`` flattened into one
    vector ``ĝ`` of ``N`` parameters, becomes::

        ĝ' = ĝ + σ ||ĝ|| u - b ||ĝ|| 1,    u = ζ / ||ζ||, ζ ~ N(0, I_N),  1 = (1, ..., 1) (NOT normalised)

    one norm over the whole network, a fresh unit direction over all ``N`` parameters each step,
    and the same offset ``b ||ĝ||`` on every parameter ("bias in individual synaptic weight
    update", their comment). Hence ``E[ĝ'] - ĝ = -b ||ĝ|| 1``, of norm ``b sqrt(N) ||ĝ||``, and
    ``E||ĝ' - E ĝ'||² = σ² ||ĝ||²`` (exactly, every draw). Mapping to the per-layer default: for a
    network of one layer of ``n`` parameters, ``b_per_layer = b_ghosh sqrt(n)`` and ``σ`` is the
    same; with several layers the per-layer bias of layer ``l`` is
    ``b_ghosh sqrt(n_l) ||ĝ|| / ||ĝ_l||`` and its noise share is random (not fixed per layer).
    Not copied from their run: their last step's noise is minus the sum of the earlier ones (so
    the noise sums to zero over their 50 steps), and they train with momentum 0.9 and label
    smoothing; here every step's ``u`` is fresh and the optimiser is the chip's plain update.
    """

    deterministic: ClassVar[bool] = False

    spec: InjectedSpec

    def init(self, network: Network, generator: torch.Generator) -> torch.Generator:
        return own_generator(generator)

    def inject(self, g_hat: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``ĝ + ξ - b ||ĝ|| u`` for one layer's estimate ``ĝ`` (out x in)."""
        norm = g_hat.norm()
        zeta = torch.randn(g_hat.shape, generator=generator, dtype=g_hat.dtype)
        xi = zeta * (self.spec.variance * norm / zeta.norm().clamp_min(torch.finfo(g_hat.dtype).tiny))
        offset = self.spec.bias * norm / math.sqrt(g_hat.numel())  # b ||ĝ|| u, entry by entry
        return g_hat + xi - offset

    def inject_global(self, parts: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
        """``ĝ + σ ||ĝ|| u - b ||ĝ|| 1`` over the concatenation of ``parts`` (convention ghosh), split back."""
        flat = torch.cat([p.reshape(-1) for p in parts])
        norm = flat.norm()
        zeta = torch.randn(flat.shape, generator=generator, dtype=flat.dtype)
        u = zeta / zeta.norm().clamp_min(torch.finfo(flat.dtype).tiny)
        flat = flat + self.spec.variance * norm * u - self.spec.bias * norm
        out, start = [], 0
        for p in parts:
            out.append(flat[start:start + p.numel()].reshape(p.shape))
            start += p.numel()
        return out

    def update(self, network: Network, trace: Trace, batch, loss: Loss, signals: list[LayerSignal],
               state: torch.Generator) -> tuple[list[LayerSignal], Any]:
        if self.spec.convention == "ghosh":
            return self._update_global(network, signals, state), state
        generator, out = state, []
        for s in signals:
            if network.chip.roles[s.name] != "weight":
                out.append(s)
                continue
            g_hat = self.inject(s.d.T @ s.x, generator)  # (out, in)
            bias_grad = s.d.sum(0) if s.bias_grad is None else s.bias_grad
            eye = torch.eye(s.x.shape[1], dtype=s.x.dtype)
            out.append(LayerSignal(s.name, eye, g_hat.T, lr=s.lr, bias_grad=bias_grad))
        return out, generator


    def _update_global(self, network: Network, signals: list[LayerSignal], generator: torch.Generator
                       ) -> list[LayerSignal]:
        """Convention ghosh: weights and digital biases of every weight crossbar perturbed as one vector."""
        weights = [s for s in signals if network.chip.roles[s.name] == "weight"]
        parts: list[torch.Tensor] = []
        for s in weights:
            parts.append(s.d.T @ s.x)
            if s.name in network.chip.biases:
                parts.append(s.d.sum(0) if s.bias_grad is None else s.bias_grad)
        new = iter(self.inject_global(parts, generator))
        out = []
        for s in signals:
            if network.chip.roles[s.name] != "weight":
                out.append(s)
                continue
            g_hat = next(new)
            bias_grad = next(new) if s.name in network.chip.biases else s.bias_grad
            eye = torch.eye(s.x.shape[1], dtype=s.x.dtype)
            out.append(LayerSignal(s.name, eye, g_hat.T, lr=s.lr, bias_grad=bias_grad))
        return out


def inject(spec: InjectedSpec | None = None, **options: Any) -> Inject:
    """The injection transform; options as in :class:`InjectedSpec`. Use it in ``chain(rule, inject(...))``."""
    return Inject(spec or InjectedSpec(**options))
