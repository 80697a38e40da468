"""Node perturbation (Dalm, van Gerven & Ahmad 2023, "Effective learning with node perturbation in
deep neural networks", arXiv:2310.00965)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, final

from chiploop.lazy import torch

from chiploop.emulator import LayerSignal, Network, Trace
from chiploop.learning.loss import Loss
from chiploop.learning.rule import LearningRule, own_generator
from chiploop.specs import spec_field


@final
@dataclass(frozen=True)
class NodePerturbation(LearningRule):
    """Gradient estimate from two forward passes, a clean one and one with noise on every node::

        clean pass a_l (the training loop's ``trace``),  noisy pass ã_l = a_l + ξ_l + (propagated change),
        ξ_l ~ N(0, σ²) of shape (batch, out_l), added to every layer's pre-activation at once,
        ΔL_b = L_b(noisy) - L_b(clean)                        (batch,), per-sample losses
        np:   δ_{l,b} = (ΔL_b / N) ξ_{l,b} / σ²
        anp:  δ_{l,b} = (ΔL_b / N) sqrt(n) Δa_{l,b} / Σ_k ||Δa_{k,b}||²,   Δa_l = ã_l - a_l
        ΔW_l = -lr δ_l^T x̂_{l-1}                              (x̂ from the clean pass)

    ``N`` is the batch size (the training loss is the batch mean), ``n = Σ_l out_l`` the number
    of nodes (every weight crossbar's outputs). ``np`` is an unbiased estimate of ``dL/da_l`` as σ -> 0 (``E[ξ ξ^T] = σ² I``).
    ``anp`` (activity-based node perturbation) correlates ΔL with the measured activity change
    instead, normalised as in the authors' code; its expectation is the gradient transformed by
    the (positive semi-definite) covariance of Δa, so a scaled, not exact, gradient. It needs no
    knowledge of the injected noise, so it works when the perturbation cannot be observed.

    Only forward passes run on the chip (no transposed reads); each layer's update is rank-1
    per sample. The noise is drawn from the rule's own generator, seeded from the run's.

    On an analog chip the clean and the noisy pass get independent read noise (and ADC
    quantisation), which also enters ΔL and, for ``anp``, Δa. The rule runs there unchanged;
    the variance this adds to the estimate is a finding about the chip, not a bug.
    """

    # a spiking network's loss is piecewise constant in the weights: a finite difference does not
    # estimate the surrogate gradient the probe holds rules to, so these rules refuse spiking networks
    excludes: ClassVar[tuple[str, ...]] = ("snn",)

    variant: Literal["np", "anp"] = spec_field(
        "np", doc="np: correlate ΔL with the injected noise ξ; anp: with the measured activity change Δa")
    sigma: float = spec_field(1e-3, doc="std of the noise ξ added to every pre-activation a_l",
                              unit="pre-activation units", low=0.0, high=10.0, low_open=True)

    def init(self, network: Network, generator: torch.Generator) -> Any:
        return own_generator(generator)

    def signals(self, network: Network, trace: Trace, batch, loss: Loss, state: Any
                ) -> tuple[list[LayerSignal], Any]:
        x, y = batch
        n_batch = len(x)
        names = network.weight_names
        xi = {name: self.sigma * torch.randn(trace.preacts[name].shape, generator=state,
                                             dtype=trace.preacts[name].dtype) for name in names}
        cursor = dict.fromkeys(names, 0)

        def perturb(name: str, t: int, x_hat: torch.Tensor) -> torch.Tensor:
            """The next rows of ξ: reads come in the order the trace stacks them (time steps of a sequence)."""
            start = cursor[name]
            cursor[name] += len(x_hat)
            return xi[name][start:start + len(x_hat)]

        with torch.no_grad():
            noisy = network.unroll(x, perturb=perturb)
            dloss = (loss.per_sample(noisy.output, y) - loss.per_sample(trace.output, y)) / n_batch  # (batch,)

        def per_row(v: torch.Tensor, rows: int) -> torch.Tensor:  # a sample's value on each of its rows
            return v.repeat(rows // n_batch)[:, None]

        if self.variant == "np":
            deltas = {name: per_row(dloss / self.sigma ** 2, len(xi[name])) * xi[name] for name in names}
        else:
            da = {name: noisy.preacts[name] - trace.preacts[name] for name in names}
            sq_norm = sum((d ** 2).view(-1, n_batch, d.shape[1]).sum((0, 2)) for d in da.values())  # (batch,)
            n_nodes = sum(d.shape[1] for d in da.values())
            scale = dloss * math.sqrt(n_nodes) / sq_norm.clamp_min(torch.finfo(sq_norm.dtype).tiny)
            deltas = {name: per_row(scale, len(d)) * d for name, d in da.items()}
        return [LayerSignal(name, trace.inputs[name], deltas[name]) for name in names], state
