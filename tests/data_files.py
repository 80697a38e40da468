"""Small data files in every format a data task reads, written from a seed: the same learnable data
(``n`` samples, 3 classes from a random linear teacher) as .npz, .csv, .parquet and MNIST-format IDX
(plain and gzip), and a 3-D sequence array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from chiploop.experiments.data.idx import write_idx


def arrays(seed: int = 0, n: int = 240, features: int = 8, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (n, features) float64 and labels ``argmax(x W)`` (every class present)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = (x @ rng.normal(size=(features, classes))).argmax(1)
    return x, y


def images(seed: int = 0, n: int = 200, side: int = 4, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, side, side) whose class sets the brightness of one row, and uint8 labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n).astype(np.uint8)
    x = rng.integers(0, 100, (n, side, side))
    x[np.arange(n), y % side] += 150
    return x.astype(np.uint8), y


def table(x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({**{f"px{i}": x[:, i] for i in range(x.shape[1])}, "label": y})


def write_all(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``data.npz`` (x, y), ``data.csv`` and ``data.parquet`` (columns px0.., label), IDX files
    ``train-images`` / ``train-labels`` (plain) and ``test-images.gz`` / ``test-labels.gz``, and
    ``seq.npz`` (x (n, 6, 4), y); return the arrays written."""
    x, y = arrays(seed)
    np.savez(root / "data.npz", x=x, y=y)
    table(x, y).to_csv(root / "data.csv", index=False)
    table(x, y).to_parquet(root / "data.parquet")
    train_x, train_y = images(seed, 200)
    test_x, test_y = images(seed + 1, 60)
    write_idx(root / "train-images", train_x)
    write_idx(root / "train-labels", train_y)
    write_idx(root / "test-images.gz", test_x)
    write_idx(root / "test-labels.gz", test_y)
    sx, sy = arrays(seed + 2, n=180, features=24, classes=2)
    np.savez(root / "seq.npz", x=sx.reshape(-1, 6, 4), y=sy)
    return {"x": x, "y": y, "train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
            "seq_x": sx.reshape(-1, 6, 4), "seq_y": sy}
