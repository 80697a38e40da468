"""The binary digit tasks' data and split sizes, without torch (spec checks use them)."""

from __future__ import annotations

import numpy as np


def binary_digits_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits as (inputs in [0, 1], labels ±1): ``digits01`` 0 vs 1 (+1 for 0), or
    ``digits_parity`` over all ten classes (+1 even, -1 odd)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = data.data / 16.0, data.target
    if name == "digits01":
        keep = y <= 1
        return x[keep], np.where(y[keep] == 0, 1.0, -1.0)
    return x, np.where(y % 2 == 0, 1.0, -1.0)


def binary_split_sizes(name: str, test_fraction: float, val_fraction: float, seed: int) -> tuple[int, int, int]:
    """(train, val, test) sizes of a binary task's stratified split, before ``train_points`` subsets it;
    for ``digits`` too (the same 1797 images; the sizes depend only on the count and the fractions)."""
    from sklearn.model_selection import train_test_split

    _, c = binary_digits_data(name)
    idx = np.arange(len(c))
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=c)
    if val_fraction > 0:
        train, val = train_test_split(rest, test_size=val_fraction, random_state=seed, stratify=c[rest])
        return len(train), len(val), len(test)
    return len(rest), 0, len(test)
