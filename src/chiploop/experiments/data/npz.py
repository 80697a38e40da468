"""NumPy ``.npz`` files: arrays by key, read with ``allow_pickle=False`` (an object
array, which only unpickling could read, is refused)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from chiploop.specs import SpecError


def read_npz(path: Path, keys: dict[str, str], field: str) -> dict[str, np.ndarray]:
    """``{field name: array}`` for each ``{field name: key}`` of ``keys`` (e.g. ``{"task.x": "X"}``);
    a missing key names the keys the file holds."""
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {}
            for name, key in keys.items():
                if key not in data.files:
                    raise SpecError(name, key, f"an array key of {path} (it holds: {', '.join(data.files) or 'none'})")
                try:
                    out[name] = data[key]
                except ValueError as err:  # an object array: would need unpickling
                    raise SpecError(name, key, f"a numeric array in {path} (reading it would unpickle: {err})"
                                    ) from None
            return out
    except SpecError:
        raise
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise SpecError(field, str(path), f"a NumPy .npz file ({err})") from None
    except ValueError as err:
        raise SpecError(field, str(path), f"a NumPy .npz file without pickled objects ({err})") from None
