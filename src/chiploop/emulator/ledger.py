"""The chip ledger: what every crossbar verb would cost on a chip — calls, bytes across the bus,
programming pulses, energy — and, for a remote chip, the wall time of each call (docs/science.md §2.8).

Bytes are the float32 tensor payloads a verb moves (4 bytes an element): a forward read sends ``x``
(batch x in) and returns ``y`` (batch x out); a transposed read sends ``d`` and returns ``z``; an
update sends ``x`` and ``d``; ``weights``/``read_weights`` return (out x in) and ``program`` sends it.
They are the same for a local and a remote chip (a remote chip adds only the message framing).

Expected programming pulses of an update, in aihwkit's stochastic-compressed scheme (Gokmen & Vlasov
2016; AIHWKIT_NOTES §1.4): sample b drives up to BL = ``desired_bl`` time slots, and cell (i, j)
sees on average ``lr |x_bj d_bi| / dw_min`` coincidences, capped at BL::

    pulses = Σ_b Σ_ij min(lr |x_bj d_bi| / dw_min, BL)

(0 for float devices, which are not pulsed). Energy from the device's :class:`EnergySpec`::

    E_read   = read_cell_j · batch · out · in + dac_j · batch · n_driven + adc_j · batch · n_converted
    E_update = pulse_j · pulses + dac_j · batch · (in + out)      (the pulse trains on rows and columns)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from chiploop.lazy import torch

from chiploop.devices.spec import DeviceSpec

CHUNK_CELLS = 2**22  # elements of the per-sample outer products evaluated at once


@dataclass
class Tally:
    """One verb's totals in one phase."""

    calls: int = 0
    bytes_to_chip: int = 0
    bytes_from_chip: int = 0
    pulses: float = 0.0
    energy_j: float = 0.0
    seconds: list[float] = field(default_factory=list)  # wall time of each remote call

    def row(self) -> dict[str, Any]:
        row = {"calls": self.calls, "bytes_to_chip": self.bytes_to_chip, "bytes_from_chip": self.bytes_from_chip,
               "pulses": self.pulses, "energy_j": self.energy_j}
        if self.pulses:
            row["pulses_per_call"] = self.pulses / self.calls  # expected pulses of one update
        if self.seconds:
            ordered = sorted(self.seconds)
            row["wall_median_s"] = statistics.median(ordered)
            row["wall_p99_s"] = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return row


def expected_pulses(x: torch.Tensor, d: torch.Tensor, lr: float, dw_min: float, bl: int) -> float:
    """``Σ_b Σ_ij min(|lr| |x_bj d_bi| / dw_min, BL)`` for ``x`` (batch, in), ``d`` (batch, out).

    A sample whose largest product stays below BL needs no cap: its sum is ``Σ_j |x_bj| · Σ_i |d_bi|``
    (scaled), O(in + out); only the other samples are summed cell by cell."""
    scale = abs(lr) / dw_min
    norm = torch.linalg.vector_norm
    peak = norm(x, math.inf, 1) * norm(d, math.inf, 1) * scale  # (batch,): the largest |x_bj d_bi|, scaled
    if peak.max().item() <= bl:  # the usual case: one sum per sample, no cell-by-cell pass (NaN fails it)
        return torch.dot(norm(x, 1, 1), norm(d, 1, 1)).item() * scale
    free = peak <= bl  # NaN compares False and goes the long way
    ax, ad = x.abs().to(torch.float64), d.abs().to(torch.float64) * scale
    total = (ax[free].sum(1) * ad[free].sum(1)).sum().item()
    ax, ad = ax[~free], ad[~free]
    rows = max(1, CHUNK_CELLS // max(1, x.shape[1] * d.shape[1]))
    for start in range(0, ax.shape[0], rows):
        outer = ad[start:start + rows, :, None] * ax[start:start + rows, None, :]  # (b, out, in)
        total += outer.nan_to_num_(nan=0.0, posinf=float(bl)).clamp_(max=bl).sum().item()  # diverged: no NaN
    return total


@dataclass(eq=False)
class ChipLedger:
    """Per phase (``train``, ``evaluate``, ...) and verb: calls, bytes, pulses, energy, wall times."""

    device: DeviceSpec | None = None
    remote: bool = False
    phase: str = "train"
    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)

    def tally(self, verb: str) -> Tally:
        key = (self.phase, verb)
        if key not in self.tallies:
            self.tallies[key] = Tally()
        return self.tallies[key]

    @contextmanager
    def in_phase(self, phase: str) -> Iterator[None]:
        """Enter the calls made inside the ``with`` block under ``phase``."""
        before, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = before

    def record(self, verb: str, to_chip: int = 0, from_chip: int = 0, seconds: float | None = None,
               pulses: float = 0.0, energy_j: float = 0.0) -> None:
        t = self.tally(verb)
        t.calls += 1
        t.bytes_to_chip += to_chip
        t.bytes_from_chip += from_chip
        t.pulses += pulses
        t.energy_j += energy_j
        if seconds is not None:
            t.seconds.append(seconds)

    # ------------------------------------------------------------------ costs of the verbs
    def read(self, verb: str, batch: int, driven: int, converted: int, seconds: float | None = None) -> None:
        """A forward (driven = in) or transposed (driven = out) read of ``batch`` rows."""
        e = self.device.energy if self.device is not None else None
        energy = 0.0 if e is None else batch * (e.read_cell_j * driven * converted + e.dac_j * driven
                                                + e.adc_j * converted)
        self.record(verb, 4 * batch * driven, 4 * batch * converted, seconds, energy_j=energy)

    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float, seconds: float | None = None) -> None:
        pulses = 0.0
        energy = 0.0
        if self.device is not None:
            if not self.device.is_float:
                pulses = expected_pulses(x, d, lr, self.device.dw_min, self.device.desired_bl)
            e = self.device.energy
            energy = e.pulse_j * pulses + e.dac_j * x.shape[0] * (x.shape[1] + d.shape[1])
        self.record("update", 4 * (x.numel() + d.numel()), 0, seconds, pulses, energy)

    # ------------------------------------------------------------------ reports
    def summary(self, steps: int = 0) -> dict[str, Any]:
        """Plain data for result.json: per phase and verb the tally; per training step the totals."""
        phases: dict[str, dict[str, Any]] = {}
        for (phase, verb), t in self.tallies.items():
            phases.setdefault(phase, {})[verb] = t.row()
        train = [t for (phase, _), t in self.tallies.items() if phase == "train"]
        out: dict[str, Any] = {"remote": self.remote, "steps": steps, "phases": phases}
        if steps:
            out["per_step"] = {
                "calls": sum(t.calls for t in train) / steps,
                "bytes": sum(t.bytes_to_chip + t.bytes_from_chip for t in train) / steps,
                "pulses": sum(t.pulses for t in train) / steps,
                "energy_j": sum(t.energy_j for t in train) / steps,
            }
        return out


@dataclass(eq=False)
class MeteredCrossbar:
    """A local crossbar whose verbs are entered in a :class:`ChipLedger` (what they would cost on a
    chip); the crossbar itself is untouched. Clones are metered into the same ledger."""

    inner: Any  # a Crossbar
    ledger: ChipLedger

    @property
    def shape(self) -> tuple[int, int]:
        return self.inner.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ledger.read("forward", x.shape[0], self.shape[1], self.shape[0])
        return self.inner.forward(x)

    def backward(self, d: torch.Tensor) -> torch.Tensor:
        self.ledger.read("backward", d.shape[0], self.shape[0], self.shape[1])
        return self.inner.backward(d)

    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        self.record_update(x, d, lr)
        self.inner.update(x, d, lr)

    def record_update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        """The ledger's half of :meth:`update` (for an update applied to the inner crossbar elsewhere)."""
        self.ledger.update(x, d, lr)

    def weights(self) -> torch.Tensor:
        self.ledger.record("weights", 0, 4 * self.shape[0] * self.shape[1])
        return self.inner.weights()

    def read_weights(self) -> torch.Tensor:
        self.ledger.record("read_weights", 0, 4 * self.shape[0] * self.shape[1])
        return self.inner.read_weights()

    def program(self, W: torch.Tensor) -> None:
        self.ledger.record("program", 4 * self.shape[0] * self.shape[1], 0)
        self.inner.program(W)

    def clone(self) -> MeteredCrossbar:
        self.ledger.record("clone")
        return MeteredCrossbar(self.inner.clone(), self.ledger)

    def restore(self, source: MeteredCrossbar) -> None:
        self.ledger.record("restore")
        self.inner.restore(unwrap(source))

    def post_update_step(self) -> None:
        self.ledger.record("post_update_step")
        self.inner.post_update_step()

    def drift(self, seconds: float) -> None:
        self.ledger.record("drift")
        self.inner.drift(seconds)


def unwrap(crossbar: Any) -> Any:
    """The crossbar a :class:`MeteredCrossbar` meters (any other crossbar as it is)."""
    return crossbar.inner if isinstance(crossbar, MeteredCrossbar) else crossbar


def metered(factory, ledger: ChipLedger):
    """``factory(name, out, in)`` whose crossbars (and their creation) are entered in ``ledger``."""
    def make(name: str, out_size: int, in_size: int) -> MeteredCrossbar:
        ledger.record("create")
        return MeteredCrossbar(factory(name, out_size, in_size), ledger)
    return make
