"""Per-device pulse response of aihwkit 1.1.0's single devices, in torch (one pulse, many cells).

Device-to-device draws (``rpu_pulsed_device.cpp``, ``PulsedRPUDevice::populate``, lines 594-700;
``enforce_consistency = True`` as aihwkit's Python defaults), per cell with ξ ~ N(0, 1):

    max_bound = w_max (1 + w_bound_dtod ξ),   min_bound = w_min (1 + w_bound_dtod ξ)
    gain = 1 + dw_min_dtod ξ,   r = up_down_dtod ξ
    dwmin_up   = |(min(up_down, 0)  + gain + r) dw_min|
    dwmin_down = |(-max(up_down, 0) + gain - r) dw_min|
    (bounds swapped if min > max, then max_bound = |max_bound|, min_bound = -|min_bound|)
    stuck with probability corrupt_devices_prob: both bounds at one U(bounds ∩ ±0.1) value, steps 0

One pulse (sign s = +1 up, -1 down; ξ fresh per pulse; σ = dw_min_std), then both bounds clipped:

* constant_step (``rpu_constantstep_device.cpp`` 40-60):  w += s · dwmin_s · (1 + σ ξ)
* linear_step (``rpu_linearstep_device.cpp`` ``update_once_mult``/``_add``; slopes from populate
  lines 30-75, ``slope_s = -|γ_s + γ_s,dtod ξ| dwmin_s / w_ref_s`` with w_ref the mean bound):
  mult noise ``w += s (slope_s w + dwmin_s)(1 + σ ξ)``; additive ``w += s (slope_s w + dwmin_s (1 + σ ξ))``
* soft_bounds (aihwkit ``SoftBoundsReferenceDevice``, ``rpu_softbounds_reference_device.cpp``
  ``update_once_add``): with reference ρ, ``v = w + ρ``;
  up ``v += dwmin_up (1 - v/max_bound + σ ξ)``, down ``v -= dwmin_down (1 - v/min_bound + σ ξ)``; clip; ``w = v - ρ``
* exp_step (``rpu_expstep_device.cpp`` ``update_once``): ``z = 2 a w / (max_bound - min_bound) + b``,
  up ``w += max(1 - A_up e^{γ_up z}, 0)(1 + σ ξ) dwmin_up``, down ``w -= max(1 - A_down e^{-γ_down z}, 0)(1 + σ ξ) dwmin_down``;
  with ``dw_min_std_add``/``_slope`` (``update_once_complex_noise``) the noise is
  ``σ (|Δw| + add + slope |w|) ξ`` on top of the mean step
* pow_step (``rpu_powstep_device.cpp`` ``update_once``; per-cell γ from populate):
  up ``w += dwmin_up ((max_bound - w)/range)^γ_up (1 + σ ξ)``, down ``w -= dwmin_down ((w - min_bound)/range)^γ_down (1 + σ ξ)``

Write noise (devices with ``write_noise_std > 0``): the pulses move the persistent weight and every
pulse redraws the apparent weight ``w_app = w + write_noise_std · dw_min · ξ`` (so after a batch a
touched cell holds its final persistent weight plus one fresh draw); reads see the apparent weight.

The response-shape parameters of the aihwkit class a spec ``mirrors`` (the ones a DeviceSpec does
not name: γ, A, a, b, ...) are in :data:`SHAPES`; tests/test_torch_engine.py checks them against
aihwkit's own classes.
"""

from __future__ import annotations

import math
from typing import Any

from chiploop.lazy import torch

from chiploop.devices.spec import DeviceSpec

# Response-shape parameters of each aihwkit class (aihwkit 1.1.0 Python defaults), by class name.
_LINEAR = dict(gamma_up=0.0, gamma_down=0.0, gamma_up_dtod=0.05, gamma_down_dtod=0.05, allow_increasing=False,
               mean_bound_reference=True, mult_noise=True, lifetime=0.0, lifetime_dtod=0.0)
_SOFT = dict(mult_noise=False, slope_up_dtod=0.0, slope_down_dtod=0.0, reference_mean=0.0, reference_std=0.0,
             subtract_symmetry_point=False)
_EXP = dict(A_up=0.00081, A_down=0.36833, gamma_up=12.44625, gamma_down=12.78785, a=0.244, b=0.2425,
            dw_min_std_add=0.0, dw_min_std_slope=0.0)
SHAPES: dict[str, dict[str, Any]] = {
    "ConstantStepDevice": {}, "GokmenVlasovPresetDevice": {}, "IdealizedPresetDevice": {},
    "LinearStepDevice": _LINEAR,
    "CapacitorPresetDevice": {**_LINEAR, "gamma_up": 0.05, "gamma_down": 0.05, "gamma_up_dtod": 0.01,
                              "gamma_down_dtod": 0.01, "mult_noise": False, "lifetime": 1e6, "lifetime_dtod": 0.3},
    "EcRamPresetDevice": {**_LINEAR, "gamma_up": 0.1153, "gamma_down": 0.5085},
    "EcRamMOPresetDevice": {**_LINEAR, "gamma_up": 0.4152, "gamma_down": 0.7342},
    "SoftBoundsReferenceDevice": _SOFT,
    "ReRamSBPresetDevice": _SOFT,
    "ReRamArrayHfO2PresetDevice": {**_SOFT, "reference_std": 0.05, "subtract_symmetry_point": True},
    "ReRamArrayOMPresetDevice": {**_SOFT, "reference_std": 0.05, "subtract_symmetry_point": True},
    "ExpStepDevice": _EXP,
    "PCMPresetDevice": {**_EXP, "A_up": -27.235, "A_down": -2.235, "gamma_up": 2.5, "gamma_down": 2.5, "a": -1.0,
                        "b": 0.0, "dw_min_std_add": 0.042, "dw_min_std_slope": 0.108},
    "ReRamESPresetDevice": {**_EXP, "A_up": -1.18445, "A_down": -0.081404, "gamma_up": 5.0, "gamma_down": 5.0,
                            "a": -0.5, "b": -0.5},
    "PowStepDevice": dict(pow_gamma=1.0, pow_gamma_dtod=0.1, pow_up_down=0.0, pow_up_down_dtod=0.0),
}
DEFAULT_CLASS = {"constant_step": "ConstantStepDevice", "linear_step": "LinearStepDevice",
                 "soft_bounds": "SoftBoundsReferenceDevice", "exp_step": "ExpStepDevice", "pow_step": "PowStepDevice"}


def shape_of(spec: DeviceSpec) -> dict[str, Any]:
    """The response-shape parameters of the aihwkit class ``spec`` mirrors (or its response's class)."""
    return SHAPES[spec.mirrors or DEFAULT_CLASS[spec.response]]


def granularity(spec: DeviceSpec) -> float:
    """aihwkit's weight granularity, the ``dw_min`` of update management (each device's
    ``calcWeightGranularity``). exp_step: the down step at w = 0 (aihwkit averages
    ``dw_down`` with itself, ``rpu_expstep_device.h``); pow_step: ``dw_min · 0.5^γ``."""
    s = shape_of(spec)
    if spec.response == "pow_step":
        return spec.dw_min * 0.5 ** s["pow_gamma"]
    if spec.response == "exp_step":
        down_bias = -spec.up_down if spec.up_down > 0 else 0.0
        z = s["b"]
        return max((down_bias + 1.0) * spec.dw_min * max(1.0 - s["A_down"] * math.exp(-s["gamma_down"] * z), 0.0), 0.0)
    return spec.dw_min


# DeviceSpec fields the torch engine reads only when it draws the devices (:func:`populate`, at a
# crossbar's creation): chips whose specs differ only in these may share one population program
# (each member keeps its own draws; every per-step scalar — dw_min, dw_min_std, up_down, desired_bl,
# noise, DAC/ADC, bounds of the read — is then the same for all).
DRAWN_FIELDS = ("construction_seed", "w_max", "w_min", "w_bound_dtod", "dw_min_dtod", "up_down_dtod",
                "corrupt_devices_prob")


def populate(spec: DeviceSpec, shape: tuple[int, ...], g: torch.Generator, device: torch.device | str = "cpu",
             dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Device-to-device draws of ``shape`` cells (hidden parameters named as aihwkit names them), in
    ``dtype`` (float32 by default)."""
    dtype = torch.float32 if dtype is None else dtype

    def normal() -> torch.Tensor:
        return torch.randn(shape, generator=g, device=device, dtype=dtype)

    def uniform() -> torch.Tensor:
        return torch.rand(shape, generator=g, device=device, dtype=dtype)

    s = shape_of(spec)
    hi = spec.w_max * (1 + spec.w_bound_dtod * normal())
    lo = spec.w_min * (1 + spec.w_bound_dtod * normal())
    gain = 1 + spec.dw_min_dtod * normal()
    r = spec.up_down_dtod * normal()
    up_bias = min(spec.up_down, 0.0)
    down_bias = -spec.up_down if spec.up_down > 0 else 0.0
    up = ((up_bias + gain + r) * spec.dw_min).abs()
    down = ((down_bias + gain - r) * spec.dw_min).abs()
    hi, lo = torch.maximum(hi, lo).abs(), -torch.minimum(hi, lo).abs()
    if spec.corrupt_devices_prob > 0:
        stuck = spec.corrupt_devices_prob > uniform()
        mn, mx = torch.clamp(lo, min=-0.1), torch.clamp(hi, max=0.1)
        value = mn + (mx - mn) * uniform()
        hi, lo = torch.where(stuck, value, hi), torch.where(stuck, value, lo)
        up, down = torch.where(stuck, 0.0, up), torch.where(stuck, 0.0, down)
    par = {"max_bound": hi, "min_bound": lo, "dwmin_up": up, "dwmin_down": down}
    if spec.response == "linear_step":
        su = s["gamma_up"] + s["gamma_up_dtod"] * normal()
        sd = s["gamma_down"] + s["gamma_down_dtod"] * normal()
        if not s["allow_increasing"]:
            su, sd = su.abs(), sd.abs()
        ref_up = spec.w_max if s["mean_bound_reference"] else hi
        ref_down = spec.w_min if s["mean_bound_reference"] else lo
        par["slope_up"] = torch.where(torch.as_tensor(ref_up) != 0, -su * up / ref_up, 0.0)      # 0 at a 0 bound,
        par["slope_down"] = torch.where(torch.as_tensor(ref_down) != 0, -sd * down / ref_down, 0.0)  # as aihwkit
    elif spec.response == "soft_bounds":
        ref = s["reference_mean"] + s["reference_std"] * normal()
        if s["subtract_symmetry_point"]:
            ok = (hi > 0) & (lo < 0)
            sp = (up - down) / (up / hi - down / lo)
            ref = torch.where(ok, ref + sp, ref)
        par["reference"] = ref
    elif spec.response == "pow_step":
        g_gain = 1 + s["pow_gamma_dtod"] * normal()
        g_r = s["pow_up_down_dtod"] * normal()
        ud = s["pow_up_down"]
        par["gamma_up"] = ((min(ud, 0.0) + g_gain + g_r) * s["pow_gamma"]).abs()
        par["gamma_down"] = ((-ud if ud > 0 else 0.0) + g_gain - g_r).mul(s["pow_gamma"]).abs()
    if s.get("lifetime", 0.0) > 0:
        life = s["lifetime"] * (1 + s["lifetime_dtod"] * normal())
        par["decay_scales"] = 1 - 1 / life.clamp(min=1.0)
    return par


AFFINE = ("constant_step", "linear_step", "soft_bounds")


def affine(spec: DeviceSpec, sign: torch.Tensor, par: dict[str, torch.Tensor], xi: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Devices whose pulse is an affine map before the clip, ``w -> clip(α w + a, lo, hi)`` (in the
    shifted variable ``v = w + ρ`` for soft_bounds): ``(α, a)`` for pulses ``sign`` (K, L) with
    noise ``xi`` (K, L); par entries are (K,). Pulses with sign 0 give the identity's (1, 0)."""
    s = shape_of(spec)
    sigma = spec.dw_min_std
    up = sign > 0
    col = {k: v.unsqueeze(1) for k, v in par.items()}
    scale = torch.where(up, col["dwmin_up"], col["dwmin_down"])
    noisy = 1 + sigma * xi
    if spec.response == "constant_step":
        alpha, a = torch.ones_like(xi), sign * scale * noisy
    elif spec.response == "linear_step":
        slope = torch.where(up, col["slope_up"], col["slope_down"])
        alpha = 1 + sign * slope * (noisy if s["mult_noise"] else 1.0)
        a = sign * scale * noisy
    elif spec.response == "soft_bounds":
        hi, lo = col["max_bound"], col["min_bound"]
        inv = torch.where(up, torch.where(hi > 0, 1 / hi, 0.0), torch.where(lo < 0, 1 / lo, 0.0))
        alpha = 1 - sign * scale * inv * (noisy if s["mult_noise"] else 1.0)
        a = sign * scale * noisy
    else:
        raise ValueError(f"response {spec.response!r} is not affine")
    live = sign != 0
    return torch.where(live, alpha, 1.0), torch.where(live, a, 0.0)


def pulse(spec: DeviceSpec, w: torch.Tensor, sign: torch.Tensor, par: dict[str, torch.Tensor],
          g: torch.Generator, xi: torch.Tensor | None = None) -> torch.Tensor:
    """One pulse on every cell with ``sign`` +1 (up) or -1 (down); cells with sign 0 stay. All
    tensors of one shape (the cells being pulsed); returns the new (persistent) weights. ``xi``: the
    pulse noise (drawn from ``g`` when not given)."""
    s = shape_of(spec)
    if xi is None:
        xi = torch.randn(w.shape, generator=g, device=w.device, dtype=w.dtype)
    sigma = spec.dw_min_std
    upward = sign > 0
    hi, lo = par["max_bound"], par["min_bound"]
    scale = torch.where(upward, par["dwmin_up"], par["dwmin_down"])
    if spec.response == "constant_step":
        dw = scale * (1 + sigma * xi)
    elif spec.response == "linear_step":
        slope = torch.where(upward, par["slope_up"], par["slope_down"])
        dw = (slope * w + scale) * (1 + sigma * xi) if s["mult_noise"] else slope * w + scale * (1 + sigma * xi)
    elif spec.response == "soft_bounds":
        v = w + par["reference"]
        a = torch.where(upward, torch.where(hi > 0, v / hi, 0.0), torch.where(lo < 0, v / lo, 0.0))
        dw = scale * (1 - a) * (1 + sigma * xi) if s["mult_noise"] else scale * (1 - a + sigma * xi)
        v = torch.where(sign != 0, v + sign * dw, v)
        return torch.minimum(torch.maximum(v, lo), hi) - par["reference"]
    elif spec.response == "exp_step":
        span = hi - lo
        z = 2 * w / span.clamp(min=1e-30) * s["a"] + s["b"]
        y = torch.where(upward, 1 - s["A_up"] * torch.exp(s["gamma_up"] * z),
                        1 - s["A_down"] * torch.exp(-s["gamma_down"] * z)).clamp(min=0.0)
        if s["dw_min_std_add"] > 0 or s["dw_min_std_slope"] > 0:
            mean = y * scale
            dw = mean + sigma * (mean + s["dw_min_std_add"] + s["dw_min_std_slope"] * w.abs()) * xi * sign
        else:
            dw = y * (1 + sigma * xi) * scale
        dw = torch.where(span > 0, dw, 0.0)
    elif spec.response == "pow_step":
        span = hi - lo
        frac = torch.where(upward, (hi - w), (w - lo)) / span.clamp(min=1e-30)
        gamma = torch.where(upward, par["gamma_up"], par["gamma_down"])
        dw = torch.where(span > 0, scale * frac.clamp(min=0.0).pow(gamma) * (1 + sigma * xi), 0.0)
    else:
        raise ValueError(f"response {spec.response!r}")
    w = torch.where(sign != 0, w + sign * dw, w)
    return torch.minimum(torch.maximum(w, lo), hi)
