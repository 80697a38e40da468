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
  batch's totals are one batched matmul of the trains stacked on their magnitudes:
  ``S = Σ_r D_rᵀ X_r`` (down minus up) and ``N = Σ_r |D_r|ᵀ |X_r|`` (all pulses).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from chiploop.lazy import torch

TINY = 1e-30
# trains of more entries than this repeat their per-sample table as int16 (memory-bound: P = 32,
# 64x64, R = 275: 22.7 -> 13.5-18.2 ms for trains and totals); smaller ones stay float, where the
# conversion and the mixed-dtype multiply cost more than the copy saves (P = 1, 64x64: 336 -> 400 µs)
BIG_TRAINS = 1 << 16


class Trains(NamedTuple):
    """Signed pulse trains of one update: ``lines`` (P, R, in + out), row r of a chip one slot of
    one sample (the samples' rows in order, ``bl`` (P, B) of them each; rows past a chip's own
    total are all 0), entry ``sign(x_j)`` / ``sign(d_i)`` where that line fires, else 0; ``mag``
    their magnitudes. Both sit in one tensor ``pair`` (2, P, R, in + out), so that :func:`totals`
    is one batched matmul."""

    pair: torch.Tensor
    bl: torch.Tensor
    n_in: int

    @property
    def lines(self) -> torch.Tensor:
        return self.pair[0]

    @property
    def mag(self) -> torch.Tensor:
        return self.pair[1]                # |lines|: 1 where a line fires

    @property
    def x(self) -> torch.Tensor:
        return self.lines[..., :self.n_in]

    @property
    def d(self) -> torch.Tensor:
        return self.lines[..., self.n_in:]


def _management(ax: torch.Tensor, ad: torch.Tensor, lr: float, dw_min: float, desired_bl: int,
                scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(BL, A, B)`` per sample from the absolute values ``ax`` (..., in) and ``ad`` (..., out), each
    (..., 1), BL as a float, A and B times ``scale``: with ``k' = min(k, desired_bl)`` and ``c = sqrt(k' / BL)``,
    ``B = c / max|x|`` and ``A = c max(k / desired_bl, 1) / max|d|`` (the module doc's A and B:
    ``max(k / desired_bl, 1) = max|d| / d'``)."""
    x_max = ax.amax(-1, keepdim=True)
    d_max = ad.amax(-1, keepdim=True)
    k = torch.mul(x_max, d_max).mul_(lr / dw_min)
    kk = k.clamp(max=float(desired_bl))
    bl = kk.ceil()                                      # min(ceil(k), desired_bl); 0 when k = 0
    c = torch.div(kk, bl.clamp(min=1.0)).sqrt_().mul_(scale)   # sqrt(k' / BL)
    B = torch.div(c, x_max.clamp_(min=TINY))
    A = k.mul_(1.0 / desired_bl).clamp_(min=1.0).mul_(c).div_(d_max.clamp_(min=TINY))
    return bl, A, B


def management(x: torch.Tensor, d: torch.Tensor, lr: float, dw_min: float, desired_bl: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample ``(BL, A, B)`` for ``x`` (..., in) and ``d`` (..., out): BL as int64 (0: no pulse)."""
    bl, A, B = _management(x.abs(), d.abs(), lr, dw_min, desired_bl)
    return bl.squeeze(-1).to(torch.int64), A.squeeze(-1), B.squeeze(-1)


def uniform16(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform int16 over all 65,536 values: four from every 64-bit word of ``generator`` (the last
    axis padded to a multiple of 4, the padding dropped)."""
    *lead, n = shape
    words = torch.empty((*lead, (n + 3) // 4), dtype=torch.int64, device=device).random_(-2 ** 63, None,
                                                                                       generator=generator)
    return words.view(torch.int16)[..., :n]


def trains(x: torch.Tensor, d: torch.Tensor, lr: float, dw_min: float, desired_bl: int,
           generator: torch.Generator) -> Trains | None:
    """The signed Bernoulli pulse trains of one update of ``x`` (P, B, in), ``d`` (P, B, out): only
    each sample's own BL slots (see the module's doc). None when no sample sends a pulse.

    Per sample one row of thresholds and signs, ``[round(65536 p) - 32768, sign]`` over the lines
    (probabilities ``p_x = B |x|``, ``p_d = A |d|``); the row is repeated BL times (one
    ``repeat_interleave``) and compared with fresh 16-bit uniforms. With P > 1 every chip's rows
    are padded to the most rows of any chip by a row that never fires."""
    if lr < 0:
        raise ValueError(f"lr {lr}: a pulsed update needs lr >= 0")
    if lr == 0:
        return None
    P, B, n_in = x.shape
    xd = torch.cat([x, d], -1)
    C = xd.shape[-1]
    a = xd.abs()
    ax, ad = a[..., :n_in], a[..., n_in:]
    bl, A, Bx = _management(ax, ad, lr, dw_min, desired_bl, 65536.0)                      # (P, B, 1) each
    ax.mul_(Bx)
    ad.mul_(A)
    bl = bl.to(torch.int64)
    rows = bl.sum(1)                                                                      # (P, 1)
    R = int(rows.max()) if P > 1 else int(rows)
    if R == 0:
        return None
    table = torch.cat([a.round_().sub_(32768.0).clamp_(max=32767.0), xd.sign_()], -1)  # (P, B, 2C): u < thr: p
    if P * R * C > BIG_TRAINS:
        table = table.to(torch.int16)                     # repeated below: half the bytes to copy
    counts = bl.view(-1)
    if P > 1:                                                                             # pad every chip to R rows
        never = torch.cat([table.new_full((P, 1, C), -32768), table.new_zeros(P, 1, C)], -1)
        table = torch.cat([table, never], 1)
        counts = torch.cat([bl.view(P, B), R - rows], 1).view(-1)
    table = torch.repeat_interleave(table.view(-1, 2 * C), counts, dim=0, output_size=P * R)
    pair = torch.empty(2, P * R, C, dtype=x.dtype, device=x.device)
    mag = torch.lt(uniform16((P * R, C), generator, x.device), table[:, :C], out=pair[1])   # 1.0 where a line fires
    torch.mul(table[:, C:], mag, out=pair[0])
    return Trains(pair.view(2, P, R, C), bl.view(P, B), n_in)


def totals(t: Trains) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's pulses per cell, (P, out, in) each, from one batched matmul of the trains and
    their magnitudes: ``S = Σ Dᵀ X`` (down minus up: down where ``sign(x) sign(d) > 0``) and
    ``N = Σ |D|ᵀ |X|`` (all pulses); up pulses are ``(N - S) / 2``, down pulses ``(N + S) / 2``."""
    _, P, R, C = t.pair.shape
    both = t.pair.view(2 * P, R, C)
    out = both[..., t.n_in:].transpose(1, 2) @ both[..., :t.n_in]
    return out[:P], out[P:]


def cell_rows(t: Trains, cells: torch.Tensor) -> torch.Tensor:
    """The pulses of cells ``cells`` (K, 3) of (p, i, j) indices, row by row: (K, R) in {+1 up, -1
    down, 0 none}, in the order aihwkit applies them (sample after sample)."""
    p, i, j = cells.unbind(1)
    C = t.lines.shape[-1]
    return line_rows(t, torch.cat([p * C + t.n_in + i, p * C + j]))


def line_rows(t: Trains, lines: torch.Tensor) -> torch.Tensor:
    """:func:`cell_rows` of K cells given by their lines: ``lines`` (2K,), the K output lines
    ``p C + in + i`` then the K input lines ``p C + j`` (indices into the (P C) lines of the trains):
    ``-D[p, :, i] X[p, :, j]``, (K, R): one ``index_select`` of the lines' columns for one chip, of
    the rows of the line-major copy of the trains for a population (at P = 32, 180 µs against 256
    for an advanced index ``lines[p, :, c]`` and 976 for a ``take`` of flat indices)."""
    _, P, R, C = t.pair.shape
    if P == 1:
        both = t.pair[0, 0].index_select(1, lines).t()                                   # (2K, R)
    else:
        both = t.pair[0].transpose(1, 2).reshape(P * C, R).index_select(0, lines)
    K = both.shape[0] // 2
    return both[:K].mul_(both[K:]).neg_()


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
