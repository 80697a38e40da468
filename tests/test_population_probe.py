"""The update probe's K repeats as one population step (torch engine; docs/torch_engine.md, Populations):
the same rows as the K clone/step/restore cycles, in distribution on an analog chip and exactly on
the ideal chip, and the training trajectory untouched."""

import numpy as np
import pytest
import torch
from conftest import attach, ideal_problem

import chiploop.api as cl
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train
from chiploop.learning import Backprop, DirectFeedbackAlignment, FeedbackAlignment, SignSymmetry
from chiploop.learning.diagnostics import population_probe_ok, probe
from chiploop.learning.loss import Loss

TORCH_DEVICE = {"preset": "constant-step", "engine": "torch"}


def torch_problem(sizes=(64, 16, 10), rule=None, seed=0, device=TORCH_DEVICE):
    task = cl.task("digits")
    net = cl.mlp(list(sizes), device=device, seed=seed)
    rule = rule or Backprop()
    learner = cl.learner(net, rule, task.loss, seed=seed)
    x, y = next(iter(task.batches(32, seed=seed)))
    return net, rule, learner.state, (x, y), task.loss


def by_key(rows):
    return {(r["layer"], r["part"]): r for r in rows}


@pytest.mark.parametrize("rule_class", [Backprop, FeedbackAlignment])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_population_probe_equals_the_loop_on_the_ideal_chip(rule_class, loss):
    """Every read and update exact: the K repeats are identical, both ways, to float64 rounding."""
    net, batch, loss_fn, gen = ideal_problem((10, 12, 4), loss=loss)
    rule = rule_class()
    state = attach(rule, net, gen)
    loop = by_key(probe(net, rule, state, batch, loss_fn, 0.1, 4, population=False))
    pop = by_key(probe(net, rule, state, batch, loss_fn, 0.1, 4, population=True))
    assert loop.keys() == pop.keys()
    for key, row in loop.items():
        for field in ("g_norm", "rel_bias", "rel_var", "cos"):
            assert pop[key][field] == pytest.approx(row[field], abs=1e-10), (key, field)
    if rule_class is FeedbackAlignment:  # not all zero: the algorithmic part is FA's own bias
        assert loop[("layer0", "algorithmic")]["rel_bias"] > 0.1


def test_population_probe_matches_the_loop_in_distribution_on_an_analog_torch_chip():
    """constant-step on the torch engine (read noise, DAC/ADC, pulse noise), backprop, K = 300 each way.

    Tolerances, from the spread of repeated runs of each (docs/torch_engine.md, Populations): the
    relative variance within 10 % (repeats differ by ≤ 3 %); the relative bias within 0.04 absolute
    (its estimate carries a noise floor of about sqrt(rel_var / K) ≈ 0.05, repeats differ by ≤ 0.02);
    the cosine within 0.02."""
    torch.manual_seed(0)
    net, rule, state, batch, loss = torch_problem()
    assert population_probe_ok(net, rule)
    loop = by_key(probe(net, rule, state, batch, loss, 0.1, 300, population=False))
    pop = by_key(probe(net, rule, state, batch, loss, 0.1, 300))  # auto: the population step
    for key, row in loop.items():
        if key[1] == "algorithmic":  # the rule on the exact shadow: the same number both ways
            assert pop[key]["rel_bias"] == row["rel_bias"] and pop[key]["rel_var"] == row["rel_var"]
            continue
        assert row["rel_var"] > 0.01, key  # the device adds noise: the comparison is not of zeros
        assert pop[key]["rel_var"] == pytest.approx(row["rel_var"], rel=0.10), key
        assert pop[key]["rel_bias"] == pytest.approx(row["rel_bias"], abs=0.04), key
        assert pop[key]["cos"] == pytest.approx(row["cos"], abs=0.02), key


def test_analog_feedback_crossbars_join_the_population():
    """Direct feedback alignment with its B on torch-engine crossbars: the feedback reads are noisy
    on every copy, so the population's read error is not zero, and matches the loop's."""
    net, rule, state, batch, loss = torch_problem(rule=DirectFeedbackAlignment(feedback="analog"))
    assert population_probe_ok(net, rule)
    loop = by_key(probe(net, rule, state, batch, loss, 0.1, 100, population=False))
    pop = by_key(probe(net, rule, state, batch, loss, 0.1, 100))
    assert pop[("layer0", "read")]["rel_var"] > 0.001
    assert pop[("layer0", "read")]["rel_var"] == pytest.approx(loop[("layer0", "read")]["rel_var"], rel=0.25)


def test_which_probes_use_the_population():
    net, rule, *_ = torch_problem()
    assert population_probe_ok(net, rule)
    assert not population_probe_ok(net, SignSymmetry())          # not one of the population rules
    ideal, *_ = torch_problem(device="ideal")
    assert not population_probe_ok(ideal, rule)                 # the loop is exact and cheap there
    net, batch, loss, gen = ideal_problem((10, 12, 4))
    with pytest.raises(ValueError, match="SignSymmetry"):
        probe(net, SignSymmetry(), attach(SignSymmetry(), net, gen), batch, loss, 0.1, 4, population=True)


def test_the_population_probe_leaves_the_training_trajectory_untouched(tmp_path):
    """The same torch-engine run with probes every 3 steps and without: identical weights and metrics."""
    base = {"task": "digits", "model": {"sizes": [64, 16, 10]}, "device": TORCH_DEVICE, "rule": "backprop",
            "lr": 0.1, "epochs": 1, "batch_size": 64}
    plain = train(experiment_from_data(base), tmp_path / "plain", progress=False)
    probed = train(experiment_from_data({**base, "diagnostics": {"every": 3, "repeats": 4}}), tmp_path / "probed",
                   progress=False)
    assert probed.diagnostics and not plain.diagnostics
    for key in ("train_loss", "test_acc", "test_loss"):
        assert probed.final[key] == plain.final[key]
    with np.load(tmp_path / "plain" / "weights.npz", allow_pickle=False) as a, \
            np.load(tmp_path / "probed" / "weights.npz", allow_pickle=False) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
