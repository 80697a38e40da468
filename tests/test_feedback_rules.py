"""Oracles for the feedback rules: FA with B = W and DFA with B = W_2 are backprop exactly."""

import torch
from conftest import attach, estimates, ideal_problem

from chiploop.emulator.ledger import unwrap
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run
from chiploop.learning import Backprop, DirectFeedbackAlignment, FeedbackAlignment, SignSymmetry


def test_feedback_alignment_with_B_equal_W_is_backprop():
    net, batch, loss, gen = ideal_problem((7, 9, 8, 4), batch=11)
    rule = FeedbackAlignment()
    state = attach(rule, net, gen)
    feedback = net.chip.named("feedback")
    assert feedback == [f"feedback/layer{l}" for l in range(3)]
    assert all(net.chip.crossbars[f"feedback/{n}"].shape == net.chip.crossbars[n].shape for n in net.weight_names)
    bp = estimates(Backprop(), net, None, batch, loss)
    random_B = estimates(rule, net, state, batch, loss)
    assert not torch.allclose(random_B["layer0"], bp["layer0"])
    for name in net.weight_names:  # B = W: the feedback crossbars hold the forward weights
        net.chip.crossbars[f"feedback/{name}"].program(net.chip.crossbars[name].weights())
    fa = estimates(rule, net, state, batch, loss)
    assert fa.keys() == bp.keys() == set(net.weight_names)
    assert all(torch.equal(fa[k], bp[k]) for k in bp)


def test_dfa_with_B_equal_W2_is_backprop_on_one_hidden_layer():
    net, batch, loss, gen = ideal_problem((7, 9, 4), batch=11)
    rule = DirectFeedbackAlignment()
    state = attach(rule, net, gen)
    assert net.chip.named("feedback") == ["feedback/layer0"]
    B = net.chip.crossbars["feedback/layer0"]
    assert B.shape == (4, 9)  # (n_out, hidden): read with backward
    B.program(net.crossbar(1).weights())
    dfa, bp = estimates(rule, net, state, batch, loss), estimates(Backprop(), net, None, batch, loss)
    assert all(torch.allclose(dfa[k], bp[k], atol=1e-7) for k in bp)


def test_feedback_shapes_and_analog_feedback_crossbars():
    spec = experiment_from_data({"device": "constant-step", "model": {"sizes": [64, 16, 12, 10]},
                                 "rule": {"name": "direct_feedback_alignment", "options": {"feedback": "analog"}}})
    run = Run.build(spec)
    chip = run.network.chip
    assert chip.named("feedback") == ["feedback/layer0", "feedback/layer1"]
    assert [chip.crossbars[n].shape for n in chip.named("feedback")] == [(10, 16), (10, 12)]
    assert all(type(unwrap(chip.crossbars[n])).__name__ == "AnalogCrossbar" for n in chip.named("feedback"))
    assert run.state is None  # B lives on the chip, not in the rule's state
    before = {k: v.clone() for k, v in chip.weights().items()}
    run.step(run.task.x_train[:32], run.task.y_train[:32], 0.1)
    after = chip.weights()
    for name in before:  # the weights learn; the feedback crossbars are read, never written
        assert torch.equal(before[name], after[name]) == (chip.roles[name] == "feedback"), name


def test_sign_symmetry_feedback_has_the_signs_of_W():
    net, batch, loss, gen = ideal_problem((7, 9, 4), batch=11)
    rule = SignSymmetry(magnitude="unit")
    state = attach(rule, net, gen)
    assert net.chip.named("feedback") == []
    delta = torch.randn(3, 4)
    fb = rule.feedback_read(net, "layer1", delta, state)
    assert torch.equal(fb, delta @ torch.sign(net.crossbar(1).weights()))
