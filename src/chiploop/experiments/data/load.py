"""A data task's arrays from where they live: a file (``.npz``/``.npy`` by key, ``.csv``/``.parquet``
by column), MNIST-format IDX files, or arrays registered from Python; checked once and kept for the
spec that asked (the spec's checks, the model's fit and the run read them once)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from chiploop.experiments.data.arrays import Data, check_inputs, check_labels, check_targets
from chiploop.experiments.data.idx import read_idx
from chiploop.experiments.data.memory import lookup
from chiploop.experiments.data.npz import read_npz
from chiploop.experiments.data.table import read_table
from chiploop.specs import SpecError

DATA_TASKS = ("file", "idx", "arrays")


def load(spec: Any) -> Data:
    """The checked arrays of a ``file``, ``idx`` or ``arrays`` task spec (a TaskSpec). Files are read
    again when they change (their size and modification time are part of the key)."""
    if spec.name == "arrays":
        return _load(_key(spec), ())
    paths = {field: path for field, path in _paths(spec).items() if path}
    for field, path in paths.items():
        if not Path(path).is_file():
            what = "a directory" if Path(path).is_dir() else "missing"
            raise SpecError(field, path, f"an existing data file ({what}; relative paths are from the working "
                            f"directory {Path.cwd()})")
        if spec.name == "file" and Path(path).suffix not in (".npz", ".csv", ".parquet"):
            raise SpecError(field, path, "a .npz, .csv or .parquet file (by its suffix)")
    return _load(_key(spec), tuple(_stat(p) for p in paths.values()))


def _paths(spec: Any) -> dict[str, str]:
    if spec.name == "file":
        return {"path": spec.path, "val": spec.val, "test": spec.test}
    return {f: getattr(spec, f) for f in ("train_images", "train_labels", "test_images", "test_labels")}


def _stat(path: str) -> tuple[str, int, int]:
    st = Path(path).stat()
    return path, st.st_mtime_ns, st.st_size


def _key(spec: Any) -> tuple:
    fields = ("name", "path", "x", "y", "x_columns", "val", "test", "kind", "classes", "time_steps", "data",
              "train_images", "train_labels", "test_images", "test_labels")
    return tuple(getattr(spec, f) for f in fields)


@functools.lru_cache(maxsize=1)  # one data set held: the one being trained on
def _load(key: tuple, stats: tuple) -> Data:
    spec = _Fields(key)
    if spec.name == "file":
        sets = {part: _read_file(spec, part) if getattr(spec, part) else None for part in ("path", "val", "test")}
    elif spec.name == "idx":
        sets = {"path": _read_idx(spec, "train"), "val": None, "test": _read_idx(spec, "test")}
    else:
        arrays = lookup(spec.data)
        given = {part: (arrays[f"x_{part}"], arrays[f"y_{part}"], "data", f"the {name} arrays")
                 if f"x_{part}" in arrays else None for part, name in (("val", "validation"), ("test", "test"))}
        sets = {"path": (arrays["x"], arrays["y"], "data", "the arrays"), **given}
    x, y, field, where = sets["path"]
    x = check_inputs(x, field, where, spec.time_steps)
    classes = 0
    if spec.kind == "classification":
        y, classes = check_labels(y, len(x), spec.classes, field, where)
    else:
        y = check_targets(y, x, field, where)
    extra = {}
    for part in ("val", "test"):
        if sets[part] is None:
            extra[part] = None
            continue
        xp, yp, fp, wp = sets[part]
        xp = check_inputs(xp, fp, wp, spec.time_steps)
        if xp.shape[1:] != x.shape[1:]:
            raise SpecError(fp, wp, f"inputs shaped like the training inputs {x.shape[1:]}; got {xp.shape[1:]}")
        if spec.kind == "classification":
            yp, _ = check_labels(yp, len(xp), classes, fp, wp)
        else:
            yp = check_targets(yp, xp, fp, wp)
            if yp.shape[1:] != y.shape[1:]:
                raise SpecError(fp, wp, f"targets shaped like the training targets {y.shape[1:]}; got {yp.shape[1:]}")
        extra[part] = (xp, yp)
    return Data(x, y, extra["val"], extra["test"], classes)


class _Fields:
    """The cache key read back as attributes."""

    def __init__(self, key: tuple):
        (self.name, self.path, self.x, self.y, self.x_columns, self.val, self.test, self.kind, self.classes,
         self.time_steps, self.data, self.train_images, self.train_labels, self.test_images, self.test_labels) = key


def _read_file(spec: _Fields, part: str) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(x, y, field, file) of the file in field ``part`` (path, val or test)."""
    path = Path(getattr(spec, part))
    if path.suffix == ".npz":
        arrays = read_npz(path, {"x": spec.x, "y": spec.y}, part)
        return arrays["x"], arrays["y"], part, str(path)
    x, y = read_table(path, spec.x_columns, spec.x, spec.y, part)
    return x, y, part, str(path)


def _read_idx(spec: _Fields, split: str) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Images (pixels of uint8 files / 255, so in [0, 1], flattened per sample) and labels of ``split``."""
    images, labels = f"{split}_images", f"{split}_labels"
    x = read_idx(getattr(spec, images), images)
    y = read_idx(getattr(spec, labels), labels)
    where = getattr(spec, images)
    if len(y) != len(x):
        raise SpecError(labels, getattr(spec, labels), f"one label per image of {where} ({len(x)} images, "
                        f"{len(y)} labels)")
    if x.ndim < 2:
        raise SpecError(images, where, f"images (samples, rows, columns) or (samples, features); got shape {x.shape}")
    flat = x.reshape(len(x), -1)
    if x.dtype == np.uint8:
        flat = flat.astype(np.float32)
        flat /= np.float32(255)
    return flat, y, images, where
