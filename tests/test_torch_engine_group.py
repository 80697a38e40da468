"""A chip's torch-engine crossbars stepped together as one population program (torch_engine/group.py).

* grouped updates are equal in distribution to one update after the other (per-cell means within 5
  standard errors, variances within 5 standard errors of a variance), on cells in the middle and on a
  bound (the closed form and the one-sided walk), for crossbars of different shapes (the stack of two
  populations of 4,000 copies; a chip groups its crossbars only as a single chip);
* a crossbar met twice keeps the order of its updates; a lone or tiled crossbar steps as before;
* every member's update is entered in its ledger; a member without input does not move.
"""

import pytest
import torch

from chiploop.devices.spec import load_device
from chiploop.emulator import Chip, LayerSignal, make_crossbar
from chiploop.emulator.ledger import ChipLedger, MeteredCrossbar
from chiploop.emulator.torch_engine.group import apply_updates, step_together


def torch_device(**fields):
    return load_device({"preset": "constant-step", "engine": "torch", "read_noise": 0.0, **fields})


def _pair(spec, P, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = make_crossbar(spec, 4, 6, name="layer0", seed=seed)
    b = make_crossbar(spec, 3, 5, name="layer1", seed=seed)
    a.program(torch.full((4, 6), 0.1))
    b.program(torch.full((3, 5), 0.1))
    b.set_state(b.par["max_bound"][0] - 0.002)                       # on (near) its upper bound: the walk
    x0, d0 = torch.rand(3, 6, generator=g), torch.randn(3, 4, generator=g) * 0.5
    x1, d1 = torch.rand(3, 5, generator=g), -torch.rand(3, 3, generator=g) * 0.5   # pushes b up, into the bound
    return a.expand(P), b.expand(P), (x0, d0), (x1, d1)


def test_grouped_updates_are_equal_in_distribution_to_one_after_the_other():
    spec = torch_device(dw_min=0.01)
    P, lr = 4000, 0.05
    a, b, (x0, d0), (x1, d1) = _pair(spec, P)
    a2, b2 = a.clone(), b.clone()
    start_a, start_b = a.weights(), b.weights()
    step_together([(a, x0, d0), (b, x1, d1)], lr)                           # the stack of two populations
    assert a._group and a.W.shape == (P, 4, 6) and b.W.shape == (P, 3, 5)      # they did step as one stack
    a2.update(x0, d0, lr)
    b2.update(x1, d1, lr)
    for grouped, alone, start in ((a, a2, start_a), (b, b2, start_b)):
        ours, ref = grouped.weights() - start, alone.weights() - start
        se = (ours.var(0) / P + ref.var(0) / P).sqrt()
        assert ((ours.mean(0) - ref.mean(0)).abs() <= 5 * se + 1e-7).all()

        def var_se(v):
            c = v - v.mean(0)
            return (((c ** 4).mean(0) - c.pow(2).mean(0) ** 2).clamp(min=0) / P).sqrt()

        assert ((ours.var(0) - ref.var(0)).abs() <= 5 * (var_se(ours) ** 2 + var_se(ref) ** 2).sqrt() + 1e-9).all()
    assert (b.weights() >= b.par["max_bound"] - 1e-6).any()                   # the bound acted on the grouped walk
    assert (b.weights() <= b.par["max_bound"] + 1e-7).all()


def test_populations_step_alone():
    spec = torch_device()
    a, b, (x0, d0), (x1, d1) = _pair(spec, 3)
    apply_updates([(a, x0, d0, 0.05), (b, x1, d1, 0.05)])
    assert not a._group and not b._group


def test_a_member_without_input_stays_and_the_stack_is_kept_while_the_members_are():
    spec = torch_device()
    a, b, (x0, d0), (x1, d1) = _pair(spec, 1)
    before = b.weights()
    apply_updates([(a, x0, d0, 0.05), (b, torch.zeros_like(x1), d1, 0.05)])
    assert torch.equal(b.weights(), before)
    shell = a._group[1]
    apply_updates([(a, x0, d0, 0.05), (b, x1, d1, 0.05)])
    assert a._group[1] is shell                                               # same members: same stack
    b.program(torch.zeros(3, 5))                                              # new weights: stacked again
    apply_updates([(a, x0, d0, 0.05), (b, torch.zeros_like(x1), d1, 0.05)])   # (a stale stack would undo them)
    assert a._group[1] is shell and torch.equal(b.weights(), torch.zeros(3, 5))


def test_a_crossbar_met_twice_keeps_the_order_of_its_updates():
    spec = torch_device(dw_min=0.2, dw_min_std=0.0, w_bound_dtod=0.0, dw_min_dtod=0.0, up_down_dtod=0.0)
    a, b, _, _ = _pair(spec, 1)
    x, up, down = torch.ones(1, 6), -torch.ones(1, 4), torch.ones(1, 4)       # lr 10: the largest BL, to a bound
    apply_updates([(a, x, up, 10.0), (b, torch.ones(1, 5), torch.ones(1, 3), 10.0), (a, x, down, 10.0)])
    assert torch.allclose(a.weights(), a.par["min_bound"][0])                 # up first, then down: ends low
    apply_updates([(a, x, down, 10.0), (a, x, up, 10.0)])
    assert torch.allclose(a.weights(), a.par["max_bound"][0])


def test_each_members_update_is_entered_in_its_ledger():
    spec = torch_device()
    ledger = ChipLedger(spec)
    a, b, (x0, d0), (x1, d1) = _pair(spec, 1)
    ma, mb = MeteredCrossbar(a, ledger), MeteredCrossbar(b, ledger)
    apply_updates([(ma, x0, d0, 0.05), (mb, x1, d1, 0.05)])
    t = ledger.tally("update")
    assert t.calls == 2 and t.bytes_to_chip == 4 * (x0.numel() + d0.numel() + x1.numel() + d1.numel())
    assert t.pulses > 0


@pytest.mark.parametrize("tile_size", [512, 3])   # 3: both layers span tiles, stepped one by one
def test_a_chip_of_torch_crossbars_trains_the_same_through_grouped_updates(tile_size):
    """Through Chip.apply (grouped when the layers fit in one tile, one by one when tiled): a 2-layer
    regression on the chip reaches its target."""
    spec = torch_device(tile_size=tile_size)
    chip = Chip(factory=lambda n, o, i: make_crossbar(spec, o, i, name=n, seed=1))
    chip.make("a", torch.zeros(3, 4), "weight")
    chip.make("b", torch.zeros(2, 4), "weight")
    ta = torch.tensor([[0.2, -0.1, 0.0, 0.1], [0.0, 0.1, -0.2, 0.0], [0.1, 0.1, 0.1, -0.1]])
    tb = torch.tensor([[0.1, 0.0, -0.1, 0.2], [-0.2, 0.1, 0.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        x = torch.rand(8, 4, generator=g)
        _, ya = chip.read("a", x)
        _, yb = chip.read("b", x)
        chip.apply([LayerSignal("a", x, (ya - x @ ta.T) / 8), LayerSignal("b", x, (yb - x @ tb.T) / 8)], lr=0.5)
    w = chip.weights()
    assert (w["a"] - ta).abs().mean() < 0.04 and (w["b"] - tb).abs().mean() < 0.04
    grouped = bool(chip.crossbars["a"]._group)
    assert grouped == (tile_size == 512)


def test_every_update_is_followed_by_its_crossbars_per_batch_step():
    """capacitor devices decay by ``decay_scales`` per batch: two entries for one crossbar (lr 0, no
    pulse) decay it twice, as two signals one after the other did before grouping."""
    spec = load_device({"preset": "capacitor", "engine": "torch", "read_noise": 0.0})
    a = make_crossbar(spec, 3, 4, name="a")
    b = make_crossbar(spec, 2, 4, name="b")
    for xb in (a, b):
        xb.program(torch.full(xb.shape, 0.1))
    wa, wb = a.weights(), b.weights()
    x, da, db = torch.ones(2, 4), torch.ones(2, 3), torch.ones(2, 2)
    apply_updates([(a, x, da, 0.0), (b, x, db, 0.0), (a, x, da, 0.0)])
    decay_a, decay_b = a.par["decay_scales"][0], b.par["decay_scales"][0]
    assert (decay_a < 1).all()
    assert torch.allclose(a.weights(), wa * decay_a ** 2) and torch.allclose(b.weights(), wb * decay_b)
