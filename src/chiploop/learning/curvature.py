"""Curvature and margin of the training loss at a chip's weights (docs/science.md §6.2-6.3).

Everything here runs on the chip's *digital shadow* (:mod:`chiploop.learning.shadow`): the
network's own ``unroll`` on exact float copies of every crossbar, so any network works and there
is no read noise; the numbers are deterministic given the generator. A decorrelator ``R`` before
a weight crossbar is applied exactly, as a fixed matrix: it is not a parameter of the loss (the
loss's gradient never trains it), so the Hessian is over the weight crossbars and their biases.
The parameter vector is ``θ = (W_a, b_a, W_b, b_b, ...)`` in graph order and the loss is
``L(θ) = loss(shadow(x; θ), y)``, the mean over the batch.

Measures:

* **Top Hessian eigenvalue** ``λ_max``, the eigenvalue of ``H = ∇²_θ L`` of largest magnitude,
  by power iteration on Hessian-vector products ``Hv = ∇_θ (∇_θ L · v)`` (double backprop, so
  ``H`` is never formed). Sharpness of the minimum as a predictor of generalisation of
  bio-plausible learning rules follows seed 001: Liu, Ghosh, Richards, Shea-Brown & Lajoie 2022,
  "Beyond accuracy: generalization properties of bio-plausible temporal credit assignment rules"
  (NeurIPS 2022).
* **Hessian trace** ``tr H`` by Hutchinson's estimator: for Rademacher ``v`` (entries ±1 with
  equal probability) ``E[vᵀHv] = tr H``, and ``tr H ≈ (1/S) Σ_s v_sᵀ H v_s``. Its variance per
  sample is ``2 Σ_{i≠j} H_ij²``. Hutchinson 1989, "A stochastic estimator of the trace of the
  influence matrix for Laplacian smoothing splines", Commun. Statist. Simul. Comput. 18(3).
* **Output margin** (classification): with logits ``z_b = shadow(x_b)``, the margin of sample
  ``b`` is ``m_b = z_{b,y_b} − max_{j≠y_b} z_{b,j}`` (positive iff ``b`` is classified correctly).
  Reported: ``margin_min = min_b m_b``, ``margin_mean = (1/N) Σ_b m_b`` and the normalised
  margin ``margin_normalised = min_b m_b / Π_l ||W_l R_l||_2`` (spectral norms; ``R_l = I`` without
  decorrelation), the margin divided by the product of the layers' Lipschitz constants as in the
  spectrally normalised margin of Bartlett, Foster & Telgarsky 2017, "Spectrally-normalized
  margin bounds for neural networks" (without their ``(2,1)``-norm correction factor), and the
  normalised margin of Bernstein & Yue 2021, "Computing the information content of trained
  neural networks". Scaling every ``W_l`` by ``c`` scales the raw margin of a bias-free
  homogeneous (relu) net by ``c^L`` and leaves the normalised one unchanged.

All randomness (power-iteration start, Rademacher probes) comes from the ``generator`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from chiploop.lazy import torch

from chiploop.emulator import Network
from chiploop.learning.loss import Loss
from chiploop.learning.shadow import parameter_names, shadow_loss, shadow_output, shadow_parameters

__all__ = ["curvature_report", "hessian_trace", "hessian_vector_product", "output_margin",
           "shadow_loss", "shadow_output", "shadow_parameters", "top_hessian_eigenvalue"]


class _HVP:
    """Hessian-vector products of ``L`` at fixed parameters, sharing one first-order graph."""

    def __init__(self, network: Network, x: torch.Tensor, y: torch.Tensor, loss: Loss, dtype: torch.dtype | None,
                 only: Sequence[str] | None = None):
        if len(x) == 0:
            raise ValueError("curvature of an empty batch")
        every = shadow_parameters(network, dtype)
        names = parameter_names(network)
        if only is not None:
            unknown = set(only) - set(network.weight_names)
            if unknown:
                raise ValueError(f"no weight crossbar named {', '.join(sorted(unknown))}: the network has "
                                 f"{', '.join(network.weight_names)}")
        chosen = [i for i, (name, part) in enumerate(names) if only is None or (part == "W" and name in only)]
        self.params = [every[i].requires_grad_(True) for i in chosen]  # θ: the rest stay constants
        value = shadow_loss(every, network, x, y, loss)
        self.grads = torch.autograd.grad(value, self.params, create_graph=True)
        self.numel = sum(p.numel() for p in self.params)

    def flat(self, tensors) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in tensors])

    def split(self, v: torch.Tensor) -> list[torch.Tensor]:
        out, i = [], 0
        for p in self.params:
            out.append(v[i:i + p.numel()].view_as(p))
            i += p.numel()
        return out

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat vector ``v``; gradient entries independent of ``θ`` contribute 0."""
        pairs = [(g, u) for g, u in zip(self.grads, self.split(v)) if g.requires_grad]
        if not pairs:
            return torch.zeros_like(v)
        hv = torch.autograd.grad([g for g, _ in pairs], self.params, grad_outputs=[u for _, u in pairs],
                                 retain_graph=True, allow_unused=True)
        return self.flat(torch.zeros_like(p) if h is None else h for h, p in zip(hv, self.params))

    def batched(self, V: torch.Tensor) -> torch.Tensor:
        """``H v`` for every row ``v`` of ``V`` (k, n) in one vectorised backward pass (k, n)."""
        k = len(V)
        pairs = [(g, u.reshape(k, *g.shape)) for g, u in zip(self.grads, self._split_rows(V)) if g.requires_grad]
        if not pairs:
            return torch.zeros_like(V)
        hv = torch.autograd.grad([g for g, _ in pairs], self.params, grad_outputs=[u for _, u in pairs],
                                 retain_graph=True, allow_unused=True, is_grads_batched=True)
        return torch.cat([V.new_zeros(k, p.numel()) if h is None else h.reshape(k, -1)
                          for h, p in zip(hv, self.params)], dim=1)

    def _split_rows(self, V: torch.Tensor) -> list[torch.Tensor]:
        out, i = [], 0
        for p in self.params:
            out.append(V[:, i:i + p.numel()])
            i += p.numel()
        return out


def hessian_vector_product(network: Network, x: torch.Tensor, y: torch.Tensor, loss: Loss, v: torch.Tensor,
                           dtype: torch.dtype | None = None, only: Sequence[str] | None = None) -> torch.Tensor:
    """``H v`` for one flat vector ``v`` over ``θ = (W_0, b_0, ...)`` flattened in that order (float64 unless
    ``dtype`` says otherwise, as every function here)."""
    dtype = torch.float64 if dtype is None else dtype
    hvp = _HVP(network, x, y, loss, dtype, only)
    return hvp(v.to(dtype))


def top_hessian_eigenvalue(network: Network, x: torch.Tensor, y: torch.Tensor, loss: Loss, iters: int = 100,
                           tol: float = 1e-6, generator: torch.Generator | None = None,
                           dtype: torch.dtype | None = None, only: Sequence[str] | None = None) -> float:
    """The eigenvalue of ``∇²_θ L`` of largest magnitude (with its sign), by power iteration.

    ``v_0 ~ N(0, I)`` from ``generator``, normalised; ``w = H v_k``, Rayleigh quotient
    ``λ_k = v_kᵀ w``, ``v_{k+1} = w / ||w||``. Stops after ``iters`` products or once
    ``|λ_k − λ_{k−1}| <= tol |λ_k|``. ``only``: the Hessian over those weight crossbars' matrices alone
    (the other parameters held), e.g. ``("W_rec",)``. Converges geometrically at rate ``(|λ_2| / |λ_1|)²`` in
    ``λ`` (``H`` is symmetric); an exactly zero ``H v`` gives 0.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    dtype = torch.float64 if dtype is None else dtype
    hvp = _HVP(network, x, y, loss, dtype, only)
    v = torch.randn(hvp.numel, generator=generator, dtype=dtype)
    v = v / v.norm()
    lam_old = None
    lam = 0.0
    for _ in range(iters):
        w = hvp(v)
        lam = torch.dot(v, w).item()
        norm = w.norm().item()
        if norm == 0.0:
            return 0.0
        v = w / norm
        if lam_old is not None and abs(lam - lam_old) <= tol * abs(lam):
            break
        lam_old = lam
    return lam


def hessian_trace(network: Network, x: torch.Tensor, y: torch.Tensor, loss: Loss, samples: int = 100,
                  generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
                  batch: int | None = None, only: Sequence[str] | None = None) -> float:
    """Hutchinson's estimate ``(1/S) Σ_s v_sᵀ H v_s`` of ``tr ∇²_θ L``, ``v_s`` Rademacher from ``generator``.

    The ``S = samples`` probes go through the double backward ``batch`` at a time (vectorised,
    ``is_grads_batched``); by default as many as keep that pass near ``2**22`` numbers. Its standard error is
    ``sqrt(2 Σ_{i≠j} H_ij² / S)``.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    dtype = torch.float64 if dtype is None else dtype
    hvp = _HVP(network, x, y, loss, dtype, only)
    if batch is None:  # per probe: its parameter-sized vectors and its copy of the batch's activations
        batch = max(1, 2**22 // (hvp.numel + len(x) * _width(network)))
    total, done = 0.0, 0
    while done < samples:
        k = min(batch, samples - done)
        V = torch.randint(0, 2, (k, hvp.numel), generator=generator).to(dtype) * 2 - 1
        total += (V * hvp.batched(V)).sum().item()
        done += k
    return total / samples


def _width(network: Network) -> int:
    """Numbers per sample a pass keeps: the input and every weight crossbar's outputs."""
    shapes = [network.chip.crossbars[name].shape for name in network.weight_names]
    return shapes[0][1] + sum(out for out, _ in shapes)


def output_margin(network: Network, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None = None) -> dict[str, float]:
    """Margins of the shadow's logits ``z`` on labels ``y`` (classification).

    ``m_b = z_{b,y_b} − max_{j≠y_b} z_{b,j}``; returns ``margin_min = min_b m_b``,
    ``margin_mean = mean_b m_b`` and ``margin_normalised = margin_min / Π_l ||W_l R_l||_2``.
    """
    if len(x) == 0:
        raise ValueError("margin of an empty batch")
    dtype = torch.float64 if dtype is None else dtype
    with torch.no_grad():
        params = shadow_parameters(network, dtype)
        z = shadow_output(params, network, x)
        if z.shape[1] < 2:
            raise ValueError("the output margin needs at least two classes")
        y = y.long()
        rows = torch.arange(len(y))
        correct = z[rows, y]
        others = z.clone()
        others[rows, y] = -math.inf
        m = correct - others.max(1).values
        lipschitz = 1.0
        chip = network.chip
        for name in network.weight_names:
            A = chip.crossbars[name].weights().to(dtype)
            if name in chip.decorrelators:
                A = A @ chip.crossbars[chip.decorrelators[name]].weights().to(dtype)
            lipschitz *= torch.linalg.matrix_norm(A, ord=2).item()
    m_min = m.min().item()
    return {"margin_min": m_min, "margin_mean": m.mean().item(),
            "margin_normalised": m_min / lipschitz if lipschitz > 0 else math.nan}


def curvature_report(network: Network, x: torch.Tensor, y: torch.Tensor, loss: Loss, generator: torch.Generator,
                     iters: int = 100, samples: int = 1000, tol: float = 1e-6,
                     dtype: torch.dtype | None = None, alone: Sequence[str] = ()) -> dict[str, float]:
    """What a run records at its end: ``hessian_top_eig``, ``hessian_trace``, the same over each weight
    crossbar in ``alone`` by itself (``hessian_top_eig_W_rec``, ...), and, for cross-entropy,
    ``margin_min``, ``margin_mean``, ``margin_normalised`` (see the module docstring)."""
    report = {
        "hessian_top_eig": top_hessian_eigenvalue(network, x, y, loss, iters=iters, tol=tol, generator=generator,
                                                  dtype=dtype),
        "hessian_trace": hessian_trace(network, x, y, loss, samples=samples, generator=generator, dtype=dtype),
    }
    for name in alone:  # the Hessian over one weight crossbar's matrix, the others held (W_rec: Liu et al.)
        report[f"hessian_top_eig_{name}"] = top_hessian_eigenvalue(network, x, y, loss, iters=iters, tol=tol,
                                                                   generator=generator, dtype=dtype, only=(name,))
        report[f"hessian_trace_{name}"] = hessian_trace(network, x, y, loss, samples=samples, generator=generator,
                                                        dtype=dtype, only=(name,))
    if loss.kind == "cross_entropy":
        report.update(output_margin(network, x, y, dtype=dtype))
    return report
