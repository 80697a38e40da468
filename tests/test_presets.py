"""Contract: every shipped device preset loads, builds a tile and trains an epoch on digits."""

import math
import subprocess
import sys

import pytest
import torch

from chiploop.devices import load_device, preset_names
from chiploop.devices.aihwkit import RESPONSE_CLASSES, mirror_classes, mirror_responses, to_rpu_config
from chiploop.devices.spec import MIRRORS, DeviceSpec
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train
from chiploop.specs import SpecError

PRESETS = preset_names()


def test_the_promised_presets_ship():
    promised = {"ideal", "constant-step", "idealized", "ecram", "reram-sb", "reram-es", "capacitor", "pcm",
                "reram-sb-tt", "reram-sb-cttv2", "reram-sb-agad"}
    assert promised <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_builds_a_tile_and_trains_one_epoch(name):
    spec = load_device(name)
    assert spec.preset == name
    tile = to_rpu_config(spec).create_tile(3, 4)
    assert tuple(tile.get_weights()[0].shape) == (3, 4)
    run_spec = experiment_from_data({"device": name, "crossbar": "analog", "epochs": 1, "lr": 0.1})
    result = train(run_spec, progress=False)
    before, after = result.history[0], result.history[-1]
    assert result.status == "ok" and len(result.history) == 2
    assert math.isfinite(after["train_loss"]) and after["train_loss"] != before["train_loss"]


def test_mirror_table_matches_aihwkits_classes():
    """devices/spec.py names aihwkit's device classes and their responses without importing aihwkit;
    this is where the table meets the installed aihwkit."""
    assert MIRRORS == mirror_responses()
    for name, cls in mirror_classes().items():  # each class has exactly one of the responses
        assert [r for r, base in RESPONSE_CLASSES.items() if issubclass(cls, base)] == [MIRRORS[name]], name


def test_every_preset_mirrors_a_class_of_its_response():
    for name in PRESETS:
        spec = load_device(name)
        assert not spec.mirrors or MIRRORS[spec.mirrors] == spec.response, name


def test_reading_a_device_spec_does_not_load_aihwkit():
    code = ("import sys; from chiploop.devices import load_device; load_device('reram-sb'); "
            "print('aihwkit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("fields, field, allowed", [
    ({"mirrors": "FooDevice"}, "mirrors", "ReRamSBPresetDevice"),
    ({"mirrors": "EcRamPresetDevice", "response": "soft_bounds"}, "response", "'linear_step', the response of"),
])
def test_a_wrong_mirror_names_the_field(fields, field, allowed):
    with pytest.raises(SpecError, match=f"field '{field}'.*{allowed}"):
        DeviceSpec(**fields)


def test_override_keeps_preset_provenance_and_changes_the_field():
    spec = load_device({"preset": "reram-sb", "dw_min": 0.01})
    assert spec.preset == "reram-sb" and spec.dw_min == 0.01 and spec.write_noise_std == 56.0


def test_variant_presets_extend_their_base():
    base, tt = load_device("reram-sb"), load_device("reram-sb-tt")
    assert tt.algorithm == "tiki_taka" and tt.dw_min == base.dw_min and tt.write_noise_std == base.write_noise_std


def test_construction_seed_fixes_device_to_device_draws_per_tile():
    from chiploop.emulator import AnalogCrossbar
    spec = load_device({"preset": "constant-step", "construction_seed": 7})
    a, b = (AnalogCrossbar.create(spec, 4, 6, name="layer0") for _ in range(2))
    others = [AnalogCrossbar.create(spec, 4, 6, name=n) for n in ("layer1", "decorr/layer0", "feedback/layer0")]
    hidden = [x.tiles[0][0].get_hidden_parameters()["dwmin_up"] for x in (a, b, *others)]
    assert torch.equal(hidden[0], hidden[1])  # the same name: the same devices
    assert all(not torch.equal(hidden[i], hidden[j]) for i in (0, 2, 3) for j in (2, 3, 4) if i < j)
