"""A second crossbar engine in pure torch: aihwkit 1.1.0's pulsed update and read periphery for
single devices, seeded and batched over a population axis (docs/torch_engine.md)."""

from chiploop.emulator.torch_engine.crossbar import TorchCrossbar, derive_seed

__all__ = ["TorchCrossbar", "derive_seed"]
