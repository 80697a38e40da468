"""Crossbars (ideal, aihwkit-backed, and aihwkit inference tiles), chips with roles, the digital
periphery, and the networks that run on a chip."""

from chiploop.lazy import torch

from chiploop.emulator.analog import AnalogCrossbar
from chiploop.emulator.chip import Chip, CrossbarFactory, CrossbarRequest, LayerSignal, ideal_factory
from chiploop.emulator.crossbar import Crossbar
from chiploop.emulator.ideal import IdealCrossbar
from chiploop.emulator.inference import InferenceCrossbar
from chiploop.emulator.torch_engine import TorchCrossbar
from chiploop.emulator.networks import MLP, NETWORKS, Network, NetworkSpec, Trace

__all__ = ["AnalogCrossbar", "Chip", "Crossbar", "CrossbarFactory", "CrossbarRequest", "IdealCrossbar",
           "InferenceCrossbar", "LayerSignal", "TorchCrossbar", "MLP", "NETWORKS", "Network", "NetworkSpec", "Trace",
           "chip_factory", "ideal_factory", "make_crossbar"]


def make_crossbar(spec, out_size: int, in_size: int, ideal: bool = False, name: str = "layer0",
                  seed: int = 0) -> Crossbar:
    """Crossbar ``name``: an :class:`IdealCrossbar` (``ideal=True``, float torch), a
    :class:`TorchCrossbar` (``spec.engine == "torch"``; its draws derive from ``seed`` and ``name``)
    or an :class:`AnalogCrossbar` of ``spec``'s devices, whose device draws derive from ``name``."""
    if ideal:
        return IdealCrossbar(torch.zeros(out_size, in_size))
    if spec.engine == "torch":
        return TorchCrossbar.create(spec, out_size, in_size, name, seed)
    return AnalogCrossbar.create(spec, out_size, in_size, name)


def chip_factory(spec, ideal: bool = False, seed: int = 0) -> CrossbarFactory:
    """``factory(name, out, in)``: the crossbars of a chip of ``spec``'s technology (on the torch
    engine their noise is seeded by ``seed``, the run's seed)."""
    return lambda name, out_size, in_size: make_crossbar(spec, out_size, in_size, ideal, name, seed)
