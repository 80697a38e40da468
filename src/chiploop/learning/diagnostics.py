"""What the chip did to the gradient: bias and variance of every applied update, split into the
part the learning rule caused and the part the device caused (docs/science.md §6.1; Ghosh et al. 2023,
"How gradient estimator variance and bias impact learning in neural networks", ICLR).

For one batch and the chip's current state, per weight crossbar::

    g          true gradient: autograd through the network's unroll on the chip's float64 digital shadow
    ĝ_rule*    the rule run on that shadow (exact reads)            -> algorithmic error ĝ_rule* - g
    ĝ_rule     the rule run on a clone of the chip (its noisy reads) -> read error     ĝ_rule - ĝ_rule*
    ĝ_applied  -(W_after - W_before) / lr after the clone's pulsed update -> write error ĝ_applied - ĝ_rule

The physical (device) error is read + write, ``ĝ_applied - ĝ_rule*``; the total is
``ĝ_applied - g``. Repeating the step ``K`` times from the same state (exact clones, fresh device
noise, fresh draws of a stochastic rule, the same draw on shadow and chip) gives each part's
relative bias ``||E[e]|| / ||g||``, relative variance ``E||e - E[e]||² / ||g||²`` and the
alignment ``cos(E[ĝ], g)`` of the estimate it ends in. The training trajectory is untouched:
everything runs on clones and on a copy of the rule's state.

On the torch engine, with a deterministic rule that runs on populations
(:func:`~chiploop.learning.population.population_refusal`), the K repeats are one population step
instead of K clone/step/restore cycles: the chip is expanded to P = K exact copies (fresh noise
streams of their own), the batch is broadcast to every copy, the rule runs once with a leading axis
K on every activation and error, the pulsed update steps all K at once, and the K applied estimates
are read from the (K, out, in) weights. Each copy is an independent realisation from the same state,
as each clone of the loop is, so both give the same rows in distribution
(tests/test_population_probe.py). Other chips and rules keep the loop.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from chiploop.lazy import torch

from chiploop.emulator import Chip, IdealCrossbar, Network
from chiploop.emulator.ledger import unwrap
from chiploop.emulator.population import PopulationChip
from chiploop.emulator.torch_engine.crossbar import TorchCrossbar
from chiploop.learning.loss import Loss
from chiploop.learning.population import PopulationLoss, estimates, per_member, population_refusal
from chiploop.learning.rule import LearningRule
from chiploop.learning.shadow import true_gradient
from chiploop.specs import Spec, spec_field

PARTS = ("algorithmic", "read", "write", "physical", "total")


@dataclass(frozen=True)
class DiagnosticsSpec(Spec):
    """When and how hard to probe the updates during training."""

    every: int = spec_field(50, doc="training steps between probes", unit="steps", low=1)
    repeats: int = spec_field(8, doc="K: clones of the chip (and draws of the rule) per probe", low=2, high=10000)


def probe_dtype(chip: Chip) -> torch.dtype:
    """float64 on an all-ideal chip (so that rounding cannot pose as device error), else float32."""
    ideal = all(isinstance(unwrap(xb), IdealCrossbar) for xb in chip.crossbars.values())  # metered or not
    return torch.float64 if ideal else torch.float32


def exact_copy(chip: Chip, dtype: torch.dtype) -> Chip:
    """An independent copy of the chip with all of its device state (ideal crossbars in ``dtype``)."""
    copied = chip.clone()
    for name, xb in chip.crossbars.items():
        if isinstance(unwrap(xb), IdealCrossbar):
            copied.crossbars[name] = IdealCrossbar(unwrap(xb).weights().to(dtype))
    copied.biases = {k: b.to(dtype, copy=True) for k, b in chip.biases.items()}
    return copied


def _cast(batch, dtype: torch.dtype):
    x, y = batch
    return x.to(dtype), (y.to(dtype) if y.is_floating_point() else y)


def _estimates(network: Network, rule: LearningRule, state: Any, batch, loss: Loss
               ) -> tuple[dict[str, torch.Tensor], Any]:
    """The rule's estimates ``ĝ = d^T x`` of every weight crossbar (as float64), and its new state."""
    trace = network.unroll(batch[0])
    signals, state = rule.signals(network, trace, batch, loss, state)
    return summed(signals, lambda name: network.chip.roles[name] == "weight"), state


def summed(signals, keep) -> dict[str, torch.Tensor]:
    """``ĝ = Σ dᵀx`` per crossbar over the signals whose name ``keep(name)`` (a rule may send several
    signals to one crossbar: the STDP terms, say, and a threshold step without rows)."""
    out: dict[str, torch.Tensor] = {}
    for s in signals:
        if keep(s.name):
            g = s.d.T.double() @ s.x.double()
            out[s.name] = out[s.name] + g if s.name in out else g
    return out


def population_probe_ok(network: Network, rule: LearningRule) -> bool:
    """Whether :func:`probe` runs its repeats as one population step: every weight crossbar on the
    torch engine (a ledger's meter looked through), a deterministic rule that runs on populations."""
    chip = network.chip
    torch_engine = all(isinstance(unwrap(chip.crossbars[name]), TorchCrossbar) for name in chip.named("weight"))
    return torch_engine and rule.deterministic and population_refusal(network, rule) is None


def probe(network: Network, rule: LearningRule, state: Any, batch, loss: Loss, lr: float, repeats: int,
          population: bool | None = None) -> list[dict[str, float]]:
    """One row per (weight crossbar, part): relative bias, relative variance, cosine with g, and ||g||.

    ``population``: None runs the repeats as one population step when :func:`population_probe_ok`,
    else as a loop; True forces the population step (also on the ideal chip; refused where the
    rule cannot run on a population), False the loop."""
    if population is None:
        population = population_probe_ok(network, rule)
    if population and not rule.deterministic:
        raise ValueError(f"the population probe needs a deterministic rule, not {type(rule).__name__}")
    if population:
        refusal = population_refusal(network, rule)
        if refusal is not None:
            raise ValueError(f"the population probe cannot run: {refusal}")
    chip = network.chip
    dtype = probe_dtype(chip)
    with torch.no_grad():
        g = true_gradient(network, _cast(batch, torch.float64), loss)
        batch = _cast(batch, dtype)
        state = copy.deepcopy(state)
        before = {name: chip.crossbars[name].weights().double() for name in g}  # every clone starts here
        if population:
            samples = _population_samples(network, rule, state, batch, loss, lr, repeats, g, before, dtype)
        else:
            samples = _loop_samples(network, rule, state, batch, loss, lr, repeats, g, before, dtype)
    return [row for name in g for row in _summarise(name, g[name], samples[name])]


def _loop_samples(network, rule, state, batch, loss, lr, repeats, g, before, dtype
                  ) -> dict[str, dict[str, torch.Tensor]]:
    """K clone/step/restore cycles: (K, out, in) samples of rule*, rule and applied per crossbar."""
    chip = network.chip
    samples: dict[str, dict[str, list[torch.Tensor]]] = {name: {p: [] for p in ("rule*", "rule", "applied")}
                                                         for name in g}
    rule_ideal = trial = None
    for _ in range(repeats):  # the same draw of the rule on the shadow and on the chip
        if rule_ideal is None or not rule.deterministic:
            rule_ideal, _ = _estimates(network.on(chip.shadow(dtype)), rule, copy.deepcopy(state), batch, loss)
        if trial is None:
            trial = network.on(exact_copy(chip, dtype))
        else:  # every repeat starts from the chip's state (fresh device noise: the RNG runs on)
            trial.chip.restore(chip)
        trace = trial.unroll(batch[0])
        signals, state = rule.signals(trial, trace, batch, loss, state)
        trial.chip.apply(signals, lr)
        asked = summed(signals, lambda name: name in g)
        for name in g:  # a weight crossbar the rule leaves alone has the estimate 0
            zero = torch.zeros_like(g[name])
            samples[name]["rule*"].append(rule_ideal.get(name, zero))
            samples[name]["rule"].append(asked.get(name, zero))
            samples[name]["applied"].append(-(trial.chip.crossbars[name].weights().double() - before[name]) / lr)
    return {name: {k: torch.stack(v) for k, v in parts.items()} for name, parts in samples.items()}


def _population_samples(network, rule, state, batch, loss, lr, repeats, g, before, dtype
                        ) -> dict[str, dict[str, torch.Tensor]]:
    """The K repeats as one step of K exact copies of the chip (a deterministic rule: one ĝ_rule*)."""
    rule_ideal, _ = _estimates(network.on(network.chip.shadow(dtype)), rule, copy.deepcopy(state), batch, loss)
    trial = network.on(PopulationChip.expand(exact_copy(network.chip, dtype), repeats))
    x, y = batch
    y = per_member(y, repeats)
    trace = trial.unroll(x)
    signals, _ = rule.signals(trial, trace, (x, y), PopulationLoss.of(loss), state)
    trial.chip.apply(signals, lr)
    asked = estimates(signals, lambda name: name in g)
    samples = {}
    for name in g:
        zero = torch.zeros(repeats, *g[name].shape, dtype=torch.float64)
        samples[name] = {"rule*": rule_ideal.get(name, zero[0]).expand(repeats, *g[name].shape),
                         "rule": asked.get(name, zero),
                         "applied": -(trial.chip.crossbars[name].weights().double() - before[name]) / lr}
    return samples


def _summarise(layer: str, g: torch.Tensor, s: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    rule_ideal, rule_chip, applied = (s[k] for k in ("rule*", "rule", "applied"))
    errors = {"algorithmic": (rule_ideal - g, rule_ideal), "read": (rule_chip - rule_ideal, rule_chip),
              "write": (applied - rule_chip, applied), "physical": (applied - rule_ideal, applied),
              "total": (applied - g, applied)}
    g_norm = g.norm().item()
    rows = []
    for part in PARTS:
        e, estimate = errors[part]
        mean_e = e.mean(0)
        mean_estimate = estimate.mean(0)
        rows.append({
            "layer": layer, "part": part, "g_norm": g_norm,
            "rel_bias": (mean_e.norm() / g.norm()).item() if g_norm > 0 else float("nan"),
            "rel_var": ((e - mean_e).pow(2).sum() / len(e) / g.norm() ** 2).item() if g_norm > 0 else float("nan"),
            "cos": torch.nn.functional.cosine_similarity(mean_estimate.flatten(), g.flatten(), dim=0).item(),
        })
    return rows


def diagnostics_summary(rows: list[dict]) -> dict[str, float]:
    """Mean over probes and layers of each part's relative bias and variance, and the total's cosine."""
    out = {}
    for part in PARTS:
        mine = [r for r in rows if r["part"] == part]
        out[f"{part}_rel_bias"] = sum(r["rel_bias"] for r in mine) / len(mine)
        out[f"{part}_rel_var"] = sum(r["rel_var"] for r in mine) / len(mine)
    total = [r["cos"] for r in rows if r["part"] == "total"]
    out["total_cos"] = sum(total) / len(total)
    return out
