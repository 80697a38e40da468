"""E-prop (Bellec, Scherr, Subramoney, Hajek, Salaj, Legenstein & Maass 2020, "A solution to the
learning dilemma for recurrent networks of spiking neurons", Nat. Commun. 11:3625) and RFLO
(Murray 2019, "Local online learning in recurrent networks with random feedback", eLife 8:e43299),
for the leaky RNN of :mod:`chiploop.emulator.networks.rnn`.

Both drop the recurrent Jacobian: ``h_{t-1}`` is a constant in ``W_rec h_{t-1}``, so the sensitivity
of the state to ``W[i, j]`` follows the leak alone (an eligibility trace), and the update is that trace
times a learning signal ``L_t = B e_t`` sent back from the output error ``e_t = dL/dy_t``. What the trace
looks like depends on where the leak acts (docs/science.md §4.10):

* **preactivation leak** (``a_t = (1-α) a_{t-1} + α u_t``, ``h_t = f(a_t)``): ``∂a_t,i/∂W_ij = ε_t,j``
  with ``ε_t = (1-α) ε_{t-1} + α x̂_t`` — one vector per presynaptic unit, so each step with a loss
  is one rank-1 update ``(x = ε_t, d = f'(a_t) ⊙ L_t)``;
* **rate leak** (``h_t = (1-α) h_{t-1} + α f(u_t)``, Murray's form): ``p_ij,t = (1-α) p_ij,t-1 +
  α f'(u_t,i) x̂_t,j`` is a full matrix per sample, not rank-1. Summed over the trial it is, exactly
  (weights are fixed within a trial)::

      Σ_t L_t,i p_ij,t = Σ_s α f'(u_s,i) N_s,i x̂_s,j,     N_s = Σ_{t≥s} (1-α)^{t-s} L_t

  i.e. one rank-1 update ``(x = x̂_s, d = α f'(u_s) ⊙ N_s)`` per step with the learning signal
  filtered backwards in time. chiploop applies RFLO this way: no dense trace is kept, and no one-hot
  programming is needed.

With symmetric feedback (``B = W_outᵀ``, read on the chip) e-prop is exactly the gradient of the
network in which ``h_{t-1}`` is detached in ``W_rec h_{t-1}`` (Bellec et al.'s check); RFLO is e-prop
with a fixed random ``B`` on the rate-leak network (Murray's; on the preactivation leak that would be
e-prop with random feedback, so ``rflo`` asks for ``leak: rate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, final

from chiploop.lazy import torch

from chiploop.emulator import CrossbarRequest, LayerSignal, Network, Trace
from chiploop.learning.feedback import feedback_name
from chiploop.learning.loss import Loss
from chiploop.learning.rule import LearningRule
from chiploop.specs import SpecError, spec_field


def random_readout_feedback(network: Network, generator: torch.Generator, on_chip: bool) -> list[CrossbarRequest]:
    """A fixed ``B`` of ``W_out``'s shape (read transposed: ``L = Bᵀ e``), entries ``N(0, 1/hidden)``."""
    n_out, hidden = network.chip.crossbars["W_out"].shape
    B = torch.randn(n_out, hidden, generator=generator) / hidden ** 0.5
    return [CrossbarRequest(feedback_name("W_out"), "feedback", B, technology="chip" if on_chip else "digital")]


def trace_signals(network: Network, trace: Trace, learning: torch.Tensor, e: torch.Tensor) -> list[LayerSignal]:
    """The updates of ``W_in``, ``W_rec``, ``W_out`` from the learning signal ``L`` (rows of W_out's inputs)
    and the output error ``e``, by the eligibility traces of the network's leak (module docstring)."""
    pre = trace.states["pre"]                                              # (T, batch, hidden)
    steps, n, hidden = pre.shape
    alpha = network.alpha
    with_loss = [steps - 1] if network.readout == "last" else list(range(steps))
    x_in = trace.inputs["W_in"].view(steps, n, -1)
    x_rec = trace.inputs["W_rec"].view(steps, n, hidden)
    L = pre.new_zeros(steps, n, hidden)
    L[with_loss] = learning.view(len(with_loss), n, hidden)
    fp = network.f_prime("W_rec", pre)
    if network.leak == "rate":                                             # backward-filtered signal
        filtered, d = torch.zeros_like(L[0]), []
        for t in reversed(range(steps)):
            filtered = L[t] + (1 - alpha) * filtered
            d.append(alpha * fp[t] * filtered)
        d = torch.cat(d[::-1])
        return [LayerSignal("W_in", trace.inputs["W_in"], d), LayerSignal("W_rec", trace.inputs["W_rec"], d),
                LayerSignal("W_out", trace.inputs["W_out"], e)]
    eps_in, eps_rec = torch.zeros_like(x_in[0]), torch.zeros_like(x_rec[0])
    eps_b, rows_in, rows_rec, scales = 0.0, [], [], []
    for t in range(steps):                                                 # forward traces ε_t
        eps_in = (1 - alpha) * eps_in + alpha * x_in[t]
        eps_rec = (1 - alpha) * eps_rec + alpha * x_rec[t]
        eps_b = (1 - alpha) * eps_b + alpha
        if t in with_loss:
            rows_in.append(eps_in)
            rows_rec.append(eps_rec)
            scales.append(eps_b)
    d = fp[with_loss] * L[with_loss]                                       # (steps with loss, batch, hidden)
    bias_grad = (torch.tensor(scales, dtype=d.dtype)[:, None, None] * d).sum((0, 1))
    d = d.reshape(-1, hidden)
    return [LayerSignal("W_in", torch.cat(rows_in), d), LayerSignal("W_rec", torch.cat(rows_rec), d, bias_grad=bias_grad),
            LayerSignal("W_out", trace.inputs["W_out"], e)]


@final
@dataclass(frozen=True)
class EProp(LearningRule):
    """Eligibility traces times an online learning signal; ``W_rec`` is never read transposed::

        L_t = B e_t,   e_t = dL/dy_t          (B = W_outᵀ read on the chip, or fixed random N(0, 1/hidden))
        ΔW = -lr Σ_t (∂h_t/∂W with h_{t-1} held) · L_t,      ΔW_out = -lr Σ_t e_tᵀ h_t

    with the traces of the module docstring, as rank-1 updates on either leak.
    """

    deterministic: ClassVar[bool] = True
    networks: ClassVar[tuple[str, ...]] = ("rnn",)

    feedback: Literal["symmetric", "random"] = spec_field(
        "symmetric", doc="learning signal through W_outᵀ read on the chip, or through a fixed random B")
    on_chip: bool = spec_field(False, doc="random B on a read-only crossbar of the chip's devices (else digital)")

    def crossbars(self, network: Network, generator: torch.Generator) -> list[CrossbarRequest]:
        return random_readout_feedback(network, generator, self.on_chip) if self.feedback == "random" else []

    def signals(self, network: Network, trace: Trace, batch, loss: Loss, state: Any
                ) -> tuple[list[LayerSignal], Any]:
        e = network.output_errors(trace, loss.grad(trace.output, batch[1]))  # rows of W_out's inputs
        reader = network.chip.crossbars["W_out" if self.feedback == "symmetric" else feedback_name("W_out")]
        return trace_signals(network, trace, reader.backward(e), e), state


@final
@dataclass(frozen=True)
class RFLO(LearningRule):
    """Random-feedback local online learning (Murray 2019) on the rate-leak RNN::

        p_ij,t = (1-α) p_ij,t-1 + α f'(u_t,i) x̂_t,j,     ΔW_ij = -lr Σ_t (B e_t)_i p_ij,t

    with a fixed random ``B`` (``N(0, 1/hidden)``), applied as the exact end-of-trial rewrite into
    rank-1 updates with a backward-filtered learning signal (module docstring); ``W_out`` learns by the
    delta rule ``ΔW_out = -lr Σ_t e_tᵀ h_t``.
    """

    deterministic: ClassVar[bool] = True
    networks: ClassVar[tuple[str, ...]] = ("rnn",)

    on_chip: bool = spec_field(False, doc="B on a read-only crossbar of the chip's devices (else digital)")

    def check_network(self, network: Network, field: str = "rule.name", value: Any = None) -> None:
        super().check_network(network, field, value)
        if network.leak != "rate":
            raise SpecError(field, value or "rflo", "a rule for this RNN: rflo trains the rate-leak RNN "
                            "(model: {kind: rnn, leak: rate}); on the preactivation leak it is eprop with "
                            "feedback: random")

    def crossbars(self, network: Network, generator: torch.Generator) -> list[CrossbarRequest]:
        return random_readout_feedback(network, generator, self.on_chip)

    def signals(self, network: Network, trace: Trace, batch, loss: Loss, state: Any
                ) -> tuple[list[LayerSignal], Any]:
        e = network.output_errors(trace, loss.grad(trace.output, batch[1]))
        learning = network.chip.crossbars[feedback_name("W_out")].backward(e)
        return trace_signals(network, trace, learning, e), state
