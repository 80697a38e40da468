"""The contract every registered rule passes, run over RULE_DB (tests/rule_db.py): one training step
on an ideal and on an analog chip, with and without decorrelation, on every network it trains; bad
options; the table's properties (determinism, which crossbar verbs it uses, feedback crossbars);
and the update probe on the ideal chip."""

import copy
from collections import Counter

import pytest
import torch
from conftest import attach
from rule_db import NETWORK_DB, RULE_DB, bad_rule_options, rule_cases, rules

from chiploop.emulator import Chip, Network
from chiploop.emulator.networks import NETWORKS
from chiploop.emulator.ledger import unwrap
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run
from chiploop.learning import RULES, chain, decorrelate, make_rule
from chiploop.learning.diagnostics import probe
from chiploop.specs import SpecError

DECORRELATION = ("plain", "decorrelated")


def with_decorrelation(rule, decorrelation: str):
    return chain(rule, decorrelate(eta=0.01) if decorrelation == "decorrelated" else None)


def test_every_registered_rule_and_network_has_an_entry():
    names = [info.name for info in RULE_DB]
    assert len(names) == len(set(names))
    assert set(names) == set(RULES), set(RULES) ^ set(names)
    shipped = {kind for kind, spec in NETWORKS.items() if spec.__module__.startswith("chiploop.")}
    exercised = {info.kind for info in NETWORK_DB.values()}
    assert shipped == exercised, shipped ^ exercised  # networks registered by tests are theirs
    for info in RULE_DB:
        assert info.networks, f"{info.name} trains none of {sorted(NETWORK_DB)}"
        assert info.bad_options, f"{info.name}: give at least one option set it must refuse"


# ------------------------------------------------------------------ contract: one step on every chip


@pytest.mark.parametrize("case, device, decorrelation", rule_cases(("ideal", "constant-step"), DECORRELATION))
def test_every_rule_trains_on_every_chip(case, device, decorrelation):
    data = {**NETWORK_DB[case.network].spec, "device": device, "seed": 3,
            "rule": {"name": case.name, "options": case.options}}
    if decorrelation == "decorrelated":
        data["decorrelation"] = {"eta": 0.01}
    run = Run.build(experiment_from_data(data))
    chip, weights = run.network.chip, list(run.network.weight_names)
    assert run.network.kind == NETWORK_DB[case.network].kind
    assert isinstance(run.rule, case.rule_class) == (decorrelation == "plain")  # decorrelation chains a transform
    assert {type(unwrap(chip.crossbars[w])).__name__ for w in weights} == {  # the engine under the ledger
        "IdealCrossbar" if device == "ideal" else "AnalogCrossbar"}
    assert chip.named("weight") == weights
    assert chip.named("decorrelator") == ([f"decorr/{w}" for w in weights] if decorrelation == "decorrelated" else [])
    assert bool(chip.named("feedback")) == case.feedback_crossbars
    before, biases = chip.weights(), {k: b.clone() for k, b in chip.biases.items()}
    assert biases
    with torch.no_grad():
        run.step(run.task.x_train[:32], run.task.y_train[:32], 0.5)
    after = chip.weights()
    assert set(after) == set(before)
    for name in after:  # weights and decorrelators learn; feedback crossbars are only read
        assert torch.isfinite(after[name]).all(), name
        assert torch.equal(before[name], after[name]) == (chip.roles[name] == "feedback"), name
    for name, b in chip.biases.items():
        assert torch.isfinite(b).all() and not torch.equal(biases[name], b), name


# ------------------------------------------------------------------ options it must refuse


@pytest.mark.parametrize("info, options, field", bad_rule_options())
def test_bad_rule_options_raise_one_clear_error(info, options, field):
    with pytest.raises(SpecError) as err:
        make_rule(info.name, options)
    assert err.value.field == f"rule.options.{field}"
    assert f"'rule.options.{field}'" in str(err.value)
    with pytest.raises(SpecError) as err:
        experiment_from_data({"rule": {"name": info.name, "options": options}}, source="exp.yaml")
    assert err.value.field == f"rule.options.{field}" and "exp.yaml" in str(err.value)


# ------------------------------------------------------------------ properties of the table


class Counting:
    """A crossbar that counts the calls of each of its verbs and forwards everything."""

    def __init__(self, inner):
        self.inner, self.calls = inner, Counter()

    def __getattr__(self, attr):
        value = getattr(self.inner, attr)
        if not callable(value):
            return value

        def counted(*args, **kwargs):
            self.calls[attr] += 1
            return value(*args, **kwargs)
        return counted


def same_signals(a, b) -> bool:
    return [s.name for s in a] == [s.name for s in b] and all(
        torch.equal(s.x, t.x) and torch.equal(s.d, t.d) for s, t in zip(a, b))


@pytest.mark.parametrize("info", rules())
def test_the_table_agrees_with_the_rule_class(info):
    assert info.rule_class.deterministic is info.deterministic


@pytest.mark.parametrize("case, decorrelation", rule_cases(DECORRELATION))
def test_properties_hold(case, decorrelation):
    net, batch, loss, gen = NETWORK_DB[case.network].problem()
    rule = with_decorrelation(case.make(), decorrelation)
    assert rule.deterministic is case.deterministic  # decorrelation draws nothing

    crossbars = dict(net.chip.crossbars)
    requests = rule.crossbars(net, gen)
    assert net.chip.crossbars == crossbars  # asking for crossbars does not touch the chip
    net.chip.install(requests)
    state = rule.init(net, gen)
    feedback = net.chip.named("feedback")
    assert bool(feedback) == case.feedback_crossbars, feedback
    assert all(name.removeprefix("feedback/") in net.weight_names for name in feedback)

    counted = {name: Counting(net.chip.crossbars[name]) for name in net.weight_names}
    net.chip.crossbars.update(counted)
    with torch.no_grad():
        trace = net.unroll(batch[0])
        for xb in counted.values():
            xb.calls.clear()
        first, _ = rule.signals(net, trace, batch, loss, copy.deepcopy(state))
        again, state = rule.signals(net, trace, batch, loss, state)
        calls = sum((xb.calls for xb in counted.values()), Counter())
        following, _ = rule.signals(net, trace, batch, loss, state)
    assert same_signals(first, again)  # the same state: the same signals, whatever the rule
    assert same_signals(again, following) == case.deterministic  # the next call draws afresh unless deterministic
    # a rule reads the weights only through the chip's verbs, and never writes them
    assert set(calls) <= {"forward", "backward", "read_weights"}, calls
    assert (calls["backward"] > 0) == case.transposed_reads, calls
    assert (calls["read_weights"] > 0) == case.reads_weights, calls


class _Other(Network):
    """A network of a kind no rule names."""

    kind = "other"
    chip = Chip()
    weight_names = ()

    def unroll(self, x, perturb=None):
        raise NotImplementedError

    def backward(self, trace, delta, read):
        raise NotImplementedError

    def f_prime(self, name, a):
        raise NotImplementedError


@pytest.mark.parametrize("info", rules())
def test_rules_refuse_networks_they_cannot_train(info):
    rule = make_rule(info.name)
    for kind in NETWORK_DB:
        net = NETWORK_DB[kind].problem().net
        if kind in info.networks:
            rule.check_network(net)
            continue
        with pytest.raises(SpecError) as err:
            rule.check_network(net, "rule.name", info.name)
        assert err.value.field == "rule.name" and NETWORK_DB[kind].kind in str(err.value)
    if rule.networks is None:  # it reaches the graph only through unroll, backward and the trace
        rule.check_network(_Other())
    else:
        with pytest.raises(SpecError):
            rule.check_network(_Other())


# ------------------------------------------------------------------ the update probe on the ideal chip


def _rows(rows, part):
    return [r for r in rows if r["part"] == part]


@pytest.mark.parametrize("case, decorrelation", rule_cases(DECORRELATION))
def test_probe_on_the_ideal_chip_finds_no_device_error(case, decorrelation):
    net, batch, loss, gen = NETWORK_DB[case.network].problem()
    rule = with_decorrelation(case.make(), decorrelation)
    rows = probe(net, rule, attach(rule, net, gen), batch, loss, 0.1, repeats=3)
    assert {r["layer"] for r in rows} == set(net.weight_names)
    for part in ("read", "write", "physical"):
        for r in _rows(rows, part):
            assert r["rel_bias"] <= 1e-8 and r["rel_var"] <= 1e-8, r


STATISTICAL_REPEATS = 64
STATISTICAL_RATIO = 4.0


@pytest.mark.parametrize("case", rule_cases())
def test_unbiased_rules_approach_the_true_gradient(case):
    """The algorithmic part of the probe on the ideal chip.

    Deterministic: an unbiased rule's error is 0 (≤ 1e-8) in every layer; a biased one is off by
    more than 5 % in some layer (measured, max over layers, seeds 0-5: FA 1.0-2.0, DFA 1.3-1.6,
    sign symmetry 0.33-1.1 (unit, refresh 3: 4.6-23), e-prop 0.26-0.49 (random: 1.2-2.5),
    BPTT truncated at 2: 0.18-0.74).

    Stochastic, K = 64 draws: for an unbiased estimator ``E[rel_bias²] = rel_var_true / K`` and the
    probe's ``rel_var`` (a mean over K) estimates ``(K-1)/K rel_var_true``, so ``r = rel_bias² (K-1)
    / rel_var`` is about 1; a bias ``b`` adds ``b² (K-1) / rel_var``. Measured per layer: np, weight
    perturbation and SPSA (rank-1 and dense) 0.63-1.64 on the MLP (6 seeds, K = 64 and 256), 0.87-2.21
    on the RNN (20 seeds, K = 64); anp (a scaled gradient, biased) max over layers 58-138. Asserted:
    r ≤ 4 in every layer if unbiased, r > 4 in some layer if not.
    """
    net, batch, loss, gen = NETWORK_DB[case.network].problem()
    rule = case.make()
    repeats = 2 if case.deterministic else STATISTICAL_REPEATS
    algorithmic = _rows(probe(net, rule, attach(rule, net, gen), batch, loss, 0.1, repeats=repeats), "algorithmic")
    assert [r["layer"] for r in algorithmic] == list(net.weight_names)
    if case.deterministic:
        assert all(r["rel_var"] <= 1e-8 for r in algorithmic), algorithmic
        if case.unbiased:
            assert all(r["rel_bias"] <= 1e-8 for r in algorithmic), algorithmic
        else:
            assert max(r["rel_bias"] for r in algorithmic) > 0.05, algorithmic
        return
    ratios = [r["rel_bias"] ** 2 * (repeats - 1) / r["rel_var"] for r in algorithmic]
    if case.unbiased:
        assert max(ratios) <= STATISTICAL_RATIO, ratios
    else:
        assert max(ratios) > STATISTICAL_RATIO, ratios

