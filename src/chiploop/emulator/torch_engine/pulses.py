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

How the engine draws them (equal in distribution to the above):

* only the BL_b live slots of each sample are drawn, as rows of one (P, R, in + out) table
  (R = the most live slots of any chip of the population, Σ_b BL_b; chips with fewer get rows
  of no pulse), so no uniform is spent on a slot past a sample's BL;
* written with ``c = sqrt(min(k, desired_bl) / BL)``, the probabilities are
  ``p_x,j = c |x_j| / max|x|`` and ``p_d,i = c |d_i| / d'`` (the same A and B as above);
* a line fires when a 16-bit uniform integer ``u`` (four from each 64-bit word of the generator)
  is ``< round(65536 p) - 32768``: the probability is ``round(65536 p) / 65536``, p to within
  1/131,072 (aihwkit's own uniforms have 15 bits), exactly 0 at p = 0 (a line of value 0 never
  fires), and 65535/65536 at p = 1 (the 16 bits have no 65,537th state);
* the trains are signed, ``X_rj = sign(x_bj)`` where line j fires in row r of sample b, so one
  batch's totals are two batched matmuls: ``S = Σ_r D_rᵀ X_r`` (down minus up) and
  ``N = Σ_r |D_r|ᵀ |X_r|`` (all pulses).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from chiploop.lazy import torch

TINY = 1e-30


class Trains(NamedTuple):
    """Signed pulse trains of one update: ``lines`` (P, R, in + out), row r of a chip one slot of
    one sample (the samples' rows in order, ``bl`` (P, B) of them each; rows past a chip's own
    total are all 0), entry ``sign(x_j)`` / ``sign(d_i)`` where that line fires, else 0."""

    lines: torch.Tensor
    mag: torch.Tensor                    # |lines|: 1 where a line fires
    bl: torch.Tensor
    n_in: int

    @property
    def x(self) -> torch.Tensor:
        return self.lines[..., :self.n_in]

    @property
    def d(self) -> torch.Tensor:
        return self.lines[..., self.n_in:]


def _management(ax: torch.Tensor, ad: torch.Tensor, lr: float, dw_min: float, desired_bl: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(BL, A, B)`` per sample from the absolute values ``ax`` (..., in) and ``ad`` (..., out)."""
    x_max = ax.amax(-1)
    d_max = ad.amax(-1)
    k = x_max * d_max * (lr / dw_min)
    kk = k.clamp(max=float(desired_bl))                 # k' = lr max|x| d' / dw_min
    bl = kk.ceil()                                      # min(ceil(k), desired_bl); 0 when k = 0
    c = (kk / bl.clamp(min=1.0)).sqrt()                 # sqrt(k' / BL) = BL-free part of A0 B0 ...
    B = c / x_max.clamp(min=TINY)                       # A0 sqrt(d' / max|x|)
    A = c * (k / kk.clamp(min=TINY)) / d_max.clamp(min=TINY)   # A0 sqrt(max|x| / d'), d' = max|d| k'/k
    return bl.to(torch.int64), A, B


def management(x: torch.Tensor, d: torch.Tensor, lr: float, dw_min: float, desired_bl: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample ``(BL, A, B)`` for ``x`` (..., in) and ``d`` (..., out): BL as int64 (0: no pulse)."""
    return _management(x.abs(), d.abs(), lr, dw_min, desired_bl)


def uniform16(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform int16 over all 65,536 values: four from every 64-bit word of ``generator``."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2 ** 63, None, generator=generator)
    return words.view(torch.int16)[:n].view(shape)


def trains(x: torch.Tensor, d: torch.Tensor, lr: float, dw_min: float, desired_bl: int,
           generator: torch.Generator) -> Trains | None:
    """The signed Bernoulli pulse trains of one update of ``x`` (P, B, in), ``d`` (P, B, out): only
    each sample's own BL slots (see the module's doc). None when no sample sends a pulse."""
    if lr < 0:
        raise ValueError(f"lr {lr}: a pulsed update needs lr >= 0")
    if lr == 0:
        return None
    P, B, n_in = x.shape
    xd = torch.cat([x, d], -1)
    C = xd.shape[-1]
    a = xd.abs()
    bl, A, Bx = _management(a[..., :n_in], a[..., n_in:], lr, dw_min, desired_bl)
    rows = bl.sum(-1)                                                                     # (P,)
    R = int(rows.max()) if rows.numel() else 0
    if R == 0:
        return None
    scale = torch.stack([Bx, A], -1).mul_(65536.0)                                       # (P, B, 2)
    scale = torch.cat([scale[..., :1].expand(P, B, n_in), scale[..., 1:].expand(P, B, C - n_in)], -1)
    thr = (a * scale).round_().sub_(32768.0).clamp_(max=32767.0)                        # u < thr: p (p <= 1)
    never = xd.new_full((P, 1, C), -32768.0)                                             # a row of no pulse
    thr = torch.cat([thr, never], 1).to(torch.int16).view(P * (B + 1), C)
    sign = torch.cat([torch.sign(xd), never], 1).view(P * (B + 1), C)
    counts = torch.cat([bl, (R - rows).unsqueeze(-1)], -1).view(-1)                      # pads every chip to R rows
    fire = uniform16((P, R, C), generator, x.device) < torch.repeat_interleave(
        thr, counts, dim=0, output_size=P * R).view(P, R, C)
    mag = fire.to(x.dtype)
    lines = torch.repeat_interleave(sign, counts, dim=0, output_size=P * R).view(P, R, C).mul_(mag)
    return Trains(lines, mag, bl, n_in)


def totals(t: Trains) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's pulses per cell, (P, out, in) each, from two batched matmuls: ``S = Σ Dᵀ X``
    (down minus up: down where ``sign(x) sign(d) > 0``) and ``N = Σ |D|ᵀ |X|`` (all pulses); up
    pulses are ``(N - S) / 2``, down pulses ``(N + S) / 2``."""
    signed = t.d.transpose(1, 2) @ t.x
    return signed, t.mag[..., t.n_in:].transpose(1, 2) @ t.mag[..., :t.n_in]


def cell_rows(t: Trains, cells: torch.Tensor) -> torch.Tensor:
    """The pulses of cells ``cells`` (K, 3) of (p, i, j) indices, row by row: (K, R) in {+1 up, -1
    down, 0 none}, in the order aihwkit applies them (sample after sample)."""
    p, i, j = cells.unbind(1)
    return -(t.lines[p, :, t.n_in + i] * t.lines[p, :, j])


def per_sample(t: Trains, cells: torch.Tensor) -> torch.Tensor:
    """Coincidences of each sample at the cells ``cells`` (K, 3): counts (K, B) (their direction
    is ``-sign(d_bi) sign(x_bj)``)."""
    n = cell_rows(t, cells).abs()
    csum = torch.cat([n.new_zeros(len(n), 1), n.cumsum(1)], 1)                           # (K, R + 1)
    ends = t.bl.cumsum(-1)[cells[:, 0]]                                                   # (K, B)
    return csum.gather(1, ends) - csum.gather(1, ends - t.bl[cells[:, 0]])


def coincidences(x: torch.Tensor, d: torch.Tensor, lr: float, dw_min: float, desired_bl: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample and cell ``(up, down)`` coincidence counts, each (P, B, out, in) (for checks; the
    engine uses :func:`totals` and :func:`per_sample`)."""
    P, B, n_in = x.shape
    zeros = x.new_zeros(P, B, d.shape[-1], n_in)
    t = trains(x, d, lr, dw_min, desired_bl, generator)
    if t is None:
        return zeros, zeros
    R = t.lines.shape[1]
    owner = torch.stack([torch.repeat_interleave(torch.arange(B + 1, device=x.device),
                                                 torch.cat([t.bl[p], (R - t.bl[p].sum()).view(1)]))
                         for p in range(P)])                                              # (P, R)
    onehot = torch.nn.functional.one_hot(owner, B + 1)[..., :B].to(x.dtype)              # (P, R, B)
    n = torch.einsum("prb,pri,prj->pbij", onehot, t.mag[..., n_in:], t.mag[..., :n_in])
    same = (torch.sign(d).unsqueeze(-1) * torch.sign(x).unsqueeze(-2)) > 0
    return torch.where(same, zeros, n), torch.where(same, n, zeros)


def expected_pulses(lr: float, x_max: float, d_max: float, dw_min: float) -> float:
    """``k = lr max|x| max|d| / dw_min``: the pulses the largest cell update asks for."""
    return lr * x_max * d_max / dw_min if dw_min > 0 else math.inf
