"""A trained chip's weights on disk: exact crossbar weights and digital biases as ``.npz``.

Arrays are named ``crossbar/<name>`` (``layer0``, ``decorr/layer0``, ``feedback/layer1``, ...) and
``bias/<name>``; ``chip.json`` (a 0-d string array) holds every crossbar's role and which decorrelator
feeds which weight. Files are written atomically and read with ``allow_pickle=False``, so loading
never unpickles anything.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from chiploop.emulator import Chip, IdealCrossbar, Network, NetworkSpec
from chiploop.experiments.results import write_atomic
from chiploop.specs import SpecError


CHIP_KEY = "chip.json"


def chip_arrays(chip: Chip) -> dict[str, np.ndarray]:
    """Every crossbar's exact weights and every digital bias, as float32 arrays, and the roles."""
    out = {f"crossbar/{k}": xb.weights().to(torch.float32).numpy() for k, xb in chip.crossbars.items()}
    out.update({f"bias/{k}": b.to(torch.float32).numpy() for k, b in chip.biases.items()})
    out[CHIP_KEY] = np.array(json.dumps(chip.describe(), sort_keys=True))
    return out


def save_weights(chip: Chip, path: str | Path) -> Path:
    """Write the chip's weights to ``path`` (``.npz``) atomically."""
    write_atomic(path, npz_bytes(chip_arrays(chip)))
    return Path(path)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays as the bytes of an ``.npz`` file (no pickled objects)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The numeric arrays of a weights file, by name; a missing or malformed file is a SpecError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: torch.from_numpy(data[k].copy()) for k in data.files if k != CHIP_KEY}
    except FileNotFoundError:
        raise SpecError("RUN_DIR", str(Path(path).parent), "a run directory with weights.npz (every run of this "
                        "chiploop writes one)", str(path)) from None
    except (OSError, ValueError) as err:
        raise SpecError("<weights>", str(path), f"a chiploop .npz weights file ({err})", str(path)) from None


def load_layout(path: str | Path) -> dict:
    """The roles and decorrelator links saved beside the weights (``chip.json``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if CHIP_KEY not in data.files:
                raise SpecError(CHIP_KEY, None, "the chip's roles, saved by this chiploop (re-run older runs)",
                                str(path))
            return json.loads(str(data[CHIP_KEY]))
    except (OSError, ValueError) as err:
        raise SpecError("<weights>", str(path), f"a chiploop .npz weights file ({err})", str(path)) from None


def shadow_from_weights(arrays: dict[str, torch.Tensor], layout: dict, model: NetworkSpec) -> Network:
    """The network of ``model`` on a chip of exact (ideal) crossbars holding saved weights."""
    chip = Chip(decorrelators=dict(layout.get("decorrelators", {})))
    roles = layout.get("roles", {})
    for key, value in arrays.items():
        if key.startswith("crossbar/"):
            name = key.split("/", 1)[1]
            chip.add(name, IdealCrossbar(value.clone()), roles.get(name, "weight"),
                     arrays[f"bias/{name}"].clone() if f"bias/{name}" in arrays else None)
    return model.attach(chip)
