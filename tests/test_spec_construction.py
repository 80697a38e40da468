"""A spec built in Python is checked as one read from YAML: every field's type, Literal values and
declared range, then the class's cross-field checks; the error names the field."""

import dataclasses
import importlib
import pkgutil
import typing
from typing import Any, Literal

import pytest

import chiploop
from chiploop.devices.spec import DeviceSpec, DriftSpec
from chiploop.experiments.card import RuleCard
from chiploop.experiments.spec import ExperimentSpec, InferenceRunSpec, ModelSpec, RuleSpec, TaskSpec
from chiploop.experiments.sweeps.spec import SweepSpec
from chiploop.learning import DecorrelationSpec, InjectedSpec, WeightPerturbation
from chiploop.learning.diagnostics import DiagnosticsSpec
from chiploop.learning.node_perturbation import NodePerturbation
from chiploop.specs import Spec, SpecError

# (build, field the error must name, words of the allowed values it must state)
BAD = [
    (lambda: DeviceSpec(dw_min=-1.0), "dw_min", "0.0 < value <= 1.0"),
    (lambda: DeviceSpec(dac_bits=7.5), "dac_bits", "an integer"),
    (lambda: DeviceSpec(adc_bits=True), "adc_bits", "an integer"),
    (lambda: DeviceSpec(read_noise=float("nan")), "read_noise", "a finite number"),
    (lambda: DeviceSpec(algorithm="tikitaka"), "algorithm", "did you mean 'tiki_taka'"),
    (lambda: DeviceSpec(drift={"model": "pcm"}), "drift", "a DriftSpec"),
    (lambda: DriftSpec(nu=2.0), "nu", "value <= 1.0"),
    (lambda: ExperimentSpec(lr=0.0), "lr", "0.0 < value"),
    (lambda: ExperimentSpec(device="reram-sb"), "device", "a DeviceSpec"),
    (lambda: ExperimentSpec(decorrelation={}), "decorrelation", "a DecorrelationSpec"),
    (lambda: ExperimentSpec(model=ModelSpec(sizes=(64, 3))), "model.sizes", "ending with 10"),
    (lambda: DecorrelationSpec(kappa=2.0), "kappa", "0.0 <= value <= 1.0"),
    (lambda: DecorrelationSpec(on_chip=1), "on_chip", "true or false"),
    (lambda: ModelSpec(activation="relux"), "activation", "did you mean 'relu'"),
    (lambda: ModelSpec(sizes=(64, "10")), "sizes[1]", "an integer"),
    (lambda: ModelSpec(sizes=64), "sizes", "a list of int"),
    (lambda: TaskSpec(name="mnist"), "name", "'digits'"),
    (lambda: InjectedSpec(variance=-0.1), "variance", "0.0 <= value"),
    (lambda: DiagnosticsSpec(repeats=1), "repeats", "2 <= value"),
    (lambda: InferenceRunSpec(repeats=0), "repeats", "1 <= value"),
    (lambda: InferenceRunSpec(times=(1.0, -1.0)), "times", "each > 0"),
    (lambda: SweepSpec(samples=0), "samples", "1 <= value"),
    (lambda: SweepSpec(grid=[1]), "grid", "a mapping"),
    (lambda: RuleSpec(name="backprops"), "name", "backprop"),
    (lambda: RuleSpec(name="backprop", options={"gain": 2}), "options.gain", "known keys"),
    (lambda: WeightPerturbation(epsilon=0.0), "epsilon", "0.0 < value"),
    (lambda: NodePerturbation(variant="xnp"), "variant", "'np'"),
]


@pytest.mark.parametrize("build, field, allowed", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_a_spec_built_in_python_is_checked(build, field, allowed):
    with pytest.raises(SpecError) as info:
        build()
    assert info.value.field == field and f"field '{field}'" in str(info.value)
    assert allowed in str(info.value), str(info.value)


def test_replace_checks_again():
    spec = ExperimentSpec()
    with pytest.raises(SpecError, match="field 'epochs'"):
        dataclasses.replace(spec, epochs=-1)
    assert dataclasses.replace(spec, lr=1).lr == 1  # an int is a number


def test_python_and_yaml_agree_on_the_message():
    from chiploop.devices import load_device
    with pytest.raises(SpecError) as from_yaml:
        load_device({"dw_min": -1.0})
    with pytest.raises(SpecError) as in_python:
        DeviceSpec(dw_min=-1.0)
    assert str(from_yaml.value) == str(in_python.value).replace("field 'dw_min'", "field 'device.dw_min'")


# ------------------------------------------------------------- contract: every spec class checks itself

def _spec_classes() -> list[type]:
    """Every dataclass defined in chiploop with a field declared by ``spec_field``."""
    found = {}
    for info in pkgutil.walk_packages(chiploop.__path__, "chiploop."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == info.name
                    and any("low_open" in f.metadata for f in dataclasses.fields(obj))):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


SPEC_CLASSES = _spec_classes()

# a valid instance of each spec class whose fields are not all defaulted
EXAMPLES = {
    RuleCard: lambda: RuleCard(format_version=1, rule=RuleSpec(), lr=0.1, schedule="constant", batch_size=32,
                               epochs=1, device=DeviceSpec(), task=TaskSpec(), model=ModelSpec()),
}


def _bad_values(f: dataclasses.Field, tp: Any) -> list[Any]:
    """Values the field must refuse: of no allowed type, outside its Literal, outside its range."""
    out = [] if tp is Any else [object()]
    if typing.get_origin(tp) is Literal:
        out.append("not-" + str(typing.get_args(tp)[0]))
    low, high = f.metadata.get("low"), f.metadata.get("high")
    if low is not None:
        out.append(low if f.metadata.get("low_open") else low - 1)
    if high is not None:
        out.append(high + 1)
    return out


def test_the_project_has_its_spec_classes():
    names = {cls.__name__ for cls in SPEC_CLASSES}
    assert {"DeviceSpec", "DriftSpec", "InferenceSpec", "TaskSpec", "MLPSpec", "RNNSpec", "ExperimentSpec", "RuleSpec",
            "DecorrelationSpec", "InjectedSpec", "DiagnosticsSpec", "InferenceRunSpec", "SweepSpec", "RuleCard",
            "WeightPerturbation", "NodePerturbation", "SignSymmetry"} <= names


@pytest.mark.parametrize("cls", SPEC_CLASSES, ids=lambda c: c.__name__)
def test_every_spec_class_checks_every_field_when_built(cls):
    assert issubclass(cls, Spec), f"{cls.__qualname__} declares spec_field fields: make it a chiploop.specs.Spec"
    assert "__post_init__" not in vars(cls), f"{cls.__qualname__}: put cross-field checks in check()"
    valid = EXAMPLES.get(cls, cls)()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        for bad in _bad_values(f, hints[f.name]):
            with pytest.raises(SpecError) as info:
                dataclasses.replace(valid, **{f.name: bad})
            assert info.value.field.split("[")[0] == f.name, (f.name, bad, str(info.value))
