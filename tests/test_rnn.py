"""The leaky rate RNN and its temporal rules: oracles against torch autograd on the ideal chip
(docs/science.md §4.9-4.10, §5.2), for relu, tanh and sigmoid, with the loss on the last step and on every step."""

import pytest
import torch

from chiploop.emulator.networks import RNN
from chiploop.emulator.periphery import ACTIVATIONS
from chiploop.learning import Backprop, Loss
from chiploop.learning.bptt import BPTT
from chiploop.learning.curvature import hessian_vector_product
from chiploop.learning.diagnostics import probe
from chiploop.learning.eprop import EProp
from chiploop.learning.shadow import true_gradient

BOUND = 1e-6  # max abs difference of every update, float32 chip against float64 autograd
CASES = [(a, r, k) for a in ("relu", "tanh", "sigmoid") for r in ("last", "every") for k in ("preactivation", "rate")]


def problem(activation, readout, seed=0, steps=7, leak="preactivation"):
    gen = torch.Generator().manual_seed(seed)
    net = RNN.build(3, 5, 4, 0.6, activation, readout, None, gen, leak)
    x = torch.randn(6, steps, 3, generator=gen)
    y = torch.randint(0, 4, (6,) if readout == "last" else (6, steps), generator=gen)
    return net, (x, y), Loss("cross_entropy")


def autograd_updates(net, batch, loss, detach_recurrent=False, cut=None):
    """``dL/dW`` (and dL/db) of a plain float64 transcription of the RNN's equations.

    ``detach_recurrent``: ``h_{t-1}`` is a constant in ``W_rec h_{t-1}`` (e-prop's network).
    ``cut``: the state entering step ``cut`` is detached (truncated BPTT of a last-step loss)."""
    W = {k: net.chip.crossbars[k].weights().double().requires_grad_(True) for k in net.weight_names}
    b = {k: v.double().requires_grad_(True) for k, v in net.chip.biases.items()}
    f = ACTIVATIONS[net.activation].f
    x, y = batch
    a = torch.zeros(len(x), net.hidden, dtype=torch.float64)
    h, outs = torch.zeros_like(a), []
    for t in range(x.shape[1]):
        if t == cut:
            a, h = a.detach(), h.detach()
        u = x[:, t].double() @ W["W_in"].T + (h.detach() if detach_recurrent else h) @ W["W_rec"].T + b["W_rec"]
        if net.leak == "preactivation":
            a = (1 - net.alpha) * a + net.alpha * u
            h = f(a)
        else:
            h = (1 - net.alpha) * h + net.alpha * f(u)
        outs.append(h @ W["W_out"].T + b["W_out"])
    out = outs[-1] if net.readout == "last" else torch.stack(outs, 1)
    grads = torch.autograd.grad(loss(out, y), [*W.values(), b["W_rec"], b["W_out"]])
    return dict(zip([*W, "b_W_rec", "b_W_out"], grads))


def applied(signals):
    """Every ĝ = dᵀx the rule asks for, and the bias gradients the chip applies."""
    out = {s.name: s.d.T.double() @ s.x.double() for s in signals}
    out.update({f"b_{s.name}": (s.d.sum(0) if s.bias_grad is None else s.bias_grad).double()
                for s in signals if s.name != "W_in"})
    return out


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in b)


@pytest.mark.parametrize("activation, readout, leak", CASES)
def test_bptt_equals_autograd(activation, readout, leak):
    net, batch, loss = problem(activation, readout, leak=leak)
    signals, _ = BPTT().signals(net, net.unroll(batch[0]), batch, loss, None)
    assert max_diff(applied(signals), autograd_updates(net, batch, loss)) <= BOUND
    plain, _ = Backprop().signals(net, net.unroll(batch[0]), batch, loss, None)  # backprop on an RNN is BPTT
    assert max_diff(applied(plain), applied(signals)) == 0.0


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("leak", ["preactivation", "rate"])
def test_truncated_bptt_equals_autograd_through_the_last_k_steps(activation, k, leak):
    net, batch, loss = problem(activation, "last", leak=leak)
    signals, _ = BPTT(truncate=k).signals(net, net.unroll(batch[0]), batch, loss, None)
    steps = batch[0].shape[1]
    assert max_diff(applied(signals), autograd_updates(net, batch, loss, cut=steps - k)) <= BOUND


def test_truncation_of_per_step_losses_keeps_only_recent_errors():
    net, batch, loss = problem("tanh", "every")
    trace = net.unroll(batch[0])
    full, _ = BPTT().signals(net, trace, batch, loss, None)
    one, _ = BPTT(truncate=1).signals(net, trace, batch, loss, None)
    # k = 1: every step's own error only, no recurrent or leak path: W_rec's update is Σ_t (α f'(a_t) ⊙ W_outᵀ δ_t)ᵀ h_{t-1}
    delta = loss.grad(trace.output, batch[1]).transpose(0, 1)                 # (T, batch, out)
    a = trace.states["pre"]
    d = net.alpha * ACTIVATIONS["tanh"].f_prime(a) * (delta @ net.chip.crossbars["W_out"].weights())
    expected = d.reshape(-1, 5).T @ trace.inputs["W_rec"]
    assert torch.allclose(one[1].d.T @ one[1].x, expected, atol=1e-6)
    assert not torch.allclose(one[1].d, full[1].d)


@pytest.mark.parametrize("activation, readout, leak", CASES)
def test_symmetric_eprop_equals_autograd_with_the_recurrent_input_detached(activation, readout, leak):
    net, batch, loss = problem(activation, readout, seed=1, leak=leak)
    signals, _ = EProp().signals(net, net.unroll(batch[0]), batch, loss, None)
    expected = autograd_updates(net, batch, loss, detach_recurrent=True)
    assert max_diff(applied(signals), expected) <= BOUND
    assert max_diff(applied(signals), autograd_updates(net, batch, loss)) > 1e-4  # not the true gradient


def test_eprop_never_reads_w_rec_transposed_and_random_feedback_is_installed():
    net, batch, loss = problem("relu", "every")
    calls = []
    W_rec = net.chip.crossbars["W_rec"]
    original = W_rec.backward
    W_rec.backward = lambda d: calls.append(d) or original(d)
    rule = EProp(feedback="random")
    net.chip.install(rule.crossbars(net, torch.Generator().manual_seed(0)))
    assert net.chip.roles["feedback/W_out"] == "feedback"
    rule.signals(net, net.unroll(batch[0]), batch, loss, None)
    EProp().signals(net, net.unroll(batch[0]), batch, loss, None)
    assert calls == []
    BPTT().signals(net, net.unroll(batch[0]), batch, loss, None)
    assert len(calls) == batch[0].shape[1] - 1  # BPTT reads W_recᵀ at every step but the first


def test_probe_and_curvature_run_on_the_rnn_through_its_own_unroll():
    net, batch, loss = problem("tanh", "last")
    rows = probe(net, BPTT(), None, batch, loss, 0.1, repeats=2)
    assert {r["layer"] for r in rows} == {"W_in", "W_rec", "W_out"}
    assert all(r["rel_bias"] <= 1e-6 for r in rows)
    g = true_gradient(net, batch, loss)
    expected = autograd_updates(net, batch, loss)
    assert max(max_diff({k: g[k]}, {k: expected[k]}) for k in g) <= 1e-12
    v = torch.randn(sum(p.numel() for p in expected.values()), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(hessian_vector_product(net, batch[0], batch[1], loss, v)).all()


def test_rnn_input_must_be_a_sequence():
    net, batch, loss = problem("relu", "last")
    with pytest.raises(ValueError, match="batch, time, 3"):
        net.unroll(batch[0][:, 0])


@pytest.mark.parametrize("directions", ["rank1", "dense"])
def test_weight_perturbation_on_the_rnn_is_the_directional_derivative(directions):
    """Each loss difference c_k is the derivative along P_k (W_in has no bias, so no bias direction)."""
    from chiploop.learning import make_rule

    net, batch, loss = problem("tanh", "every")
    g = autograd_updates(net, batch, loss)
    rule = make_rule("weight_perturbation", {"directions": directions, "epsilon": 1e-3, "samples": 6})
    state = rule.init(net, torch.Generator().manual_seed(0))
    dirs = rule.draw(net, state)
    assert not dirs["W_in"].has_bias and dirs["W_rec"].has_bias
    c = rule.loss_differences(net, batch, loss, dirs).double()
    expected = sum((d.matrix().double() * g[name]).sum((1, 2)) for name, d in dirs.items())
    expected = expected + sum(d.bias.double() @ g[f"b_{name}"] for name, d in dirs.items() if d.has_bias)
    torch.testing.assert_close(c, expected, rtol=2e-2, atol=2e-3)


def murray_rflo(net, batch, loss, B):
    """A plain-torch transcription of Murray's RFLO (2019) for one trial: the full per-sample trace
    ``p_ij,t = (1-α) p_ij,t-1 + α f'(u_t,i) [x_t; h_{t-1}]_j`` kept digitally, updated online, and
    ``ΔW_ij = Σ_t (Bᵀ e_t)_i p_ij,t`` (here with the loss gradient e_t = dL/dy_t), on [W_in W_rec]
    and the bias (its presynaptic input is 1)."""
    W = {k: net.chip.crossbars[k].weights().double() for k in net.weight_names}
    b = {k: v.double() for k, v in net.chip.biases.items()}
    act, alpha = ACTIVATIONS[net.activation], net.alpha
    x, y = batch
    n, steps, _ = x.shape
    h = torch.zeros(n, net.hidden, dtype=torch.float64)
    p = torch.zeros(n, net.hidden, x.shape[2] + net.hidden + 1, dtype=torch.float64)
    grad, outs, ps, hs = torch.zeros(p.shape[1:], dtype=torch.float64), [], [], []
    for t in range(steps):
        pre_input = torch.cat([x[:, t].double(), h, torch.ones(n, 1, dtype=torch.float64)], 1)
        u = x[:, t].double() @ W["W_in"].T + h @ W["W_rec"].T + b["W_rec"]
        p = (1 - alpha) * p + alpha * act.f_prime(u)[:, :, None] * pre_input[:, None, :]
        h = (1 - alpha) * h + alpha * act.f(u)
        ps.append(p)
        hs.append(h)
        outs.append(h @ W["W_out"].T + b["W_out"])
    out = outs[-1] if net.readout == "last" else torch.stack(outs, 1)
    e = loss.grad(out, y)                                               # (batch, out) or (batch, T, out)
    for t in range(steps):
        e_t = (e if t == steps - 1 else None) if net.readout == "last" else e[:, t]
        if e_t is not None:
            grad += ((e_t @ B)[:, :, None] * ps[t]).sum(0)
    n_in = x.shape[2]
    return {"W_in": grad[:, :n_in], "W_rec": grad[:, n_in:-1], "b_W_rec": grad[:, -1]}


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("readout", ["last", "every"])
def test_rflo_equals_murrays_recursion_with_its_full_trace(activation, readout):
    from chiploop.learning.eprop import RFLO

    net, batch, loss = problem(activation, readout, seed=2, leak="rate")
    rule = RFLO()
    net.chip.install(rule.crossbars(net, torch.Generator().manual_seed(0)))
    signals, _ = rule.signals(net, net.unroll(batch[0]), batch, loss, None)
    B = net.chip.crossbars["feedback/W_out"].weights().double()
    got = applied(signals)
    assert max_diff(got, murray_rflo(net, batch, loss, B)) <= BOUND
    assert max_diff({"W_out": got["W_out"]}, {"W_out": autograd_updates(net, batch, loss)["W_out"]}) <= BOUND


def test_rflo_refuses_the_preactivation_leak_with_the_rule_that_fits():
    from chiploop.experiments.spec import experiment_from_data
    from chiploop.experiments.train import Run
    from chiploop.specs import SpecError

    model = {"kind": "rnn", "n_in": 8, "n_out": 10, "hidden": 8}
    with pytest.raises(SpecError) as info:
        Run.build(experiment_from_data({"task": "seq_digits", "model": model, "rule": "rflo"}))
    assert info.value.field == "rule.name" and "leak: rate" in info.value.allowed
    run = Run.build(experiment_from_data({"task": "seq_digits", "model": {**model, "leak": "rate"}, "rule": "rflo"}))
    assert run.network.chip.roles["feedback/W_out"] == "feedback"


def test_curvature_of_w_rec_alone_is_the_dense_hessian_block():
    from chiploop.learning.curvature import hessian_trace, top_hessian_eigenvalue
    from chiploop.learning.shadow import parameter_names, shadow_loss, shadow_parameters

    net, batch, loss = problem("tanh", "last", leak="rate")
    at = parameter_names(net).index(("W_rec", "W"))  # θ = (W_in, W_rec, b_rec, W_out, b_out)
    params = shadow_parameters(net)

    def f(w_flat):  # the loss as a function of W_rec alone, every other parameter held
        return shadow_loss([w_flat.view_as(p) if i == at else p for i, p in enumerate(params)], net, *batch, loss)

    H = torch.autograd.functional.hessian(f, params[at].reshape(-1))
    ev = torch.linalg.eigvalsh(H)
    top = top_hessian_eigenvalue(net, *batch, loss, iters=3000, tol=1e-12, generator=torch.Generator().manual_seed(0),
                                 only=("W_rec",))
    assert top == pytest.approx(ev[ev.abs().argmax()].item(), rel=1e-6)
    trace = hessian_trace(net, *batch, loss, samples=20000, generator=torch.Generator().manual_seed(1), only=("W_rec",))
    assert trace == pytest.approx(torch.trace(H).item(), rel=0.05)
