"""Decorrelation layers: R learned by its local rule removes the correlations of every layer's input."""

import pytest
import torch

from chiploop.emulator import AnalogCrossbar
from chiploop.emulator.ledger import unwrap
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run
from chiploop.learning import Decorrelate, decorrelate
from chiploop.learning.decorrelation import mean_abs_offdiag_correlation


def layer_inputs(run: Run) -> dict[str, torch.Tensor]:
    """What every weight crossbar is driven with (after its decorrelator), on the whole training set."""
    with torch.no_grad():
        return run.network.unroll(run.task.x_train).inputs


def test_decorrelation_cuts_input_correlations_at_least_fivefold_on_digits():
    spec = experiment_from_data({"device": "ideal", "lr": 0.1, "epochs": 20, "decorrelation": {"eta": 0.01}})
    run = Run.build(spec)
    before = layer_inputs(run)
    with torch.no_grad():
        for epoch in range(1, spec.epochs + 1):
            run.epoch(epoch)
    after = layer_inputs(run)
    assert list(after) == ["layer0", "layer1"]
    for name in after:
        for centered in (False, True):  # the second moments the rule acts on, and Pearson correlations
            start = mean_abs_offdiag_correlation(before[name], centered)
            end = mean_abs_offdiag_correlation(after[name], centered)
            assert end * 5 <= start, (name, centered, start, end)
    assert run.evaluate()["test_acc"] > 0.9


def test_R_starts_at_identity_and_the_wrapped_rule_sees_decorrelated_inputs():
    spec = experiment_from_data({"device": "ideal", "decorrelation": {"eta": 0.05}})
    run = Run.build(spec)
    chip = run.network.chip
    assert chip.decorrelators == {"layer0": "decorr/layer0", "layer1": "decorr/layer1"}
    assert chip.named("decorrelator") == ["decorr/layer0", "decorr/layer1"]
    assert torch.equal(chip.crossbars["decorr/layer0"].weights(), torch.eye(64))
    x, y = run.task.x_train[:64], run.task.y_train[:64]
    with torch.no_grad():
        run.step(x, y, 0.1)
        R = chip.crossbars["decorr/layer0"].weights()
        assert not torch.equal(R, torch.eye(64))
        trace = run.network.unroll(x)
    assert torch.allclose(trace.inputs["layer0"], x @ R.T, atol=1e-6)


def test_decorrelation_update_matches_its_equation():
    spec = experiment_from_data({"device": "ideal"})
    run = Run.build(spec)
    transform = decorrelate(eta=0.01, kappa=0.3)
    run.network.chip.install(transform.crossbars(run.network, torch.Generator().manual_seed(0)))
    R0 = torch.eye(64) + 0.01 * torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    run.network.chip.crossbars["decorr/layer0"].program(R0)
    x = run.task.x_train[:50] @ R0.T
    signal = transform.signal(run.network, "layer0", x)
    assert signal.name == "decorr/layer0"
    C = x.T @ x / 50
    M = 0.7 * (C - torch.diag(torch.diagonal(C))) + 0.3 * torch.diag(torch.diagonal(C) - 1)
    assert torch.allclose(signal.d.T @ signal.x, M @ R0, atol=1e-5) and signal.lr == 0.01


@pytest.mark.parametrize("variance", ["unit", "mean"])
@pytest.mark.parametrize("normalise", [False, True])
def test_decorrelation_update_options_match_their_equation(variance, normalise):
    """``M = (1-κ) offdiag(C)/s + κ V``, ``s = n-1`` when normalised, ``V = diag(m - t)`` (unit, units
    silent over the batch left out) or ``(mean m - t) I`` (mean), written out element by element."""
    spec = experiment_from_data({"device": "ideal"})
    run = Run.build(spec)
    transform = decorrelate(eta=0.2, kappa=0.4, variance=variance, normalise=normalise, target=0.25)
    run.network.chip.install(transform.crossbars(run.network, torch.Generator().manual_seed(0)))
    R0 = torch.eye(64) + 0.01 * torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    run.network.chip.crossbars["decorr/layer0"].program(R0)
    x = (run.task.x_train[:50] @ R0.T).double()
    x[:, 0] = 0.0  # a unit silent over the batch
    signal = transform.signal(run.network, "layer0", x)
    n = 64
    M = torch.zeros(n, n, dtype=torch.float64)
    mean_m = sum(float((x[:, k] ** 2).mean()) for k in range(n)) / n
    for i in range(n):
        for j in range(n):
            c = float((x[:, i] * x[:, j]).mean())
            if i != j:
                M[i, j] = 0.6 * c / ((n - 1) if normalise else 1)
            elif variance == "mean":
                M[i, i] = 0.4 * (mean_m - 0.25)
            elif c > 0:
                M[i, i] = 0.4 * (c - 0.25)
    assert (variance == "mean") == (M[0, 0] != 0)  # the silent unit is pushed only by the mean term
    assert torch.allclose(signal.d.T.double() @ signal.x.double(), M @ R0.double(), atol=1e-6) and signal.lr == 0.2


def test_on_chip_R_lives_on_its_own_device():
    spec = experiment_from_data({"device": "constant-step", "decorrelation": {"on_chip": True, "device": "ecram"}})
    run = Run.build(spec)
    chip = run.network.chip
    assert isinstance(run.rule.transforms[0], Decorrelate) and run.rule.transforms[0].spec.device.preset == "ecram"
    assert chip.named("decorrelator") == ["decorr/layer0", "decorr/layer1"]
    for weight in run.network.weight_names:
        W, R = unwrap(chip.crossbars[weight]), unwrap(chip.crossbars[chip.decorrelators[weight]])  # metered
        assert chip.roles[weight] == "weight" and chip.roles[chip.decorrelators[weight]] == "decorrelator"
        assert isinstance(W, AnalogCrossbar) and W.spec.preset == "constant-step"
        assert isinstance(R, AnalogCrossbar) and R.spec.preset == "ecram"
        assert R.shape == (W.shape[1], W.shape[1])
    before = chip.weights()
    with torch.no_grad():
        run.step(run.task.x_train[:32], run.task.y_train[:32], 0.1)
    after = chip.weights()
    for name in chip.named("decorrelator") + chip.named("weight"):
        assert not torch.equal(before[name], after[name]), name
        assert torch.isfinite(after[name]).all(), name


@pytest.mark.parametrize("options, field", [({"eta": 0}, "decorrelation.eta"), ({"kappa": 2}, "decorrelation.kappa"),
                                            ({"device": "nope"}, "decorrelation.device.preset"),
                                            ({"etta": 0.1}, "decorrelation.etta"),
                                            ({"variance": "median"}, "decorrelation.variance"),
                                            ({"target": 0}, "decorrelation.target"),
                                            ({"normalise": "yes"}, "decorrelation.normalise")])
def test_bad_decorrelation_options(options, field):
    from chiploop.specs import SpecError
    with pytest.raises(SpecError) as info:
        experiment_from_data({"decorrelation": options})
    assert info.value.field == field
