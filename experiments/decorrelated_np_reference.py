"""Decorrelated node perturbation in plain torch, transcribed from the papers (the oracle for
``chain(NodePerturbation, Decorrelate)``; Dalm, van Gerven & Ahmad 2024, "Effective learning with
node perturbation in multi-layer neural networks"; Ahmad 2024, "Correlations are ruining your
gradient descent", eq. for the decorrelation update)::

    x̂_l = R_l h_{l-1},  a_l = W_l x̂_l + b_l,  h_l = relu(a_l)       (clean pass)
    ã_l = W_l x̂̃_l + b_l + ξ_l,  ξ_l ~ N(0, σ²)                      (noisy pass, same R, W)
    δ_{l,b} = (L_b(noisy) - L_b(clean)) / N · ξ_{l,b} / σ²
    ΔW_l = -lr δ_l^T x̂_l,   Δb_l = -lr Σ_b δ_{l,b}
    C_l = <x̂_l x̂_l^T>_batch,  m_l = diag(C_l),  n = len(x̂_l),  t = target (1)
    ΔR_l = -η [(1 - κ) offdiag(C_l) / s + κ V_l] R_l,   s = n - 1 if normalise else 1
    V_l = diag(m_l - t) (variance unit)  or  (mean(m_l) - t) I (variance mean)

W and R both move after the step's two passes (computed from the same clean pass).

    python experiments/decorrelated_np_reference.py --lr 0.03 --seed 0 [--kappa 0.0] [--epochs 20]
        [--init kaiming --variance mean --normalise --target 0.2 --eta 0.3]   (the suite's setting)
"""

from __future__ import annotations

import argparse
import math

import torch


def init(sizes, generator, how="torch"):
    """``W, b ~ U(-1/sqrt(in), 1/sqrt(in))`` in chiploop's draw order (W then b per layer); ``kaiming``:
    ``W ~ U(-sqrt(6/in), sqrt(6/in))``, ``b = 0``."""
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / math.sqrt(n_in) if how == "torch" else math.sqrt(6 / n_in)
        W = (torch.rand(n_out, n_in, generator=generator) * 2 - 1) * bound
        b = (torch.rand(n_out, generator=generator) * 2 - 1) * bound if how == "torch" else torch.zeros(n_out)
        params.append([W, b])
    return params


def forward(params, Rs, x, noise=None):
    xs, h = [], x
    for l, ((W, b), R) in enumerate(zip(params, Rs)):
        x_hat = h @ R.T
        a = x_hat @ W.T + b
        if noise is not None:
            a = a + noise[l]
        xs.append(x_hat)
        h = a if l == len(params) - 1 else torch.relu(a)
    return xs, h


def r_update(R, x_hat, eta, kappa, skip_silent=True, variance="unit", target=1.0, normalise=False):
    """``R - η [(1-κ) offdiag(C) / s + κ V] R`` (with ``variance="unit"`` units silent over the batch
    get no push when ``skip_silent``)."""
    n = x_hat.shape[1]
    C = x_hat.T @ x_hat / len(x_hat)
    m = torch.diagonal(C)
    off = (C - torch.diag(m)) / ((n - 1) if normalise else 1)
    if variance == "mean":
        V = (m.mean() - target) * torch.eye(n)
    else:
        v = m - target
        if skip_silent:
            v = torch.where(m > 0, v, torch.zeros_like(v))
        V = torch.diag(v)
    M = (1 - kappa) * off + kappa * V
    return R - eta * M @ R


def step(params, Rs, x, y, lr, sigma, eta, kappa, generator, skip_silent=True, **r_options):
    """One step of decorrelated NP in place; returns the noise drawn."""
    n = len(x)
    xs, out = forward(params, Rs, x)
    noise = [sigma * torch.randn(n, W.shape[0], generator=generator) for W, _ in params]
    _, out_noisy = forward(params, Rs, x, noise)
    ce = torch.nn.functional.cross_entropy
    dL = (ce(out_noisy, y, reduction="none") - ce(out, y, reduction="none")) / n
    for l, ((W, b), xi) in enumerate(zip(params, noise)):
        d = dL[:, None] * xi / sigma ** 2
        params[l][0] = W - lr * d.T @ xs[l]
        params[l][1] = b - lr * d.sum(0)
    for l in range(len(Rs)):
        Rs[l] = r_update(Rs[l], xs[l], eta, kappa, skip_silent, **r_options)
    return noise


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--sigma", type=float, default=1e-3)
    p.add_argument("--eta", type=float, default=1e-3)
    p.add_argument("--kappa", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-decor", action="store_true")
    p.add_argument("--init", choices=["torch", "kaiming"], default="torch")
    p.add_argument("--variance", choices=["unit", "mean"], default="unit")
    p.add_argument("--target", type=float, default=1.0)
    p.add_argument("--normalise", action="store_true")
    a = p.parse_args()
    from chiploop.experiments.tasks import TaskSpec, make_task
    task = make_task(TaskSpec(name="digits"))
    g = torch.Generator().manual_seed(a.seed)
    sizes = [64, 128, 128, 128, 10]
    params = init(sizes, g, a.init)
    Rs = [torch.eye(n) for n in sizes[:-1]]
    eta = 0.0 if a.no_decor else a.eta
    for epoch in range(1, a.epochs + 1):
        order = torch.randperm(len(task.x_train), generator=g)
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            step(params, Rs, task.x_train[idx], task.y_train[idx], a.lr, a.sigma, eta, a.kappa, g,
                 variance=a.variance, target=a.target, normalise=a.normalise)
        _, out = forward(params, Rs, task.x_test)
        acc = (out.argmax(1) == task.y_test).float().mean().item()
        print(f"epoch {epoch} test acc {acc:.4f}")


if __name__ == "__main__":
    main()
