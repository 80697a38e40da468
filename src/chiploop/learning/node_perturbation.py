"""Node perturbation (Dalm, van Gerven & Ahmad 2023, "Effective learning with node perturbation in
deep neural networks", arXiv:2310.00965)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from chiploop.emulator import MLP, LayerSignal, Trace
from chiploop.learning.loss import Loss
from chiploop.specs import Spec, spec_field


@dataclass(frozen=True)
class NodePerturbation(Spec):
    """Gradient estimate from two forward passes, a clean one and one with noise on every node::

        clean pass a_l (the training loop's ``trace``),  noisy pass ã_l = a_l + ξ_l + (propagated change),
        ξ_l ~ N(0, σ²) of shape (batch, out_l), added to every layer's pre-activation at once,
        ΔL_b = L_b(noisy) - L_b(clean)                        (batch,), per-sample losses
        np:   δ_{l,b} = (ΔL_b / N) ξ_{l,b} / σ²
        anp:  δ_{l,b} = (ΔL_b / N) sqrt(n) Δa_{l,b} / Σ_k ||Δa_{k,b}||²,   Δa_l = ã_l - a_l
        ΔW_l = -lr δ_l^T x̂_{l-1}                              (x̂ from the clean pass)

    ``N`` is the batch size (the training loss is the batch mean), ``n = Σ_l out_l`` the number
    of nodes. ``np`` is an unbiased estimate of ``dL/da_l`` as σ -> 0 (``E[ξ ξ^T] = σ² I``).
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

    variant: Literal["np", "anp"] = spec_field(
        "np", doc="np: correlate ΔL with the injected noise ξ; anp: with the measured activity change Δa")
    sigma: float = spec_field(1e-3, doc="std of the noise ξ added to every pre-activation a_l",
                              unit="pre-activation units", low=0.0, high=10.0, low_open=True)

    def init(self, model: MLP, generator: torch.Generator) -> Any:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        return torch.Generator().manual_seed(seed)

    def signals(self, model: MLP, trace: Trace, batch, loss: Loss, state: Any) -> tuple[list[LayerSignal], Any]:
        x, y = batch
        n_batch = len(x)
        xi = [self.sigma * torch.randn(a.shape, generator=state, dtype=a.dtype) for a in trace.preacts]
        with torch.no_grad():
            noisy_out, noisy = model.forward(x, perturb=lambda l, _x: xi[l])
            dloss = (loss.per_sample(noisy_out, y) - loss.per_sample(trace.output, y)) / n_batch  # (batch,)
        if self.variant == "np":
            scale = (dloss / self.sigma ** 2)[:, None]
            deltas = [scale * xi_l for xi_l in xi]
        else:
            da = [n - c for n, c in zip(noisy.preacts, trace.preacts)]
            sq_norm = sum((d ** 2).sum(1) for d in da)  # (batch,), over all layers
            n_nodes = sum(model.sizes[1:])
            scale = (dloss * math.sqrt(n_nodes) / sq_norm.clamp_min(torch.finfo(sq_norm.dtype).tiny))[:, None]
            deltas = [scale * d for d in da]
        return [LayerSignal(name, trace.inputs[l], deltas[l]) for l, name in enumerate(model.names)], state
