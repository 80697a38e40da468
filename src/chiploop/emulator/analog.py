"""A crossbar on aihwkit tiles: device physics on every read and every pulsed update.

The layer's ``W`` (out x in) is cut into a grid of physical tiles of at most
``spec.tile_size`` rows and columns. A forward read sums the partial outputs of the tiles in
a block row (as the digital periphery of a tiled chip does); a transposed read sums over a
block column; an update sends each tile its slices of ``x`` and ``d``.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass

from chiploop.lazy import torch

from chiploop.devices.spec import DeviceSpec


def clone_tile(tile):
    """An exact, independent copy of an aihwkit tile with all of its C++ device state.

    ``copy.deepcopy`` is not exact (AIHWKIT_NOTES §1.5: it rebuilds the simulator tile, re-applies
    write noise and resets hidden weights) and slow (it rebuilds it from the RPU config). Here the
    Python shell is copied field by field without rebuilding anything, its buffers are cloned, and
    the simulator tile is copied with its C++ copy constructor plus its extra state (counters,
    buffers, choppers), which the copy constructor leaves out.
    """
    c = object.__new__(type(tile))
    c.__dict__.update(tile.__dict__)
    c._parameters = dict(tile._parameters)
    c._buffers = {k: None if v is None else v.clone() for k, v in tile._buffers.items()}
    c._modules = dict(tile._modules)
    c.tile = copy.deepcopy(tile.tile)
    c.tile.load_extra(tile.tile.dump_extra(), True)
    return c


def restore_tile(tile, source) -> None:
    """Set ``tile``'s C++ device state to ``source``'s, in place (``tile`` a clone of ``source``'s).

    The visible weights, then the hidden parameters (bounds, per-device step sizes), then the extra
    state: about 0.1 ms for a 64x64 tile against 0.6 ms for :func:`clone_tile`. Exact only for
    single devices without write noise: with write noise ``set_weights`` draws fresh noise on the
    visible weights, and on compound devices (mixed precision, AGAD) the hidden arrays do not come
    back exactly. tests/test_crossbar.py checks every preset.
    """
    tile.tile.set_weights(source.tile.get_weights())
    tile.tile.set_hidden_parameters(source.tile.get_hidden_parameters())
    tile.tile.load_extra(source.tile.dump_extra(), True)


def name_index(name: str) -> int:
    """A stable number for a crossbar name (CRC-32 of its UTF-8 bytes), the same in every process."""
    return zlib.crc32(name.encode())


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def tile_grid(out_size: int, in_size: int, size: int, make_tile) -> list[list[object]]:
    """``make_tile(k, rows, cols)`` for every block of at most ``size`` x ``size`` of an
    (out, in) matrix, k counting the tiles row by row."""
    rows, cols = _blocks(out_size, size), _blocks(in_size, size)
    return [[make_tile(i * len(cols) + j, r.stop - r.start, c.stop - c.start) for j, c in enumerate(cols)]
            for i, r in enumerate(rows)]


class TileGrid:
    """Geometry shared by crossbars cut into tiles: needs ``spec``, ``shape`` and ``tiles``."""

    @property
    def rows(self) -> list[slice]:
        return _blocks(self.shape[0], self.spec.tile_size)

    @property
    def cols(self) -> list[slice]:
        return _blocks(self.shape[1], self.spec.tile_size)

    def gather(self, read) -> torch.Tensor:
        """The (out, in) matrix assembled from ``read(tile)`` of every tile."""
        return torch.cat([torch.cat([read(t) for t in row], 1) for row in self.tiles], 0)

    def program_tiles(self, W: torch.Tensor, write) -> None:
        """``write(tile, block)`` for every tile and its block of ``W``."""
        for row, r in zip(self.tiles, self.rows):
            for t, c in zip(row, self.cols):
                write(t, W[r, c].detach().to(torch.float32).contiguous())


@dataclass(eq=False)
class AnalogCrossbar(TileGrid):
    """One weight layer on a grid of aihwkit tiles built from a :class:`DeviceSpec`."""

    spec: DeviceSpec
    shape: tuple[int, int]      # (out, in)
    tiles: list[list[object]]   # tiles[r][c] holds W[rows[r], cols[c]]
    lr: float | None = None     # learning rate last set on the tiles

    @classmethod
    def create(cls, spec: DeviceSpec, out_size: int, in_size: int, name: str = "layer0") -> AnalogCrossbar:
        """Crossbar ``name`` of a chip: its tiles get construction seeds derived from the name, so
        every crossbar of a chip (and every tile of it) has its own device draws, whatever order the
        crossbars are made in."""
        from chiploop.devices.aihwkit import to_rpu_config  # aihwkit only when a tile is built

        first = name_index(name) * 1000  # room for 1000 tiles per crossbar
        tiles = tile_grid(out_size, in_size, spec.tile_size,
                          lambda k, o, i: to_rpu_config(spec, first + k).create_tile(o, i, bias=False))
        return cls(spec, (out_size, in_size), tiles)

    def _single(self):
        return self.tiles[0][0] if len(self.tiles) == 1 and len(self.tiles[0]) == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)  # aihwkit tiles compute in float32
        tile = self._single()
        if tile is not None:
            return tile.joint_forward(x)
        return torch.cat([sum(t.joint_forward(x[:, c]) for t, c in zip(row, self.cols)) for row in self.tiles], 1)

    def backward(self, d: torch.Tensor) -> torch.Tensor:
        d = d.to(torch.float32)
        tile = self._single()
        if tile is not None:
            return tile.backward(d)
        return torch.cat([sum(self.tiles[i][j].backward(d[:, r]) for i, r in enumerate(self.rows))
                          for j in range(len(self.cols))], 1)

    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        x, d = x.to(torch.float32), d.to(torch.float32)
        if lr != self.lr:
            for row in self.tiles:
                for t in row:
                    t.set_learning_rate(lr)
            self.lr = lr
        tile = self._single()
        if tile is not None:
            tile.update(x, d)
            return
        for row, r in zip(self.tiles, self.rows):
            for t, c in zip(row, self.cols):
                t.update(x[:, c].contiguous(), d[:, r].contiguous())

    def weights(self) -> torch.Tensor:
        return self.gather(lambda t: t.get_weights()[0])

    def read_weights(self) -> torch.Tensor:
        return self.gather(lambda t: t.read_weights()[0])

    def program(self, W: torch.Tensor) -> None:
        self.program_tiles(W, lambda t, block: t.set_weights(block))

    def clone(self) -> AnalogCrossbar:
        return AnalogCrossbar(self.spec, self.shape, [[clone_tile(t) for t in row] for row in self.tiles], self.lr)

    def restore(self, source: AnalogCrossbar) -> None:
        """In place where that is exact (single devices without write noise), else by cloning
        ``source``'s tiles afresh (write noise; compound devices, whose hidden arrays ``set_weights``
        rewrites)."""
        if self.spec.write_noise_std == 0 and self.spec.algorithm in ("float", "sgd"):
            for row, source_row in zip(self.tiles, source.tiles):
                for t, s in zip(row, source_row):
                    restore_tile(t, s)
            if source.lr is not None and self.lr != source.lr:
                for row in self.tiles:
                    for t in row:
                        t.set_learning_rate(source.lr)
        else:
            self.tiles = [[clone_tile(t) for t in row] for row in source.tiles]
        self.lr = source.lr

    def post_update_step(self) -> None:
        for row in self.tiles:
            for t in row:
                t.post_update_step()

    def drift(self, seconds: float) -> None:
        if self.spec.drift.model == "none":
            return
        for row in self.tiles:
            for t in row:
                t.drift_weights(seconds)
