"""Accuracy floors of the recurrent network on seq_digits (hidden 64, rate leak), mean of seeds 0-2,
with the learning rates experiments/tune_lr.py chose on the validation split
(experiments/rnn_rules.yaml): ideal chip BPTT >= 0.88, e-prop (symmetric) >= 0.80, RFLO >= 0.70;
constant-step BPTT >= 0.85."""

import dataclasses
import statistics
from pathlib import Path

import pytest

from chiploop.experiments.sweeps.suite import SuiteSpec, run_suite
from chiploop.specs import from_mapping, load_yaml

SUITE = Path(__file__).resolve().parents[1] / "experiments" / "rnn_rules.yaml"
FLOORS = {"bptt@ideal": 0.88, "eprop@ideal": 0.80, "rflo@ideal": 0.70, "bptt@constant-step": 0.85}


@pytest.fixture(scope="module")
def accuracy(tmp_path_factory) -> dict[str, float]:
    suite = from_mapping(SuiteSpec, load_yaml(SUITE), source=str(SUITE))
    base = {**suite.base, "curvature": "off"}  # the floors need no curvature
    suite = dataclasses.replace(suite, base=base, seeds=3, runs=tuple(r for r in suite.runs if r["name"] in FLOORS))
    assert {r["name"] for r in suite.runs} == set(FLOORS)
    groups = run_suite(suite, tmp_path_factory.mktemp("rnn"), str(SUITE), progress=False)
    return {name: statistics.mean(r.final["test_acc"] for r in results) for name, results in groups.items()}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_rnn_floor(accuracy, name):
    assert accuracy[name] >= FLOORS[name], accuracy
