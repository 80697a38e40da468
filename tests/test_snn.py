"""The spiking network and symmetric STDP (docs/science.md §8): oracles on the ideal chip.

* a LIF neuron under a constant current fires at the analytic rate (2 %);
* the STDP weight change of one pre/post pair at Δt is the window ``lr a exp(-|Δt|/τ)`` for both orders
  (1e-6), applied through the crossbar's pulsed-update verb;
* synaptic scaling (a read, then an update through the verbs) leaves every neuron's incoming weights
  summing to the target; the dynamic threshold rises per spike and decays;
* the surrogate-gradient walk of the SNN equals autograd through its unroll.
"""

import math

import pytest
import torch

from chiploop.emulator import IdealCrossbar
from chiploop.emulator.networks import SNNSpec
from chiploop.emulator.periphery import LIFParameters, lif_initial, lif_step
from chiploop.learning import Backprop, Loss, SymSTDP
from chiploop.learning.shadow import true_gradient
from chiploop.learning.sym_stdp import scaling_signals, stdp_rows, threshold_step


# ------------------------------------------------------------------ LIF


def analytic_rate(p: LIFParameters, current: float) -> float:
    """``1 / (t_ref + τ_m ln(R I / (R I - (v_th - v_rest))))`` in Hz (times in ms)."""
    ri = p.r_m * current
    period_ms = p.t_ref + p.tau_m * math.log(ri / (ri - (p.v_th - p.v_rest)))
    return 1000.0 / period_ms


@pytest.mark.parametrize("t_ref", [1.0, 5.0])
def test_lif_fires_at_the_analytic_rate(t_ref):
    p = LIFParameters(tau_m=20.0, v_rest=-65.0, v_reset=-65.0, v_th=-52.0, t_ref=t_ref, r_m=1000.0, dt=0.05)
    currents = [0.015, 0.03, 0.1]                          # nA: R I = 15 ... 100 mV; periods >= 3.8 ms >> dt
    steps = round(400.0 / p.dt)                           # 0.4 s
    state = lif_initial(1, len(currents), p, torch.zeros((), dtype=torch.float64))
    drive = torch.tensor([currents], dtype=torch.float64)
    spikes = torch.zeros(steps, len(currents))
    for t in range(steps):
        s, state = lif_step(drive, state, p)
        spikes[t] = s[0]
    for k, current in enumerate(currents):
        times = spikes[:, k].nonzero().flatten()
        assert len(times) > 5
        rate = 1000.0 / ((times[-1] - times[0]).item() / (len(times) - 1) * p.dt)   # from inter-spike intervals
        assert rate == pytest.approx(analytic_rate(p, current), rel=0.02), current


def test_lif_below_rheobase_never_fires_and_refractory_holds_the_reset():
    p = LIFParameters(r_m=100.0, t_ref=3.0, dt=0.5)
    state = lif_initial(1, 2, p, torch.zeros(()))
    drive = torch.tensor([[0.12, 1.0]])          # R I = 12 mV < 13 mV; 100 mV
    spikes = []
    for _ in range(400):
        s, state = lif_step(drive, state, p)
        spikes.append(s)
    spikes = torch.cat(spikes)
    assert spikes[:, 0].sum() == 0
    first = int(spikes[:, 1].nonzero()[0])
    gap = int(spikes[first + 1:, 1].nonzero()[0]) + 1
    assert gap > 3.0 / 0.5                       # no spike within t_ref steps of the last


# ------------------------------------------------------------------ STDP window


@pytest.mark.parametrize("dt_ms", [-40, -17, -1, 1, 3, 20, 40])
@pytest.mark.parametrize("a_pre, a_post", [(1.0, 1.0), (0.5, 2.0)])
def test_stdp_pair_changes_the_weight_by_the_window(dt_ms, a_pre, a_post):
    tau, dt, lr, steps = 20.0, 1.0, 0.01, 100
    t_pre = 50
    t_post = t_pre + dt_ms
    pre = torch.zeros(steps, 1, 3, dtype=torch.float64)
    post = torch.zeros(steps, 1, 2, dtype=torch.float64)
    pre[t_pre, 0, 1] = 1
    post[t_post, 0, 0] = 1
    xb = IdealCrossbar(torch.zeros(2, 3, dtype=torch.float64))
    x, d = stdp_rows(pre, post, a_pre, a_post, tau, dt)
    xb.update(x, d, lr)                          # the crossbar's verb: W -= lr dᵀx
    window = lr * (a_pre if dt_ms > 0 else a_post) * math.exp(-abs(dt_ms) / tau)
    expected = torch.zeros(2, 3, dtype=torch.float64)
    expected[0, 1] = window
    assert torch.allclose(xb.W, expected, rtol=0, atol=1e-6 * window)
    assert (xb.W - expected).abs().max() <= 1e-6 * window
    assert len(x) == 1                           # one rank-1 term, at the later spike: empty rows are dropped


# ------------------------------------------------------------------ scaling and threshold


def snn(hidden=12, seed=0, **options):
    spec = SNNSpec(hidden=hidden, **options)
    return spec.build(None, torch.Generator().manual_seed(seed))


def test_synaptic_scaling_through_the_verbs_reaches_the_target():
    net = snn()
    chip = net.chip
    for name, target in (("W_in", 3.0), ("W_out", 7.5)):
        signal = scaling_signals(net, name, target)
        assert signal.x.shape[0] == chip.crossbars[name].shape[1]   # one pulsed row per input column
        chip.apply([signal], lr=123.0)                               # the signal's own lr (1) is used
        sums = chip.crossbars[name].weights().sum(1)
        assert torch.allclose(sums, torch.full_like(sums, target), rtol=1e-5)
        assert (chip.crossbars[name].weights() >= 0).all()


def test_the_rule_scales_before_each_batch_and_counts_what_it_costs():
    net = snn()
    rule = SymSTDP(target_in=2.0, target_out=5.0)
    state = rule.init(net, torch.Generator().manual_seed(1))
    signals, state = rule.before(net, state)
    net.chip.apply(signals, 0.1)
    assert torch.allclose(net.chip.crossbars["W_in"].weights().sum(1), torch.full((12,), 2.0), rtol=1e-5)
    assert state["scaling_rows"] == 64 + 12 and state["scaling_reads"] == 64 + 12


def test_out_rate_scales_the_output_layer_stdp_only():
    gen = torch.Generator().manual_seed(1)
    net = snn(hidden=16, seed=1, r_m=300.0)
    x, y = spike_batch(gen, rate=0.3)
    with torch.no_grad():
        trace = net.unroll(x)
    base, fast = SymSTDP(), SymSTDP(out_rate=8.0)
    sig_a, _ = base.signals(net, trace, (x, y), Loss("cross_entropy"), base.init(net, torch.Generator()))
    sig_b, _ = fast.signals(net, trace, (x, y), Loss("cross_entropy"), fast.init(net, torch.Generator()))
    for a, b in zip(sig_a, sig_b):
        assert a.name == b.name and torch.equal(a.x, b.x)
        assert torch.equal(b.d, a.d * (8.0 if a.name == "W_out" else 1.0))
    assert any(s.name == "W_out" and len(s.d) and s.d.abs().sum() > 0 for s in sig_a)


@pytest.mark.parametrize("fraction", [1.0, 0.25, 0.0])
def test_anneal_weights_scaling_and_threshold_by_the_scheduled_lr(fraction):
    """With ``anneal: η₀`` scaling and θ move by ``lr / η₀`` of their full step (exact on the ideal chip);
    STDP's own rows are unchanged; ``anneal: null`` is today's full step whatever the lr."""
    eta0 = 0.002
    gen = torch.Generator().manual_seed(3)
    x, y = spike_batch(gen, rate=0.3)
    full, ann = SymSTDP(target_in=2.0, target_out=5.0), SymSTDP(target_in=2.0, target_out=5.0, anneal=eta0)
    nets = {}
    for key, rule in (("full", full), ("ann", ann)):
        net = snn(hidden=16, seed=1, r_m=300.0)
        net.chip.biases["W_in"].copy_(torch.linspace(0.0, 3.0, 16))
        w0 = {k: v.clone() for k, v in net.chip.weights().items()}
        theta0 = {k: v.clone() for k, v in net.chip.biases.items()}
        state = rule.init(net, torch.Generator().manual_seed(1))
        early, state = rule.before(net, state)
        net.chip.apply(early, 123.0 if key == "full" else eta0 * fraction)
        scaled = {k: v - w0[k] for k, v in net.chip.weights().items()}
        with torch.no_grad():
            trace = net.unroll(x)
        signals, _ = rule.signals(net, trace, (x, y), Loss("cross_entropy"), state)
        before = {k: v.clone() for k, v in net.chip.biases.items()}
        net.chip.apply([s for s in signals if not len(s.x)], 123.0 if key == "full" else eta0 * fraction)
        nets[key] = (scaled, {k: v - before[k] for k, v in net.chip.biases.items()},
                     [s for s in signals if len(s.x)], theta0)
    (sc_f, th_f, stdp_f, _), (sc_a, th_a, stdp_a, _) = nets["full"], nets["ann"]
    for name in ("W_in", "W_out"):
        assert torch.allclose(sc_a[name], fraction * sc_f[name], atol=1e-6)
    if fraction == 1.0:
        for name in ("W_in", "W_out"):
            assert torch.allclose(th_a[name], th_f[name], atol=1e-6)
        for a, b in zip(stdp_f, stdp_a):
            assert torch.equal(a.x, b.x) and torch.equal(a.d, b.d) and a.lr is None and b.lr is None
    if fraction == 0.0:
        assert all(torch.equal(v, torch.zeros_like(v)) for v in th_a.values())
    assert any(v.abs().sum() > 0 for v in th_f.values())


def test_dynamic_threshold_rises_per_spike_and_decays():
    theta = torch.tensor([0.0, 1.0, 2.0])
    counts = torch.tensor([3.0, 0.0, 1.0])
    step = threshold_step(theta, counts, 0.1, 0.5)
    assert torch.allclose(theta + step, torch.tensor([0.3, 0.5, 1.1]))


# ------------------------------------------------------------------ the network's walk


def spike_batch(gen, batch=6, steps=30, n_in=64, rate=0.15):
    x = (torch.rand(batch, steps, n_in, generator=gen) < rate).float()
    y = torch.randint(0, 10, (batch,), generator=gen)
    return x, y


@pytest.mark.parametrize("readout", ["count", "count+current"])
def test_surrogate_gradient_walk_equals_autograd_through_the_unroll(readout):
    gen = torch.Generator().manual_seed(4)
    net = SNNSpec(hidden=20, r_m=200.0, inhibition=0.5, inhibition_out=0.3, readout=readout).build(None, gen)
    net.chip.biases["W_in"] += torch.rand(20, generator=gen)          # some adaptive threshold
    x, y = spike_batch(gen)
    loss = Loss("cross_entropy")
    with torch.no_grad():
        trace = net.unroll(x)
        assert trace.states["s_h"].sum() > 0 and trace.output.sum() > 0
        signals, _ = Backprop().signals(net, trace, (x, y), loss, None)
    truth = true_gradient(net, (x, y), loss)
    for s in signals:
        g = (s.d.T.double() @ s.x.double())
        assert g.abs().max() > 0
        assert torch.allclose(g, truth[s.name], atol=1e-5 * truth[s.name].abs().max(), rtol=1e-4), s.name
    # the thresholds' gradient (bias_grad) against autograd too
    params = {k: b.double().clone().requires_grad_(True) for k, b in net.chip.biases.items()}
    shadow = net.chip.shadow()
    shadow.biases.update(params)
    out = net.on(shadow).unroll(x.double()).output
    grads = torch.autograd.grad(loss(out, y), list(params.values()))
    for (name, _), g in zip(params.items(), grads):
        mine = next(s.bias_grad for s in signals if s.name == name)
        assert torch.allclose(mine.double(), g, atol=1e-5 * g.abs().max().clamp(min=1e-12), rtol=1e-4), name


def test_count_current_readout_breaks_ties_by_the_accumulated_output_current():
    gen = torch.Generator().manual_seed(3)
    x, _ = spike_batch(gen, batch=40, steps=20)
    plain = snn(hidden=20, seed=5, r_m=100.0)
    tied = snn(hidden=20, seed=5, r_m=100.0, readout="count+current")
    with torch.no_grad():
        a, b = plain.unroll(x), tied.unroll(x)
    counts, charge = a.output, b.preacts["W_out"].view(20, 40, -1).sum(0)
    assert torch.equal(b.output - counts, charge / (4 * charge.abs().amax(1, keepdim=True)))  # the oracle
    top = counts == counts.amax(1, keepdim=True)
    assert (top.sum(1) > 1).any()                                     # the draw has ties to break
    # the prediction: most spikes; among those, most accumulated current
    expected = torch.where(top, charge, torch.full_like(charge, -torch.inf)).argmax(1)
    assert torch.equal(b.output.argmax(1), expected)


def test_unroll_is_the_same_on_the_shadow_and_refuses_bad_shapes():
    gen = torch.Generator().manual_seed(0)
    net = snn(seed=2, r_m=50.0)
    x, _ = spike_batch(gen, n_in=64)
    with torch.no_grad():
        a = net.unroll(x).output
        b = net.on(net.chip.shadow()).unroll(x.double()).output
    assert torch.equal(a.double(), b)
    with pytest.raises(ValueError, match="time"):
        net.unroll(x[:, 0])


# ------------------------------------------------------------------ the Loihi 2 (Lava) rule string


def test_the_lava_string_reproduces_the_implemented_window():
    from chiploop.learning.loihi import simulate_dw

    rule = SymSTDP(tau=20.0, a_pre=1.0, a_post=0.7)
    lr, dt, steps, t0 = 0.003, 0.5, 240, 100
    lava = rule.loihi(lr, dt)
    for dt_steps in range(-80, 81, 5):                       # Δt = -40 ... 40 ms (all of it: test_snn_export)
        pre = torch.zeros(steps, 1, 1, dtype=torch.float64)
        post = torch.zeros(steps, 1, 1, dtype=torch.float64)
        pre[t0, 0, 0], post[t0 + dt_steps, 0, 0] = 1, 1
        xb = IdealCrossbar(torch.zeros(1, 1, dtype=torch.float64))
        xb.update(*stdp_rows(pre, post, rule.a_pre, rule.a_post, rule.tau, dt), lr)
        implemented = xb.W.item()
        assert simulate_dw(lava, [t0], [t0 + dt_steps], steps) == pytest.approx(implemented, rel=1e-3)


@pytest.mark.parametrize("text, ok", [
    ("2^-4 * x0 * y1 + 2^-4 * y0 * x1", True), ("-0.5 * y0 * x1 - 3 * x0", True), ("1e-3 * x0*y1", True),
    ("__import__('os')", False), ("x0 ** y1", False), ("x0 * ", False), ("2 ^ x0", False), ("z9 * x0", False),
    ("x0 y1", False), ("", False)])
def test_the_lava_parser_accepts_the_grammar_only(text, ok):
    from chiploop.learning.loihi import parse_dw
    from chiploop.specs import SpecError

    if ok:
        assert parse_dw(text)
    else:
        with pytest.raises(SpecError, match="loihi.dw"):
            parse_dw(text)
    assert parse_dw("2^-4 * x0 * y1 + 3 * y0") == [(2 ** -4, ("x0", "y1")), (3.0, ("y0",))]
