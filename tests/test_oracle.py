"""Oracle: backprop on ideal crossbars equals torch autograd + torch.optim.SGD."""

import pytest
import torch
from conftest import ideal_problem, step
from torch import nn

from chiploop.emulator import MLP
from chiploop.learning import Backprop, Loss


def torch_twin(model: MLP) -> nn.Sequential:
    """The same MLP as plain torch layers with the chip's current weights and biases."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[model.activation]
    layers = []
    for l, name in enumerate(model.weight_names):
        W = model.chip.crossbars[name].weights()
        lin = nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            lin.weight.copy_(W)
            lin.bias.copy_(model.chip.biases[name])
        layers += [lin, act()] if l < len(model.weight_names) - 1 else [lin]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("loss_kind", ["cross_entropy", "mse"])
def test_backprop_on_ideal_crossbars_equals_autograd_sgd(activation, loss_kind):
    lr = 0.3
    model, (x, y), loss, _ = ideal_problem((12, 16, 9, 5), activation, seed=3, batch=17, loss=loss_kind)
    net = torch_twin(model)

    for _ in range(3):  # three steps: the trajectories must stay together
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        opt.zero_grad()
        loss(net(x), y).backward()
        opt.step()
        step(Backprop(), model, None, (x, y), loss, lr)

    linears = [m for m in net if isinstance(m, nn.Linear)]
    for name, lin in zip(model.weight_names, linears):
        assert (model.chip.crossbars[name].weights() - lin.weight).abs().max().item() <= 1e-6
        assert (model.chip.biases[name] - lin.bias).abs().max().item() <= 1e-6


def test_loss_grad_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(7, 4, generator=gen, requires_grad=True)
    for loss, y in [(Loss("cross_entropy"), torch.tensor([0, 1, 2, 3, 0, 1, 2])),
                    (Loss("mse"), torch.randn(7, 4, generator=gen))]:
        (g,) = torch.autograd.grad(loss(out, y), out)
        assert torch.allclose(loss.grad(out.detach(), y), g, atol=1e-7)
