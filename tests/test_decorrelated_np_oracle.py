"""Decorrelated node perturbation (seed 004): one step of chiploop's ``chain(NodePerturbation,
Decorrelate)`` on the ideal chip equals the plain-torch transcription of the papers' equations in
``experiments/decorrelated_np_reference.py`` (Dalm, van Gerven & Ahmad 2024; Ahmad 2024)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run

REFERENCE = Path(__file__).resolve().parents[1] / "experiments" / "decorrelated_np_reference.py"


def reference():
    spec = importlib.util.spec_from_file_location("decorrelated_np_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the papers' update as chiploop's defaults, and the suite's setting (experiments/np_decorrelation_deep.yaml)
SETTINGS = {
    "defaults": ({}, {}),
    "suite": ({"init": "kaiming"}, {"variance": "mean", "normalise": True, "target": 0.25}),
}


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_one_step_of_decorrelated_np_equals_the_plain_torch_transcription(setting):
    ref = reference()
    sizes = [64, 128, 128, 128, 10]
    model_options, r_options = SETTINGS[setting]
    spec = experiment_from_data({"device": "ideal", "model": {"sizes": sizes, "activation": "relu", **model_options},
                                 "rule": {"name": "node_perturbation", "options": {"sigma": 1e-2}},
                                 "decorrelation": {"eta": 1e-2, "kappa": 0.3, **r_options}})
    run = Run.build(spec)
    chip, names = run.network.chip, run.network.weight_names
    g = torch.Generator().manual_seed(7)
    for name in names:  # R away from the identity, so that x̂ != h and the R update is not trivial
        n = chip.crossbars[name].shape[1]
        chip.crossbars[chip.decorrelators[name]].program(torch.eye(n) + 0.05 * torch.randn(n, n, generator=g))
    params = [[chip.crossbars[n].weights().clone(), chip.biases[n].clone()] for n in names]
    Rs = [chip.crossbars[chip.decorrelators[n]].weights().clone() for n in names]
    before = [W.clone() for W, _ in params] + [R.clone() for R in Rs]
    np_generator = run.state[0]
    noise_generator = torch.Generator().set_state(np_generator.get_state())
    x, y = run.task.x_train[:32], run.task.y_train[:32]
    lr = 0.03
    with torch.no_grad():
        run.step(x, y, lr)
    ref.step(params, Rs, x, y, lr, sigma=1e-2, eta=1e-2, kappa=0.3, generator=noise_generator, **r_options)
    for l, name in enumerate(names):
        W, b = params[l]
        assert torch.allclose(chip.crossbars[name].weights(), W, atol=1e-6, rtol=0), name
        assert torch.allclose(chip.biases[name], b, atol=1e-6, rtol=0), name
        R = chip.crossbars[chip.decorrelators[name]].weights()
        assert torch.allclose(R, Rs[l], atol=1e-6, rtol=0), name
        # the step moved every W and R well beyond the tolerance: the comparison is not vacuous
        assert (W - before[l]).abs().max() > 1e-4 and (Rs[l] - before[len(names) + l]).abs().max() > 1e-4, name
