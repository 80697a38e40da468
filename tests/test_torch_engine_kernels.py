"""The torch engine's fast kernels (issue #16, the speed targets): each one against the plain
pulse-by-pulse definition it replaces.

* the constant-step row scan is exact: the same per-pulse steps and clips as one pulse at a time;
* the closed form (one normal per cell) and the scan are equal in distribution to pulse-by-pulse
  walks on the same coincidence counts (means within 5 standard errors, variances within 10 %);
* the 16-bit Bernoulli trains fire with probability round(65536 p) / 65536 (0 at p = 0);
* the ragged rows hold each sample's own BL slots, and the per-sample counts add up to the totals.
"""

import pytest
import torch

from chiploop.devices.spec import load_device
from chiploop.emulator import TorchCrossbar
from chiploop.emulator.torch_engine import devices
from chiploop.emulator.torch_engine.crossbar import scan_constant_step
from chiploop.emulator.torch_engine.pulses import management, per_sample, totals, trains, uniform16


def torch_device(preset, **fields):
    return load_device({"preset": preset, **fields, "engine": "torch"})


@pytest.mark.parametrize("dw_min", [0.001, 0.2])          # 0.2: the walks hit the bounds again and again
def test_constant_step_scan_equals_pulse_by_pulse_with_the_same_draws(dw_min):
    spec = torch_device("constant-step", dw_min=dw_min)
    g = torch.Generator().manual_seed(0)
    K, R = 80, 45
    seq = torch.randint(-1, 2, (K, R), generator=g).float() * (torch.rand(K, R, generator=g) < 0.6)
    par = devices.populate(spec, (K,), g)
    w = (torch.rand(K, generator=g) * 2 - 1) * 0.6
    w[:5] = par["max_bound"][:5]                            # some start on a bound
    xi = torch.randn(K, R, generator=g)                     # xi[k, m]: the noise of cell k's m-th pulse
    out = scan_constant_step(w, seq, par["dwmin_up"], par["dwmin_down"], par["min_bound"], par["max_bound"],
                             spec.dw_min_std, g, xi)
    ref, m = w.clone(), torch.zeros(K, dtype=torch.int64)
    for r in range(R):
        noise = xi.gather(1, m.clamp(max=R - 1).unsqueeze(1)).squeeze(1)
        ref = devices.pulse(spec, ref, seq[:, r], par, g, noise)
        m += (seq[:, r] != 0).long()
    assert (out - ref).abs().max() < 1e-5
    if dw_min == 0.2:
        assert ((ref >= par["max_bound"] - 1e-6) | (ref <= par["min_bound"] + 1e-6)).any()
    untouched = (seq == 0).all(1)
    assert torch.equal(out[untouched], w[untouched])


def _reference_walk(spec, w0, par, x, d, lr, g):
    """Pulse by pulse on each chip's own coincidences (the definition), for a population (P, o, i)."""
    t = trains(x, d, lr, devices.granularity(spec), spec.desired_bl, g)
    P, o, i = w0.shape
    cells = torch.stack(torch.meshgrid(torch.arange(P), torch.arange(o), torch.arange(i), indexing="ij"), -1)
    cells = cells.reshape(-1, 3)
    counts = per_sample(t, cells).long()                                                 # (K, B)
    p, r, c = cells.unbind(1)
    direction = -(torch.sign(d[p, :, r]) * torch.sign(x[p, :, c]))
    w = w0.reshape(-1).clone()
    flat = {k: v.reshape(-1) for k, v in par.items()}
    for b in range(counts.shape[1]):
        for _ in range(int(counts[:, b].max())):
            sign = direction[:, b] * (counts[:, b] > 0)
            w = devices.pulse(spec, w, sign, flat, g)
            counts[:, b] -= (counts[:, b] > 0).long()
    return w.view(P, o, i)


@pytest.mark.parametrize("start, dw_min", [("middle", 0.02), ("bound", 0.02), ("middle", 0.3)])
def test_constant_step_update_is_equal_in_distribution_to_pulse_by_pulse(start, dw_min):
    """middle: the closed form; bound: the one-sided walk; dw_min 0.3: both bounds in reach, the scan."""
    spec = torch_device("constant-step", dw_min=dw_min, w_bound_dtod=0.0, read_noise=0.0)
    P, o, i = 3000, 3, 4
    g = torch.Generator().manual_seed(1)
    xb = TorchCrossbar.create(spec, o, i, "layer0", seed=5)
    W = torch.full((o, i), 0.0) if start == "middle" else xb.par["max_bound"][0] - 0.01
    W[0, 0] = xb.par["min_bound"][0, 0, 0]                   # one cell on the lower bound in both cases
    xb.program(W)
    x = torch.tensor([[0.9, -0.5, 0.3, 0.0], [0.2, 0.7, -1.0, 0.0]])
    d = torch.tensor([[0.6, -0.8, 0.1], [-0.4, 0.3, 0.9]])
    lr = 0.3 * dw_min / 0.02
    pop = xb.expand(P)
    pop.update(x, d, lr)
    ours = pop.W - W
    ref = _reference_walk(spec, pop.W.new_zeros(P, o, i) + W, {k: v.expand(P, o, i) for k, v in xb.par.items()},
                          x.expand(P, -1, -1), d.expand(P, -1, -1), lr, g) - W
    se = (ours.var(0) / P + ref.var(0) / P).sqrt()
    assert ((ours.mean(0) - ref.mean(0)).abs() <= 5 * se + 1e-7).all()

    def var_se(v):                                         # standard error of a variance estimate
        c = v - v.mean(0)
        return (((c ** 4).mean(0) - c.pow(2).mean(0) ** 2).clamp(min=0) / P).sqrt()

    moving = ref.var(0) > 1e-8
    assert moving.sum() >= 6
    gap = (ours.var(0) - ref.var(0)).abs()
    assert (gap <= 5 * (var_se(ours) ** 2 + var_se(ref) ** 2).sqrt() + 1e-9).all(), gap
    assert float(ours.var(0)[moving].sum() / ref.var(0)[moving].sum()) == pytest.approx(1.0, abs=0.1)  # sd ~0.015 over seeds
    assert torch.equal(ours[:, :, 3], torch.zeros(P, o))   # x = 0 on input 3: no pulse ever


def test_sixteen_bit_trains_fire_with_the_quantised_probability():
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.0, 1 / 65536, 0.001, 0.3, 0.5, 0.77, 1.0])
    thr = (p * 65536).round().sub(32768).clamp(-32768, 32767).to(torch.int16)
    n = 1 << 21
    u = uniform16((n, len(p)), g, torch.device("cpu"))
    rate = (u < thr).double().mean(0)
    want = (p * 65536).round().clamp(max=65535) / 65536
    se = (want * (1 - want) / n).sqrt()
    assert rate[0] == 0.0
    assert ((rate - want).abs() <= 5 * se + 1e-12).all(), (rate, want)
    words = u.reshape(-1)[: 1 << 20].long()
    assert abs(words.float().mean()) < 5 * 18918 / 1024 and words.min() == -32768 and words.max() == 32767


def test_ragged_rows_hold_each_samples_slots_and_counts_add_up():
    g = torch.Generator().manual_seed(3)
    P, B, n_in, n_out = 4, 5, 6, 3
    x = torch.rand(P, B, n_in, generator=g) * 2 - 1
    d = torch.randn(P, B, n_out, generator=g) * 0.3
    x[1, 2] = 0.0                                           # a sample without input: no slots
    x[:, :, 4] = 0.0                                        # an input line at 0: never fires
    t = trains(x, d, 0.05, 0.001, 31, g)
    bl, _, _ = management(x, d, 0.05, 0.001, 31)
    assert torch.equal(t.bl, bl) and int(bl[1, 2]) == 0
    assert t.lines.shape[1] == int(bl.sum(1).max())
    for p in range(P):                                      # rows past a chip's own total are empty
        assert not t.lines[p, int(bl[p].sum()):].any()
    assert not t.lines[..., 4].any()
    assert torch.equal(t.mag, t.lines.abs())
    signed, total = totals(t)
    cells = torch.stack(torch.meshgrid(torch.arange(P), torch.arange(n_out), torch.arange(n_in), indexing="ij"),
                        -1).reshape(-1, 3)
    counts = per_sample(t, cells)                            # (K, B)
    assert torch.equal(counts.sum(1), total.reshape(-1))
    direction = -(torch.sign(d[cells[:, 0], :, cells[:, 1]]) * torch.sign(x[cells[:, 0], :, cells[:, 2]]))
    assert torch.equal(-(counts * direction).sum(1), signed.reshape(-1))   # S = down - up


def test_one_sided_walk_equals_pulse_by_pulse_while_the_far_bound_is_out_of_reach():
    from chiploop.emulator.torch_engine.crossbar import one_sided_walk
    spec = torch_device("constant-step", dw_min=0.05)
    g = torch.Generator().manual_seed(4)
    K, R = 60, 40
    seq = torch.randint(-1, 2, (K, R), generator=g).float() * (torch.rand(K, R, generator=g) < 0.5)
    par = devices.populate(spec, (K,), g)
    upper = torch.arange(K) % 2 == 0
    w = torch.where(upper, par["max_bound"] - 0.05, par["min_bound"] + 0.05)     # near one bound, far from the other
    w[:4] = torch.where(upper[:4], par["max_bound"][:4], par["min_bound"][:4])
    xi = torch.randn(K, R, generator=g)
    out = one_sided_walk(w, seq, par["dwmin_up"], par["dwmin_down"], par["min_bound"], par["max_bound"], upper,
                         spec.dw_min_std, g, xi)
    ref = w.clone()
    for r in range(R):
        ref = devices.pulse(spec, ref, seq[:, r], par, g, xi[:, r])
    assert ((ref - par["min_bound"]).abs() > 0.01)[upper].all() and ((par["max_bound"] - ref) > 0.01)[~upper].all()
    assert (out - ref).abs().max() < 1e-5
    assert ((ref >= par["max_bound"] - 1e-6) | (ref <= par["min_bound"] + 1e-6)).sum() >= 5   # the clip acted
