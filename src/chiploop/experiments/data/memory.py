"""Arrays handed to :mod:`chiploop.api` from Python (NumPy arrays, torch tensors, a Dataset), kept in
this process under a content digest so that a spec can name them (``task: {name: arrays, data:
sha256:...}``) and a run records which data it trained on. A spec file cannot name them: they live
only in the process that registered them."""

from __future__ import annotations

import hashlib

import numpy as np

from chiploop.specs import SpecError

KEYS = ("x", "y", "x_val", "y_val", "x_test", "y_test")
_ARRAYS: dict[str, dict[str, np.ndarray]] = {}


def register(arrays: dict[str, np.ndarray]) -> str:
    """Keep ``arrays`` (keys from :data:`KEYS`) and return their digest ``sha256:...`` (dtype, shape and
    bytes of each): the same data gives the same key, so registering it again keeps one copy."""
    digest = hashlib.sha256()
    for key in KEYS:
        if key in arrays:
            a = np.ascontiguousarray(arrays[key])
            digest.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
            digest.update(memoryview(a).cast("B"))
    name = "sha256:" + digest.hexdigest()[:16]
    _ARRAYS.setdefault(name, dict(arrays))
    return name


def lookup(name: str, field: str = "data") -> dict[str, np.ndarray]:
    """The arrays registered as ``name``."""
    if name not in _ARRAYS:
        raise SpecError(field, name, "the key of arrays given to chiploop.api in this Python process "
                        "(a spec file names data by path: task: {name: file, path: ...})")
    return _ARRAYS[name]
