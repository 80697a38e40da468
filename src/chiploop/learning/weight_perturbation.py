"""Weight perturbation (Dembo & Kailath 1990, "Model-free distributed learning", IEEE Trans.
Neural Networks 1(1):58-70; Jabri & Flower 1992, "Weight perturbation: an optimal architecture
and learning technique for analog VLSI feedforward and recurrent multilayer networks", IEEE
Trans. Neural Networks 3(1):154-157) and SPSA (Spall 1992, "Multivariate stochastic
approximation using a simultaneous perturbation gradient approximation", IEEE Trans. Automatic
Control 37(3):332-341): the gradient from forward passes and the loss alone."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Literal, final

from chiploop.lazy import torch

from chiploop.emulator import LayerSignal, Network, Trace
from chiploop.learning.loss import Loss
from chiploop.learning.rule import LearningRule
from chiploop.specs import spec_field

_MASK64 = (1 << 64) - 1
FLOAT32_BYTES = 4


def step_seed(seed: int, step: int) -> int:
    """A 64-bit seed for ``step`` from the rule's ``seed`` (splitmix64 of ``seed + (step+1) φ``),
    cheap enough for a chip's controller to compute too."""
    z = (seed + 0x9E3779B97F4A7C15 * (step + 1)) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


@dataclass(frozen=True)
class LayerDirections:
    """Layer ``l``'s ``K`` perturbation directions of one step.

    Rank-1: ``P_k = u_k v_k^T`` and the bias direction is ``u_k`` (the augmented direction
    ``u_k [v_k; 1]^T`` of ``[W b]``). Dense: ``P_k`` and the bias direction ``p_b,k`` drawn
    entry by entry. A crossbar without a digital bias (the RNN's ``W_in``) has no bias direction.
    """

    bias: torch.Tensor                  # (K, out): p_b (rank-1: u; dense without a bias: zeros)
    v: torch.Tensor | None = None       # (K, in): rank-1 right factor
    dense: torch.Tensor | None = None   # (K, out, in): dense P
    has_bias: bool = True               # the crossbar has a digital bias that is perturbed too

    def matrix(self) -> torch.Tensor:
        """``P_k`` for every k: (K, out, in)."""
        if self.dense is not None:
            return self.dense
        return self.bias[:, :, None] * self.v[:, None, :]

    def project(self, x_hat: torch.Tensor) -> torch.Tensor:
        """``P_k x̂ + p_b,k`` for ``x̂`` (K, batch, in) -> (K, batch, out); rank-1 costs one dot product."""
        dtype = x_hat.dtype
        if self.dense is not None:
            out = torch.einsum("kbi,koi->kbo", x_hat, self.dense.to(dtype))
            return out + self.bias[:, None, :].to(dtype) if self.has_bias else out
        along_v = torch.einsum("kbi,ki->kb", x_hat, self.v.to(dtype)) + (1 if self.has_bias else 0)
        return along_v[:, :, None] * self.bias[:, None, :].to(dtype)


@dataclass
class PerturbationState:
    """The rule's own generator (seeded from one draw of the run's), its seed and the step count."""

    seed: int
    generator: torch.Generator
    step: int
    bus_bytes_per_step: int


@dataclass(frozen=True)
class WeightPerturbation(LearningRule):
    """Two-sided weight perturbation of every layer at once::

        c_k = (L(W + ε P_k) - L(W - ε P_k)) / (2 ε),      k = 1..K   (K = ``samples``)
        ĝ_l = 1/K sum_k c_k P_{l,k},   ĝ_{b_l} = 1/K sum_k c_k p_{b_l,k},   ΔW_l = -lr ĝ_l

    ``L`` is the batch-mean loss and ``P_k = (P_{1,k}, ..., P_{n,k})`` one direction for all
    layers, entries i.i.d. N(0, 1) (``gaussian``) or ±1 (``rademacher``, SPSA). Either way
    ``E[vec P vec P^T] = I`` (also for rank-1 ``P_l = u_l v_l^T`` with ``u_l``, ``v_l`` of such
    entries and bias direction ``u_l``), so ``E[ĝ] = g + O(ε²)`` and only ``2K`` forward passes
    are needed; its variance grows with the number of weights.

    On the chip nothing is reprogrammed: the perturbation is added in the digital periphery
    through ``network.unroll(x, perturb=...)``, ``(W ± εP) x̂ + b ± ε p_b = W x̂ + b ± ε (P x̂ + p_b)``
    (rank-1: ``± ε (v·x̂ + 1) u``, one dot product). The ``2K`` passes run as one batch of
    ``2K·batch`` rows. The update is a pulsed crossbar update: rank-1 as one rank update per
    direction, ``x = [v_k]`` (K, in), ``d = [c_k u_k / K]`` (K, out); dense by the one-hot trick
    ``x = I_in``, ``d = ĝ_l^T`` (in, out), which costs ``in`` rank-1 pulse cycles. The digital
    bias gets ``bias_grad = ĝ_{b_l}``. On an analog chip every pass has its own read noise, which
    enters ``c_k`` divided by ``2ε``: a larger ``ε`` keeps the loss difference above it.

    With ``shared_seed`` the directions of step ``t`` come from a generator seeded by
    ``(seed, t)``, so a chip that knows the seed regenerates ``P`` and only ``c_k`` (one float32
    per direction) crosses the bus; otherwise the directions come from the rule's running
    generator and must be sent too (:meth:`report`).
    """

    # a spiking network's loss is piecewise constant in the weights: a finite difference does not
    # estimate the surrogate gradient the probe holds rules to, so these rules refuse spiking networks
    excludes: ClassVar[tuple[str, ...]] = ("snn",)

    epsilon: float = spec_field(1e-2, doc="perturbation size ε of every weight (and bias) along P",
                                unit="weight units", low=0.0, high=10.0, low_open=True)
    distribution: Literal["gaussian", "rademacher"] = spec_field(
        "gaussian", doc="entries of the direction vectors: N(0, 1) or ±1 with probability 1/2")
    directions: Literal["rank1", "dense"] = spec_field(
        "rank1", doc="P_l = u_l v_l^T (one pulsed rank update, bias direction u_l) or dense P_l "
        "(one-hot update, `in` pulse cycles)")
    samples: int = spec_field(1, doc="directions K averaged per step (2K forward passes)",
                              unit="directions", low=1, high=4096)
    shared_seed: bool = spec_field(
        True, doc="draw step t's directions from a generator seeded by (rule seed, t), so the chip can "
        "regenerate them and only one float32 per direction crosses the bus")

    def init(self, network: Network, generator: torch.Generator) -> PerturbationState:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        return PerturbationState(seed, torch.Generator().manual_seed(seed), 0, self.bus_bytes(network))

    @staticmethod
    def shapes(network: Network) -> list[tuple[str, int, int, bool]]:
        """``(name, out, in, has_bias)`` of every weight crossbar."""
        return [(name, *network.chip.crossbars[name].shape, name in network.chip.biases)
                for name in network.weight_names]

    def bus_bytes(self, network: Network) -> int:
        """Bytes per step: the scalar ``c_k`` per direction, plus (without ``shared_seed``) the
        direction as float32: ``u, v`` for rank-1 (the bias direction is ``u``), ``P, p_b`` dense."""
        entries = 0
        if not self.shared_seed:
            entries = sum(n_out + n_in if self.directions == "rank1" else n_out * n_in + n_out * has_bias
                          for _, n_out, n_in, has_bias in self.shapes(network))
        return FLOAT32_BYTES * (1 + entries) * self.samples

    def report(self, state: PerturbationState) -> dict[str, float]:  # type: ignore[override]
        return {"bus_bytes_per_step": state.bus_bytes_per_step}

    def _draw(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        if self.distribution == "gaussian":
            return torch.randn(shape, generator=generator)
        return torch.randint(0, 2, shape, generator=generator).to(torch.float32) * 2 - 1

    def draw(self, network: Network, state: PerturbationState) -> dict[str, LayerDirections]:
        """The directions of step ``state.step`` for every layer (consumes ``state.generator``
        unless ``shared_seed``)."""
        generator = (torch.Generator().manual_seed(step_seed(state.seed, state.step)) if self.shared_seed
                     else state.generator)
        K, out = self.samples, {}
        for name, n_out, n_in, has_bias in self.shapes(network):
            if self.directions == "rank1":
                out[name] = LayerDirections(self._draw((K, n_out), generator), v=self._draw((K, n_in), generator),
                                            has_bias=has_bias)
            else:
                dense = self._draw((K, n_out, n_in), generator)
                bias = self._draw((K, n_out), generator) if has_bias else torch.zeros(K, n_out)
                out[name] = LayerDirections(bias, dense=dense, has_bias=has_bias)
        return out

    def loss_differences(self, network: Network, batch, loss: Loss, directions: dict[str, LayerDirections]
                         ) -> torch.Tensor:
        """``c_k = (L(W + εP_k) - L(W - εP_k)) / (2ε)`` (K,), from one batched forward pass of
        ``2K`` copies of the batch (rows ``[+P_1 .. +P_K, -P_1 .. -P_K]``)."""
        x, y = batch
        K, B = self.samples, len(x)
        sign = torch.tensor([self.epsilon, -self.epsilon]).view(2, 1, 1, 1)

        def perturb(name: str, t: int, x_hat: torch.Tensor) -> torch.Tensor:
            rows = x_hat.view(2, K, B, -1)
            proj = torch.stack([directions[name].project(rows[0]), directions[name].project(rows[1])])  # (2, K, B, out)
            return (sign * proj).flatten(0, 2)  # (2K B, out)

        out = network.unroll(x.repeat(2 * K, *([1] * (x.dim() - 1))), perturb=perturb).output
        targets = y.repeat(2 * K, *([1] * (y.dim() - 1)))
        losses = loss.per_sample(out, targets).view(2, K, B).mean(2)  # (2, K): L(W + εP_k), L(W - εP_k)
        return (losses[0] - losses[1]) / (2 * self.epsilon)

    def signals(self, network: Network, trace: Trace, batch, loss: Loss, state: PerturbationState
                ) -> tuple[list[LayerSignal], PerturbationState]:
        directions = self.draw(network, state)
        c = self.loss_differences(network, batch, loss, directions)  # (K,)
        K, signals = self.samples, []
        for name, dirs in directions.items():
            bias_grad = c @ dirs.bias.to(c.dtype) / K if dirs.has_bias else None  # (out,)
            if dirs.dense is None:
                signals.append(LayerSignal(name, dirs.v, c[:, None] * dirs.bias.to(c.dtype) / K, bias_grad=bias_grad))
            else:
                g = torch.einsum("k,koi->oi", c, dirs.dense.to(c.dtype)) / K  # (out, in)
                signals.append(LayerSignal(name, torch.eye(g.shape[1]), g.T.contiguous(), bias_grad=bias_grad))
        return signals, replace(state, step=state.step + 1)


@final
@dataclass(frozen=True)
class SPSA(WeightPerturbation):
    """Simultaneous perturbation stochastic approximation (Spall 1992): weight perturbation
    with Rademacher (±1) directions, for which ``1/Δ_i = Δ_i`` and Spall's estimator
    ``(L+ - L-) / (2ε Δ_i)`` is the one above."""

    distribution: Literal["gaussian", "rademacher"] = spec_field(
        "rademacher", doc="entries of the direction vectors: N(0, 1) or ±1 with probability 1/2")
