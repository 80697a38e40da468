"""An exact, noiseless crossbar in plain torch: the reference every analog chip is held to."""

from __future__ import annotations

from dataclasses import dataclass

from chiploop.lazy import torch


@dataclass(eq=False)
class IdealCrossbar:
    """Float weights with exact reads and exact updates ``W <- W - lr * d^T x``.

    Inputs are cast to the weights' dtype (float32 on a chip; the diagnostics' float64 shadow).

    The ideal-backprop reference is backprop on these crossbars. All draws are the caller's
    (initial weights come from a seeded generator), so a spec gives the same numbers every run.
    """

    W: torch.Tensor  # (out, in), float32

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.W.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.W.dtype) @ self.W.T

    def backward(self, d: torch.Tensor) -> torch.Tensor:
        return d.to(self.W.dtype) @ self.W

    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        self.W.sub_(lr * (d.T.to(self.W.dtype) @ x.to(self.W.dtype)))

    def weights(self) -> torch.Tensor:
        return self.W.clone()

    def read_weights(self) -> torch.Tensor:
        return self.W.clone()

    def program(self, W: torch.Tensor) -> None:
        self.W = W.detach().to(self.W.dtype).clone()

    def clone(self) -> IdealCrossbar:
        return IdealCrossbar(self.W.clone())

    def restore(self, source: IdealCrossbar) -> None:
        self.W.copy_(source.W)  # keeps this crossbar's dtype

    def post_update_step(self) -> None:
        pass

    def drift(self, seconds: float) -> None:
        pass
