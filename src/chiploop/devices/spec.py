"""Device specs: what a crossbar's cells do when they are read and written, in physical terms.

A :class:`DeviceSpec` describes one resistive-memory technology and how its tile integrates
updates. Field names follow aihwkit's pulsed-device model (Gokmen & Vlasov 2016; Rasch et
al. 2021, "A flexible and fast PyTorch toolkit for simulating training and inference on
analog crossbar arrays"): one pulse moves a weight by about ``dw_min``, with

    Δw = ±dw_min · (1 ± up_down) · (1 + dw_min_std · ξ) · r(w)      ξ ~ N(0, 1) per pulse

where ``r(w)`` is the response shape (1 for ``constant_step``; ``1 - w/w_max`` going up for
``soft_bounds``, and so on) and every device draws its own ``dw_min``, ``up_down`` and bounds
once, with relative spreads ``*_dtod``, seeded by ``construction_seed``.

Specs come from the presets shipped in ``devices/presets/*.yaml`` (each cites the aihwkit
preset it mirrors), optionally with fields overridden: ``{preset: reram-sb, dw_min: 0.001}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from chiploop.specs import Spec, SpecError, from_mapping, load_yaml, spec_field

Response = Literal["constant_step", "linear_step", "soft_bounds", "exp_step", "pow_step"]
Algorithm = Literal["float", "sgd", "tiki_taka", "ttv2", "c_ttv2", "agad", "mixed_precision"]

# aihwkit device class a spec may mirror -> the response it has. Written out here so that reading a
# spec never loads aihwkit; tests/test_presets.py checks it against aihwkit's own classes
# (devices.aihwkit.mirror_responses), so it cannot drift from the installed aihwkit unnoticed.
MIRRORS: dict[str, str] = {
    "ConstantStepDevice": "constant_step",
    "GokmenVlasovPresetDevice": "constant_step",
    "IdealizedPresetDevice": "constant_step",
    "LinearStepDevice": "linear_step",
    "CapacitorPresetDevice": "linear_step",
    "EcRamPresetDevice": "linear_step",
    "EcRamMOPresetDevice": "linear_step",
    "SoftBoundsReferenceDevice": "soft_bounds",
    "ReRamSBPresetDevice": "soft_bounds",
    "ReRamArrayHfO2PresetDevice": "soft_bounds",
    "ReRamArrayOMPresetDevice": "soft_bounds",
    "ExpStepDevice": "exp_step",
    "PCMPresetDevice": "exp_step",
    "ReRamESPresetDevice": "exp_step",
    "PowStepDevice": "pow_step",
}


@dataclass(frozen=True)
class DriftSpec(Spec):
    """Conductance drift after programming: ``G(t) = G(t0) (t / t0)^(-nu)`` (PCM; Ambrogio 2019)."""

    model: Literal["none", "pcm"] = spec_field("none", doc="drift law: none, or power-law PCM drift", ideal="none")
    nu: float = spec_field(0.05, doc="mean drift exponent nu", unit="1", low=0.0, high=1.0)
    nu_dtod: float = spec_field(0.0, doc="device-to-device spread of nu (relative)", unit="1", low=0.0, high=10.0)


@dataclass(frozen=True)
class InferenceSpec(Spec):
    """How the technology holds weights once training is over: programmed once into inference
    tiles, then left to drift (aihwkit's statistical inference models; Nandakumar et al. 2019
    for PCM; Joshi et al. 2020 for global drift compensation)."""

    noise_model: Literal["pcm", "reram", "none"] = spec_field(
        "pcm", doc="programming noise, drift and accumulated read noise after programming: "
        "pcm (PCMLikeNoiseModel), reram (ReRamCMONoiseModel), none (weights stay exact)")
    drift_compensation: Literal["global", "per_column", "none"] = spec_field(
        "global", doc="rescale tile outputs by a reference read taken at programming time: one factor per "
        "tile (global), one per output column (per_column), or none")


@dataclass(frozen=True)
class EnergySpec(Spec):
    """Energy per operation of a crossbar chip, for the chip ledger's estimate (docs/science.md §2.8)::

        E = read_cell_j · (cells read) + dac_j · (inputs driven) + adc_j · (outputs converted)
            + pulse_j · (programming pulses)

    The defaults are order-of-magnitude figures derived from stated physical assumptions (the
    derivation is their source; replace them with a chip's measured figures):

    * ``read_cell_j`` = V_read² · G · t_read = (0.2 V)² · 25 µS · 10 ns = 1e-14 J, with g_max = 25 µS
      of the conductance export (experiments/weights.py) and aihwkit's PCM inference model;
    * ``dac_j``: a 7-bit input DAC as 2^7 switchings of a ~1 fJ unit source ≈ 1.3e-13 J;
    * ``adc_j``: a 9-bit ADC at Walden's figure of merit E = FOM · 2^bits with FOM = 10 fJ per
      conversion step (the band of efficient SAR ADCs in B. Murmann's "ADC Performance Survey") ≈ 5e-12 J;
    * ``pulse_j`` = V_prog · I · t_pulse = 1 V · 25 µA · 10 ns = 2.5e-13 J per coincidence.
    """

    read_cell_j: float = spec_field(1e-14, doc="energy of one cell's multiply-accumulate in a read", unit="J",
                                    low=0.0, high=1.0)
    dac_j: float = spec_field(1.3e-13, doc="energy of one input DAC conversion (per input per read)", unit="J",
                              low=0.0, high=1.0)
    adc_j: float = spec_field(5e-12, doc="energy of one output ADC conversion (per output per read)", unit="J",
                              low=0.0, high=1.0)
    pulse_j: float = spec_field(2.5e-13, doc="energy of one programming pulse (one coincidence at a cell)",
                                unit="J", low=0.0, high=1.0)


@dataclass(frozen=True)
class DeviceSpec(Spec):
    """A crossbar technology: update response, noise, bounds, periphery, and update algorithm."""

    preset: str = spec_field("", doc="the shipped preset this spec came from (provenance)")
    mirrors: str = spec_field("", doc="aihwkit device class it mirrors (its shape parameters are kept)")
    algorithm: Algorithm = spec_field("sgd", doc="how the tile integrates updates: float (exact), "
                                      "sgd (plain pulsed), tiki_taka, ttv2, c_ttv2, agad, mixed_precision")
    response: Response = spec_field("constant_step", doc="step response to one pulse as a function of w")
    dw_min: float = spec_field(0.001, doc="mean weight change of one pulse", unit="weight units / pulse",
                               low=0.0, high=1.0, low_open=True)
    dw_min_dtod: float = spec_field(0.3, doc="device-to-device spread of dw_min (relative std)", unit="1",
                                    low=0.0, high=10.0, ideal=0.0)
    dw_min_std: float = spec_field(0.3, doc="cycle-to-cycle noise of each pulse's step (relative std)",
                                   unit="1", low=0.0, high=100.0, ideal=0.0)
    write_noise_std: float = spec_field(0.0, doc="noise on the visible weight redrawn at each update",
                                        unit="dw_min", low=0.0, high=1000.0, ideal=0.0)
    up_down: float = spec_field(0.0, doc="systematic up/down step asymmetry", unit="1",
                                low=-1.0, high=1.0, ideal=0.0)
    up_down_dtod: float = spec_field(0.01, doc="device-to-device spread of up/down asymmetry", unit="1",
                                     low=0.0, high=10.0, ideal=0.0)
    w_min: float = spec_field(-0.6, doc="lower weight bound", unit="weight units", high=0.0)
    w_max: float = spec_field(0.6, doc="upper weight bound", unit="weight units", low=0.0, low_open=True)
    w_bound_dtod: float = spec_field(0.3, doc="device-to-device spread of both bounds (relative std)",
                                     unit="1", low=0.0, high=10.0, ideal=0.0)
    read_noise: float = spec_field(0.06, doc="additive output noise of each analog read (forward and "
                                   "backward)", unit="normalised output (std)", low=0.0, high=10.0, ideal=0.0)
    dac_bits: int = spec_field(7, doc="input DAC resolution; 0 = no quantisation", unit="bit",
                               low=0, high=24, ideal=0)
    adc_bits: int = spec_field(9, doc="output ADC resolution; 0 = no quantisation", unit="bit",
                               low=0, high=24, ideal=0)
    out_bound: float = spec_field(12.0, doc="ADC output range (clips |y|); 0 = unbounded",
                                  unit="normalised output", low=0.0, high=1e6, ideal=0.0)
    desired_bl: int = spec_field(31, doc="maximum pulse-train length of one update (BL)", unit="pulses",
                                 low=1, high=1000)
    corrupt_devices_prob: float = spec_field(0.0, doc="probability that a device is stuck", unit="1",
                                             low=0.0, high=1.0, ideal=0.0)
    drift: DriftSpec = spec_field(default_factory=DriftSpec, doc="conductance drift after programming")
    inference: InferenceSpec = spec_field(default_factory=InferenceSpec,
                                          doc="inference tiles the trained weights are programmed into")
    energy: EnergySpec = spec_field(default_factory=EnergySpec, doc="energy per read, conversion and pulse "
                                    "(the chip ledger's estimate)")
    construction_seed: int = spec_field(0, doc="seed of the device-to-device draws; 0 draws new devices "
                                        "every time (aihwkit's convention)", low=0, high=2**31 - 1)
    engine: Literal["aihwkit", "torch"] = spec_field(
        "aihwkit", doc="simulator of the pulsed update and reads: aihwkit (its C++ tiles, clock-seeded noise) "
        "or torch (chiploop's seeded, batched re-implementation of aihwkit's single devices)")
    engine_device: str = spec_field("cpu", doc="torch device the torch engine runs on: cpu or cuda (cuda:N)")
    tile_size: int = spec_field(512, doc="largest crossbar (rows and columns); wider layers span "
                                "several tiles", unit="cells", low=1, high=65536)

    def check(self) -> None:
        if self.write_noise_std > 0 and self.response == "constant_step":
            raise SpecError("write_noise_std", self.write_noise_std,
                            "0 for response constant_step (aihwkit has no write noise for it)")
        for name in ("dac_bits", "adc_bits"):
            if getattr(self, name) == 1:
                raise SpecError(name, 1, "0 (no quantisation) or 2 <= value <= 24")
        if self.w_min >= self.w_max:
            raise SpecError("w_min", self.w_min, f"less than w_max ({self.w_max})")
        if not (self.engine_device == "cpu" or self.engine_device == "cuda"
                or (self.engine_device.startswith("cuda:") and self.engine_device[5:].isdigit())):
            raise SpecError("engine_device", self.engine_device, "cpu, cuda or cuda:N")
        if self.engine == "torch" and self.algorithm not in ("float", "sgd"):
            raise SpecError("algorithm", self.algorithm, "float or sgd on engine torch (Tiki-Taka, TTv2, "
                            "c-TTv2, AGAD and mixed precision run only on engine aihwkit)")
        if self.engine == "torch" and self.drift.model != "none":
            raise SpecError("drift.model", self.drift.model, "none on engine torch (drift runs only on engine aihwkit)")
        if self.mirrors and self.mirrors not in MIRRORS:
            raise SpecError("mirrors", self.mirrors, "an aihwkit device class: " + ", ".join(sorted(MIRRORS)))
        if self.mirrors and MIRRORS[self.mirrors] != self.response:
            raise SpecError("response", self.response, f"{MIRRORS[self.mirrors]!r}, the response of {self.mirrors}")

    @property
    def is_float(self) -> bool:
        """True for exact floating-point tiles (no pulses, no noise)."""
        return self.algorithm == "float"

    @property
    def ideal_io(self) -> bool:
        """True when reads are exact: no read noise, no DAC/ADC quantisation, no output bound."""
        return self.read_noise == 0 and self.dac_bits == 0 and self.adc_bits == 0 and self.out_bound == 0

    @classmethod
    def from_value(cls, value: Any, name: str = "device", source: str | None = None) -> DeviceSpec:
        """A preset name (``reram-sb``) or a mapping, optionally ``{preset: NAME, field: value}``."""
        if isinstance(value, str):
            value = {"preset": value}
        if not isinstance(value, Mapping):
            raise SpecError(name, value, "a preset name or a mapping of device fields")
        data = dict(value)
        if data.get("preset"):
            data = {**load_preset_data(data["preset"], name + ".preset"), **data}
        return from_mapping(cls, data, source=source, prefix=name + ".")


def nonidealities() -> dict[str, Any]:
    """Each device field that is a nonideality, with the value that switches it off."""
    return {f.name: f.metadata["ideal"] for f in dataclasses.fields(DeviceSpec) if f.metadata.get("ideal") is not None}


def preset_names() -> list[str]:
    """Names of the shipped device presets."""
    folder = resources.files("chiploop.devices") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset_data(name: Any, field: str = "preset") -> dict:
    """The raw mapping of a shipped preset; an unknown name lists the known ones."""
    names = preset_names()
    if name not in names:
        import difflib
        close = difflib.get_close_matches(str(name), names, 1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SpecError(field, name, "one of " + ", ".join(names) + hint)
    path = resources.files("chiploop.devices") / "presets" / f"{name}.yaml"
    data = load_yaml(str(path))
    base = data.pop("extends", None)  # a preset may start from another and change a few fields
    return {**load_preset_data(base, f"{path}: extends"), **data} if base else data


def load_device(name_or_mapping: Any, source: str | None = None) -> DeviceSpec:
    """Resolve a preset name or a mapping (with optional ``preset``) into a validated DeviceSpec."""
    return DeviceSpec.from_value(name_or_mapping, "device", source)
