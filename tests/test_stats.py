"""The one confidence interval and the one "higher is better" every summary uses."""

import numpy as np
import pytest
from scipy.stats import t

from chiploop.experiments.stats import ci95, higher_is_better


def test_the_ci_is_students_t_over_seeds():
    values = np.array([0.90, 0.92, 0.97])
    assert ci95(values) == pytest.approx(t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3))
    assert ci95([0.90, 0.92, 0.97]) == ci95(values)  # lists too
    assert np.isnan(ci95(np.array([0.9]))) and np.isnan(ci95([]))


@pytest.mark.parametrize("metric, higher", [
    ("test_acc", True), ("val_acc", True), ("inf_exact_acc", True), ("total_cos", True),
    ("inf_acc_t3600_global", True), ("test_acc_min", True),
    ("test_acc_std", False), ("inf_acc_t3600_global_std", False), ("train_loss", False), ("gen_gap", False),
    ("physical_rel_bias", False), ("physical_rel_var", False), ("wall_s", False), ("hessian_top_eig", False),
])
def test_accuracies_and_cosines_are_better_high_and_everything_else_low(metric, higher):
    assert higher_is_better(metric) is higher
