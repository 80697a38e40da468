"""The one place that speaks aihwkit's configuration language: ``DeviceSpec -> RPUConfig``
(training tiles) and ``DeviceSpec -> InferenceRPUConfig`` (the tiles trained weights are deployed to).

Pulsed devices come from aihwkit's device classes (or the preset class a spec ``mirrors``,
which keeps its response-shape parameters), with every physically named field of the spec
written over them. Update algorithms of the Tiki-Taka family and mixed precision start from
aihwkit's tuned ReRAM-SB preset of that algorithm (Gokmen & Haensch 2020; Gokmen 2021;
Rasch et al. 2023, "Fast and robust analog in-memory deep neural network training") with the
spec's device swapped into every unit cell.
"""

from __future__ import annotations

import copy
import warnings

import torch

from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel, ReRamCMONoiseModel
from aihwkit.inference.compensation.drift import PerColumnDriftCompensation
from aihwkit.simulator import presets
from aihwkit.simulator.configs import (
    ConstantStepDevice,
    DriftParameter,
    ExpStepDevice,
    FloatingPointRPUConfig,
    InferenceRPUConfig,
    IOParameters,
    LinearStepDevice,
    PowStepDevice,
    SingleRPUConfig,
    SoftBoundsReferenceDevice,
    UpdateParameters,
)
from aihwkit.simulator.presets import devices as preset_devices

from chiploop.devices.spec import DeviceSpec
from chiploop.specs import SpecError

RESPONSE_CLASSES = {
    "constant_step": ConstantStepDevice,
    "linear_step": LinearStepDevice,
    "soft_bounds": SoftBoundsReferenceDevice,
    "exp_step": ExpStepDevice,
    "pow_step": PowStepDevice,
}

# the aihwkit preset whose tuned compound settings each algorithm starts from
ALGORITHM_PRESETS = {
    "tiki_taka": presets.TikiTakaReRamSBPreset,
    "ttv2": presets.TTv2ReRamSBPreset,
    "c_ttv2": presets.ChoppedTTv2ReRamSBPreset,
    "agad": presets.AGADReRamSBPreset,
    "mixed_precision": presets.MixedPrecisionReRamSBPreset,
}


def mirror_classes() -> dict[str, type]:
    """aihwkit device classes a spec may mirror, by class name."""
    classes = {c.__name__: c for c in RESPONSE_CLASSES.values()}
    classes.update({n: getattr(preset_devices, n) for n in dir(preset_devices) if n.endswith("PresetDevice")})
    return classes


def mirror_responses() -> dict[str, str]:
    """The response of every class in :func:`mirror_classes`, by aihwkit's class hierarchy: what
    ``devices.spec.MIRRORS`` must say."""
    return {name: next(r for r, base in RESPONSE_CLASSES.items() if issubclass(cls, base))
            for name, cls in mirror_classes().items()}


def _io(spec: DeviceSpec) -> IOParameters:
    """DAC, ADC, output bound and read noise of one read direction."""
    if spec.ideal_io:
        return IOParameters(is_perfect=True)
    return IOParameters(
        inp_res=1 / (2 ** spec.dac_bits - 2) if spec.dac_bits > 1 else -1,
        out_res=1 / (2 ** spec.adc_bits - 2) if spec.adc_bits > 1 else -1,
        out_bound=spec.out_bound if spec.out_bound > 0 else -1,
        out_noise=spec.read_noise,
    )


def make_device(spec: DeviceSpec, construction_seed: int):
    """The aihwkit pulsed device of a spec, every named field set from the spec."""
    cls = mirror_classes()[spec.mirrors] if spec.mirrors else RESPONSE_CLASSES[spec.response]
    device = cls(
        dw_min=spec.dw_min, dw_min_dtod=spec.dw_min_dtod, dw_min_std=spec.dw_min_std,
        up_down=spec.up_down, up_down_dtod=spec.up_down_dtod,
        w_min=spec.w_min, w_max=spec.w_max, w_min_dtod=spec.w_bound_dtod, w_max_dtod=spec.w_bound_dtod,
        corrupt_devices_prob=spec.corrupt_devices_prob, construction_seed=construction_seed,
        drift=DriftParameter(nu=spec.drift.nu, nu_dtod=spec.drift.nu_dtod) if spec.drift.model == "pcm"
        else DriftParameter(nu=0.0),
    )
    if hasattr(device, "write_noise_std"):
        device.write_noise_std = spec.write_noise_std
    return device


def tile_seed(spec: DeviceSpec, index: int) -> int:
    """The construction seed of the ``index``-th tile of a chip: distinct devices on every tile,
    the same devices for the same spec; 0 (fresh devices every time) stays 0."""
    return 0 if spec.construction_seed == 0 else (spec.construction_seed + 7919 * index) % (2**31 - 1) or 1


def to_rpu_config(spec: DeviceSpec, index: int = 0):
    """The aihwkit RPUConfig that realises ``spec`` on the ``index``-th tile of a chip."""
    if spec.is_float:
        return FloatingPointRPUConfig()
    seed = tile_seed(spec, index)
    device = make_device(spec, seed)
    if spec.algorithm == "sgd":
        config = SingleRPUConfig(device=device, update=UpdateParameters(desired_bl=spec.desired_bl))
    else:
        config = ALGORITHM_PRESETS[spec.algorithm]()
        compound = config.device
        if hasattr(compound, "unit_cell_devices"):
            compound.unit_cell_devices = [copy.deepcopy(device) for _ in compound.unit_cell_devices]
            compound.construction_seed = seed
        else:  # mixed precision: one analog device behind a digital accumulator
            compound.device = device
        config.update.desired_bl = spec.desired_bl
    config.forward = _io(spec)
    config.backward = _io(spec)
    config.mapping.digital_bias = True
    config.mapping.max_input_size = spec.tile_size
    config.mapping.max_output_size = spec.tile_size
    return config


class _ReRamCMONoiseModel(ReRamCMONoiseModel):
    """aihwkit's CMO/HfOx ReRAM model; its drift step calls ``numpy.log10`` on a torch tensor, which
    works but raises numpy 2's ``__array_wrap__`` DeprecationWarning on every call. Only that
    warning is silenced here; the arithmetic is aihwkit's."""

    def apply_drift_noise_to_conductance(self, g_prog, drift_noise_param, t_inference):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"__array_wrap__ must accept context",
                                    category=DeprecationWarning)
            return super().apply_drift_noise_to_conductance(g_prog, drift_noise_param, t_inference)


def _noise_model(name: str):
    """aihwkit's statistical model of programming noise, drift and accumulated 1/f read noise.

    * ``pcm``: ``PCMLikeNoiseModel`` (Nandakumar et al. 2019), conductance pairs, g_max 25 µS.
    * ``reram``: ``ReRamCMONoiseModel`` (CMO/HfOx ReRAM, one device per cross-point): it is defined at
      every time. aihwkit's other ReRAM model, ``ReRamWan2022NoiseModel``, is fitted only at
      t = 1 s, 1 day and 2 days and raises ``ArgumentError`` at any other time, so it cannot give an
      accuracy-over-time curve.
    * ``none``: the PCM model with programming, drift and read-noise scales all 0: programmed and
      drifted weights equal the trained ones (to float rounding); read noise of the forward IO remains.
    """
    if name == "pcm":
        return PCMLikeNoiseModel()
    if name == "reram":
        return _ReRamCMONoiseModel()
    if name == "none":
        return PCMLikeNoiseModel(prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0)
    raise SpecError("inference.noise_model", name, "pcm, reram or none")


def to_inference_rpu_config(spec: DeviceSpec, compensation: bool) -> InferenceRPUConfig:
    """The aihwkit ``InferenceRPUConfig`` that holds ``spec``'s trained weights for deployment.

    Noise model from ``spec.inference.noise_model``; drift compensation from
    ``spec.inference.drift_compensation``, or none when ``compensation`` is False. The forward
    read has the spec's DAC, ADC, output bound and read noise (as its training tiles); biases are
    digital. No weight clipping, remapping or modifier (this is deployment, not HWA training).
    """
    if compensation and spec.inference.drift_compensation == "global":
        drift_compensation = GlobalDriftCompensation()
    elif compensation and spec.inference.drift_compensation == "per_column":
        drift_compensation = PerColumnDriftCompensation()
    else:
        drift_compensation = None
    config = InferenceRPUConfig(noise_model=_noise_model(spec.inference.noise_model),
                                drift_compensation=drift_compensation)
    config.forward = _io(spec)
    config.mapping.digital_bias = True
    config.mapping.max_input_size = spec.tile_size
    config.mapping.max_output_size = spec.tile_size
    return config


def _fusion_model(shapes: dict[str, tuple[int, int]]):
    """An aihwkit ``AnalogSequential`` of bias-free ``AnalogLinear`` layers on inference tiles, one per
    ``name -> (out, in)``, in order (the layers Fusion's CSV header describes)."""
    from aihwkit.nn import AnalogLinear, AnalogSequential

    model = AnalogSequential()
    for name, (out_size, in_size) in shapes.items():
        config = InferenceRPUConfig()
        config.mapping.weight_scaling_omega = 0.0  # the tiles hold the weights as given
        model.add_module(name, AnalogLinear(in_size, out_size, bias=False, rpu_config=config))
    return model


def fusion_export_weights(weights: dict[str, torch.Tensor], csv_path: str | None = None, g_max: int = 40):
    """Weights (``layer name -> (out, in)``; names without dots) as conductances of IBM's Fusion chip, through
    aihwkit's own ``fusion_export`` and ``FusionConductanceConverter`` (one device per weight, the
    largest |w| of each row at ``g_max`` µS, 10 to 40). Writes the CSV a Fusion chip takes when
    ``csv_path`` is given; returns (conductances by layer, params by layer), the params being what
    ``fusion_import`` needs to map read conductances back (aihwkit keeps each tile's weights there)."""
    from aihwkit.inference.converter.fusion import FusionConductanceConverter
    from aihwkit.utils.export import fusion_export

    model = _fusion_model({k: tuple(w.shape) for k, w in weights.items()})
    for name, layer in model.named_children():
        layer.set_weights(weights[name].detach().to(torch.float32))
    conductances, params, _ = fusion_export(model, FusionConductanceConverter(g_max), csv_path)
    return conductances, params


def fusion_import_weights(conductances, shapes: dict[str, tuple[int, int]], params, g_max: int = 40
                          ) -> dict[str, torch.Tensor]:
    """The weights that Fusion conductances (a CSV path or the dict of :func:`fusion_export_weights`)
    stand for, through aihwkit's ``fusion_import`` with the export's ``params``."""
    from aihwkit.inference.converter.fusion import FusionConductanceConverter
    from aihwkit.utils.export import fusion_import

    model = fusion_import(conductances, _fusion_model(shapes), params, g_converter=FusionConductanceConverter(g_max))
    return {name: layer.get_weights()[0] for name, layer in model.named_children()}
