"""Paired gain of drift compensation: compensated minus uncompensated accuracy, repeat by repeat.

    .venv/bin/python experiments/paired_gains.py RUN_DIR [RUN_DIR ...]

Within one repeat of ``chiploop run`` / ``chiploop evaluate`` the compensated and uncompensated
chips share their programming and drift draws, so the per-repeat difference removes that shared
noise. For each run dir's ``inference.csv`` and each time: both means, the mean paired gain with
its sample std and standard error (std / √n), and in how many repeats compensation won or tied.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from chiploop.experiments.deploy import time_label


def paired_table(run_dir: Path, baseline: str = "none") -> pd.DataFrame:
    rows = pd.read_csv(run_dir / "inference.csv")
    wide = rows.pivot_table(index=["time_s", "repeat"], columns="compensation", values="test_acc").reset_index()
    out = []
    for comp in [c for c in wide.columns if c not in ("time_s", "repeat", baseline)]:
        wide["gain"] = wide[comp] - wide[baseline]
        for t, g in wide.groupby("time_s"):
            out.append({"time": time_label(t), "compensation": comp, comp: g[comp].mean(), baseline: g[baseline].mean(),
                        "gain": g["gain"].mean(), "std": g["gain"].std(ddof=1),
                        "se": g["gain"].std(ddof=1) / np.sqrt(len(g)), "wins": int((g["gain"] > 0).sum()),
                        "ties": int((g["gain"] == 0).sum()), "repeats": len(g)})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    for run_dir in parser.parse_args().runs:
        print(f"\n{run_dir}")
        print(paired_table(run_dir).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
