"""Seed 000 faithfully (issue 15 B): full-batch training and the injected estimator in the authors'
convention (Ghosh et al. 2023, linclab/approximateGradients ``Fig1/train_approx_grad.py``)."""

import math

import pytest
import torch
from conftest import attach, ideal_problem, step

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.tasks import make_task
from chiploop.experiments.train import Run
from chiploop.learning import Backprop, InjectedSpec, chain, inject
from chiploop.learning.shadow import parameter_names, shadow_loss, shadow_parameters
from chiploop.specs import SpecError

SIZES = (10, 12, 4)  # tanh, batch 16, seed 0: weights and digital biases


def full_gradient(net, batch, loss) -> tuple[list[tuple[str, str]], list[torch.Tensor]]:
    """θ's names and ``∂L/∂θ`` of every weight and digital bias, by autograd on the float64 shadow."""
    params = [p.requires_grad_(True) for p in shadow_parameters(net)]
    with torch.enable_grad():
        grads = torch.autograd.grad(shadow_loss(params, net, batch[0].double(), batch[1], loss), params)
    return parameter_names(net), list(grads)


def theta(net) -> list[torch.Tensor]:
    return [p.clone() for p in shadow_parameters(net)]


@pytest.mark.parametrize("b", [0.0, 0.01, 0.3])
def test_ghosh_bias_is_the_same_offset_b_norm_g_on_every_weight_and_bias(b):
    """σ = 0: the update is exactly ``-lr (g - b ||g|| 1)`` with ``g`` the gradient of every weight AND
    digital bias, ``||g||`` one norm over all of them (not per layer), ``1`` not normalised."""
    net, batch, loss, gen = ideal_problem(SIZES)
    names, g = full_gradient(net, batch, loss)
    norm = torch.cat([x.reshape(-1) for x in g]).norm()
    assert {part for _, part in names} == {"W", "b"}
    rule = chain(Backprop(), inject(bias=b, variance=0.0, convention="ghosh"))
    before = theta(net)
    step(rule, net, attach(rule, net, gen), batch, loss, lr=0.1)
    for (name, part), g_p, w0, w1 in zip(names, g, before, theta(net)):
        expected = -0.1 * (g_p - b * norm)
        assert (w1 - w0 - expected).abs().max() <= 2e-6, (name, part)


def test_ghosh_noise_has_norm_sigma_norm_g_over_the_whole_network_every_draw():
    """``ĝ' - (g - b ||g|| 1)`` has norm σ ||g|| exactly over all parameters together; its share in
    one layer is random (a global unit direction, not σ per layer)."""
    net, batch, loss, gen = ideal_problem(SIZES)
    names, g = full_gradient(net, batch, loss)
    flat_g = torch.cat([x.reshape(-1) for x in g])
    rule = chain(Backprop(), inject(bias=0.05, variance=2.0, convention="ghosh"))
    state = attach(rule, net, gen)
    shares = []
    for _ in range(5):
        trial = ideal_problem(SIZES).net  # the same weights every time; the rule's generator runs on
        before = theta(trial)
        state = step(rule, trial, state, batch, loss, lr=0.1)[1]
        applied = torch.cat([((w0 - w1) / 0.1).reshape(-1) for w0, w1 in zip(before, theta(trial))])
        noise = applied - (flat_g - 0.05 * flat_g.norm())
        assert abs(noise.norm() / flat_g.norm() - 2.0) <= 1e-4
        shares.append(noise[: g[0].numel()].norm().item())
    assert max(shares) - min(shares) > 1e-3  # layer 0's part of the noise varies from draw to draw


@pytest.mark.parametrize("b, sigma", [(0.0, 1.0), (1e-3, 0.5), (0.05, 3.0)])
def test_ghosh_mean_and_spread_over_draws(b, sigma):
    """Oracle of the convention: ``E[ĝ'] - ĝ = -b ||ĝ|| 1`` and ``E||ĝ' - E ĝ'||² = σ² ||ĝ||²``. Over
    K = 400 draws the mean noise has norm about σ||ĝ||/sqrt(K), so the mean lands within
    3σ||ĝ||/sqrt(K) of the oracle; the sample spread ``Σ||ĝ'_k - mean||²/K = σ²||ĝ||² - ||mean ξ||²``
    lies in ``[σ²(1 - 9/K), σ²] ||ĝ||²``."""
    K = 400
    parts = [torch.randn(6, 7, generator=torch.Generator().manual_seed(0)),
             torch.randn(7, generator=torch.Generator().manual_seed(1)) * 10]  # a weight and a bias, unequal norms
    flat = torch.cat([p.reshape(-1) for p in parts]).double()
    rule = inject(bias=b, variance=sigma, convention="ghosh")
    gen = torch.Generator().manual_seed(2)
    draws = torch.stack([torch.cat([x.reshape(-1) for x in rule.inject_global([p.double() for p in parts], gen)])
                         for _ in range(K)])
    norm = flat.norm()
    mean = draws.mean(0)
    assert (mean - (flat - b * norm)).norm() <= 3 * sigma * norm / math.sqrt(K)
    spread = (draws - mean).pow(2).sum(1).mean() / norm ** 2
    assert sigma ** 2 * (1 - 9 / K) <= spread <= sigma ** 2 + 1e-9
    assert [x.shape for x in rule.inject_global(parts, gen)] == [p.shape for p in parts]


@pytest.mark.parametrize("n_out, n_in", [(6, 7), (30, 2)])
def test_mapping_per_layer_b_is_ghosh_b_times_sqrt_n_for_one_layer(n_out, n_in):
    """The docstring's mapping: for one layer of n parameters, ``b_per_layer = b_ghosh sqrt(n)``, σ equal."""
    g = torch.randn(n_out, n_in, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    b_ghosh = 0.02
    ours = inject(bias=b_ghosh * math.sqrt(g.numel()), variance=0.0).inject(g, torch.Generator())
    theirs = inject(bias=b_ghosh, variance=0.0, convention="ghosh").inject_global([g], torch.Generator())[0]
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)
    for sigma in (0.3, 4.0):  # the noise: norm σ ||g|| in both
        gen = torch.Generator().manual_seed(5)
        for out in (inject(variance=sigma).inject(g, gen),
                    inject(variance=sigma, convention="ghosh").inject_global([g], gen)[0]):
            assert abs((out - g).norm() / g.norm() - sigma) <= 1e-9


def test_default_convention_is_per_layer_and_unchanged():
    assert InjectedSpec().convention == "per_layer"
    assert experiment_from_data({"injected": {"bias": 0.1}}).injected.convention == "per_layer"


def test_full_batch_is_one_batch_of_the_whole_training_split_drawing_nothing():
    task = make_task(experiment_from_data({"task": {"name": "digits", "train_points": 50}}).task)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    batches = list(task.batches("all", generator=gen))
    assert len(batches) == 1
    assert torch.equal(batches[0][0], task.x_train) and torch.equal(batches[0][1], task.y_train)
    assert torch.equal(gen.get_state(), state)


def test_a_full_batch_epoch_is_one_exact_gradient_step():
    """``batch_size: all``: an epoch is one step, ``θ ← θ - lr ∇L(θ; whole training set)`` (oracle:
    autograd on the float64 shadow of the same chip)."""
    spec = experiment_from_data({"task": {"name": "digits", "train_points": 40}, "model": {"sizes": [64, 8, 10]},
                                 "batch_size": "all", "epochs": 2, "lr": 0.3})
    run = Run.build(spec)
    names, g = full_gradient(run.network, (run.task.x_train, run.task.y_train), run.task.loss)
    before = theta(run.network)
    with torch.no_grad():
        run.epoch(1)
    assert run.steps == 1
    for (name, part), g_p, w0, w1 in zip(names, g, before, theta(run.network)):
        assert (w1 - w0 + 0.3 * g_p).abs().max() <= 1e-6, (name, part)


def test_digits_train_points_is_a_seeded_subset_of_the_training_split():
    whole = make_task(experiment_from_data({"task": "digits"}).task)
    few = make_task(experiment_from_data({"task": {"name": "digits", "train_points": 200}}).task)
    again = make_task(experiment_from_data({"task": {"name": "digits", "train_points": 200}}).task)
    assert len(few.x_train) == 200 and torch.equal(few.x_train, again.x_train)
    rows = {tuple(r.tolist()) for r in whole.x_train}
    assert all(tuple(r.tolist()) in rows for r in few.x_train)
    assert torch.equal(few.x_test, whole.x_test) and len(few.x_test) == 360
    assert len(set(few.y_train.tolist())) == 10


@pytest.mark.parametrize("data, field", [
    ({"batch_size": "full"}, "batch_size"), ({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
    ({"batch_size": 64, "task": {"name": "digits", "train_points": 50}}, "batch_size"),
    ({"task": {"name": "digits", "train_points": 5000}}, "task.train_points"),
    ({"task": {"name": "teacher_student", "train_points": 50}}, "task.train_points"),
    ({"injected": {"convention": "authors"}}, "injected.convention")])
def test_bad_full_batch_and_convention_values_name_the_field(data, field):
    with pytest.raises(SpecError) as info:
        experiment_from_data(data)
    assert info.value.field == field
    if field == "batch_size" and not isinstance(data["batch_size"], int):  # not a number: the message offers all
        assert "'all'" in str(info.value)


def test_device_point_combines_the_layers_into_the_whole_networks_b_and_sigma(tmp_path):
    """``experiments/ghosh_fullbatch.py``'s conversion of the probe's per-layer rows: layers of
    ``||g_l||`` 3 and 4 (``||g|| = 5``) with relative bias 0.1, 0.2 and variance 1, 4 give
    ``||E e|| = sqrt(0.3² + 0.8²)``, so ``b = sqrt(0.73) / 5 / sqrt(N)``, and
    ``σ² = (1·9 + 4·16) / 25 = 2.92``; rows of other parts are ignored."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "ghosh_fullbatch.py"
    module_spec = importlib.util.spec_from_file_location("ghosh_fullbatch", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    csv_path = tmp_path / "diagnostics.csv"
    csv_path.write_text("step,epoch,layer,part,g_norm,rel_bias,rel_var,cos\n"
                        "0,1,layer0,physical,3.0,0.1,1.0,0.9\n0,1,layer1,physical,4.0,0.2,4.0,0.9\n"
                        "0,1,layer0,read,3.0,9.0,9.0,0.1\n50,51,layer0,physical,1.0,0.0,0.25,1.0\n"
                        "50,51,layer1,physical,0.0,0.0,0.0,1.0\n")
    bs, sigmas = module.device_point(csv_path, 16)
    n = 64 * 16 + 16 * 10
    assert module.n_weights(16) == n and module.n_params(16) == n + 26
    assert bs == pytest.approx([math.sqrt(0.73) / 5 / math.sqrt(n), 0.0], abs=1e-12)
    assert sigmas == pytest.approx([math.sqrt(2.92), 0.5], abs=1e-12)


@pytest.mark.slow  # ~21 s on the loaded machine (ideal grid, analog device runs, Hessians, plots)
def test_ghosh_fullbatch_script_resumes_and_draws_the_heatmaps(tmp_path, monkeypatch, capsys):
    """``experiments/ghosh_fullbatch.py`` on a 2 x 2 grid, 2 seeds, 3 steps, one device: a second call
    trains nothing and prints the same tables from the ledgers; one PNG per width."""
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "experiments" / "ghosh_fullbatch.py"
    argv = ["--widths", "8", "--biases", "0", "0.01", "--sigmas", "0", "1", "--seeds", "2", "--steps", "3",
            "--train-points", "30", "--dw-mins", "0.01", "--out", str(tmp_path / "runs"), "--plots",
            str(tmp_path), "--workers", "0"]
    outputs = []
    for _ in range(2):
        monkeypatch.setattr(sys, "argv", ["ghosh_fullbatch.py", *argv])
        runpy.run_path(str(script), run_name="__main__")
        outputs.append(capsys.readouterr().out)
    assert "grid: 8 runs: 0 already done, 8 ran on serial" in outputs[0]
    assert "devices: 2 runs: 0 already done, 2 ran on serial" in outputs[0]
    assert "grid: 8 runs: 8 already done, 0 ran on serial" in outputs[1]
    assert outputs[0].split("\n", 1)[1] == outputs[1].split("\n", 1)[1]
    assert "Verdict (width 8)" in outputs[0] and "| 0.01 |" in outputs[0]
    assert (tmp_path / "ghosh_fullbatch_w8.png").stat().st_size > 0
