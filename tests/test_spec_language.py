"""The spec language's shorthands and long forms mean the same thing: one resolved spec, one run id."""

import pytest

from chiploop.experiments.spec import experiment_from_data, load_experiment
from chiploop.specs import SpecError

SAME = [
    ({"task": "digits"}, {"task": {"name": "digits"}}),
    ({"device": "reram-sb"}, {"device": {"preset": "reram-sb"}}),
    ({"rule": "backprop"}, {"rule": {"name": "backprop"}}),
    ({"rule": {"name": "feedback_alignment", "feedback": "analog"}},
     {"rule": {"name": "feedback_alignment", "options": {"feedback": "analog"}}}),
    ({"model": {"sizes": [64, 32, 10]}}, {"model": {"kind": "mlp", "sizes": [64, 32, 10], "activation": "relu"}}),
    ({"curvature": "end"}, {"curvature": {"when": "end"}}),
    ({"task": "seq_digits", "model": {"kind": "rnn", "n_in": 8}}, {"task": {"name": "seq_digits"},
                                                                  "model": {"kind": "rnn", "n_in": 8, "n_out": 10}}),
]


@pytest.mark.parametrize("short, long", SAME, ids=[str(s) for s, _ in SAME])
def test_shorthand_and_long_form_resolve_to_the_same_spec(short, long):
    a, b = experiment_from_data(short), experiment_from_data(long)
    assert a == b and a.spec_hash() == b.spec_hash()


def test_set_overrides_reach_into_a_shorthand_and_name_themselves_in_errors(spec_file):
    path = spec_file("task: digits\ndevice: reram-sb\nrule: feedback_alignment\n")
    spec = load_experiment(path, ["device.dw_min=0.002", "rule.feedback=analog", "task.seed=3"])
    assert spec.device.preset == "reram-sb" and spec.device.dw_min == 0.002
    assert spec.rule.options == {"feedback": "analog"} and spec.task.seed == 3
    with pytest.raises(SpecError) as info:
        load_experiment(path, ["lr=-1"])
    assert str(info.value).startswith("--set lr=-1: field 'lr'")


@pytest.mark.parametrize("text, field, shows", [
    ("task: 3", "task", "{name: digits"),
    ("rule: {name: feedback_alignment, feedback: analog, options: {}}", "rule.options", "not both"),
    ("rule: 7", "rule", "{name: feedback_alignment, feedback: analog}"),
    ("decorrelation: yes", "decorrelation", "a mapping with keys eta, kappa"),
    ("", "<file>", "at least one field"),
    ("epochs: 0", "epochs", "1 <= value"),
    ("lr: [0.1\nepochs: 3", "<file>", "line 2, column"),
])
def test_a_wrong_form_shows_the_form_that_works(spec_file, text, field, shows):
    with pytest.raises(SpecError) as info:
        load_experiment(spec_file(text))
    assert info.value.field == field and shows in str(info.value), str(info.value)


def test_a_run_id_depends_only_on_what_differs_from_the_defaults():
    """Run ids are pinned: a field added later with a default must not change them (sweep ledgers and
    run directories of earlier versions stay valid). Change these numbers only with a spec change that
    really changes what runs."""
    from dataclasses import replace

    from chiploop.specs import identity

    default = experiment_from_data({})
    assert identity(default) == {} and default.spec_hash() == "44136fa355b3"
    rnn = experiment_from_data({"task": "seq_digits", "model": {"kind": "rnn", "hidden": 16}, "rule": "bptt",
                                "device": "constant-step", "lr": 0.1})
    assert rnn.spec_hash() == "634c7cbdfa4b"
    assert identity(rnn)["model"] == {"class": "RNNSpec", "hidden": 16}
    # a nested spec is named by its class: an RNN with every default is not the default MLP
    assert identity(replace(rnn, model=type(rnn.model)()))["model"] == {"class": "RNNSpec"}
    # types matter where values compare equal (True == 1)
    assert identity(replace(default, seed=1)) == {"seed": 1}
