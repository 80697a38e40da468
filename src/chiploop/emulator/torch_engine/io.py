"""Forward and transposed reads through aihwkit 1.1.0's periphery (``IOParameters`` as the
bridge ``devices/aihwkit._io`` sets them), batched in torch.

``rpu_forward_backward_pass.cpp`` (``ForwardBackwardPassIOManaged``), per sample:

* noise management, abs-max (``computeNoiseManagement`` lines 112-130): ``s = max_j |x_j|``;
  a sample with ``s = 0`` reads 0;
* DAC (``prepareInput`` lines 571-600): ``x̃ = clip(rint(x / (s·β) / r_in) · r_in, ±inp_bound)``
  with ``inp_bound = 1``. aihwkit's resolution convention (``rpu_pulsed_meta_parameter.cpp``,
  ``checkAndSetRes``, lines 26-37, called from ``initializeForForward``): a resolution is a fraction
  of the full range ``2·bound``, so ``r_in = 2 / (2^dac_bits - 2)`` (1/63 at 7 bits);
* the analog MVM ``y = W x̃`` with additive output noise ``+ read_noise · ξ``;
* ADC (``finalizeOutput`` lines 666-720): ``ỹ = rint(y / r_out) · r_out``,
  ``r_out = 2·out_bound / (2^adc_bits - 2)`` (24/510 at 9 bits and bound 12; no ADC without an
  output bound, as aihwkit's negative range then switches it off), clipped at ``±out_bound``;
* iterative bound management, forward only (``forwardVector`` lines 900-988): while some
  ``|ỹ_i|`` reaches the bound, β doubles (1, 2, 4, ...) and the sample is read again with fresh
  noise, until it passes, β > max_bm_factor (1000), or β > max_bm_res / r_in (0.25 · (2^dac_bits - 2) / 2: 16 at 7 bits);
* the digital rescale ``ỹ · s · β``.

The transposed read ``z = Wᵀ d`` is the same with no bound management (aihwkit turns it off for
``backwardVector``, lines 990-1028). ``rint`` is round-half-to-even, as ``torch.round``.
A spec with ``ideal_io`` reads exactly (aihwkit's ``is_perfect``).

How it is computed (a read of a 64 × 64 layer is overhead-bound, so in few torch calls): both
converters work in their integer steps. The DAC's steps are ``q = rint((x / s) · ((1/r_in) / β))``,
``1/r_in = (2^dac_bits - 2)/2`` exact and in this order, so that an input whose ratio to ``s`` is
exact rounds as in exact arithmetic (the abs-max input at β = 2 sits on a step's midpoint, 63/2 at
7 bits: rint, half to even, gives 32); as ``|x| <= s`` under abs-max noise management,
``|q| <= 1/r_in`` and the clip at ``±inp_bound`` never acts, so it is not applied. The MVM, the
output noise and the scaling to ADC steps are one ``addmm``/``baddbmm``,
``z = (r_in/r_out) (q Wᵀ) + (read_noise/r_out) ξ``; ``k = rint(z)``, clipped at ``±out_bound/r_out``
(an integer, (2^adc_bits - 2)/2), and the output ``k · r_out · s · β``. Without a DAC (ADC) the
step ``r_in`` (``r_out``) is 1 and there is no rint. A forward read looks at the extremes of ``k``
once and manages bounds only when one of them exceeds the bound (a read that does not needs no clip).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from chiploop.lazy import torch

from chiploop.devices.spec import DeviceSpec

MAX_BM_FACTOR = 1000
MAX_BM_RES = 0.25
INP_BOUND = 1.0
TINY = 1e-30


def _res(bits: int, bound: float) -> float:
    """Quantisation step of a converter of ``bits`` over ``[-bound, bound]`` (0: none)."""
    return 2.0 * bound / (2 ** bits - 2) if bits > 1 and 0 < bound < float("inf") else 0.0


class Periphery(NamedTuple):
    """A spec's read constants: ``step_in`` the DAC step (1: no DAC), ``levels = 1 / step_in``
    (exactly, (2^dac_bits - 2)/2), ``unit`` the ADC step (1: no ADC), ``alpha = step_in / unit`` and
    ``beta = read_noise / unit`` (the MVM's and the noise's factors in ADC steps), ``kb`` the output
    bound in ADC steps (inf: unbounded)."""
    dac: bool
    adc: bool
    step_in: float
    levels: float
    unit: float
    alpha: float
    beta: float
    kb: float
    noisy: bool
    bm_beta_max: float          # β may double while β <= this (max_bm_factor, max_bm_res / r_in)


@functools.lru_cache(maxsize=None)
def periphery(dac_bits: int, adc_bits: int, out_bound: float, read_noise: float) -> Periphery:
    """The read constants of a spec's converters and noise (computed once per setting)."""
    bound = out_bound if out_bound > 0 else float("inf")
    r_in, r_out = _res(dac_bits, INP_BOUND), _res(adc_bits, bound)
    step_in, unit = (r_in if r_in > 0 else 1.0), (r_out if r_out > 0 else 1.0)
    kb = (2 ** adc_bits - 2) / 2 if r_out > 0 else bound          # out_bound / r_out, exactly
    bm_max = min(MAX_BM_FACTOR, MAX_BM_RES / r_in) if r_in > 0 else MAX_BM_FACTOR
    levels = (2 ** dac_bits - 2) / 2 if r_in > 0 else 1.0
    return Periphery(r_in > 0, r_out > 0, step_in, levels, unit, step_in / unit, read_noise / unit, kb,
                     read_noise > 0, bm_max)


_SCALARS: dict = {}


def _scalar(value: float, device: torch.device) -> torch.Tensor:
    """A cached float32 0-dim tensor (an op with a tensor argument costs about half of one with a
    Python float, which torch wraps into a tensor each time); never an inference-mode tensor."""
    t = _SCALARS.get((value, device))
    if t is None:
        with torch.inference_mode(False):
            t = _SCALARS[(value, device)] = torch.tensor(value, dtype=torch.float32, device=device)
    return t


def _pass(c: Periphery, M: torch.Tensor, v: torch.Tensor, s: torch.Tensor, beta: float, g: torch.Generator
          ) -> torch.Tensor:
    """One analog read of ``v`` through ``M`` (``v @ M``; 2-D, or batched 3-D) at the per-sample
    abs-max ``s`` and bound-management factor ``beta``: DAC, MVM, output noise and ADC (not clipped),
    in ADC steps: ``rint((r_in/r_out) (q M) + (read_noise/r_out) ξ)`` with
    ``q = rint((v / s) · ((1/r_in) / β))``."""
    q = torch.div(v, s)
    if c.levels != beta:
        q.mul_(_scalar(c.levels / beta, v.device))
    if c.dac:
        q.round_()
    shape = (*v.shape[:-1], M.shape[-1])
    noise = torch.randn(shape, generator=g, device=v.device, dtype=v.dtype) if c.noisy else v.new_empty(shape)
    mm = torch.addmm if v.dim() == 2 else torch.baddbmm
    z = mm(noise, q, M, beta=c.beta, alpha=c.alpha)         # beta 0: the empty input is ignored
    return z.round_() if c.adc else z


def read(spec: DeviceSpec, W: torch.Tensor, v: torch.Tensor, g: torch.Generator, transposed: bool = False
         ) -> torch.Tensor:
    """``W v`` (or ``Wᵀ v``) of a population: ``W`` (P, out, in), ``v`` (P, B, in) (or (P, B, out));
    or of one chip: ``W`` (out, in), ``v`` (B, in) (or (B, out))."""
    M = W if transposed else W.mT                       # v @ M
    if spec.ideal_io:
        return v @ M
    c = periphery(spec.dac_bits, spec.adc_bits, spec.out_bound, spec.read_noise)
    device = v.device
    nm = v.abs().amax(-1, keepdim=True)                 # (..., B, 1): noise management, abs-max
    s = nm.clamp(min=TINY)                              # a sample of zeros reads 0 (v = 0, nm = 0)
    k = _pass(c, M, v, s, 1.0, g)
    if c.kb != float("inf"):
        if transposed:
            k.clamp_(-c.kb, c.kb)
        elif k.numel():                                 # iterative bound management, forward only
            lo, hi = torch.aminmax(k)
            if hi.item() > c.kb or lo.item() < -c.kb:
                k = _manage(c, M, v, s, k, g)
    return k.mul_(nm) if c.unit == 1.0 else k.mul_(torch.mul(nm, _scalar(c.unit, device)))


def _manage(c: Periphery, M: torch.Tensor, v: torch.Tensor, s: torch.Tensor, k: torch.Tensor,
            g: torch.Generator) -> torch.Tensor:
    """Bound management of a first pass ``k`` (ADC steps) some of whose samples exceed the bound:
    those are read again at β = 2, 4, ... (fresh noise) until they fit or β reaches its limit;
    the clipped outputs times β, in ADC steps."""
    single = k.dim() == 2
    if single:
        M, v, s, k = M.unsqueeze(0), v.unsqueeze(0), s.unsqueeze(0), k.unsqueeze(0)
    failed = (k.abs() > c.kb).any(-1)                   # (P, B)
    out = k.clamp(-c.kb, c.kb)
    one = M.shape[0] == 1
    beta = 1.0
    while bool(failed.any()):
        if beta > c.bm_beta_max:
            break                                       # aihwkit accepts the read at its largest reduction
        beta *= 2
        p, b = failed.nonzero(as_tuple=True)
        M_rows = M[0] if one else M[p]
        v_rows = v[p, b] if one else v[p, b].unsqueeze(-2)
        s_rows = s[p, b] if one else s[p, b].unsqueeze(-2)
        k2 = _pass(c, M_rows, v_rows, s_rows, beta, g)
        k2 = k2 if one else k2.squeeze(-2)
        out[p, b] = k2.clamp(-c.kb, c.kb) * beta
        failed = torch.zeros_like(failed).index_put((p, b), (k2.abs() > c.kb).any(-1))
    return out[0] if single else out
