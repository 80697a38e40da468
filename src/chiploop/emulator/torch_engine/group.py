"""A chip's pulsed updates, with its torch-engine crossbars stepped together as one population program.

A learning rule hands the chip one signal per crossbar, and the chip applies them one after the
other. On the torch engine an update costs about a hundred torch calls whatever the crossbar's
size (docs/torch_engine.md, "Cost of a step"), so the crossbars of one chip (not of a population:
see :func:`_key`) that share a device spec, a batch size and a learning rate, and fit in one tile,
are stepped together:

* their chips are stacked on the population axis, each padded with zeros to the largest
  ``(out, in)`` of the group: ``W`` and ``x``, ``d`` (a padded column has ``x = 0`` and a padded
  row ``d = 0``, so their lines never fire and their cells never get a pulse; update management
  sees the same ``max|x|`` and ``max|d|``);
* one :meth:`TorchCrossbar.update` of the stack (its device parameters stacked once and kept while
  the members' are unchanged), then every member takes its block back.

The members' pulses are independent draws either way, so this is equal in distribution to one
update after the other. The draws come from the first member's generator (the others' streams do not
move), so a run stays reproducible bit for bit. Updates of one crossbar keep their order; an update
that cannot join a group (another engine, a tiled layer, a lone crossbar) is applied as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chiploop.lazy import torch

from chiploop.emulator.torch_engine.crossbar import TorchCrossbar

# what a padded cell holds: a range of its own (never used: it gets no pulse), no response, no decay
_PAD = {"min_bound": -1.0, "max_bound": 1.0, "decay_scales": 1.0}


def core(xb: Any) -> tuple[list, Any]:
    """The meters wrapped around a crossbar (outermost first) and the crossbar they meter. A meter
    has ``inner`` and ``record_update(x, d, lr)`` (the bookkeeping half of its ``update``)."""
    meters = []
    while hasattr(xb, "inner") and hasattr(xb, "record_update"):
        meters.append(xb)
        xb = xb.inner
    return meters, xb


def _key(xb: TorchCrossbar, x: torch.Tensor, lr: float) -> tuple | None:
    """What members of one group share, or None when the crossbar steps alone: a population (its
    calls are already shared by its P chips, and the padding's extra work then costs more than the
    calls saved: P = 8 and 32 trained 20 % and 37 % slower grouped), a layer of several tiles."""
    if xb.population > 1 or max(xb.shape) > xb.spec.tile_size:
        return None
    return xb.spec, x.shape[-2], x.dim(), xb.W.device, float(lr)


def apply_updates(updates: Sequence[tuple[Any, torch.Tensor, torch.Tensor, float]]) -> None:
    """``crossbar.update(x, d, lr)`` then ``crossbar.post_update_step()`` for each entry, torch-engine
    crossbars grouped (module doc). A crossbar met a second time first has the pending groups applied,
    so its updates and per-batch steps keep their order."""
    pending: dict[tuple, list] = {}

    def flush() -> None:
        for key, members in pending.items():
            step_together([(inner, x, d) for _, inner, x, d in members], key[-1])
            for outer, *_ in members:
                outer.post_update_step()
        pending.clear()

    for xb, x, d, lr in updates:
        meters, inner = core(xb)
        key = _key(inner, x, lr) if isinstance(inner, TorchCrossbar) else None
        if key is None:
            xb.update(x, d, lr)
            xb.post_update_step()
            continue
        if any(m is inner for members in pending.values() for _, m, _, _ in members):
            flush()
        for m in meters:
            m.record_update(x, d, lr)
        pending.setdefault(key, []).append((xb, inner, x, d))
    flush()


def step_together(members: list[tuple[TorchCrossbar, torch.Tensor, torch.Tensor]], lr: float) -> None:
    """One pulsed update of every member (same spec, population, batch, one tile each) as one program."""
    if len(members) == 1:
        xb, x, d = members[0]
        xb.update(x, d, lr)
        return
    first = members[0][0]
    shell = _shell(first, [m for m, _, _ in members])
    O, I = shell.shape

    def pad(t: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        r, c = rows - t.shape[-2], cols - t.shape[-1]
        return torch.constant_pad_nd(t, (0, c, 0, r)) if r or c else t

    if len(shell.handed) != len(members) or not all(m.W is w and m.persistent is q for (m, _, _), (w, q)
                                                    in zip(members, shell.handed)):   # weights replaced since
        shell.W = torch.cat([pad(m.W, O, I) for m, _, _ in members])
        if first.persistent is not None:
            shell.persistent = torch.cat([pad(m.persistent, O, I) for m, _, _ in members])
    xs = torch.cat([pad(m._cast(x)[0], x.shape[-2], I) for m, x, _ in members])
    ds = torch.cat([pad(m._cast(d)[0], d.shape[-2], O) for m, _, d in members])
    shell.update(xs, ds, lr)
    P = first.population
    for g, (m, _, _) in enumerate(members):
        o, i = m.shape
        m.W = shell.W[g * P:(g + 1) * P, :o, :i]
        if m.persistent is not None:
            m.persistent = shell.persistent[g * P:(g + 1) * P, :o, :i]
    shell.handed = [(m.W, m.persistent) for m, _, _ in members]            # views of shell.W: in-place writes show


def _shell(first: TorchCrossbar, members: list[TorchCrossbar]) -> TorchCrossbar:
    """The stacked crossbar that steps ``members`` (kept on ``first`` while the members, their shapes
    and their device parameters are the same): their device parameters padded and stacked, the
    first member's generator."""
    key = tuple((id(m), m.shape, tuple((id(v), v._version) for v in m.par.values())) for m in members)
    cached = first._group
    if cached and cached[0] == key and cached[1].generator is first.generator:
        return cached[1]
    O = max(m.shape[0] for m in members)
    I = max(m.shape[1] for m in members)
    par = {k: torch.cat([torch.constant_pad_nd(m.par[k], (0, I - m.shape[1], 0, O - m.shape[0]), _PAD.get(k, 0.0))
                         for m in members]) for k in first.par}
    shell = TorchCrossbar(first.spec, torch.zeros(len(members) * first.population, O, I, device=first.W.device),
                          par, first.generator, first.seed)
    shell.handed = []                                                         # the weights it gave the members
    first._group = (key, shell, members)                                      # members: keeps the ids alive
    return shell
