"""The implicit bias of the architecture: the NNGP of chiploop's ReLU MLPs, its orthant
probabilities, the NNGP posterior's test error and its PAC-Bayes bound (docs: SCIENCE.md §9).

Bernstein & Yue 2021, "Computing the information content of trained neural networks"
(arXiv:2103.01045). Pure numpy in float64: analysis code, no chip, no torch.

**Kernel.** A width-∞ MLP with weights of variance ``σ_w²/fan_in`` and biases of variance ``σ_b,l²``
has Gaussian pre-activations at every layer with covariance (Neal 1996; Lee et al. 2018)::

    K_0(x, x') = σ_w² xᵀx'/d + σ_b,0²
    K_l(x, x') = σ_w² E[relu(u) relu(v)] + σ_b,l²,   (u, v) ~ N(0, K_{l-1} on {x, x'})
    E[relu(u) relu(v)] = sqrt(K_xx K_x'x') [sin θ + (π - θ) cos θ] / (2π),  cos θ = ρ   (Cho & Saul 2009)

applied once per hidden layer (depth L = number of weight layers, so L - 1 ReLUs). chiploop's
networks (``emulator/networks/mlp.py::init_weights``) draw ``W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))``:
``σ_w² = 1/3`` and ``σ_b,l² = 1/(3 fan_in_l)`` (the bias variance shrinks with the layer's fan-in).
The paper's networks are bias-free with He scaling: ``bias=False, weight_var=2``; then with unit-norm
inputs scaled by d the diagonal stays 1 and the recursion is SCIENCE.md §9's
``k ← [sqrt(1-k²) + k (π - arccos k)]/π``.

**Orthant.** For labels ``c ∈ {±1}ⁿ`` and ``f ~ N(0, K)``, ``P(sign f = c) = P(z > 0)`` with
``z = c ⊙ f ~ N(0, Σ)``, ``Σ = D K D`` (``D = diag c``), scale-free, so Σ is taken as a correlation
matrix. Importance sampling from the half-normal ``q(u) = 2ⁿ N(u; 0, I) 1[u > 0]``::

    P = E_q[w(u)],   log w(u) = n log 2 - ½ log det Σ - ½ uᵀ(Σ⁻¹ - I)u

and ``C = -log P`` is estimated by ``-log mean_s w(u_s)``. Jensen (``log E w ≥ E log w``, with
``E_q[u_i²] = 1``, ``E_q[u_i u_j] = 2/π``) gives the analytic bound::

    C ≤ n log 2 + ½ [log det Σ - n + (1 - 2/π) tr Σ⁻¹ + (2/π) 1ᵀΣ⁻¹1]

**Posterior error.** The NNGP posterior is the prior restricted to the orthant. At a test point
``x*`` with label ``c*``, ``f* | f(X) = f ~ N(k*ᵀK⁻¹f, k** - k*ᵀK⁻¹k*)``, so its error is the
self-normalised importance-sampled mean of ``Φ(-c* μ(f)/σ)`` over the orthant samples (the ratio
``P(orthant over n+1)/P(orthant over n)`` with the last coordinate integrated exactly).

**PAC-Bayes.** With probability ``1 - δ`` over the training set, the posterior's test error obeys
``err ≤ 1 - exp(-(C + ln(2n/δ)) / (n - 1))`` (the paper's Theorem; C from the Jensen bound).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, ndtr

CHIPLOOP_WEIGHT_VAR = 1.0 / 3.0
"""``Var U(-a, a) = a²/3`` with ``a = 1/sqrt(fan_in)``: σ_w² of ``init_weights``."""


def relu_expectation(K: np.ndarray) -> np.ndarray:
    """``E[relu(u_i) relu(u_j)]`` for ``u ~ N(0, K)``: the arc-cosine kernel of degree 1 (Cho & Saul 2009)."""
    s = np.sqrt(np.clip(np.diag(K), 0.0, None))
    norm = np.outer(s, s)
    rho = np.clip(np.divide(K, norm, out=np.zeros_like(K), where=norm > 0), -1.0, 1.0)
    theta = np.arccos(rho)
    return norm * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)


def nngp_kernel(X: np.ndarray, sizes: Sequence[int], *, bias: bool = True,
                weight_var: float = CHIPLOOP_WEIGHT_VAR) -> np.ndarray:
    """The output kernel ``K_{L-1}`` (samples × samples) of the ReLU MLP with layer widths ``sizes``
    (input first, as ``MLPSpec.sizes``; only the fan-ins matter, through the bias variance).

    ``bias=True``: chiploop's networks, ``σ_b,l² = weight_var/fan_in_l``; ``bias=False`` with
    ``weight_var=2``: the paper's bias-free He-scaled networks."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != sizes[0]:
        raise ValueError(f"X must be (samples, {sizes[0]}), got {X.shape}")
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least two widths, got {list(sizes)}")
    K = weight_var * (X @ X.T) / X.shape[1]
    if bias:
        K = K + weight_var / sizes[0]
    for fan_in in sizes[1:-1]:
        K = weight_var * relu_expectation(K)
        if bias:
            K = K + weight_var / fan_in
    return K


def _correlation(K: np.ndarray, c: np.ndarray, jitter: float) -> np.ndarray:
    s = np.sqrt(np.diag(K))
    S = (K / np.outer(s, s)) * np.outer(c, c)
    return S + jitter * np.eye(len(S))


def _labels(c: np.ndarray, n: int) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if c.shape != (n,) or not np.all(np.abs(c) == 1):
        raise ValueError(f"labels must be ±1 of shape ({n},)")
    return c


@dataclass(frozen=True)
class OrthantSamples:
    """Half-normal samples ``u`` (S, n) of the orthant ``c ⊙ f > 0`` and their log weights (S,)."""

    u: np.ndarray
    log_w: np.ndarray

    @property
    def log_probability(self) -> float:
        """``log P̂ = log mean_s w_s``."""
        return float(logsumexp(self.log_w) - math.log(len(self.log_w)))


def sample_orthant(K: np.ndarray, c: np.ndarray, samples: int, rng: np.random.Generator,
                   jitter: float = 1e-8) -> OrthantSamples:
    """Importance samples of ``P(sign f = c)``, ``f ~ N(0, K)``, from the half-normal proposal.
    ``u`` is in the units of ``c ⊙ f / sqrt(diag K)``."""
    n = len(K)
    c = _labels(c, n)
    S = _correlation(K, c, jitter)
    L = np.linalg.cholesky(S)
    logdet = 2 * np.log(np.diag(L)).sum()
    u = np.abs(rng.standard_normal((samples, n)))
    v = np.linalg.solve(L, u.T)  # (n, S): Σ⁻¹-quadratic form = |L⁻¹u|²
    quad = (v ** 2).sum(0) - (u ** 2).sum(1)
    log_w = -n * math.log(2) - 0.5 * logdet - 0.5 * quad
    return OrthantSamples(u, log_w)


def orthant_probability(K: np.ndarray, c: np.ndarray, samples: int, rng: np.random.Generator) -> float:
    """``P(sign f = c)`` for ``f ~ N(0, K)`` by importance sampling (module docstring)."""
    return math.exp(sample_orthant(K, c, samples, rng).log_probability)


def complexity_estimate(K: np.ndarray, c: np.ndarray, samples: int, rng: np.random.Generator) -> float:
    """``C = -log P(sign f = c)``, Monte Carlo."""
    return -sample_orthant(K, c, samples, rng).log_probability


def complexity_bound(K: np.ndarray, c: np.ndarray, jitter: float = 1e-8) -> float:
    """Jensen's analytic upper bound on ``C = -log P(sign f = c)`` (module docstring)."""
    n = len(K)
    S = _correlation(K, _labels(c, n), jitter)
    _, logdet = np.linalg.slogdet(S)
    Sinv = np.linalg.inv(S)
    return float(n * math.log(2) + 0.5 * (logdet - n + (1 - 2 / math.pi) * np.trace(Sinv)
                                          + (2 / math.pi) * Sinv.sum()))


def pac_bayes_bound(C: float, n: int, delta: float = 0.01) -> float:
    """``1 - exp(-(C + ln(2n/δ)) / (n - 1))``: the PAC-Bayes bound on the posterior's test error."""
    return 1.0 - math.exp(-(C + math.log(2 * n / delta)) / (n - 1))


def posterior_error(K_all: np.ndarray, c_train: np.ndarray, c_test: np.ndarray, samples: int,
                    rng: np.random.Generator, jitter: float = 1e-8) -> float:
    """The NNGP posterior's average test error: the mean over test points of
    ``P(sign f* ≠ c* | sign f(X) = c)``. ``K_all`` is the joint kernel, training points first."""
    n = len(c_train)
    c_train = _labels(c_train, n)
    c_test = _labels(c_test, len(K_all) - n)
    K, Ks, Kss = K_all[:n, :n], K_all[n:, :n], np.diag(K_all)[n:]
    s = np.sqrt(np.diag(K))
    orth = sample_orthant(K, c_train, samples, rng, jitter)
    f = orth.u * c_train * s  # (S, n): function values on the training points
    Kj = K + jitter * np.mean(s ** 2) * np.eye(n)
    A = np.linalg.solve(Kj, Ks.T)  # (n, m)
    mean = f @ A  # (S, m)
    var = np.clip(Kss - (Ks * A.T).sum(1), 1e-12 * Kss, None)
    p_wrong = ndtr(-c_test * mean / np.sqrt(var))  # (S, m)
    w = np.exp(orth.log_w - orth.log_w.max())
    return float((w @ p_wrong.mean(1)) / w.sum())


def effective_samples(log_w: np.ndarray) -> float:
    """Kish's effective sample size ``(Σw)²/Σw²`` of importance weights."""
    w = np.exp(log_w - log_w.max())
    return float(w.sum() ** 2 / (w ** 2).sum())


__all__ = ["CHIPLOOP_WEIGHT_VAR", "OrthantSamples", "complexity_bound", "complexity_estimate",
           "effective_samples", "nngp_kernel", "orthant_probability", "pac_bayes_bound", "posterior_error",
           "relu_expectation", "sample_orthant"]
