"""Forward and transposed reads through aihwkit 1.1.0's periphery (``IOParameters`` as the
bridge ``devices/aihwkit._io`` sets them), batched in torch.

``rpu_forward_backward_pass.cpp`` (``ForwardBackwardPassIOManaged``), per sample:

* noise management, abs-max (``computeNoiseManagement`` lines 112-130): ``s = max_j |x_j|``;
  a sample with ``s = 0`` reads 0;
* DAC (``prepareInput`` lines 571-600): ``x̃ = clip(rint(x / (s·β) / r_in) · r_in, ±inp_bound)``
  with ``r_in = 1/(2^dac_bits - 2)`` and ``inp_bound = 1``;
* the analog MVM ``y = W x̃`` with additive output noise ``+ read_noise · ξ``;
* ADC (``finalizeOutput`` lines 666-720): ``ỹ = rint(y / r_out) · r_out``, ``r_out = 1/(2^adc_bits - 2)``,
  clipped at ``±out_bound``;
* iterative bound management, forward only (``forwardVector`` lines 900-988): while some
  ``|ỹ_i|`` reaches the bound, β doubles (1, 2, 4, ...) and the sample is read again with fresh
  noise, until it passes, β > max_bm_factor (1000), or β > max_bm_res / r_in (0.25 · (2^dac_bits - 2));
* the digital rescale ``ỹ · s · β``.

The transposed read ``z = Wᵀ d`` is the same with no bound management (aihwkit turns it off for
``backwardVector``, lines 990-1028). ``rint`` is round-half-to-even, as ``torch.round``.
A spec with ``ideal_io`` reads exactly (aihwkit's ``is_perfect``).
"""

from __future__ import annotations

import torch

from chiploop.devices.spec import DeviceSpec

MAX_BM_FACTOR = 1000
MAX_BM_RES = 0.25
INP_BOUND = 1.0


def _res(bits: int) -> float:
    return 1.0 / (2 ** bits - 2) if bits > 1 else 0.0


def _quantise(v: torch.Tensor, res: float) -> torch.Tensor:
    return torch.round(v / res) * res if res > 0 else v


def read(spec: DeviceSpec, W: torch.Tensor, v: torch.Tensor, g: torch.Generator, transposed: bool = False
         ) -> torch.Tensor:
    """``W v`` (or ``Wᵀ v``) of a population: ``W`` (P, out, in), ``v`` (P, B, in) (or (P, B, out))."""
    M = W if transposed else W.transpose(-1, -2)        # v @ M
    if spec.ideal_io:
        return v @ M
    r_in, r_out = _res(spec.dac_bits), _res(spec.adc_bits)
    bound = spec.out_bound if spec.out_bound > 0 else float("inf")
    nm = v.abs().amax(-1, keepdim=True)                 # (P, B, 1)
    live = nm > 0
    nm_safe = torch.where(live, nm, torch.ones_like(nm))
    beta = torch.ones_like(nm)
    out = None
    pending = torch.ones_like(nm, dtype=torch.bool)
    bm = not transposed and bound != float("inf")
    while True:
        x = _quantise(v / (nm_safe * beta), r_in).clamp(-INP_BOUND, INP_BOUND)
        y = x @ M
        if spec.read_noise > 0:
            y = y + spec.read_noise * torch.randn(y.shape, generator=g, device=y.device, dtype=y.dtype)
        y = _quantise(y, r_out)
        failed = ((y > bound) | (y < -bound)).any(-1, keepdim=True) if bm else torch.zeros_like(pending)
        y = (y.clamp(-bound, bound) if bound != float("inf") else y) * nm_safe * beta
        out = y if out is None else torch.where(pending, y, out)
        if bm:
            stop = (beta.to(torch.int64) > MAX_BM_FACTOR) | ((beta > MAX_BM_RES / r_in) if r_in > 0 else False)
            pending = pending & failed & ~stop
        else:
            pending = pending & False
        if not bool(pending.any()):
            break
        beta = torch.where(pending, beta * 2, beta)
    return torch.where(live, out, torch.zeros_like(out))
