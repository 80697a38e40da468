"""A spiking network on two crossbars: Poisson input spikes -> LIF hidden layer with lateral inhibition ->
LIF output layer, read out by spike count (docs/science.md §5.3; seed 003: Hao, Huang, Dong & Xu 2020,
"A biologically plausible supervised learning method for spiking neural networks using the symmetric
STDP rule", Neural Networks 121:387-395).

Time steps of ``dt`` ms, input ``x`` (batch, T, n_in) of spikes in {0, 1} (the task draws them). At step t,
with the LIF step of :func:`chiploop.emulator.periphery.lif_step` (state reset between samples, which
stands for the authors' 150 ms rest)::

    I_h(t) = W_in x(t) - w_inh (Σ_k s_h,k(t-1) - s_h(t-1))      (a crossbar read; inhibition digital, nA)
    s_h(t) = LIF(I_h(t); threshold v_th + θ_h)
    I_o(t) = W_out s_h(t) - w_inh,out (Σ_k s_o,k(t-1) - s_o(t-1))      (output inhibition, 0 by default)
    s_o(t) = LIF(I_o(t); threshold v_th + θ_o)
    output = Σ_t s_o(t)         (batch, n_out): the prediction is the output neuron with most spikes

With ``readout: count+current`` the spike count's ties are broken by the accumulated output current
``Q = Σ_t I_o(t)`` (nA·steps), added as a bounded, detached term (no gradient flows through it, so the
surrogate-gradient walk is unchanged)::

    output_k = Σ_t s_o,k(t) + Q_k / (4 max_j |Q_j|)      (the added term lies in [-¼, ¼]: most spikes first)

``θ_h``, ``θ_o`` (mV) are the adaptive thresholds (intrinsic plasticity, trained by ``sym_stdp``); they are
the digital parameters beside ``W_in`` and ``W_out`` (``chip.biases``), saved and exported with them.

Backward walk (surrogate-gradient BPTT, Neftci, Mostafa & Zenke 2019; reset and inhibition detached,
refractory mask constant), with β = exp(-dt/τ_m), σ' the surrogate derivative at ``u - v_th - θ``::

    g_u(t) = σ'(t) g_s(t) + (1 - s(t)) g_v(t),      g_v(t-1) = free(t) β g_u(t)
    d(t) = dL/dI(t) = free(t) (1 - β) R g_u(t),     dL/dθ = -Σ_t σ'(t) g_s(t)
    g_s,o(t) = dL/d output,   g_s,h(t) = read(W_out, d_o(t))

which equals autograd through :meth:`SNN.unroll` (its spike function has the same surrogate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, final

from chiploop.lazy import torch

from chiploop.emulator.chip import Chip, CrossbarFactory
from chiploop.emulator.networks.base import Network, NetworkSpec, Perturbation, Trace, TransposedRead, register
from chiploop.emulator.periphery import LIFParameters, lif_initial, lif_step, surrogate_derivative
from chiploop.specs import SpecError, spec_field


@final
@dataclass(eq=False)
class SNN(Network):
    """A two-layer LIF network whose ``W_in`` (hidden, n_in) and ``W_out`` (n_out, hidden) are crossbars."""

    kind: ClassVar[str] = "snn"
    weight_names: ClassVar[tuple[str, ...]] = ("W_in", "W_out")

    n_in: int
    hidden: int
    n_out: int
    neuron: LIFParameters          # shared by both layers; theta comes from the chip
    inhibition: float              # nA per spike of another hidden neuron
    chip: Chip
    inhibition_out: float = 0.0    # nA per spike of another output neuron
    readout: str = "count"         # "count" or "count+current" (ties broken by the accumulated output current)

    def parameters(self, name: str) -> LIFParameters:
        """The LIF parameters of the neurons that crossbar ``name`` drives (their θ from the chip)."""
        return self.neuron._replace(theta=self.chip.biases[name])

    def f_prime(self, name: str, a: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(a)  # no rate nonlinearity: the walk uses the surrogate derivative

    def _read(self, name: str, t: int, v: torch.Tensor, perturb: Perturbation | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        v_hat, y = self.chip.read(name, v)
        extra = perturb(name, t, v_hat) if perturb is not None else None
        return v_hat, (y if extra is None else y + extra)

    def unroll(self, x: torch.Tensor, perturb: Perturbation | None = None) -> Trace:
        """``x`` (batch, T, n_in) spikes; ``perturb(name, t, x̂)`` may add a current to any read at step t."""
        if x.dim() != 3 or x.shape[2] != self.n_in:
            raise ValueError(f"an SNN input is (batch, time, {self.n_in}) spikes; got {tuple(x.shape)}")
        batch, steps = x.shape[:2]
        p_h, p_o = self.parameters("W_in"), self.parameters("W_out")
        dtype = self.chip.biases["W_in"].dtype
        like = x.new_zeros((), dtype=dtype)
        state_h, state_o = lif_initial(batch, self.hidden, p_h, like), lif_initial(batch, self.n_out, p_o, like)
        s_h, s_o = like.new_zeros(batch, self.hidden), like.new_zeros(batch, self.n_out)
        keys = ("x", "I_h", "u_h", "s_h", "free_h", "h_hat", "I_o", "u_o", "s_o", "free_o")
        rec: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        for t in range(steps):
            x_hat, i_h = self._read("W_in", t, x[:, t].to(dtype), perturb)
            if self.inhibition:
                prev = s_h.detach()
                i_h = i_h - self.inhibition * (prev.sum(1, keepdim=True) - prev)
            s_h, state_h = lif_step(i_h, state_h, p_h)
            h_hat, i_o = self._read("W_out", t, s_h, perturb)
            if self.inhibition_out:
                prev = s_o.detach()
                i_o = i_o - self.inhibition_out * (prev.sum(1, keepdim=True) - prev)
            s_o, state_o = lif_step(i_o, state_o, p_o)
            for k, v in zip(keys, (x_hat, i_h, state_h.u, s_h, state_h.free, h_hat, i_o, state_o.u, s_o,
                                   state_o.free)):
                rec[k].append(v)
        stacked = {k: torch.stack(v) for k, v in rec.items()}           # (T, batch, n)
        rows = lambda k: stacked[k].reshape(steps * batch, -1)          # noqa: E731  time-major rows
        output = stacked["s_o"].sum(0)
        if self.readout == "count+current":
            charge = stacked["I_o"].detach().sum(0)
            scale = 4 * charge.abs().amax(1, keepdim=True)
            output = output + charge / torch.where(scale > 0, scale, torch.ones_like(scale))
        return Trace(inputs={"W_in": rows("x"), "W_out": rows("h_hat")},
                     preacts={"W_in": rows("I_h"), "W_out": rows("I_o")},
                     output=output,
                     states={k: stacked[k] for k in ("u_h", "s_h", "free_h", "u_o", "s_o", "free_o")})

    def _layer_walk(self, name: str, g_s: torch.Tensor, u: torch.Tensor, s: torch.Tensor, free: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d, dL/dθ)`` of one LIF layer from ``g_s`` = dL/ds (T, batch, n); see the module docstring."""
        p = self.parameters(name)
        beta = math.exp(-p.dt / p.tau_m)
        sig = surrogate_derivative(u - p.v_th - p.theta, p.slope)
        steps = len(u)
        g_v = torch.zeros_like(u[0])
        d = torch.empty_like(u)
        for t in reversed(range(steps)):
            g_u = sig[t] * g_s[t] + (1 - s[t]) * g_v
            d[t] = free[t] * (1 - beta) * p.r_m * g_u
            g_v = free[t] * beta * g_u
        return d, -(sig * g_s).sum((0, 1))

    def backward(self, trace: Trace, delta: torch.Tensor, read: TransposedRead, horizon: int | None = None
                 ) -> dict[str, torch.Tensor]:
        """Errors at both crossbars (time-major rows) and, under ``bias/NAME``, ``dL/dθ`` of the neurons
        crossbar ``NAME`` drives (θ is not an additive bias). ``horizon`` is not supported (full BPTT)."""
        st = trace.states
        steps, batch = st["s_o"].shape[:2]
        g_so = delta.unsqueeze(0).expand(steps, *delta.shape)
        d_o, g_theta_o = self._layer_walk("W_out", g_so, st["u_o"], st["s_o"], st["free_o"])
        d_o_rows = d_o.reshape(steps * batch, -1)
        g_sh = read("W_out", d_o_rows).view(steps, batch, -1)
        d_h, g_theta_h = self._layer_walk("W_in", g_sh, st["u_h"], st["s_h"], st["free_h"])
        return {"W_in": d_h.reshape(steps * batch, -1), "W_out": d_o_rows,
                "bias/W_in": g_theta_h, "bias/W_out": g_theta_o}


@final
@register
@dataclass(frozen=True)
class SNNSpec(NetworkSpec):
    """A spiking network: ``model: {kind: snn, hidden: 100, dt: 1.0, ...}`` (inputs: a spike task such as
    ``spike_digits``, whose ``dt`` must be the same)."""

    sequential: ClassVar[bool] = True
    spiking: ClassVar[bool] = True

    kind: Literal["snn"] = spec_field("snn", doc="network class: snn")
    n_in: int = spec_field(64, doc="input spike trains", low=1)
    hidden: int = spec_field(100, doc="hidden LIF neurons", low=1)
    n_out: int = spec_field(10, doc="output LIF neurons (one per class)", low=1)
    dt: float = spec_field(1.0, doc="time step", unit="ms", low=0.0, high=100.0, low_open=True)
    tau_m: float = spec_field(20.0, doc="membrane time constant τ_m", unit="ms", low=0.0, high=1e5, low_open=True)
    v_rest: float = spec_field(-65.0, doc="resting potential", unit="mV", low=-200.0, high=100.0)
    v_reset: float = spec_field(-65.0, doc="reset potential after a spike", unit="mV", low=-200.0, high=100.0)
    v_th: float = spec_field(-52.0, doc="firing threshold (plus the adaptive θ)", unit="mV", low=-200.0, high=100.0)
    t_ref: float = spec_field(2.0, doc="refractory period", unit="ms", low=0.0, high=1000.0)
    r_m: float = spec_field(200.0, doc="membrane resistance R (R I in mV for I in nA)", unit="MΩ", low=0.0,
                            high=1e6, low_open=True)
    inhibition: float = spec_field(0.75, doc="lateral inhibition: current subtracted per spike of another hidden "
                                   "neuron in the step before", unit="nA", low=0.0, high=1e3)
    inhibition_out: float = spec_field(0.0, doc="lateral inhibition between output neurons (a soft winner-take-"
                                       "all that breaks ties of the spike count)", unit="nA", low=0.0, high=1e3)
    w_init: float = spec_field(0.1, doc="initial weights drawn from U(0, w_init)", low=0.0, high=100.0,
                               low_open=True)
    readout: Literal["count", "count+current"] = spec_field(
        "count", doc="prediction: the output with most spikes (count), ties broken by the accumulated output "
        "current Σ_t I_o (count+current: + Q/(4 max|Q|), detached)")
    slope: float = spec_field(1.0, doc="slope k of the surrogate derivative 1/(1 + k|u - v_th - θ|)²",
                              unit="1/mV", low=0.0, high=1e3, low_open=True)

    def check(self) -> None:
        if self.v_th <= self.v_rest:
            raise SpecError("model.v_th", self.v_th, f"a threshold above v_rest ({self.v_rest} mV)")
        if self.v_reset >= self.v_th:
            raise SpecError("model.v_reset", self.v_reset, f"a reset potential below v_th ({self.v_th} mV)")

    @property
    def dims(self) -> tuple[int, int]:
        return self.n_in, self.n_out

    @property
    def neuron(self) -> LIFParameters:
        return LIFParameters(self.tau_m, self.v_rest, self.v_reset, self.v_th, self.t_ref, self.r_m, self.dt,
                             0.0, self.slope)

    def build(self, factory: CrossbarFactory | None, generator: torch.Generator) -> SNN:
        """``W ~ U(0, w_init)`` (non-negative, as STDP synapses are), ``θ = 0``."""
        chip = Chip(factory=factory)
        chip.make("W_in", torch.rand(self.hidden, self.n_in, generator=generator) * self.w_init, "weight",
                  bias=torch.zeros(self.hidden))
        chip.make("W_out", torch.rand(self.n_out, self.hidden, generator=generator) * self.w_init, "weight",
                  bias=torch.zeros(self.n_out))
        return self.attach(chip)

    def attach(self, chip: Chip) -> SNN:
        return SNN(self.n_in, self.hidden, self.n_out, self.neuron, self.inhibition, chip, self.inhibition_out,
                   self.readout)
