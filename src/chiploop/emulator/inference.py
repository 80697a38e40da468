"""A crossbar on aihwkit *inference* tiles: trained weights programmed once, then left to drift.

Only the forward read is needed to evaluate a deployed network; the chip no longer learns, so
``backward`` and ``update`` refuse. Like :class:`AnalogCrossbar`, a layer wider than
``spec.tile_size`` is cut into a grid of tiles (each with its own drift compensation).

Reads go through ``joint_forward(x, is_test=True)``: aihwkit applies the drift-compensation
factor ``alpha`` only in test mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from chiploop.lazy import torch

from chiploop.devices.spec import DeviceSpec
from chiploop.emulator.analog import TileGrid, tile_grid


@dataclass(eq=False)
class InferenceCrossbar(TileGrid):
    """One weight layer on a grid of aihwkit ``InferenceTile``\\ s built from a :class:`DeviceSpec`."""

    spec: DeviceSpec
    shape: tuple[int, int]      # (out, in)
    tiles: list[list[object]]   # tiles[r][c] holds W[rows[r], cols[c]]
    compensation: bool

    @classmethod
    def create(cls, spec: DeviceSpec, out_size: int, in_size: int, compensation: bool) -> InferenceCrossbar:
        from chiploop.devices.aihwkit import to_inference_rpu_config  # aihwkit only when a tile is built

        tiles = tile_grid(out_size, in_size, spec.tile_size,
                          lambda k, o, i: to_inference_rpu_config(spec, compensation).create_tile(o, i, bias=False))
        return cls(spec, (out_size, in_size), tiles, compensation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``y = alpha * (W(t) x)`` through the noisy forward IO, in test mode (compensation on if configured)."""
        x = x.to(torch.float32)
        return torch.cat([sum(t.joint_forward(x[:, c].contiguous(), is_test=True) for t, c in zip(row, self.cols))
                          for row in self.tiles], 1)

    def backward(self, d: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("an inference crossbar is read forward only")

    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        raise NotImplementedError("an inference crossbar is not trained")

    def weights(self) -> torch.Tensor:
        """The weights the tiles hold now: programmed, then drifted (before the compensation factor)."""
        return self.gather(lambda t: t.get_weights()[0])

    def read_weights(self) -> torch.Tensor:
        return self.gather(lambda t: t.read_weights()[0])

    def program(self, W: torch.Tensor) -> None:
        """Write ``W`` exactly, then apply the noise model's programming noise (``program_weights``),
        which also draws the drift coefficients and takes the compensation's reference read."""
        def write(tile, block: torch.Tensor) -> None:
            tile.set_weights(block)
            tile.program_weights()
        self.program_tiles(W, write)

    def clone(self) -> InferenceCrossbar:
        raise NotImplementedError("program a new inference crossbar instead")

    def restore(self, source: InferenceCrossbar) -> None:
        raise NotImplementedError("program a new inference crossbar instead")

    def post_update_step(self) -> None:
        pass

    def drift(self, seconds: float) -> None:
        """The programmed weights as they are ``seconds`` after programming (drift and accumulated
        read noise, drawn afresh from the programmed state) and the compensation factor for them."""
        for row in self.tiles:
            for t in row:
                t.drift_weights(seconds)
