"""Digits accuracy floors of the demo (the main job), mean of its 3 seeds, with the learning rates
chosen on the validation split by experiments/tune_lr.py."""

import dataclasses
import statistics
import pytest

from chiploop.experiments.sweeps.suite import SuiteSpec, demo_path, run_suite
from chiploop.specs import from_mapping, load_yaml

SUITE = demo_path()
CHECKED = ["ideal", "constant-step", "reram-sb", "reram-sb-tt", "reram-sb-cttv2", "reram-sb-agad"]


@pytest.fixture(scope="module")
def accuracy(tmp_path_factory) -> dict[str, float]:
    suite = from_mapping(SuiteSpec, load_yaml(SUITE), source=str(SUITE))
    suite = dataclasses.replace(suite, runs=tuple(r for r in suite.runs if r["name"] in CHECKED))
    assert suite.seeds == 3 and len(suite.runs) == len(CHECKED)
    groups = run_suite(suite, tmp_path_factory.mktemp("suite"), SUITE, progress=False)
    return {name: statistics.mean(r.final["test_acc"] for r in results) for name, results in groups.items()}


def test_ideal_backprop_reaches_095(accuracy):
    assert accuracy["ideal"] >= 0.95, accuracy


def test_analog_backprop_on_constant_step_reaches_093(accuracy):
    assert accuracy["constant-step"] >= 0.93, accuracy


@pytest.mark.parametrize("algorithm", ["reram-sb-tt", "reram-sb-cttv2", "reram-sb-agad"])
def test_tiki_taka_family_beats_plain_sgd_on_reram_sb(accuracy, algorithm):
    assert accuracy[algorithm] > accuracy["reram-sb"] + 0.1, accuracy
