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
"""

from __future__ import annotations

from chiploop.lazy import torch

from chiploop.devices.spec import DeviceSpec

MAX_BM_FACTOR = 1000
MAX_BM_RES = 0.25
INP_BOUND = 1.0
TINY = 1e-30


def _res(bits: int, bound: float) -> float:
    """Quantisation step of a converter of ``bits`` over ``[-bound, bound]`` (0: none)."""
    return 2.0 * bound / (2 ** bits - 2) if bits > 1 and 0 < bound < float("inf") else 0.0


def _pass(spec: DeviceSpec, M: torch.Tensor, v: torch.Tensor, inv: torch.Tensor, r_in: float, r_out: float,
          g: torch.Generator) -> torch.Tensor:
    """One analog read of ``v · inv`` (``inv`` per sample: 1 / (abs-max · β)): DAC, MVM, output noise,
    ADC (not yet clipped). The DAC works in its integer steps, ``q = clip(rint(v inv / r_in), ±1/r_in)``,
    and ``y = r_in (q M) + read_noise ξ``, so the scalings ride on the (P, B, 1) factors."""
    if r_in > 0:
        lim = INP_BOUND / r_in
        x = (v * (inv * (1.0 / r_in))).round_().clamp_(-lim, lim)
    else:
        x = (v * inv).clamp_(-INP_BOUND, INP_BOUND)
    y = x @ M
    if spec.read_noise > 0:
        y = torch.randn(y.shape, generator=g, device=y.device, dtype=y.dtype).mul_(spec.read_noise).add_(
            y, alpha=r_in if r_in > 0 else 1.0)
    elif r_in > 0:
        y = y.mul_(r_in)
    if r_out > 0:
        y = y.mul_(1.0 / r_out).round_().mul_(r_out)
    return y


def read(spec: DeviceSpec, W: torch.Tensor, v: torch.Tensor, g: torch.Generator, transposed: bool = False
         ) -> torch.Tensor:
    """``W v`` (or ``Wᵀ v``) of a population: ``W`` (P, out, in), ``v`` (P, B, in) (or (P, B, out))."""
    M = W if transposed else W.transpose(-1, -2)        # v @ M
    if spec.ideal_io:
        return v @ M
    bound = spec.out_bound if spec.out_bound > 0 else float("inf")
    r_in, r_out = _res(spec.dac_bits, INP_BOUND), _res(spec.adc_bits, bound)
    nm = v.abs().amax(-1, keepdim=True)                 # (P, B, 1): noise management, abs-max
    inv = nm.clamp(min=TINY).reciprocal_()              # a sample of zeros reads 0 (v = 0, scaled by nm = 0)
    y = _pass(spec, M, v, inv, r_in, r_out, g)
    if bound == float("inf"):
        return y.mul_(nm)
    out = y.clamp(-bound, bound)
    if not transposed:                                  # iterative bound management, forward only
        failed = (y.abs() > bound).any(-1)              # (P, B)
        beta = 1.0
        while bool(failed.any()):
            if int(beta) > MAX_BM_FACTOR or (r_in > 0 and beta > MAX_BM_RES / r_in):
                break                                   # aihwkit accepts the read at its largest reduction
            beta *= 2
            p, b = failed.nonzero(as_tuple=True)
            M_rows = M[0] if M.shape[0] == 1 else M[p]
            v_rows = v[p, b] if M.shape[0] == 1 else v[p, b].unsqueeze(-2)
            i_rows = inv[p, b] / beta if M.shape[0] == 1 else (inv[p, b] / beta).unsqueeze(-2)
            y2 = _pass(spec, M_rows, v_rows, i_rows, r_in, r_out, g)
            y2 = y2 if M.shape[0] == 1 else y2.squeeze(-2)
            out[p, b] = y2.clamp(-bound, bound) * beta
            failed = torch.zeros_like(failed).index_put((p, b), (y2.abs() > bound).any(-1))
    return out.mul_(nm)
