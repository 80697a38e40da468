"""Weight perturbation / SPSA: the estimate approaches the true gradient, the seed can be shared
with the chip, and it trains on the ideal and an analog chip (its bad options are in tests/rule_db.py)."""

from dataclasses import replace

import pytest
import torch
from conftest import attach, ideal_problem

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run, train
from chiploop.learning import Backprop, make_rule

SIZES = (6, 5, 3)  # 53 weights and biases: the estimate's variance grows with their number
SEED = 3           # of the weights and the batch of 16 (tanh, ideal chip)


def estimates(signals) -> tuple[torch.Tensor, torch.Tensor]:
    """(ĝ of all layers' weights, ĝ of all biases), with ĝ_l = d^T x as the crossbar applies it."""
    weights = torch.cat([(s.d.T @ s.x).flatten() for s in signals])
    biases = torch.cat([s.d.sum(0) if s.bias_grad is None else s.bias_grad for s in signals])
    return weights, biases


def backprop_gradient(net, batch, loss):
    """``(g, g_bias)`` from exact backprop on the ideal chip (tests/test_oracle.py), and the trace."""
    trace = net.unroll(batch[0])
    signals, _ = Backprop().signals(net, trace, batch, loss, None)
    return estimates(signals), trace


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


@pytest.mark.parametrize("directions", ["rank1", "dense"])
@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_each_loss_difference_is_the_directional_derivative(distribution, directions):
    model, batch, loss, _ = ideal_problem(SIZES, seed=SEED)
    (g, g_bias), _ = backprop_gradient(model, batch, loss)
    rule = make_rule("weight_perturbation", {"distribution": distribution, "directions": directions,
                                             "epsilon": 1e-2, "samples": 8})
    state = attach(rule, model, torch.Generator().manual_seed(0))
    dirs = rule.draw(model, state)
    assert list(dirs) == list(model.weight_names)
    c = rule.loss_differences(model, batch, loss, dirs)
    P = torch.cat([d.matrix().flatten(1) for d in dirs.values()], 1)  # (K, weights)
    p_bias = torch.cat([d.bias for d in dirs.values()], 1)             # (K, biases)
    if distribution == "rademacher":
        assert set(P.unique().tolist()) == {-1.0, 1.0}
    # two-sided differences: exact up to O(ε²) and float32 rounding of the loss
    torch.testing.assert_close(c, P @ g + p_bias @ g_bias, rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("directions", ["rank1", "dense"])
@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_estimate_averaged_over_draws_approaches_the_true_gradient(distribution, directions):
    """E[ĝ] = g + O(ε²): the mean of N estimates has cosine ≈ (1 + D/N)^(-1/2) with g (D = 53
    parameters), about 0.8 at N = 100 and 0.99 at N = 2000 for Gaussian dense directions."""
    model, batch, loss, _ = ideal_problem(SIZES, seed=SEED)
    (g, g_bias), trace = backprop_gradient(model, batch, loss)
    rule = make_rule("weight_perturbation", {"distribution": distribution, "directions": directions,
                                             "epsilon": 1e-2, "samples": 20})
    state = attach(rule, model, torch.Generator().manual_seed(1))
    total, total_bias, cos = 0, 0, {}
    for calls in range(1, 101):  # 100 steps of 20 directions each, same weights and batch
        signals, state = rule.signals(model, trace, batch, loss, state)
        w, b = estimates(signals)
        total, total_bias = total + w, total_bias + b
        cos[calls * rule.samples] = cosine(total, g)
    assert state.step == 100
    assert cos[2000] >= 0.9, cos[2000]
    assert cos[2000] >= cos[100] + 0.05, (cos[100], cos[2000])  # tolerance: it rises with N
    mean = total / 100
    assert abs((mean @ g).item() / (g @ g).item() - 1) < 0.15  # unbiased in scale too, not only in direction
    assert cosine(total_bias, g_bias) >= 0.9


def test_shared_seed_lets_the_chip_regenerate_the_directions():
    model, batch, loss, _ = ideal_problem(SIZES, seed=SEED)
    trace = model.unroll(batch[0])
    rule = make_rule("spsa", {"shared_seed": True, "samples": 3})
    ours = attach(rule, model, torch.Generator().manual_seed(7))
    chip = attach(rule, model, torch.Generator().manual_seed(7))  # the chip holds only the seed
    for _ in range(3):
        _, ours = rule.signals(model, trace, batch, loss, ours)
    assert ours.step == 3
    chip = replace(chip, step=3)  # ... and counts steps
    mine, theirs = rule.draw(model, ours), rule.draw(model, chip)
    assert mine.keys() == theirs.keys() == set(model.weight_names)
    for name in mine:
        assert torch.equal(mine[name].matrix(), theirs[name].matrix()) and torch.equal(mine[name].bias, theirs[name].bias)
    later = rule.draw(model, replace(chip, step=4))
    assert not torch.equal(mine["layer0"].matrix(), later["layer0"].matrix())
    other = attach(rule, model, torch.Generator().manual_seed(8))
    assert not torch.equal(rule.draw(model, replace(other, step=3))["layer0"].matrix(), mine["layer0"].matrix())


@pytest.mark.parametrize("directions, floats_per_direction", [
    ("rank1", (5 + 6) + (3 + 5)),        # u, v per layer (u is also the bias direction)
    ("dense", (5 * 6 + 5) + (3 * 5 + 3)),  # P and p_b per layer
])
def test_report_counts_bus_bytes(directions, floats_per_direction):
    model = ideal_problem(SIZES, seed=SEED).net
    gen = torch.Generator().manual_seed(0)
    for samples in (1, 4):
        options = {"directions": directions, "samples": samples}
        shared = make_rule("spsa", {**options, "shared_seed": True})
        sent = make_rule("spsa", {**options, "shared_seed": False})
        assert shared.report(attach(shared, model, gen)) == {"bus_bytes_per_step": 4 * samples}
        assert sent.report(attach(sent, model, gen)) == {"bus_bytes_per_step": 4 * samples * (1 + floats_per_direction)}


def test_defaults_gaussian_for_weight_perturbation_rademacher_for_spsa():
    assert make_rule("weight_perturbation").distribution == "gaussian"
    assert make_rule("spsa").distribution == "rademacher"
    assert make_rule("spsa", {"distribution": "gaussian"}).distribution == "gaussian"


def test_spsa_trains_on_the_ideal_chip():
    spec = experiment_from_data({
        "device": "ideal", "model": {"sizes": [64, 16, 10]}, "epochs": 5, "lr": 0.05, "seed": 1,
        "rule": {"name": "spsa", "options": {"epsilon": 0.01, "samples": 16}}})
    result = train(spec, progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.8 * losses[0], losses  # about 2.3 -> 1.4
    assert all(row["bus_bytes_per_step"] == 4 * 16 for row in result.history)


@pytest.mark.parametrize("directions", ["rank1", "dense"])
def test_one_step_on_an_analog_chip_moves_every_layer(directions):
    spec = experiment_from_data({
        "device": "constant-step", "model": {"sizes": [64, 8, 10]}, "lr": 0.5, "seed": 2,
        "rule": {"name": "spsa", "options": {"epsilon": 0.05, "samples": 4, "directions": directions}}})
    run = Run.build(spec)
    before = run.network.chip.weights()
    biases = {k: b.clone() for k, b in run.network.chip.biases.items()}
    with torch.no_grad():
        run.step(run.task.x_train[:32], run.task.y_train[:32], spec.lr)
    after = run.network.chip.weights()
    for name in run.network.weight_names:
        assert not torch.equal(before[name], after[name]), name
        assert not torch.equal(biases[name], run.network.chip.biases[name]), name
    assert run.state.step == 1
