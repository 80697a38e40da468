"""Tensors on the wire: little-endian float32, row-major, with their shape (``Tensor`` in
``proto/chiploop_chip.proto``), and the checks a chip makes before it touches a crossbar.

A malformed tensor is a :class:`WireError` naming the field, the value and what is allowed; the
server turns it into ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import math

import numpy as np
from chiploop.lazy import torch

from chiploop.remote import chiploop_chip_pb2 as pb

DTYPE = "float32"
TOKEN_KEY = "x-chiploop-token"  # metadata key of the token on every call
LITTLE_F32 = np.dtype("<f4")
MAX_TENSOR_BYTES = 16 * 2**20  # 16 MiB: a (batch 4096) x 1024 read; the transport allows twice that


class WireError(ValueError):
    """A request the chip refuses: ``field`` had ``value``; ``allowed`` says what it may be."""

    def __init__(self, field: str, value: object, allowed: str):
        super().__init__(f"{field}: {value} is not allowed; expected {allowed}")
        self.field, self.value, self.allowed = field, value, allowed


def to_wire(t: torch.Tensor) -> pb.Tensor:
    """``t`` as a wire tensor (cast to float32; 4 bytes per element)."""
    a = np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy(), dtype=LITTLE_F32)
    return pb.Tensor(shape=list(a.shape), dtype=DTYPE, data=a.tobytes())


def from_wire(msg: pb.Tensor, field: str, shape: tuple[int | None, ...] | None = None,
              max_bytes: int = MAX_TENSOR_BYTES) -> torch.Tensor:
    """The float32 tensor in ``msg``, checked: dtype, byte count against the shape, the size limit,
    the expected ``shape`` (``None`` entries are free, e.g. the batch), and finite values."""
    if msg.dtype != DTYPE:
        raise WireError(f"{field}.dtype", repr(msg.dtype), f"'{DTYPE}' (little-endian)")
    dims = tuple(int(s) for s in msg.shape)
    if len(msg.data) > max_bytes:
        raise WireError(f"{field}.data", f"{len(msg.data)} bytes", f"at most {max_bytes} bytes per tensor")
    count = math.prod(dims)
    if count * 4 != len(msg.data):
        raise WireError(f"{field}.data", f"{len(msg.data)} bytes", f"{count * 4} bytes for shape {list(dims)} "
                        "float32")
    if shape is not None:
        if len(dims) != len(shape) or any(e is not None and d != e for d, e in zip(dims, shape)):
            want = "[" + ", ".join("any" if e is None else str(e) for e in shape) + "]"
            raise WireError(f"{field}.shape", list(dims), want)
    a = np.frombuffer(msg.data, dtype=LITTLE_F32).reshape(dims)
    if not np.isfinite(a).all():
        raise WireError(field, "a NaN or infinite value", "finite float32 values")
    return torch.from_numpy(a.astype(np.float32))  # a native-endian, writable copy


def tensor_bytes(msg: pb.Tensor) -> int:
    """Bytes a wire tensor occupies on the bus (its payload)."""
    return len(msg.data)
