"""Loihi 2 (Lava) learning-rule expressions: write a rule as Lava's sum-of-products ``dw`` string, and
read one back with a small safe evaluator (a parser of the grammar, never ``eval``).

Lava (``lava.magma.core.learning``, ``Loihi2FLearningRule``) states a plasticity rule as a sum of
products over spike conditions ``x0`` (presynaptic), ``y0`` (postsynaptic) and traces ``x1``, ``x2``,
``y1``, ``y2``, ``y3``, e.g. ``dw = "2^-4 * x0 * y1 + 2^-4 * y0 * x1"``, with each trace's impulse (its jump
at a spike) and time constant (in time steps). The grammar read here::

    sum     := ['-'] product (('+' | '-') product)*
    product := factor ('*' factor)*
    factor  := number | number '^' ['-'] integer | symbol          (symbol: x0 y0 x1 x2 y1 y2 y3)

:func:`simulate_dw` runs such a rule on given spike trains, one step at a time: every trace decays by
``exp(-1/tau)`` and jumps by its impulse at its side's spikes (this step's included), then the products
are summed into ``dw``. This convention is the one :func:`chiploop.learning.sym_stdp.stdp_rows` uses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from chiploop.specs import SpecError

SYMBOLS = ("x0", "y0", "x1", "x2", "y1", "y2", "y3")
_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<sym>[a-z]\d)|(?P<op>[-+*^]))")


def parse_dw(text: str) -> list[tuple[float, tuple[str, ...]]]:
    """``dw`` as ``[(coefficient, (symbol, ...)), ...]``; anything outside the grammar is a SpecError."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError("loihi.dw", text, "a sum of products such as '2^-4 * x0 * y1 + 2^-4 * y0 * x1'")
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SpecError("loihi.dw", text, f"numbers, {', '.join(SYMBOLS)}, '+', '-', '*' and '^' "
                            f"(unexpected {text[pos:].strip()[:10]!r})")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    terms: list[tuple[float, tuple[str, ...]]] = []
    i, sign = 0, 1.0

    def bad(why: str) -> SpecError:
        return SpecError("loihi.dw", text, f"a sum of products of numbers and {', '.join(SYMBOLS)} ({why})")

    if tokens and tokens[0] == ("op", "-"):
        sign, i = -1.0, 1
    while True:
        coef, symbols = sign, []
        while True:
            if i >= len(tokens):
                raise bad("it ends after an operator")
            kind, value = tokens[i]
            if kind == "num":
                base, i = float(value), i + 1
                if i < len(tokens) and tokens[i] == ("op", "^"):
                    neg = i + 1 < len(tokens) and tokens[i + 1] == ("op", "-")
                    j = i + 1 + neg
                    if j >= len(tokens) or tokens[j][0] != "num" or not tokens[j][1].isdigit():
                        raise bad("'^' takes an integer exponent")
                    base, i = base ** (-int(tokens[j][1]) if neg else int(tokens[j][1])), j + 1
                coef *= base
            elif kind == "sym":
                if value not in SYMBOLS:
                    raise bad(f"unknown symbol {value!r}")
                symbols.append(value)
                i += 1
            else:
                raise bad(f"{value!r} where a number or a symbol belongs")
            if i < len(tokens) and tokens[i] == ("op", "*"):
                i += 1
                continue
            break
        terms.append((coef, tuple(symbols)))
        if i == len(tokens):
            return terms
        kind, value = tokens[i]
        if value not in "+-" or kind != "op":
            raise bad(f"{value!r} between products")
        sign, i = (1.0 if value == "+" else -1.0), i + 1


def simulate_dw(rule: Mapping, pre: list[int], post: list[int], steps: int) -> float:
    """The total ``dw`` of one synapse under ``rule`` (``dw``, ``x1_impulse``, ``x1_tau``, ``y1_impulse``,
    ``y1_tau``, ... as in Lava; tau in steps) for presynaptic spikes at the steps ``pre`` and postsynaptic
    ones at ``post``, over ``steps`` steps (see the module docstring for the order within a step)."""
    terms = parse_dw(rule["dw"])
    traces = {s: 0.0 for s in SYMBOLS if s[1] != "0"}
    pre_set, post_set, total = set(pre), set(post), 0.0
    for t in range(steps):
        spikes = {"x0": float(t in pre_set), "y0": float(t in post_set)}
        for s in traces:
            tau = rule.get(f"{s}_tau")
            decay = math.exp(-1.0 / tau) if tau else 0.0
            traces[s] = decay * traces[s] + rule.get(f"{s}_impulse", 0.0) * spikes[f"{s[0]}0"]
        values = {**spikes, **traces}
        total += sum(c * math.prod(values[s] for s in syms) for c, syms in terms)
    return total
