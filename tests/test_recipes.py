"""The two recipes of docs/architecture.md, run exactly as written there: a new rule and a new
network, registered in a few lines, train from a spec."""

import re
from pathlib import Path

import pytest

from chiploop.emulator.networks import NETWORKS
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train
from chiploop.learning import RULES

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def recipe(name: str) -> str:
    """The python block of the doc that starts with ``# recipe: NAME``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    found = [b for b in blocks if b.startswith(f"# recipe: {name}\n")]
    assert len(found) == 1, f"docs/architecture.md must have one '# recipe: {name}' block"
    return found[0]


@pytest.fixture
def registered():
    """Run a recipe's code (our own doc, not user input) and undo its registration afterwards."""
    rules, networks = dict(RULES), dict(NETWORKS)
    yield lambda name: exec(compile(recipe(name), f"{DOC}:{name}", "exec"), {"__name__": f"recipe_{name}"})
    RULES.clear(), RULES.update(rules)
    NETWORKS.clear(), NETWORKS.update(networks)


def test_the_rule_recipe_registers_a_rule_that_trains_only_the_readout(registered, tmp_path):
    registered("rule")
    assert "readout_only" in RULES
    spec = experiment_from_data({"rule": "readout_only", "epochs": 3, "lr": 0.5, "diagnostics": {"every": 30,
                                                                                               "repeats": 2}})
    result = train(spec, tmp_path, progress=False)
    assert result.status == "ok" and result.final["test_acc"] > 0.6  # random ReLU features, trained readout
    assert result.final["total_cos"] < 0.99  # the hidden layer's true gradient is ignored: the probe sees it


def test_the_network_recipe_registers_a_network_every_generic_rule_trains(registered, tmp_path):
    registered("network")
    for rule, floor in (("backprop", 0.8), ("feedback_alignment", 0.8), ("spsa", 0.0)):
        spec = experiment_from_data({"model": {"kind": "linear"}, "rule": rule, "epochs": 3, "lr": 0.5,
                                     "curvature": "end"})
        result = train(spec, tmp_path / rule, progress=False)
        assert result.status == "ok" and result.final["test_acc"] > floor, (rule, result.final["test_acc"])
