"""MNIST-format IDX files (LeCun et al. 1998, http://yann.lecun.com/exdb/mnist/ "file formats"), plain
or gzip-compressed: the format MNIST, Fashion-MNIST and KMNIST come in. Read from the user's disk,
never downloaded.

Layout: a 4-byte magic ``0x00 0x00 TYPE NDIM``, then NDIM big-endian uint32 sizes, then
``prod(sizes)`` big-endian items of TYPE (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), nothing after.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from chiploop.specs import SpecError

TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
         0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
CODES = {np.dtype(v).newbyteorder("="): k for k, v in TYPES.items()}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path, field: str) -> np.ndarray:
    """The array of an IDX file (gzip detected by its magic bytes, not its name), in native byte
    order. A wrong magic number, a truncated file or trailing bytes is one SpecError for ``field``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SpecError(field, str(path), f"a readable IDX file ({err.strerror})") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise SpecError(field, str(path), f"a complete gzip file ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in TYPES or raw[3] == 0:
        raise SpecError(field, str(path), f"an IDX file (magic 0x0000TTNN: TT a type code "
                        f"{', '.join(f'0x{k:02X}' for k in TYPES)}, NN dimensions >= 1); its first bytes are "
                        f"0x{raw[:4].hex().upper()}")
    dtype, ndim = TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise SpecError(field, str(path), f"an IDX file with its {ndim} sizes (truncated: {len(raw)} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, 4))
    need = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != need:
        what = "truncated" if len(raw) < need else "trailing bytes"
        raise SpecError(field, str(path), f"an IDX file of shape {shape} ({need} bytes; it has {len(raw)}: {what})")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed if ``compress`` (default: the name ends ``.gz``)."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    code = CODES[array.dtype.newbyteorder("=")]
    data = (bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
            + array.astype(TYPES[code], copy=False).tobytes())
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=1)
    path.write_bytes(data)
    return path
