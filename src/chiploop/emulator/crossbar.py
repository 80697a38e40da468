"""The crossbar boundary: the only verbs a learning rule has to touch weights on a chip.

A crossbar holds ``W`` (out x in). It offers a forward read ``y = W x``, a transposed read
``z = W^T d``, and a pulsed in-memory rank update ``W <- W - lr * sum_b d_b x_b^T``
(docs/science.md §2.1). Everything else — exact weights, programming, cloning, drift — is for
the experimenter, not for the rule.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from chiploop.lazy import torch


@runtime_checkable
class Crossbar(Protocol):
    """A weight matrix on a chip, reached only through its verbs. Shapes are ``(batch, in)``."""

    shape: tuple[int, int]  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward read ``y = W x`` for a batch ``x`` (batch, in) -> (batch, out)."""

    def backward(self, d: torch.Tensor) -> torch.Tensor:
        """Transposed read ``z = W^T d`` for a batch ``d`` (batch, out) -> (batch, in)."""

    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        """Rank update ``W <- W - lr * sum_b d_b x_b^T``; ``x`` (batch, in), ``d`` (batch, out)."""

    def weights(self) -> torch.Tensor:
        """The exact stored weights (out, in), as only a simulator can know them."""

    def read_weights(self) -> torch.Tensor:
        """The weights as a chip would read them: through noisy forward reads."""

    def program(self, W: torch.Tensor) -> None:
        """Write ``W`` (out, in) into the devices (clipped to their bounds, with write noise)."""

    def clone(self) -> Crossbar:
        """An exact, independent copy of the crossbar with all of its device state."""

    def restore(self, source: Crossbar) -> None:
        """Make this crossbar's complete state exactly ``source``'s again (``source`` is the crossbar
        it was cloned from, or a clone of that), in place: cheaper than a new clone where possible."""

    def post_update_step(self) -> None:
        """Per-mini-batch device dynamics (decay, diffusion) after an update."""

    def drift(self, seconds: float) -> None:
        """Let the conductances drift for ``seconds`` since programming."""


class ChipLost(RuntimeError):
    """The chip stopped answering: ``verb`` on crossbar ``crossbar`` got no reply after every retry.
    The training loop adds the step and ends the run with status ``chip_lost``."""

    def __init__(self, verb: str, crossbar: str, reason: str):
        super().__init__(f"chip lost: {verb} on crossbar {crossbar} got no answer ({reason})")
        self.verb, self.crossbar, self.reason = verb, crossbar, reason


class ChipRefused(RuntimeError):
    """The chip refused a call (a remote chip answers a malformed request with INVALID_ARGUMENT). A
    non-finite update means the run diverged; the training loop ends it as ``diverged``."""

    def __init__(self, verb: str, crossbar: str, reason: str, diverged: bool = False):
        super().__init__(f"{verb} on crossbar {crossbar}: {reason}")
        self.verb, self.crossbar, self.reason, self.diverged = verb, crossbar, reason, diverged
