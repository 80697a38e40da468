"""Fixed random feedback matrices, requested from the chip builder: digital, or read-only crossbars
of the chip's own technology."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from chiploop.lazy import torch

from chiploop.emulator import CrossbarRequest


def feedback_name(name: str) -> str:
    """The feedback crossbar that stands in for weight crossbar ``name``'s transposed read."""
    return f"feedback/{name}"


def random_feedback(shapes: Sequence[tuple[str, tuple[int, int]]], generator: torch.Generator,
                    where: Literal["digital", "analog"]) -> list[CrossbarRequest]:
    """One fixed ``B ~ U(-1/sqrt(in), 1/sqrt(in))`` of each ``(name, (out, in))``, drawn in order; the
    rule reads ``B^T δ`` with the crossbar's ``backward``. ``analog`` puts B on crossbars of the chip's
    technology, so the feedback read is noisy and quantised too; it is never updated."""
    out = []
    for name, (n_out, n_in) in shapes:
        B = (torch.rand(n_out, n_in, generator=generator) * 2 - 1) / math.sqrt(n_in)
        out.append(CrossbarRequest(feedback_name(name), "feedback", B,
                                   technology="digital" if where == "digital" else "chip"))
    return out
