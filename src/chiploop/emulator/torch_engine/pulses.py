"""Stochastic pulse trains of one pulsed update, as aihwkit 1.1.0 makes them (pure torch).

For every sample ``b`` of a batch, update management (``rpu_pulsed_meta_parameter.cpp``,
``PulsedUpdateMetaParameter::performUpdateManagement``, lines 182-241; defaults
``update_bl_management = update_management = True``, ``um_grad_scale = 1``) sets

    k  = lr · max|x_b| · max|d_b| / dw_min            (dw_min: the device's weight granularity)
    BL = min(ceil(k), desired_bl)
    A0 = B0 = sqrt(lr / (dw_min · BL))
    d' = max|d_b| · (desired_bl / k  if k > desired_bl else 1)
    A  = A0 · sqrt(max|x_b| / d'),   B = B0 · sqrt(d' / max|x_b|)

and the sparse bit-line maker (``sparse_bit_line_maker.cpp``, ``makeCounts`` and
``generateCounts``, stochastic-compressed pulse type) fires, in each of the BL slots, input
line ``j`` with probability ``min(1, B |x_bj|)`` and output line ``i`` with probability
``min(1, A |d_bi|)``, independently. A cell sees a pulse where both of its lines fire, so the
coincidence counts of one sample are one matmul of the Bernoulli trains,

    n_bij = Σ_k D_bki X_bkj,    E[n_bij] = BL · p_d p_x = lr |x_bj| |d_bi| / dw_min  (unclipped),

correlated along rows and columns as on the chip. Its sign follows gradient descent
(``rpu_weight_updater.cpp`` ``updateVectorWithDevice``, lines 128-160): ``sign(x) sign(d) > 0``
moves the weight down. A sample with ``max|x| = 0`` or ``max|d| = 0`` sends no pulse.
"""

from __future__ import annotations

import math

from chiploop.lazy import torch


def management(x: torch.Tensor, d: torch.Tensor, lr: float, dw_min: float, desired_bl: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample ``(BL, A, B)`` for ``x`` (..., in) and ``d`` (..., out): BL as int64 (0: no pulse)."""
    x_max = x.abs().amax(-1)
    d_max = d.abs().amax(-1)
    k = lr * x_max * d_max / dw_min
    bl = torch.clamp(torch.ceil(k), max=desired_bl).to(torch.int64)
    live = (x_max > 0) & (d_max > 0)
    bl = torch.where(live, bl, torch.zeros_like(bl))
    safe_bl = bl.clamp(min=1).to(x.dtype)
    a0 = torch.sqrt(lr / (dw_min * safe_bl))
    d_val = torch.where(k > desired_bl, d_max * desired_bl / k.clamp(min=1e-30), d_max)
    xs, ds = x_max.clamp(min=1e-30), d_val.clamp(min=1e-30)
    return bl, a0 * torch.sqrt(xs / ds), a0 * torch.sqrt(ds / xs)


def trains(x: torch.Tensor, d: torch.Tensor, lr: float, dw_min: float, desired_bl: int,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The Bernoulli pulse trains of one update, signed: ``(X, D)`` with entries ``sign(x_j)`` (or
    ``sign(d_i)``) where the line fires and 0 elsewhere, (P, B, K, in) and (P, B, K, out), K = the
    batch's largest BL. Slots past a sample's own BL are cleared on the output lines only (a
    coincidence needs both lines). None when no sample sends a pulse. ``x`` (P, B, in), ``d`` (P, B, out)."""
    if lr < 0:
        raise ValueError(f"lr {lr}: a pulsed update needs lr >= 0")
    if lr == 0:
        return None
    P, B, n_in = x.shape
    n_out = d.shape[-1]
    bl, A, Bp = management(x, d, lr, dw_min, desired_bl)
    slots = int(bl.max()) if bl.numel() else 0
    if slots == 0:
        return None
    live = torch.arange(slots, device=x.device).view(1, 1, slots, 1) < bl.view(P, B, 1, 1)       # (P, B, K, 1)
    px = (Bp.unsqueeze(-1) * x.abs()).clamp(max=1.0).unsqueeze(2)                                 # (P, B, 1, in)
    pd = (A.unsqueeze(-1) * d.abs()).clamp(max=1.0).unsqueeze(2) * live                          # (P, B, K, out)
    zero = x.new_zeros(())
    fx = torch.where(torch.rand(P, B, slots, n_in, generator=generator, device=x.device, dtype=x.dtype) < px,
                     torch.sign(x).unsqueeze(2), zero)
    fd = torch.where(torch.rand(P, B, slots, n_out, generator=generator, device=x.device, dtype=x.dtype) < pd,
                     torch.sign(d).unsqueeze(2), zero)
    return fx, fd


def totals(fx: torch.Tensor, fd: torch.Tensor, x: torch.Tensor, d: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's total up and down pulses per cell, (P, out, in) each, from two matmuls of the
    signed trains: ``S = Σ D^T X`` (down minus up: down where ``sign(x) sign(d) > 0``) and
    ``N = Σ |D|^T |X|`` (all pulses)."""
    P, B, K, n_in = fx.shape
    X, D = fx.reshape(P, B * K, n_in), fd.reshape(P, B * K, -1)
    signed = D.transpose(1, 2) @ X
    total = D.abs().transpose(1, 2) @ X.abs()
    return (total - signed) * 0.5, (total + signed) * 0.5


def per_sample(fx: torch.Tensor, fd: torch.Tensor, x: torch.Tensor, d: torch.Tensor, cells: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Coincidences of each sample at the cells ``cells`` (K, 3) of (p, i, j) indices: counts
    (K, B) and pulse direction (K, B) in {+1 up, -1 down}."""
    p, i, j = cells.unbind(1)
    n = (fd[p, :, :, i] * fx[p, :, :, j]).abs().sum(-1)                                           # (K, B)
    direction = -(torch.sign(d[p, :, i]) * torch.sign(x[p, :, j]))
    return n, direction


def coincidences(x: torch.Tensor, d: torch.Tensor, lr: float, dw_min: float, desired_bl: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample and cell ``(up, down)`` coincidence counts, each (P, B, out, in) (for checks; the
    engine uses :func:`totals` and :func:`per_sample`)."""
    P, B, n_in = x.shape
    zeros = x.new_zeros(P, B, d.shape[-1], n_in)
    t = trains(x, d, lr, dw_min, desired_bl, generator)
    if t is None:
        return zeros, zeros
    fx, fd = t
    n = fd.abs().transpose(-1, -2) @ fx.abs()
    same = (torch.sign(d).unsqueeze(-1) * torch.sign(x).unsqueeze(-2)) > 0
    return torch.where(same, zeros, n), torch.where(same, n, zeros)


def expected_pulses(lr: float, x_max: float, d_max: float, dw_min: float) -> float:
    """``k = lr max|x| max|d| / dw_min``: the pulses the largest cell update asks for."""
    return lr * x_max * d_max / dw_min if dw_min > 0 else math.inf
