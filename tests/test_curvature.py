"""Curvature of the digital shadow: power iteration and Hutchinson against the dense Hessian,
hand-checked margins, and the shadow against the chip's own forward pass."""

import math

import pytest
import torch
from conftest import ideal_problem

from chiploop.emulator import MLP, CrossbarRequest
from chiploop.learning.curvature import (curvature_report, hessian_trace, hessian_vector_product, output_margin,
                                         shadow_loss, shadow_parameters, top_hessian_eigenvalue)

SIZES, BATCH = (3, 4, 2), 16
HUTCHINSON_SAMPLES = 20_000  # standard error <= 1 % of tr H here (checked below), so 5 % is >= 5 sigma


def tiny(activation, loss_kind, seed=0, sizes=SIZES, batch=BATCH, init=None):
    net, (x, y), loss, _ = ideal_problem(sizes, activation, seed, batch, loss_kind, init)
    return net, x, y, loss


def dense_hessian(model, x, y, loss):
    """The full float64 Hessian of the shadow loss over the flattened (W_0, b_0, W_1, b_1, ...)."""
    params = shadow_parameters(model, torch.float64)
    shapes = [p.shape for p in params]

    def f(theta):
        out, i = [], 0
        for s in shapes:
            out.append(theta[i:i + s.numel()].view(s))
            i += s.numel()
        return shadow_loss(out, model, x, y, loss)

    return torch.autograd.functional.hessian(f, torch.cat([p.reshape(-1) for p in params]))


def top_eig(H):
    ev = torch.linalg.eigvalsh(H)
    return ev[ev.abs().argmax()].item()


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("loss_kind", ["cross_entropy", "mse"])
def test_hvp_matches_dense_hessian(activation, loss_kind):
    model, x, y, loss = tiny(activation, loss_kind)
    H = dense_hessian(model, x, y, loss)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        v = torch.randn(H.shape[0], generator=gen, dtype=torch.float64)
        hv = hessian_vector_product(model, x, y, loss, v)
        assert torch.allclose(hv, H @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("loss_kind", ["cross_entropy", "mse"])
def test_power_iteration_finds_top_eigenvalue(activation, loss_kind):
    model, x, y, loss = tiny(activation, loss_kind)
    exact = top_eig(dense_hessian(model, x, y, loss))
    got = top_hessian_eigenvalue(model, x, y, loss, iters=2000, generator=torch.Generator().manual_seed(1))
    assert abs(got - exact) <= 1e-3 * abs(exact), (got, exact)


@pytest.mark.parametrize("loss_kind", ["cross_entropy", "mse"])
def test_hutchinson_trace_within_5_percent(loss_kind):
    model, x, y, loss = tiny("tanh", loss_kind)
    H = dense_hessian(model, x, y, loss)
    exact = H.trace().item()
    off = (H ** 2).sum() - (H.diagonal() ** 2).sum()
    stderr = math.sqrt(2 * off.item() / HUTCHINSON_SAMPLES)
    assert stderr <= 0.01 * abs(exact)  # the 5 % bound is >= 5 standard errors, not luck
    for seed in range(5):
        est = hessian_trace(model, x, y, loss, samples=HUTCHINSON_SAMPLES, generator=torch.Generator().manual_seed(seed))
        assert abs(est - exact) <= 0.05 * abs(exact), (seed, est, exact)


def test_hutchinson_batching_does_not_change_the_estimate():
    model, x, y, loss = tiny("tanh", "cross_entropy")
    one = hessian_trace(model, x, y, loss, samples=50, generator=torch.Generator().manual_seed(3), batch=1)
    many = hessian_trace(model, x, y, loss, samples=50, generator=torch.Generator().manual_seed(3), batch=16)
    assert one == pytest.approx(many, rel=1e-12)


def hand_model():
    """relu (2, 2, 3): W_0 = 2 I, b_0 = 0; W_1 = [[2, 0], [0, 1], [1, 1]], b_1 = (0, 0, -0.5)."""
    model = MLP.build((2, 2, 3), "relu", None, torch.Generator().manual_seed(0))
    model.crossbar(0).program(2 * torch.eye(2))
    model.chip.biases["layer0"] = torch.zeros(2)
    model.crossbar(1).program(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    model.chip.biases["layer1"] = torch.tensor([0.0, 0.0, -0.5])
    return model


def test_output_margin_hand_checked():
    model = hand_model()
    # h = 2x: (1, 0) -> z = (2, 0, 0.5), label 0, m = 2 - 0.5 = 1.5
    #         (0, 2) -> z = (0, 2, 1.5), label 2, m = 1.5 - 2 = -0.5
    x = torch.tensor([[0.5, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 2])
    out = output_margin(model, x, y)
    # ||2 I||_2 = 2; W_1^T W_1 = [[5, 1], [1, 2]], top eigenvalue (7 + sqrt 13) / 2
    lipschitz = 2 * math.sqrt((7 + math.sqrt(13)) / 2)
    assert out["margin_min"] == pytest.approx(-0.5, abs=1e-12)
    assert out["margin_mean"] == pytest.approx(0.5, abs=1e-12)
    assert out["margin_normalised"] == pytest.approx(-0.5 / lipschitz, rel=1e-12)


def test_normalised_margin_is_scale_invariant_for_bias_free_relu():
    def bias_free(net, _generator):
        for name in net.weight_names:
            net.chip.biases[name].zero_()

    model, x, _, _ = tiny("relu", "cross_entropy", sizes=(3, 5, 4, 3), init=bias_free)
    y = torch.randint(0, 3, (BATCH,), generator=torch.Generator().manual_seed(2))
    assert all(not b.any() for b in model.chip.biases.values())
    before = output_margin(model, x, y)
    for l in range(len(model.weight_names)):
        model.crossbar(l).program(2 * model.crossbar(l).weights())
    after = output_margin(model, x, y)
    assert after["margin_min"] == pytest.approx(8 * before["margin_min"], rel=1e-6)
    assert after["margin_normalised"] == pytest.approx(before["margin_normalised"], rel=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("loss_kind", ["cross_entropy", "mse"])
def test_shadow_loss_equals_ideal_chip_forward(activation, loss_kind):
    model, x, y, loss = tiny(activation, loss_kind, sizes=(6, 8, 5, 3), batch=11)
    with torch.no_grad():
        chip_loss = loss(model.unroll(x).output, y).item()
    assert shadow_loss(shadow_parameters(model, torch.float32), model, x, y, loss).item() == chip_loss
    assert shadow_loss(shadow_parameters(model), model, x, y, loss).item() == pytest.approx(chip_loss, rel=1e-6)


def test_shadow_applies_decorrelation_matrices():
    model, x, y, loss = tiny("tanh", "cross_entropy", sizes=(4, 5, 3))
    gen = torch.Generator().manual_seed(5)
    model.chip.install([CrossbarRequest(f"decorr/{name}", "decorrelator",
                                        torch.eye(n) + 0.1 * torch.randn(n, n, generator=gen),
                                        technology="digital", feeds=name)
                        for name, n in zip(model.weight_names, model.sizes[:-1])])
    with torch.no_grad():
        chip_loss = loss(model.unroll(x).output, y).item()
    assert shadow_loss(shadow_parameters(model, torch.float32), model, x, y, loss).item() == chip_loss
    assert len(shadow_parameters(model)) == 4  # R is fixed, not a parameter
    model.chip.decorrelators.clear()  # without R the loss is another one: the shadow did read R
    assert shadow_loss(shadow_parameters(model, torch.float32), model, x, y, loss).item() != chip_loss


def test_shadow_parameters_are_fresh_copies():
    model, *_ = tiny("tanh", "mse")
    params = shadow_parameters(model)
    params[0].add_(1.0)
    params[1].add_(1.0)
    assert not torch.equal(params[0].float(), model.crossbar(0).weights())
    assert not torch.equal(params[1].float(), model.chip.biases["layer0"])


@pytest.mark.parametrize("loss_kind", ["cross_entropy", "mse"])
def test_curvature_report_keys_and_determinism(loss_kind):
    model, x, y, loss = tiny("tanh", loss_kind)
    a = curvature_report(model, x, y, loss, torch.Generator().manual_seed(4), iters=50, samples=200)
    b = curvature_report(model, x, y, loss, torch.Generator().manual_seed(4), iters=50, samples=200)
    margins = {"margin_min", "margin_mean", "margin_normalised"}
    expected = {"hessian_top_eig", "hessian_trace"} | (margins if loss_kind == "cross_entropy" else set())
    assert set(a) == expected
    assert a == b
    assert all(isinstance(v, float) and math.isfinite(v) for v in a.values())
