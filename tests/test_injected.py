"""The injected estimator (Ghosh et al. 2023): controlled bias b and variance σ on top of a rule."""

import math

import pytest
import torch
from conftest import attach, ideal_problem, step

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run, train
from chiploop.learning import Backprop, FeedbackAlignment, InjectedSpec, chain, decorrelate, inject
from chiploop.learning.diagnostics import probe
from chiploop.specs import SpecError

SMALL = (10, 12, 4)  # tanh, batch 16, seed 0


@pytest.mark.parametrize("inner", [Backprop(), FeedbackAlignment(), chain(Backprop(), decorrelate(eta=0.01))],
                         ids=["backprop", "feedback_alignment", "decorrelated_backprop"])
def test_zero_bias_and_variance_apply_the_inner_rules_update_exactly(inner):
    plain, batch, loss, _ = ideal_problem(SMALL)
    wrapped, _, _, _ = ideal_problem(SMALL)
    rule = chain(inner, inject(bias=0.0, variance=0.0))
    # the same draws on both chips: the inner rule's crossbars (FA's feedback, the decorrelators) and state
    inner_state = attach(inner, plain, torch.Generator().manual_seed(3))
    state = attach(rule, wrapped, torch.Generator().manual_seed(3))
    assert plain.chip.roles == wrapped.chip.roles
    assert all(torch.equal(xb.weights(), wrapped.chip.crossbars[k].weights()) for k, xb in plain.chip.crossbars.items())
    plain_signals, _ = step(inner, plain, inner_state, batch, loss)
    wrapped_signals, _ = step(rule, wrapped, state, batch, loss)
    assert [s.name for s in wrapped_signals] == [s.name for s in plain_signals]
    for s in wrapped_signals:  # weight layers as dense one-hot updates, decorrelation's untouched
        if wrapped.chip.roles[s.name] == "weight":
            assert torch.equal(s.x, torch.eye(s.x.shape[1]))
        else:
            assert s.name.startswith("decorr/")
    before = ideal_problem(SMALL).net.chip
    for name, xb in plain.chip.crossbars.items():
        assert (xb.weights() - wrapped.chip.crossbars[name].weights()).abs().max() <= 1e-6, name
        if name in plain.chip.biases:
            assert not torch.equal(plain.chip.biases[name], before.biases[name])  # the bias did move ...
            assert (plain.chip.biases[name] - wrapped.chip.biases[name]).abs().max() <= 1e-6, name  # ... alike


@pytest.mark.parametrize("b, sigma", [(0.0, 1.0), (0.3, 0.5), (1.0, 2.0)])
def test_probe_measures_relative_bias_b_and_relative_variance_sigma_squared(b, sigma):
    """Ideal backprop on an ideal chip: ĝ = g, so the algorithmic error is exactly the injected
    ``ξ - b ||g|| u``. Over K draws, ||ξ_k|| = σ||g|| each, so the probe's variance is
    σ² - ||mean ξ||²/||g||² (in [σ²(1 - 4/K), σ²]), and its bias is ||-b u + mean ξ/||g|| ||,
    within 2σ/sqrt(K) of b (mean ξ has norm about σ/sqrt(K) ||g||). K = 200. Measured:
    (b, σ) = (0.3, 0.5) -> bias 0.30, variance 0.249 (K = 400)."""
    K = 200
    net, batch, loss, gen = ideal_problem(SMALL)
    rule = chain(Backprop(), inject(InjectedSpec(bias=b, variance=sigma)))
    rows = probe(net, rule, attach(rule, net, gen), batch, loss, 0.1, repeats=K)
    for r in rows:
        if r["part"] == "algorithmic":
            assert abs(r["rel_bias"] - b) <= 2 * sigma / math.sqrt(K), r
            assert sigma ** 2 * (1 - 4 / K) <= r["rel_var"] <= sigma ** 2 + 1e-9, r
        elif r["part"] in ("read", "write", "physical"):  # the same draw on the shadow and on the chip
            assert r["rel_bias"] <= 1e-8 and r["rel_var"] <= 1e-8, r
    assert {r["layer"] for r in rows} == {"layer0", "layer1"}


def test_injected_noise_has_the_asked_norm_every_draw_and_the_bias_is_along_all_ones():
    rule = inject(bias=0.5, variance=0.0)
    g = torch.randn(6, 7, generator=torch.Generator().manual_seed(0))
    out = rule.inject(g, torch.Generator().manual_seed(1))
    assert torch.allclose(g - out, torch.full_like(g, 0.5 * g.norm() / math.sqrt(42)))
    rule = inject(bias=0.0, variance=0.7)
    gen = torch.Generator().manual_seed(2)
    for _ in range(5):
        assert abs((rule.inject(g, gen) - g).norm() - 0.7 * g.norm()) <= 1e-5


@pytest.mark.parametrize("options, field", [({"bias": -0.1}, "injected.bias"), ({"variance": -1}, "injected.variance"),
                                            ({"bias": "lots"}, "injected.bias"), ({"bais": 0.1}, "injected.bais")])
def test_bad_injected_options(options, field):
    with pytest.raises(SpecError) as info:
        experiment_from_data({"injected": options})
    assert info.value.field == field


def test_a_spec_with_injected_bias_and_variance_trains():
    spec = experiment_from_data({"device": "ideal", "epochs": 2, "injected": {"bias": 0.1, "variance": 0.5}})
    assert spec.injected == InjectedSpec(bias=0.1, variance=0.5)
    result = train(spec, progress=False)
    assert result.status == "ok"
    # measured 2.31 -> 1.45 (plain backprop: 2.31 -> 1.51)
    assert result.history[-1]["train_loss"] < 0.8 * result.history[0]["train_loss"]


def test_dense_injected_update_runs_through_a_pulsed_crossbar():
    run = Run.build(experiment_from_data({"device": "constant-step", "injected": {"bias": 0.2, "variance": 1.0}}))
    before = run.network.crossbar(0).weights()
    with torch.no_grad():
        run.step(run.task.x_train[:32], run.task.y_train[:32], 0.1)
    assert not torch.equal(before, run.network.crossbar(0).weights())
