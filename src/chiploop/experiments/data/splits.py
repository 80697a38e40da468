"""The training, validation and test splits of a data task as indices into its arrays: a split given
as its own file (or arrays) is taken whole; otherwise ``ceil(fraction n)`` samples are held out with
``task.seed``, stratified by class for classification (sklearn's ``train_test_split``, as ``digits``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from chiploop.experiments.data.arrays import Data
from chiploop.specs import SpecError


def split_indices(data: Data, spec: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(train, val, test)`` indices into ``data.x``; ``val``/``test`` are None when given as data
    (and ``val`` an empty index when ``val_fraction`` is 0)."""
    from sklearn.model_selection import train_test_split  # sklearn only when a task is made

    classify = spec.kind == "classification"

    def hold_out(rest: np.ndarray, fraction: float, field: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            return train_test_split(rest, test_size=fraction, random_state=spec.seed,
                                    stratify=data.y[rest] if classify else None)
        except ValueError as err:
            raise SpecError(field, fraction, f"a share that leaves every class in both parts of the "
                            f"{len(rest)} samples ({err})") from None

    train, val, test = np.arange(len(data.x)), None, None
    if data.test is None:
        train, test = hold_out(train, spec.test_fraction, "test_fraction")
    if data.val is None:
        if spec.val_fraction > 0:
            train, val = hold_out(train, spec.val_fraction, "val_fraction")
        else:
            val = train[:0]
    return train, val, test
