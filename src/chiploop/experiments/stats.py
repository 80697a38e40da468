"""The statistics every summary of seeds shares: one confidence interval, one "which way is better".

The sweep report, the ablation table and rule cards all use these, so the same metric is ranked
the same way and its interval means the same thing wherever it is printed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def ci95(values: Iterable[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean, from Student's t:
    ``t_{0.975, n-1} · s / √n`` with ``s`` the sample standard deviation (NaN for fewer than two values)."""
    from scipy.stats import t

    values = np.asarray(list(values), dtype=float)
    n = len(values)
    if n < 2:
        return float("nan")
    return float(t.ppf(0.975, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


SPREADS = ("_std", "_var", "_ci95")  # a spread of a metric is better small, whatever the metric


def higher_is_better(metric: str) -> bool:
    """True for accuracies and cosines (``test_acc``, ``total_cos``, ``inf_acc_t3600_global``,
    ``test_acc_min``), False for everything else: losses, gaps, bias, variance, times, and the spread
    of any metric (``test_acc_std``)."""
    if metric.endswith(SPREADS):
        return False
    words = metric.split("_")
    return "acc" in words or "cos" in words
