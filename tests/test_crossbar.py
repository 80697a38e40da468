"""Crossbars: the aihwkit crossbar on the ideal spec is the ideal crossbar; pulsed updates
are right on average and noisy per draw; clones copy every bit of device state."""

import pytest
import torch

from chiploop.devices import load_device, preset_names
from chiploop.emulator import AnalogCrossbar, Crossbar, IdealCrossbar


def _pair(tile_size: int, out_size=9, in_size=13):
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(out_size, in_size, generator=gen) * 0.2
    analog = AnalogCrossbar.create(load_device({"preset": "ideal", "tile_size": tile_size}), out_size, in_size)
    analog.program(W)
    return analog, IdealCrossbar(W.clone()), gen


@pytest.mark.parametrize("tile_size", [512, 4])  # one tile, and a 3 x 4 grid of tiles
def test_analog_on_ideal_spec_matches_ideal_crossbar(tile_size):
    analog, ideal, gen = _pair(tile_size)
    assert isinstance(analog, Crossbar) and isinstance(ideal, Crossbar)
    assert len(analog.tiles) * len(analog.tiles[0]) == (1 if tile_size == 512 else 12)
    x, d = torch.randn(6, 13, generator=gen), torch.randn(6, 9, generator=gen)
    assert (analog.forward(x) - ideal.forward(x)).abs().max() <= 1e-5
    assert (analog.backward(d) - ideal.backward(d)).abs().max() <= 1e-5
    for lr in (0.05, 0.2):
        analog.update(x, d, lr)
        ideal.update(x, d, lr)
        assert (analog.weights() - ideal.weights()).abs().max() <= 1e-5
    assert (analog.read_weights() - ideal.weights()).abs().max() <= 1e-4


def _constant_step_crossbar(**fields):
    gen = torch.Generator().manual_seed(2)
    xb = AnalogCrossbar.create(load_device({"preset": "constant-step", **fields}), 6, 10)
    xb.program(torch.randn(6, 10, generator=gen) * 0.05)
    return xb, torch.rand(8, 10, generator=gen), torch.randn(8, 6, generator=gen) * 0.1


def _mean_update(xb, x, d, lr, repeats):
    """Per-element mean and std of the realised ΔW over ``repeats`` clones of one state."""
    W0 = xb.weights()
    deltas = []
    for _ in range(repeats):
        c = xb.clone()
        c.update(x, d, lr)
        deltas.append(c.weights() - W0)
    deltas = torch.stack(deltas)
    assert torch.equal(xb.weights(), W0)  # updating clones never touched the original
    return deltas.mean(0), deltas.std(0)


def _corr(a, b) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def test_pulsed_update_is_right_on_average_per_device_and_noisy_per_draw():
    """Each cell steps by its own dw_min (device-to-device spread 0.3 on constant-step) and stops
    at its own bounds, so the mean of 400 draws follows ``-lr d^T x`` scaled by the cell's step
    size and clipped to its bounds. (Against ``-lr d^T x`` alone the correlation is capped near
    ``1/sqrt(1 + 0.3^2) = 0.96`` by that fixed spread; the next test removes it.)"""
    xb, x, d = _constant_step_crossbar()
    lr, W0 = 0.01, xb.weights()
    mean, std = _mean_update(xb, x, d, lr, repeats=400)
    requested = -lr * d.T @ x
    cell = xb.tiles[0][0].get_hidden_parameters()
    own_step = torch.where(requested > 0, cell["dwmin_up"], cell["dwmin_down"]) / xb.spec.dw_min
    expected = (W0 + requested * own_step).clamp(cell["min_bound"], cell["max_bound"]) - W0
    assert _corr(mean, expected) >= 0.95
    assert (std > 0).all()


def test_pulsed_update_mean_follows_the_request_without_device_spread():
    xb, x, d = _constant_step_crossbar(dw_min_dtod=0.0, up_down_dtod=0.0)
    lr = 0.01
    mean, std = _mean_update(xb, x, d, lr, repeats=200)
    assert _corr(mean, -lr * d.T @ x) >= 0.95
    assert (std > 0).all()


def test_updating_a_clone_leaves_the_original_unchanged():
    xb, x, d = _constant_step_crossbar()
    W0 = xb.weights()
    c = xb.clone()
    c.update(x, d, 0.1)
    assert not torch.equal(c.weights(), W0)
    assert torch.equal(xb.weights(), W0)


def device_state(xb: AnalogCrossbar) -> list[dict]:
    """Weights, every hidden parameter and the extra C++ state of every tile."""
    states = []
    for row in xb.tiles:
        for t in row:
            extra = {k: v for k, v in t.tile.dump_extra().items()}
            states.append({"weights": t.get_weights()[0], **t.get_hidden_parameters(), **extra})
    return states


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return bool(a == b)


@pytest.mark.parametrize("preset", ["reram-sb", "reram-sb-tt", "reram-sb-cttv2"])
def test_clone_copies_weights_and_all_hidden_state_exactly(preset):
    gen = torch.Generator().manual_seed(4)
    xb = AnalogCrossbar.create(load_device(preset), 5, 8)
    xb.program(torch.randn(5, 8, generator=gen) * 0.1)
    for _ in range(3):  # move hidden and transfer state away from its initial values
        xb.update(torch.rand(4, 8, generator=gen), torch.randn(4, 5, generator=gen) * 0.1, 0.1)
    _assert_same_state(xb, xb.clone())


def _assert_same_state(xb: AnalogCrossbar, other: AnalogCrossbar) -> None:
    for a, b in zip(device_state(xb), device_state(other), strict=True):
        assert a.keys() == b.keys()
        differing = [k for k in a if not _equal(a[k], b[k])]
        assert not differing, differing


NO_WRITE_NOISE = [p for p in preset_names() if p != "ideal" and load_device(p).write_noise_std == 0]


@pytest.mark.parametrize("device", [*NO_WRITE_NOISE, {"preset": "constant-step", "tile_size": 4},
                                    "reram-sb", "reram-sb-tt", {"preset": "reram-sb-tt", "write_noise_std": 0.0},
                                    {"preset": "reram-sb-mp", "write_noise_std": 0.0},
                                    {"preset": "reram-sb-agad", "write_noise_std": 0.0}])
def test_restore_puts_a_clone_back_into_the_exact_state_of_its_source(device):
    gen = torch.Generator().manual_seed(5)
    xb = AnalogCrossbar.create(load_device(device), 5, 8)
    xb.program(torch.randn(5, 8, generator=gen) * 0.1)
    step = lambda c: c.update(torch.rand(4, 8, generator=gen), torch.randn(4, 5, generator=gen) * 0.1, 0.1)  # noqa
    for _ in range(3):
        step(xb)
    c = xb.clone()
    for _ in range(2):  # update the clone, then restore it: twice, as the update probe does
        step(c)
        c.restore(xb)
        _assert_same_state(c, xb)
    before = device_state(xb)
    step(c)
    assert all(_equal(a[k], b[k]) for a, b in zip(before, device_state(xb)) for k in a)  # source untouched
    assert any(not _equal(a[k], b[k]) for a, b in zip(before, device_state(c)) for k in a)  # clone moved


def test_plain_deepcopy_is_not_exact_for_write_noise_devices():
    """Why clone() exists: deepcopy re-applies write noise (AIHWKIT_NOTES §1.5)."""
    import copy
    xb = AnalogCrossbar.create(load_device("reram-sb"), 5, 8)
    xb.program(torch.full((5, 8), 0.1))
    naive = copy.deepcopy(xb.tiles[0][0])
    assert not torch.equal(naive.get_hidden_parameters()["persistent_weights"],
                           xb.tiles[0][0].get_hidden_parameters()["persistent_weights"]) or \
        not torch.equal(naive.get_weights()[0], xb.tiles[0][0].get_weights()[0])


def test_drift_lowers_weights_on_a_drifting_device():
    xb = AnalogCrossbar.create(load_device({"preset": "pcm", "dw_min_dtod": 0.0}), 4, 6)
    xb.program(torch.full((4, 6), 0.5))
    before = xb.weights().abs().mean()
    xb.drift(3600.0)
    assert xb.weights().abs().mean() < before
