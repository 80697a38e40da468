"""Learning rules (gradient estimators on crossbars) and the registry that names them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chiploop.learning.backprop import Backprop
from chiploop.learning.bptt import BPTT
from chiploop.learning.decorrelation import Decorrelate, DecorrelationSpec, decorrelate
from chiploop.learning.direct_feedback_alignment import DirectFeedbackAlignment
from chiploop.learning.eprop import RFLO, EProp
from chiploop.learning.feedback_alignment import FeedbackAlignment
from chiploop.learning.injected import Inject, InjectedSpec, inject
from chiploop.learning.loss import Loss
from chiploop.learning.node_perturbation import NodePerturbation
from chiploop.learning.rule import Chain, LearningRule, Transform, chain
from chiploop.learning.sign_symmetry import SignSymmetry
from chiploop.learning.sym_stdp import SymSTDP
from chiploop.learning.weight_perturbation import SPSA, WeightPerturbation
from chiploop.specs import SpecError, from_mapping

# name -> rule class; a rule's options are its dataclass fields
RULES: dict[str, type[LearningRule]] = {
    "backprop": Backprop,
    "feedback_alignment": FeedbackAlignment,
    "direct_feedback_alignment": DirectFeedbackAlignment,
    "sign_symmetry": SignSymmetry,
    "weight_perturbation": WeightPerturbation,
    "spsa": SPSA,
    "node_perturbation": NodePerturbation,
    "bptt": BPTT,
    "eprop": EProp,
    "rflo": RFLO,
    "sym_stdp": SymSTDP,
}


def make_rule(name: str, options: Mapping[str, Any] | None = None, field: str = "rule") -> LearningRule:
    """Build a registered rule from its name and options (validated like every spec); errors name
    ``{field}.name`` or ``{field}.options.KEY`` (``name``, ``options.KEY`` when ``field`` is empty)."""
    where = f"{field}." if field else ""
    if name not in RULES:
        raise SpecError(f"{where}name", name, "one of " + ", ".join(sorted(RULES)))
    return from_mapping(RULES[name], options or {}, prefix=f"{where}options.")


def register(name: str, rule_class: type[LearningRule]) -> type[LearningRule]:
    """Make ``rule: NAME`` in a spec build ``rule_class`` (its options are its dataclass fields)."""
    if name in RULES and RULES[name] is not rule_class:
        raise ValueError(f"a rule named {name!r} is already registered ({RULES[name].__name__})")
    RULES[name] = rule_class
    return rule_class


__all__ = ["BPTT", "Backprop", "Chain", "EProp", "Decorrelate", "DecorrelationSpec", "DirectFeedbackAlignment", "FeedbackAlignment",
           "Inject", "InjectedSpec", "LearningRule", "Loss", "NodePerturbation", "RFLO", "RULES", "SPSA", "SignSymmetry", "SymSTDP",
           "Transform", "WeightPerturbation", "chain", "decorrelate", "inject", "make_rule", "register"]
