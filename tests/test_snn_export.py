"""Export of a trained spiking run (docs/science.md §8): ``chiploop export RUN --nir`` writes a NIR graph that
``nir.read`` loads back with the run's exact weights and parameters, and the rule card of an STDP run carries
the rule as a Loihi 2 (Lava) string that reproduces the implemented window."""

import math

import nir
import numpy as np
import pytest
import torch

from chiploop.experiments.card import load_card
from chiploop.experiments.cli import main
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train
from chiploop.experiments.weights import load_weights
from chiploop.emulator import IdealCrossbar
from chiploop.learning import make_rule
from chiploop.learning.loihi import simulate_dw
from chiploop.learning.sym_stdp import stdp_rows

SPEC = {"name": "tiny-snn", "task": {"name": "spike_digits", "presentation": 10.0, "dt": 0.5},
        "model": {"kind": "snn", "hidden": 8, "r_m": 300.0, "dt": 0.5, "t_ref": 1.5, "inhibition": 0.02,
                  "inhibition_out": 0.3},
        "rule": {"name": "sym_stdp", "a_post": 0.8}, "lr": 0.002, "epochs": 1, "batch_size": 64}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("snn") / "run"
    train(experiment_from_data(SPEC), out, progress=False)
    return out


def test_nir_round_trip_is_exact(run_dir, tmp_path, capsys):
    path = tmp_path / "net.nir"
    assert main(["export", str(run_dir), "--nir", str(path)]) == 0
    assert "NIR graph" in capsys.readouterr().out
    graph = nir.read(path)
    saved = {k: v.numpy() for k, v in load_weights(run_dir / "weights.npz").items()}
    types = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert types == {"input": "Input", "W_in": "Linear", "hidden": "LIF", "inhibition": "Linear", "W_out": "Linear",
                     "output": "LIF", "inhibition_out": "Linear", "out": "Output"}
    assert sorted(graph.edges) == sorted([("input", "W_in"), ("W_in", "hidden"), ("hidden", "inhibition"),
                                          ("inhibition", "hidden"), ("hidden", "W_out"), ("W_out", "output"),
                                          ("output", "inhibition_out"), ("inhibition_out", "output"),
                                          ("output", "out")])
    m = SPEC["model"]
    for name, lif in (("W_in", "hidden"), ("W_out", "output")):
        assert np.array_equal(graph.nodes[name].weight, saved[f"crossbar/{name}"])
        node, n = graph.nodes[lif], len(saved[f"bias/{name}"])
        assert np.array_equal(node.v_threshold, -52.0 + saved[f"bias/{name}"].astype(np.float64))
        assert np.array_equal(node.tau, np.full(n, 20.0 / 1000.0))
        assert np.array_equal(node.r, np.full(n, m["r_m"]))
        assert np.array_equal(node.v_leak, np.full(n, -65.0)) and np.array_equal(node.v_reset, np.full(n, -65.0))
    assert saved["bias/W_in"].any()                      # the adaptive thresholds were trained and exported
    inh = graph.nodes["inhibition"].weight
    assert np.array_equal(inh, (-0.02 * (np.ones((8, 8)) - np.eye(8))).astype(np.float32))
    inh_out = graph.nodes["inhibition_out"].weight
    assert np.array_equal(inh_out, (-0.3 * (np.ones((10, 10)) - np.eye(10))).astype(np.float32))
    assert graph.metadata["dt_ms"] == 0.5 and graph.metadata["t_ref_ms"] == 1.5


def test_the_card_of_an_stdp_run_carries_the_lava_rule(run_dir, tmp_path):
    path = tmp_path / "card.yaml"
    assert main(["export", str(run_dir), "-o", str(path)]) == 0
    card = load_card(path)
    lava = card.loihi
    assert lava["x1_tau"] == 20.0 / 0.5 and lava["y1_impulse"] == 0.8
    rule, lr, dt, steps, t0 = make_rule(card.rule.name, card.rule.options), card.lr, lava["dt_ms"], 200, 100
    for dt_steps in range(-80, 81):                      # Δt = -40 ... 40 ms in steps of 0.5 ms
        pre = torch.zeros(steps, 1, 1, dtype=torch.float64)
        post = torch.zeros(steps, 1, 1, dtype=torch.float64)
        pre[t0, 0, 0], post[t0 + dt_steps, 0, 0] = 1, 1
        xb = IdealCrossbar(torch.zeros(1, 1, dtype=torch.float64))
        xb.update(*stdp_rows(pre, post, rule.a_pre, rule.a_post, rule.tau, dt), lr)
        assert simulate_dw(lava, [t0], [t0 + dt_steps], steps) == pytest.approx(xb.W.item(), rel=1e-3)
        if dt_steps:
            a = rule.a_pre if dt_steps > 0 else rule.a_post
            assert xb.W.item() == pytest.approx(lr * a * math.exp(-abs(dt_steps) * dt / rule.tau), rel=1e-6)


def test_nir_export_refuses_a_rate_network(tmp_path, capsys):
    out = tmp_path / "mlp"
    train(experiment_from_data({"model": {"sizes": [64, 4, 10]}, "epochs": 1}), out, progress=False)
    assert main(["export", str(out), "--nir", str(tmp_path / "x.nir")]) == 2
    assert "model.kind: snn" in capsys.readouterr().err
