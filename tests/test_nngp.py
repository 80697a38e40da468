"""Oracles of chiploop.learning.nngp (issue 15 A, acceptance 1): the kernel against the empirical
covariance of random networks built by the project's own initialiser, the orthant estimator against
its closed forms, and the bound against the estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from chiploop.emulator.networks.mlp import init_weights
from chiploop.learning.nngp import (complexity_bound, complexity_estimate, nngp_kernel, orthant_probability,
                                    pac_bayes_bound, posterior_error, sample_orthant)


def empirical_covariance(X: np.ndarray, sizes: tuple[int, ...], nets: int, bias: bool, weight_var: float | None,
                         seed: int = 0) -> np.ndarray:
    """Covariance of the scalar output over ``nets`` random ReLU MLPs drawn by ``init_weights``
    (or, with ``weight_var``, Gaussian bias-free He networks as in the paper)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(X, dtype=torch.float64)
    outs = []
    for _ in range(nets):
        if weight_var is None:
            params = init_weights(sizes, g)
        else:
            params = [(torch.randn(o, i, generator=g) * math.sqrt(weight_var / i), torch.zeros(o))
                      for i, o in zip(sizes[:-1], sizes[1:])]
        h = x
        for l, (W, b) in enumerate(params):
            a = h @ W.double().T + (b.double() if bias else 0)
            h = a if l == len(params) - 1 else torch.relu(a)
        outs.append(h[:, 0])
    F = torch.stack(outs).numpy()  # (nets, points)
    return F.T @ F / nets  # zero-mean family: second moment is the covariance


@pytest.mark.parametrize("depth", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_kernel_equals_covariance_of_chiploop_networks(depth):
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 2, (6, 16))
    X[1] = -X[0]  # an anti-correlated pair
    sizes = (16,) + (512,) * (depth - 1) + (1,)
    K = nngp_kernel(X, sizes)
    E = empirical_covariance(X, sizes, 2000, bias=True, weight_var=None)
    assert np.abs(K - E).max() < 0.03  # acceptance 1 (absolute)
    # σ_w² = 1/3 shrinks the output variance ~6x per layer (max K 0.10 at depth 2, 0.004 at depth 4), so
    # the absolute check is loose at depth 4; the sampling error is the real yardstick: within 4
    # standard errors sqrt((K_ii K_jj + K_ij²)/2000) entrywise (measured: 0.0049 and 0.0001 max abs)
    se = np.sqrt((np.outer(np.diag(K), np.diag(K)) + K ** 2) / 2000)
    assert (np.abs(K - E) < 4 * se).all()


@pytest.mark.slow
@pytest.mark.parametrize("depth", [2, 4])
def test_bias_free_kernel_equals_covariance_of_paper_networks(depth):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5, 16))
    X *= math.sqrt(16) / np.linalg.norm(X, axis=1, keepdims=True)
    sizes = (16,) + (512,) * (depth - 1) + (1,)
    K = nngp_kernel(X, sizes, bias=False, weight_var=2.0)
    assert np.allclose(np.diag(K), 2.0)  # He scaling keeps the diagonal (output layer carries σ_w² = 2)
    E = empirical_covariance(X, sizes, 2000, bias=False, weight_var=2.0)
    # the output has variance 2: 2,000 draws leave a standard error sqrt((K_ii K_jj + K_ij²)/2000)
    # ≈ 0.06 on the diagonal, so the check is at 4 standard errors
    se = np.sqrt((np.outer(np.diag(K), np.diag(K)) + K ** 2) / 2000)
    assert (np.abs(K - E) < 4 * se).all()


def test_bias_free_recursion_matches_science_md():
    """SCIENCE.md §9: k ← [sqrt(1 - k²) + k(π - arccos k)]/π on unit-norm inputs, He scaling."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4, 8))
    X *= math.sqrt(8) / np.linalg.norm(X, axis=1, keepdims=True)
    k = X @ X.T / 8
    for _ in range(3):
        k = np.clip(k, -1, 1)
        k = (np.sqrt(1 - k ** 2) + k * (np.pi - np.arccos(k))) / np.pi
    assert np.allclose(nngp_kernel(X, (8, 32, 32, 32, 1), bias=False, weight_var=2.0) / 2, k, atol=1e-12)


@pytest.mark.parametrize("rho", [-0.9, -0.5, 0.0, 0.3, 0.8, 0.99])
def test_orthant_n2_closed_form(rho):
    K = np.array([[1.0, rho], [rho, 1.0]])
    exact = 0.25 + math.asin(rho) / (2 * math.pi)
    p = orthant_probability(K, np.ones(2), 1_000_000, np.random.default_rng(0))
    assert abs(p - exact) / exact < 0.01
    # labels (1, -1) flip the correlation
    p = orthant_probability(K, np.array([1.0, -1.0]), 1_000_000, np.random.default_rng(1))
    exact = 0.25 - math.asin(rho) / (2 * math.pi)
    assert abs(p - exact) / exact < 0.01


@pytest.mark.parametrize("n", [1, 5, 50, 400])
def test_orthant_identity_closed_form(n):
    c = np.where(np.random.default_rng(n).random(n) < 0.5, -1.0, 1.0)
    p = complexity_estimate(np.eye(n) * 3.0, c, 1000, np.random.default_rng(0))
    assert abs(math.exp(-(p - n * math.log(2))) - 1) < 0.01  # P = 2^-n, compared in log space
    assert complexity_bound(np.eye(n) * 3.0, c) == pytest.approx(n * math.log(2), rel=1e-6)


def test_orthant_n3_closed_form():
    """Three points: P(z > 0) = 1/8 + (asin ρ12 + asin ρ13 + asin ρ23)/(4π)."""
    S = np.array([[1.0, 0.5, -0.2], [0.5, 1.0, 0.3], [-0.2, 0.3, 1.0]])
    exact = 1 / 8 + (math.asin(0.5) + math.asin(-0.2) + math.asin(0.3)) / (4 * math.pi)
    assert orthant_probability(S, np.ones(3), 200_000, np.random.default_rng(4)) == pytest.approx(exact, rel=0.01)


def parity_problem(n: int, m: int, depth: int, seed: int = 0):
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))[: n + m]
    X = X[idx] / 16.0
    c = np.where(y[idx] % 2 == 0, 1.0, -1.0)
    K = nngp_kernel(X, (64,) + (256,) * (depth - 1) + (1,))
    return K, c[:n], c[n:]


@pytest.mark.parametrize("n,depth", [(20, 2), (50, 2), (100, 4)])
def test_bound_never_below_estimate(n, depth):
    K, c, c_test = parity_problem(n, 100, depth)
    rng = np.random.default_rng(0)
    C_est = complexity_estimate(K[:n, :n], c, 20_000, rng)
    C_bound = complexity_bound(K[:n, :n], c)
    assert 0 < C_est <= C_bound
    err = posterior_error(K, c, c_test, 20_000, rng)
    assert 0 < err < 0.5  # the posterior beats chance on parity
    assert pac_bayes_bound(C_bound, n) >= pac_bayes_bound(C_est, n) >= err


def test_posterior_error_oracle_one_point():
    """One training point, one test point: P(wrong) = 1 - P(both signs right)/P(train sign right)
    = 1 - 2 (1/4 + asin ρ/(2π)) for agreeing labels."""
    rho = 0.6
    K = np.array([[1.0, rho], [rho, 1.0]])
    err = posterior_error(K, np.ones(1), np.ones(1), 200_000, np.random.default_rng(5))
    assert err == pytest.approx(1 - 2 * (0.25 + math.asin(rho) / (2 * math.pi)), rel=0.01)


def test_pac_bayes_bound_is_monotone_and_in_range():
    assert 0 < pac_bayes_bound(1.0, 100) < pac_bayes_bound(10.0, 100) < 1
    assert pac_bayes_bound(10.0, 1000) < pac_bayes_bound(10.0, 100)


def test_bad_labels_rejected():
    with pytest.raises(ValueError, match="±1"):
        sample_orthant(np.eye(2), np.array([1.0, 0.0]), 10, np.random.default_rng(0))
