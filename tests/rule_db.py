"""RULE_DB: every registered learning rule, the options to exercise it with, the options it must
refuse, and the properties the shared tests hold it to (in the style of torch.optim's ``optim_db``).

A new rule joins by adding one :class:`RuleInfo` here; ``tests/test_rule_contract.py`` fails for any
name in ``chiploop.learning.RULES`` without an entry, then runs every entry, with every option set,
on every network of NETWORK_DB that the rule says it trains (``rule.networks``; ``None`` is all of
them) through the contract (a training step on the ideal and an analog chip, plain and
decorrelated), the bad options, the property checks and the update probe.

Properties (of the rule with its default options; a :class:`Variant` states where an option set
changes one):

``deterministic``
    The rule draws nothing of its own: run twice from one state on one chip state it hands over
    identical signals, and so does its next call; a stochastic rule's next call differs. Must
    equal the class's own ``deterministic`` ClassVar (the update probe relies on it).
``unbiased``
    The mean of its estimate approaches the true gradient (autograd on the shadow) on the ideal
    chip: exactly for a deterministic rule (backprop, full BPTT), statistically for a stochastic
    one (node perturbation ``np``, weight perturbation, SPSA). Feedback alignment, DFA, sign
    symmetry, e-prop (``h_{t-1}`` detached), truncated BPTT and ``anp`` are biased.
``transposed_reads``
    The rule calls ``Crossbar.backward`` on a *weight* crossbar (``Wᵀδ`` read on the chip):
    backprop, BPTT, symmetric e-prop (``W_outᵀ``). Decided here: sign symmetry does not — it reads
    ``W`` with ``read_weights`` (forward reads of the weights: ``reads_weights``) and multiplies by
    ``sign(Ŵ)`` digitally; FA, DFA and random-feedback e-prop read ``Bᵀδ`` on their own feedback
    crossbars, never on a weight crossbar.
``reads_weights``
    The rule calls ``Crossbar.read_weights`` on a weight crossbar (sign symmetry).
``feedback_crossbars``
    The rule requests role-``feedback`` crossbars (FA: one per weight crossbar; DFA: one per
    hidden one; e-prop with random feedback: one for ``W_out``), which a step never writes.
    Other rules request none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import Problem, ideal_problem, ideal_rnn_problem, ideal_snn_problem

from chiploop.learning import RULES, LearningRule, make_rule

PROPERTIES = ("deterministic", "unbiased", "transposed_reads", "reads_weights", "feedback_crossbars")


# ------------------------------------------------------------------ networks the rules are exercised on


@dataclass(frozen=True)
class NetworkInfo:
    """A network kind: the spec fields (task and model) of a small run of it, and a small problem on
    the ideal chip for the property and probe tests."""

    kind: str
    spec: Mapping[str, Any]
    problem: Callable[[], Problem]


NETWORK_DB: dict[str, NetworkInfo] = {
    "mlp": NetworkInfo("mlp", {"task": "digits", "model": {"sizes": [64, 16, 12, 10]}},
                       lambda: ideal_problem((10, 12, 4))),
    "rnn": NetworkInfo("rnn", {"task": "seq_digits", "model": {"kind": "rnn", "n_in": 8, "hidden": 16, "n_out": 10}},
                       lambda: ideal_rnn_problem()),
    "rnn_rate": NetworkInfo("rnn", {"task": "seq_digits", "model": {"kind": "rnn", "n_in": 8, "hidden": 16, "n_out": 10,
                                                                   "leak": "rate"}},
                            lambda: ideal_rnn_problem(leak="rate")),
    "snn": NetworkInfo("snn", {"task": {"name": "spike_digits", "presentation": 20.0},
                               "model": {"kind": "snn", "hidden": 16, "r_m": 400.0, "inhibition": 0.02}},
                       lambda: ideal_snn_problem()),
}

# (rule, network kind) -> why it fails today; such cases run as strict xfails, so the fix shows up
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


# ------------------------------------------------------------------ the rules


@dataclass(frozen=True)
class Variant:
    """An option set to exercise, and the properties in which it differs from the rule's defaults."""

    options: Mapping[str, Any]
    changes: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleInfo:
    """One registered rule in the table (see the module docstring for the properties)."""

    name: str                                         # its key in chiploop.learning.RULES
    deterministic: bool
    unbiased: bool
    transposed_reads: bool
    reads_weights: bool
    feedback_crossbars: bool
    variants: tuple[Variant | Mapping[str, Any], ...] = ()          # besides the defaults
    bad_options: tuple[tuple[Mapping[str, Any], str], ...] = ()   # (options, the field it must name)
    trains: tuple[str, ...] | None = None  # NETWORK_DB entries, where the rule refuses some of a kind it trains

    @property
    def rule_class(self) -> type[LearningRule]:
        return RULES[self.name]

    @property
    def networks(self) -> tuple[str, ...]:
        """The entries of NETWORK_DB it is exercised on: every one it says it trains."""
        if self.trains is not None:
            return self.trains
        allowed, excluded = self.rule_class.networks, self.rule_class.excludes
        return tuple(key for key, info in NETWORK_DB.items()
                     if (allowed is None or info.kind in allowed) and info.kind not in excluded)

    def cases(self) -> list[RuleCase]:
        """The defaults, then every variant, on every network it trains."""
        out = []
        for variant in (Variant({}), *self.variants):
            variant = variant if isinstance(variant, Variant) else Variant(variant)
            for kind in self.networks:
                props = {p: variant.changes.get(p, getattr(self, p)) for p in PROPERTIES}
                out.append(RuleCase(self.name, dict(variant.options), kind, **props))
        return out


@dataclass(frozen=True)
class RuleCase:
    """One rule with one option set on one network kind, with the properties it must have."""

    name: str
    options: dict
    network: str
    deterministic: bool
    unbiased: bool
    transposed_reads: bool
    reads_weights: bool
    feedback_crossbars: bool

    def make(self) -> LearningRule:
        """The rule, built as a spec builds it."""
        return make_rule(self.name, self.options)

    @property
    def rule_class(self) -> type[LearningRule]:
        return RULES[self.name]

    @property
    def id(self) -> str:
        options = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}[{options}]-{self.network}" if options else f"{self.name}-{self.network}"

    def param(self, *extra: Any):
        """``pytest.param(self, *extra)``, a strict xfail where it is a known failure."""
        reason = KNOWN_FAILURES.get((self.name, self.network))
        marks = [pytest.mark.xfail(strict=True, raises=RuntimeError, reason=reason)] if reason else []
        return pytest.param(self, *extra, id="-".join([self.id, *map(str, extra)]), marks=marks)


RULE_DB: tuple[RuleInfo, ...] = (
    RuleInfo(
        "backprop", deterministic=True, unbiased=True, transposed_reads=True, reads_weights=False,
        feedback_crossbars=False,
        bad_options=(({"lr": 0.1}, "lr"),)),
    RuleInfo(
        "feedback_alignment", deterministic=True, unbiased=False, transposed_reads=False, reads_weights=False,
        feedback_crossbars=True,
        variants=({"feedback": "analog"},),
        bad_options=(({"feedback": "optical"}, "feedback"), ({"feedbak": "digital"}, "feedbak"))),
    RuleInfo(
        "direct_feedback_alignment", deterministic=True, unbiased=False, transposed_reads=False,
        reads_weights=False, feedback_crossbars=True,
        variants=({"feedback": "analog"},),
        bad_options=(({"feedback": 1}, "feedback"),)),
    RuleInfo(
        "sign_symmetry", deterministic=True, unbiased=False, transposed_reads=False, reads_weights=True,
        feedback_crossbars=False,
        variants=({"magnitude": "unit", "refresh_every": 3},),
        bad_options=(({"refresh_every": 0}, "refresh_every"), ({"magnitude": "max"}, "magnitude"))),
    RuleInfo(
        "weight_perturbation", deterministic=False, unbiased=True, transposed_reads=False, reads_weights=False,
        feedback_crossbars=False,
        variants=({"directions": "dense", "samples": 4, "shared_seed": False},),
        bad_options=(({"epsilon": 0}, "epsilon"), ({"directions": "low_rank"}, "directions"),
                     ({"samples": 0}, "samples"), ({"distribution": "uniform"}, "distribution"),
                     ({"shared_seed": "yes"}, "shared_seed"))),
    RuleInfo(
        "spsa", deterministic=False, unbiased=True, transposed_reads=False, reads_weights=False,
        feedback_crossbars=False,
        variants=({"directions": "dense", "samples": 2},),
        bad_options=(({"sigma": 0.1}, "sigma"), ({"samples": 5000}, "samples"), ({"epsilon": -1}, "epsilon"))),
    RuleInfo(
        "node_perturbation", deterministic=False, unbiased=True, transposed_reads=False, reads_weights=False,
        feedback_crossbars=False,
        variants=(Variant({"variant": "anp", "sigma": 1e-2}, {"unbiased": False}),),  # a scaled gradient
        bad_options=(({"sigma": 0}, "sigma"), ({"sigma": -1e-3}, "sigma"), ({"sigma": "big"}, "sigma"),
                     ({"variant": "xp"}, "variant"), ({"sigmaa": 1e-3}, "sigmaa"))),
    RuleInfo(
        "bptt", deterministic=True, unbiased=True, transposed_reads=True, reads_weights=False,
        feedback_crossbars=False,
        variants=(Variant({"truncate": 2}, {"unbiased": False}),),
        bad_options=(({"truncate": 0}, "truncate"), ({"horizon": 3}, "horizon"))),
    RuleInfo(
        "eprop", deterministic=True, unbiased=False, transposed_reads=True, reads_weights=False,
        feedback_crossbars=False,
        variants=(Variant({"feedback": "random"}, {"transposed_reads": False, "feedback_crossbars": True}),
                  Variant({"feedback": "random", "on_chip": True},
                          {"transposed_reads": False, "feedback_crossbars": True})),
        bad_options=(({"feedback": "sign"}, "feedback"), ({"on_chip": "yes"}, "on_chip"))),
    RuleInfo(
        "rflo", deterministic=True, unbiased=False, transposed_reads=False, reads_weights=False,
        feedback_crossbars=True, trains=("rnn_rate",),  # Murray's rate leak; refuses the preactivation leak
        variants=({"on_chip": True},),
        bad_options=(({"on_chip": "yes"}, "on_chip"), ({"feedback": "random"}, "feedback"))),
    RuleInfo(  # synaptic scaling reads the weights in before(), not in signals()
        "sym_stdp", deterministic=False, unbiased=False, transposed_reads=False, reads_weights=False,
        feedback_crossbars=False,
        variants=({"target_in": None, "target_out": None, "a_post": 0.5, "tau": 5.0}, {"anneal": 1.0}),
        bad_options=(({"tau": 0}, "tau"), ({"teacher_rate": 2000.0}, "teacher_rate"),
                     ({"target_in": -1.0}, "target_in"), ({"window": "asymmetric"}, "window"),
                     ({"anneal": 0.0}, "anneal"))),
)

BY_NAME: dict[str, RuleInfo] = {info.name: info for info in RULE_DB}


def rules() -> list:
    """``pytest.param(info)`` of every entry, named by the rule."""
    return [pytest.param(info, id=info.name) for info in RULE_DB]


def rule_cases(*extra: tuple, predicate: Callable[[RuleCase], bool] | None = None) -> list:
    """``pytest.param(case, *e)`` for every case of every entry (for which ``predicate(case)``) and every
    ``e`` in ``extra`` (a product; none: just the case)."""
    combos = [()]
    for values in extra:
        combos = [(*c, v) for c in combos for v in values]
    return [case.param(*combo) for info in RULE_DB for case in info.cases()
            if predicate is None or predicate(case) for combo in combos]


def bad_rule_options() -> list:
    """``pytest.param(info, options, field)`` of every option set an entry must refuse."""
    return [pytest.param(info, options, name, id=f"{info.name}-{name}-{i}")
            for info in RULE_DB for i, (options, name) in enumerate(info.bad_options)]


__all__ = ["BY_NAME", "KNOWN_FAILURES", "NETWORK_DB", "PROPERTIES", "RULE_DB", "NetworkInfo", "RuleCase", "RuleInfo",
           "Variant", "bad_rule_options", "rule_cases", "rules"]
