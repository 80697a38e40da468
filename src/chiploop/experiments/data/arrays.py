"""Checked arrays of a data task: inputs ``(samples, features)`` or sequences ``(samples, time,
features)`` as float32, targets as class labels ``0..classes-1`` or float regression targets; each
problem is one SpecError naming the field, the file and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chiploop.specs import SpecError


@dataclass(frozen=True, eq=False)
class Data:
    """A data task's arrays before splitting and scaling: the main set, and the validation and test
    sets when they were given (else they are drawn from the main set with the task's seed)."""

    x: np.ndarray                                 # (n, features) or (n, time, features), float32
    y: np.ndarray                                 # (n,) int64 labels, or (n, k) / (n, time, k) float32
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray] | None
    classes: int                                  # 0 for regression

    @property
    def sequential(self) -> bool:
        return self.x.ndim == 3

    @property
    def dims(self) -> tuple[int, int]:
        """(input width per step, output width)."""
        return self.x.shape[-1], self.classes or self.y.shape[-1]


def check_inputs(x: np.ndarray, field: str, where: str, time_steps: int = 0) -> np.ndarray:
    """``x`` as float32 ``(n, features)`` or ``(n, time, features)`` (a declared ``time_steps`` reshapes
    ``(n, time_steps * features)``), every value finite."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise SpecError(field, where, f"numeric inputs (they are {x.dtype})")
    if x.ndim not in (2, 3) or x.shape[0] == 0 or x.shape[-1] == 0:
        raise SpecError(field, where, f"inputs of shape (samples, features) or (samples, time, features); "
                        f"got shape {x.shape}")
    if time_steps:
        if x.ndim == 3 and x.shape[1] != time_steps:
            raise SpecError("time_steps", time_steps,
                            f"{x.shape[1]}, the time steps of the 3-D inputs of {where}, or 0")
        if x.ndim == 2:
            if x.shape[1] % time_steps:
                raise SpecError("time_steps", time_steps, f"a divisor of the {x.shape[1]} features of {where}")
            x = x.reshape(len(x), time_steps, x.shape[1] // time_steps)
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = ~np.isfinite(x)
        first = int(np.flatnonzero(bad.reshape(len(x), -1).any(1))[0])
        raise SpecError(field, where, f"finite inputs (it holds {int(np.isnan(x).sum())} NaN and "
                        f"{int(np.isinf(x).sum())} inf; the first in sample {first})")
    return x


def check_labels(y: np.ndarray, n: int, classes: int, field: str, where: str) -> tuple[np.ndarray, int]:
    """Class labels as int64 ``(n,)`` in ``0..classes-1`` (``classes`` 0: the largest label + 1), and
    the number of classes."""
    y = _targets(y, n, field, where)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise SpecError(field, where, f"one class label per sample; got targets of shape {y.shape}")
    if y.dtype.kind == "f" and (not np.isfinite(y).all() or (y != np.round(y)).any()):
        bad = y[~np.isfinite(y) | (y != np.round(y))][0]
        raise SpecError(field, where, f"integer class labels (it holds {bad}); kind: regression for real targets")
    y = y.astype(np.int64)
    low, high = int(y.min()), int(y.max())
    if low < 0 or (classes and high >= classes):
        top = classes - 1 if classes else "classes-1"
        bad = low if low < 0 else high
        raise SpecError(field, where, f"class labels 0..{top} (it holds {bad})")
    classes = classes or high + 1
    if classes < 2:
        raise SpecError(field, where, f"at least 2 classes (all labels are {low})")
    return y, classes


def check_targets(y: np.ndarray, x: np.ndarray, field: str, where: str) -> np.ndarray:
    """Regression targets as float32 ``(n, k)`` (or ``(n, time, k)`` beside sequences), finite."""
    y = _targets(y, len(x), field, where)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim == 3 and (x.ndim != 3 or y.shape[1] != x.shape[1]):
        raise SpecError(field, where, f"targets (samples, outputs) or, beside sequences, (samples, time, outputs) "
                        f"with the inputs' time steps; got {y.shape} beside inputs {x.shape}")
    if y.ndim not in (2, 3):
        raise SpecError(field, where, f"targets of shape (samples,) or (samples, outputs); got {y.shape}")
    y = y.astype(np.float32)
    if not np.isfinite(y).all():
        raise SpecError(field, where, f"finite targets (it holds {int((~np.isfinite(y)).sum())} NaN or inf)")
    return y


def _targets(y: np.ndarray, n: int, field: str, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise SpecError(field, where, f"numeric targets (they are {y.dtype})")
    if y.ndim == 0 or len(y) != n:
        raise SpecError(field, where, f"one target per input sample ({n} inputs; got targets of shape {y.shape})")
    return y
