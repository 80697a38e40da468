"""The network abstraction: a second network defined here (a skip connection, so not an MLP) runs
through the probe, the curvature, the rules and the training loop unchanged, and its ground truth is
torch autograd on a plain torch replica."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, final

import pytest
import torch
from torch import nn

from chiploop.emulator import Chip
from chiploop.emulator.networks import NETWORKS, Network, NetworkSpec, Trace, register
from chiploop.emulator.periphery import ACTIVATIONS
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run, train
from chiploop.learning import Backprop, FeedbackAlignment, Loss, make_rule
from chiploop.learning.curvature import hessian_vector_product, top_hessian_eigenvalue
from chiploop.learning.diagnostics import probe
from chiploop.learning.shadow import true_gradient
from chiploop.specs import SpecError, spec_field


@final
@dataclass(eq=False)
class SkipNet(Network):
    """``h = f(W_in x + b_in)``, ``y = W_out h + W_skip x + b_out``: the output node sums two reads."""

    kind: ClassVar[str] = "skip"

    n_in: int
    hidden: int
    n_out: int
    chip: Chip

    weight_names: ClassVar[tuple[str, ...]] = ("W_in", "W_out", "W_skip")

    @classmethod
    def build(cls, n_in, hidden, n_out, generator, factory=None) -> SkipNet:
        chip = Chip(factory=factory)
        for name, (o, i), bias in (("W_in", (hidden, n_in), True), ("W_out", (n_out, hidden), True),
                                   ("W_skip", (n_out, n_in), False)):
            W = torch.randn(o, i, generator=generator) / i ** 0.5
            chip.make(name, W, "weight", bias=torch.randn(o, generator=generator) * 0.1 if bias else None)
        return cls(n_in, hidden, n_out, chip)

    def f_prime(self, name, a):
        return ACTIVATIONS["tanh"].f_prime(a) if name == "W_in" else torch.ones_like(a)

    def unroll(self, x, perturb=None) -> Trace:
        inputs, preacts = {}, {}

        def read(name, v):
            v_hat, y = self.chip.read(name, v)
            if name in self.chip.biases:
                y = y + self.chip.biases[name]
            extra = perturb(name, 0, v_hat) if perturb is not None else None
            inputs[name], preacts[name] = v_hat, y if extra is None else y + extra
            return preacts[name]

        h = torch.tanh(read("W_in", x))
        out = read("W_out", h) + read("W_skip", x)
        return Trace(inputs, preacts, out)

    def backward(self, trace, delta, read):
        return {"W_out": delta, "W_skip": delta,
                "W_in": read("W_out", delta) * self.f_prime("W_in", trace.preacts["W_in"])}


@final
@register
@dataclass(frozen=True)
class SkipSpec(NetworkSpec):
    kind: Literal["skip"] = spec_field("skip", doc="network class")
    n_in: int = spec_field(64, doc="inputs", low=1)
    hidden: int = spec_field(16, doc="hidden units", low=1)
    n_out: int = spec_field(10, doc="outputs", low=1)

    @property
    def dims(self):
        return self.n_in, self.n_out

    def build(self, factory, generator):
        return SkipNet.build(self.n_in, self.hidden, self.n_out, generator, factory)

    def attach(self, chip):
        return SkipNet(self.n_in, self.hidden, self.n_out, chip)


def replica(net: SkipNet) -> tuple[nn.ModuleDict, callable]:
    """The same network as plain float64 torch modules, and its forward function."""
    W = {k: net.chip.crossbars[k].weights().double() for k in net.weight_names}
    b = {k: v.double() for k, v in net.chip.biases.items()}
    m = nn.ParameterDict({k: nn.Parameter(v.clone()) for k, v in W.items()}
                         | {f"b_{k}": nn.Parameter(v.clone()) for k, v in b.items()})

    def forward(x):
        x = x.double()
        h = torch.tanh(x @ m["W_in"].T + m["b_W_in"])
        return h @ m["W_out"].T + m["b_W_out"] + x @ m["W_skip"].T
    return m, forward


@pytest.fixture
def problem():
    gen = torch.Generator().manual_seed(0)
    net = SkipNet.build(7, 6, 4, gen)
    x, y = torch.randn(13, 7, generator=gen), torch.randint(0, 4, (13,), generator=gen)
    return net, (x, y), Loss("cross_entropy")


def test_true_gradient_of_a_network_that_is_not_an_mlp_is_autograd(problem):
    net, (x, y), loss = problem
    m, forward = replica(net)
    grads = torch.autograd.grad(loss(forward(x), y), [m[k] for k in net.weight_names])
    g = true_gradient(net, (x, y), loss)
    assert set(g) == set(net.weight_names)
    for name, expected in zip(net.weight_names, grads):
        assert (g[name] - expected).abs().max().item() <= 1e-12, name


def test_probe_runs_on_the_toy_network_and_backprop_has_no_error(problem):
    net, batch, loss = problem
    rows = probe(net, Backprop(), None, batch, loss, 0.1, repeats=3)
    assert {r["layer"] for r in rows} == set(net.weight_names)
    g = true_gradient(net, batch, loss)
    for r in rows:
        assert r["g_norm"] == pytest.approx(g[r["layer"]].norm().item(), rel=1e-12)
        assert r["rel_bias"] <= 1e-6 and r["rel_var"] <= 1e-10, r  # float32 chip against float64 truth


def test_curvature_of_the_toy_network_is_the_dense_hessian_of_the_replica(problem):
    net, (x, y), loss = problem
    m, forward = replica(net)
    order = ["W_in", "b_W_in", "W_out", "b_W_out", "W_skip"]  # θ of the shadow, in graph order
    shapes = [m[k].shape for k in order]

    def f(theta):
        parts, i = {}, 0
        for k, s in zip(order, shapes):
            parts[k] = theta[i:i + s.numel()].view(s)
            i += s.numel()
        xd = x.double()
        h = torch.tanh(xd @ parts["W_in"].T + parts["b_W_in"])
        return loss(h @ parts["W_out"].T + parts["b_W_out"] + xd @ parts["W_skip"].T, y)

    theta = torch.cat([m[k].detach().reshape(-1) for k in order])
    H = torch.autograd.functional.hessian(f, theta)
    v = torch.randn(len(theta), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(hessian_vector_product(net, x, y, loss, v), H @ v, rtol=1e-10, atol=1e-12)
    ev = torch.linalg.eigvalsh(H)
    top = top_hessian_eigenvalue(net, x, y, loss, iters=3000, tol=1e-12, generator=torch.Generator().manual_seed(2))
    assert top == pytest.approx(ev[ev.abs().argmax()].item(), rel=1e-6)


def test_a_registered_network_trains_from_a_spec_with_any_generic_rule(tmp_path):
    assert NETWORKS["skip"] is SkipSpec
    floors = {"backprop": 0.5, "feedback_alignment": 0.3, "node_perturbation": 0.0, "spsa": 0.0}  # 1 epoch
    for rule, floor in floors.items():
        spec = experiment_from_data({"model": {"kind": "skip", "hidden": 16}, "rule": rule, "epochs": 1, "lr": 0.1,
                                     "diagnostics": {"every": 20, "repeats": 2}, "curvature": "end"})
        result = train(spec, tmp_path / rule, progress=False)
        assert result.status == "ok" and result.final["test_acc"] > floor, (rule, result.final["test_acc"])
        assert math.isfinite(result.final["hessian_top_eig"]) and math.isfinite(result.final["total_rel_bias"])
    run = Run.build(experiment_from_data({"model": {"kind": "skip"}, "rule": "feedback_alignment"}))
    assert run.network.chip.named("feedback") == ["feedback/W_in", "feedback/W_out", "feedback/W_skip"]


def test_a_rule_that_needs_a_layer_chain_refuses_other_networks():
    with pytest.raises(SpecError) as info:
        Run.build(experiment_from_data({"model": {"kind": "skip"}, "rule": "direct_feedback_alignment"}))
    assert info.value.field == "rule.name" and "mlp" in info.value.allowed


def test_unknown_network_kind_and_wrong_dims_are_spec_errors():
    with pytest.raises(SpecError) as info:
        experiment_from_data({"model": {"kind": "transformer"}})
    assert info.value.field == "model.kind" and "mlp" in info.value.allowed
    with pytest.raises(SpecError) as info:
        experiment_from_data({"model": {"kind": "skip", "n_in": 5}})
    assert info.value.field == "model"


def test_fa_reads_its_feedback_crossbars_not_the_weights(problem):
    net, batch, loss = problem
    rule = make_rule("feedback_alignment")
    net.chip.install(rule.crossbars(net, torch.Generator().manual_seed(0)))
    assert isinstance(rule, FeedbackAlignment)
    net.chip.crossbars["feedback/W_out"].program(net.chip.crossbars["W_out"].weights())
    trace = net.unroll(batch[0])
    fa, _ = rule.signals(net, trace, batch, loss, None)
    bp, _ = Backprop().signals(net, trace, batch, loss, None)
    assert all(torch.equal(a.d, b.d) for a, b in zip(fa, bp))  # B = W: backprop exactly
