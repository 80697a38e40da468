"""The chip ledger (emulator/ledger.py): expected programming pulses against a brute-force sum and
against the pulses a real aihwkit tile fires, and the ledger's section of `chiploop report`."""

from __future__ import annotations

import dataclasses
import math
import statistics

import torch

from chiploop.devices import load_device
from chiploop.emulator import AnalogCrossbar
from chiploop.emulator.ledger import ChipLedger, MeteredCrossbar, expected_pulses


def test_expected_pulses_is_the_capped_sum_over_samples_and_cells():
    g = torch.Generator().manual_seed(0)
    x, d = torch.randn(5, 7, generator=g), torch.randn(5, 3, generator=g)
    dw_min, bl = 0.01, 31
    for lr in (0.001, 0.05, 0.3):  # no sample capped, some, most
        brute = sum(min(lr * abs(x[b, j].item() * d[b, i].item()) / dw_min, bl)
                    for b in range(5) for i in range(3) for j in range(7))
        assert math.isclose(expected_pulses(x, d, lr, dw_min, bl), brute, rel_tol=1e-6), lr  # float32 sums
    assert expected_pulses(x, d, 0.3, dw_min, bl) < expected_pulses(x, d, 0.3, dw_min, 10**6)  # the cap bites


def test_expected_pulses_match_the_pulses_an_aihwkit_tile_fires():
    """Constant step, no device spread or cycle noise, far from the bounds: one sample's pulses at a
    cell all have one sign, so ``Σ|ΔW| / dw_min`` counts them exactly. 40 updates of a 16x12 tile
    (below the BL cap), repeated 10 times with aihwkit's own (clock-seeded) pulse draws: the mean
    count is within 5 standard errors of the ledger's expectation. (Pulses on a row share their
    x-train, so counts are correlated across cells: the spread is measured, not assumed binomial.)"""
    spec = dataclasses.replace(load_device("constant-step"), dw_min_dtod=0.0, dw_min_std=0.0, up_down_dtod=0.0,
                               w_bound_dtod=0.0, w_min=-1.0, w_max=1.0, construction_seed=3)
    counts, expected = [], None
    for _ in range(10):
        ledger = ChipLedger(spec)
        xb = MeteredCrossbar(AnalogCrossbar.create(spec, 12, 16), ledger)
        xb.program(torch.zeros(12, 16))
        g = torch.Generator().manual_seed(1)  # the same requests every repeat
        fired = 0.0
        for _ in range(40):
            x = torch.rand(1, 16, generator=g)
            d = torch.rand(1, 12, generator=g) * torch.sign(torch.randn(1, 12, generator=g))
            before = xb.weights()
            xb.update(x, d, 0.01)  # lr max|x d| / dw_min <= 10 < BL = 31
            fired += (xb.weights() - before).abs().sum().item() / spec.dw_min
        counts.append(fired)
        expected = ledger.tallies[("train", "update")].pulses
    mean, se = statistics.mean(counts), statistics.stdev(counts) / math.sqrt(len(counts))
    assert expected > 5000 and se > 0
    assert abs(mean - expected) < 5 * se, (mean, expected, se)


def test_energy_of_an_update_is_pulses_and_pulse_trains():
    spec = load_device("constant-step")
    ledger = ChipLedger(spec)
    x, d = torch.ones(2, 4), torch.ones(2, 3)
    ledger.update(x, d, 0.001)
    pulses = 2 * 3 * 4 * 1.0  # lr |x d| / dw_min = 1 at every cell of both samples
    row = ledger.summary(1)["phases"]["train"]["update"]
    assert row["pulses"] == pulses and row["bytes_to_chip"] == 4 * (8 + 6)
    assert math.isclose(row["energy_j"], spec.energy.pulse_j * pulses + spec.energy.dac_j * 2 * (4 + 3))
