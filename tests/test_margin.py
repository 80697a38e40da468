"""The margin loss (Bernstein & Yue 2021) and the binary digit tasks (issue 15 A)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chiploop import api
from chiploop.experiments.spec import TaskSpec
from chiploop.experiments.tasks import make_task
from chiploop.learning import Loss
from chiploop.specs import SpecError


@pytest.mark.parametrize("alpha", [0.01, 1.0, 100.0])
def test_margin_loss_gradient_equals_autograd(alpha):
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(7, 1, generator=gen, requires_grad=True)
    c = torch.where(torch.rand(7, 1, generator=gen) < 0.5, -1.0, 1.0)
    loss = Loss("margin", alpha)
    value = loss(out, c)
    assert value.item() == pytest.approx(((out.detach() - alpha * c) ** 2).mean().item())
    value.backward()
    assert torch.allclose(loss.grad(out.detach(), c), out.grad, atol=1e-7)
    assert torch.allclose(loss.per_sample(out.detach(), c).mean(), value.detach())
    assert loss.accuracy(torch.tensor([[0.3], [-2.0], [0.1]]), torch.tensor([[1.0], [-1.0], [-1.0]])) == \
        pytest.approx(2 / 3)


def test_parity_task_labels_and_seeded_subset():
    from sklearn.datasets import load_digits
    spec = TaskSpec(name="digits_parity", train_points=50, margin=10.0, seed=3)
    task = make_task(spec)
    assert task.x_train.shape == (50, 64) and task.y_train.shape == (50, 1)
    assert set(task.y_train.flatten().tolist()) <= {-1.0, 1.0}
    assert task.loss == Loss("margin", 10.0)
    # every training point carries the parity label of its digit
    data = load_digits()
    lookup = {tuple((x / 16.0).astype(np.float32)): y for x, y in zip(data.data, data.target)}
    for x, c in zip(task.x_train.numpy(), task.y_train[:, 0].tolist()):
        assert c == (1.0 if lookup[tuple(x)] % 2 == 0 else -1.0)
    again = make_task(spec)
    assert torch.equal(again.x_train, task.x_train)
    other = make_task(TaskSpec(name="digits_parity", train_points=50, seed=4))
    assert not torch.equal(other.x_train, task.x_train)
    assert len(task.x_test) == len(make_task(TaskSpec(name="digits_parity")).x_test) == 360
    assert spec.dims == (64, 1) and spec.train_samples == 50


def test_digits01_has_only_zeros_and_ones():
    task = make_task(TaskSpec(name="digits01"))
    n = len(task.x_train) + len(task.x_val) + len(task.x_test)
    assert n == 360  # sklearn's 178 zeros + 182 ones
    assert abs(task.y_test.mean().item()) < 0.1


@pytest.mark.parametrize("fields,field,allowed", [
    ({"name": "digits", "margin": 2.0}, "margin", "binary tasks"),
    ({"name": "teacher_student", "train_points": 10}, "train_points", "binary tasks"),  # digits takes it too
    ({"name": "digits01", "train_points": 10000}, "train_points", "at most the"),
    ({"name": "digits_parity", "margin": 0.0}, "margin", "0.0 < value"),
    ({"name": "digits_parity", "train_points": -1}, "train_points", "0 <= value"),
])
def test_bad_binary_fields(fields, field, allowed):
    with pytest.raises(SpecError) as e:
        TaskSpec.from_value(fields)
    assert field in str(e.value) and allowed in str(e.value)


def test_gd_fits_the_margin_on_the_ideal_chip():
    """Full-batch backprop on 50 parity points: the output reaches α c on the training set (loss
    falls below a tenth of its start, every training sign right) and the test accuracy is well above
    chance (measured 0.89 at epoch 300)."""
    result = api.train({"task": {"name": "digits_parity", "train_points": 50, "margin": 1.0},
                        "model": {"sizes": [64, 128, 1]}, "rule": "backprop", "lr": 0.05,
                        "batch_size": 50, "epochs": 300}, progress=False)
    first, last = result.history[0], result.history[-1]
    assert result.status == "ok"
    assert last["train_loss"] < 0.1 * first["train_loss"]
    assert last["train_acc"] == 1.0
    assert last["test_acc"] > 0.75
