"""Tables: ``.csv`` and ``.parquet`` files (pandas; pyarrow for Parquet), inputs as columns by name or
by a prefix, the target as one column."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chiploop.specs import SpecError


def read_table(path: Path, x_columns: tuple[str, ...], x_prefix: str, y: str, field: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: the ``x_columns`` (or every column starting with ``x_prefix``, in file order) as
    floats and the column ``y``. A missing column or a non-numeric feature is one SpecError."""
    import pandas as pd  # only when a table is read

    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except (OSError, ValueError, ImportError, pd.errors.ParserError) as err:
        kind = "Parquet" if path.suffix == ".parquet" else "CSV"
        raise SpecError(field, str(path), f"a readable {kind} file ({str(err).splitlines()[0]})") from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if x_columns:
        for name in x_columns:
            if name not in columns:
                raise SpecError("x_columns", list(x_columns), f"columns of {path} (missing {name!r}; it has: "
                                f"{_some(columns)})")
        chosen = list(x_columns)
    else:
        chosen = [c for c in columns if c.startswith(x_prefix) and c != y]
        if not chosen:
            raise SpecError("x", x_prefix, f"a prefix of input columns of {path} (it has: {_some(columns)})")
    if y not in columns:
        raise SpecError("y", y, f"a column of {path} (it has: {_some(columns)})")
    for name in chosen:
        if not pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(frame[name]):
            bad = pd.to_numeric(frame[name], errors="coerce").isna() & frame[name].notna()
            row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
            raise SpecError(field, str(path), f"numeric input columns (column {name!r} row {row} holds "
                            f"{frame[name].iloc[row]!r})")
    x = frame[chosen].to_numpy(dtype=np.float64)
    target = frame[y]
    if not pd.api.types.is_numeric_dtype(target):
        raise SpecError("y", y, f"a numeric column of {path} (it holds {target.iloc[0]!r}, "
                        f"{target.dtype})")
    return x, target.to_numpy()


def _some(names: list[str], k: int = 8) -> str:
    return ", ".join(names[:k]) + (f", ... ({len(names)} columns)" if len(names) > k else "")
