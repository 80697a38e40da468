"""Statistical match of the torch engine against aihwkit 1.1.0 (issue #16, acceptance 1).

From one fixed chip state (the aihwkit tile's visible, persistent and hidden device parameters,
loaded into a :class:`TorchCrossbar`) and one ``(x, d)`` batch, each engine realises the same
pulsed update ``repeats`` times: aihwkit on exact clones of the tile (AIHWKIT_NOTES §1.5,
``emulator.analog.clone_tile``), the torch engine as one population step of ``repeats`` copies.
Per cell, the mean and variance of the realised update are compared by the relative Frobenius
error ``||m_torch - m_aihwkit||_F / ||m_aihwkit||_F``. Reads likewise: ``repeats`` forward and
transposed reads of one batch, per output.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from chiploop.devices.aihwkit import to_rpu_config
from chiploop.devices.spec import DeviceSpec
from chiploop.emulator.analog import clone_tile
from chiploop.emulator.torch_engine import TorchCrossbar


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """``||a - ref||_F / ||ref||_F``."""
    return float((a - ref).norm() / ref.norm())


def fixed_state(spec: DeviceSpec, out_size: int, in_size: int, start: str, g: torch.Generator):
    """An aihwkit tile of ``spec`` and the matching torch crossbar in one state. ``start``:
    ``middle`` (weights uniform in ±0.3 of the mean bounds) or ``edge`` (weights near the upper
    bound, so pulses clip)."""
    spec = dataclasses.replace(spec, engine="aihwkit", construction_seed=spec.construction_seed or 11)
    tile = to_rpu_config(spec, 0).create_tile(out_size, in_size, bias=False)
    if start == "edge":
        W0 = spec.w_max * (0.6 + 0.3 * torch.rand(out_size, in_size, generator=g))
    else:
        W0 = 0.3 * (torch.rand(out_size, in_size, generator=g) * 2 - 1) * min(spec.w_max, -spec.w_min)
    tile.set_weights(W0)
    xb = TorchCrossbar.create(dataclasses.replace(spec, engine="torch"), out_size, in_size, "match", seed=5)
    hidden = tile.get_hidden_parameters()
    xb.load_hidden(dict(hidden))
    xb.set_state(tile.get_weights()[0], hidden.get("persistent_weights"))
    return tile, xb


def update_match(spec: DeviceSpec, repeats: int = 1000, out_size: int = 8, in_size: int = 12, batch: int = 4,
                 pulses: float = 12.0, start: str = "middle", seed: int = 0) -> dict[str, Any]:
    """Mean and variance of one update's realised ΔW (apparent weights; and persistent weights for
    devices with write noise) on both engines. ``pulses``: the ``k`` of update management of the
    batch's largest sample (so BL = ceil(k) slots, about ``pulses · |x||d|/max`` pulses per cell)."""
    g = torch.Generator().manual_seed(seed)
    tile, xb = fixed_state(spec, out_size, in_size, start, g)
    x = torch.rand(batch, in_size, generator=g) * 2 - 1
    d = torch.randn(batch, out_size, generator=g)
    from chiploop.emulator.torch_engine.devices import granularity
    lr = pulses * granularity(spec) / float((x.abs().amax(1) * d.abs().amax(1)).max())
    tile.set_learning_rate(lr)
    w0 = tile.get_weights()[0]
    p0 = tile.get_hidden_parameters().get("persistent_weights")
    dw_a, dp_a = [], []
    for _ in range(repeats):
        c = clone_tile(tile)
        c.update(x, d)
        dw_a.append(c.get_weights()[0] - w0)
        if p0 is not None:
            dp_a.append(c.get_hidden_parameters()["persistent_weights"] - p0)
    dw_a = torch.stack(dw_a)
    pop = xb.expand(repeats)
    pop.update(x.expand(repeats, -1, -1), d.expand(repeats, -1, -1), lr)
    dw_t = pop.W - w0
    row = {"repeats": repeats, "lr": lr,
           "mean_err": rel_err(dw_t.mean(0), dw_a.mean(0)), "var_err": rel_err(dw_t.var(0), dw_a.var(0))}
    if p0 is not None:
        dp_a = torch.stack(dp_a)
        dp_t = pop.persistent - p0
        row.update(persistent_mean_err=rel_err(dp_t.mean(0), dp_a.mean(0)),
                   persistent_var_err=rel_err(dp_t.var(0), dp_a.var(0)))
    return row


def read_match(spec: DeviceSpec, repeats: int = 1000, out_size: int = 8, in_size: int = 12, batch: int = 4,
               scale: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Mean and variance per output of ``repeats`` forward and transposed reads of one batch.
    ``scale`` multiplies the weights (large weights make the forward read hit the output bound,
    so bound management works)."""
    g = torch.Generator().manual_seed(seed)
    tile, xb = fixed_state(spec, out_size, in_size, "middle", g)
    if scale != 1.0:
        W = tile.get_weights()[0] * scale
        tile.set_weights(W)
        xb.load_hidden(dict(tile.get_hidden_parameters()))
        xb.set_state(tile.get_weights()[0], tile.get_hidden_parameters().get("persistent_weights"))
    x = torch.rand(batch, in_size, generator=g) * 2 - 1
    d = torch.randn(batch, out_size, generator=g) * 0.3
    xs, ds = x.repeat(repeats, 1), d.repeat(repeats, 1)
    with torch.no_grad():
        ya = tile.joint_forward(xs).view(repeats, batch, out_size)
        za = tile.backward(ds).view(repeats, batch, in_size)
    yt = xb.forward(xs).view(repeats, batch, out_size)
    zt = xb.backward(ds).view(repeats, batch, in_size)
    return {"repeats": repeats,
            "forward_mean_err": rel_err(yt.mean(0), ya.mean(0)), "forward_var_err": rel_err(yt.var(0), ya.var(0)),
            "backward_mean_err": rel_err(zt.mean(0), za.mean(0)), "backward_var_err": rel_err(zt.var(0), za.var(0))}
