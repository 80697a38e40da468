"""Trained weights in IBM's Fusion chip format (the one real analog chip format aihwkit supports),
through aihwkit's own ``fusion_export`` / ``fusion_import`` (devices/aihwkit.py), beside the ``.npz``
of conductance pairs (``chiploop export --weights``).

``chiploop export RUN_DIR --fusion OUT.csv`` writes:

* ``OUT.csv``: Fusion's CSV (a header of layer ids, classes, sizes; then each layer's conductances in
  µS, one device per weight, the largest |w| of each row at g_max = 40 µS, sign kept aside);
* ``OUT.params.npz``: what ``fusion_import`` needs to turn conductances read from the chip back into
  weights (aihwkit's params: each layer's exported weights, which give the signs and, by a linear fit
  per row, the scale), and which crossbar each Fusion layer is. Read with ``allow_pickle=False``.

Only the chip's device arrays are exported: every ``weight`` crossbar (feedback and digital
decorrelators are not programmed into a chip's weight arrays).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from chiploop.experiments.results import write_atomic
from chiploop.experiments.weights import load_layout, load_weights, npz_bytes
from chiploop.specs import SpecError

NAMES_KEY = "layers.json"


def layer_name(crossbar: str) -> str:
    """A crossbar name as an aihwkit module name (no dots or slashes)."""
    return crossbar.replace("/", "__").replace(".", "_")


def export_fusion(run_dir: str | Path, csv_path: str | Path) -> dict[str, str]:
    """Write the run's weight crossbars as a Fusion CSV and its params file; returns Fusion layer ->
    crossbar name."""
    from chiploop.devices.aihwkit import fusion_export_weights

    run_dir, csv_path = Path(run_dir), Path(csv_path)
    arrays = load_weights(run_dir / "weights.npz")
    roles = load_layout(run_dir / "weights.npz").get("roles", {})
    names = {layer_name(k.split("/", 1)[1]): k.split("/", 1)[1] for k in arrays
             if k.startswith("crossbar/") and roles.get(k.split("/", 1)[1]) == "weight"}
    weights = {layer: arrays[f"crossbar/{name}"] for layer, name in names.items()}
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    try:
        _, params = fusion_export_weights(weights, str(tmp))
        csv_text = tmp.read_text()
    finally:
        tmp.unlink(missing_ok=True)
    write_atomic(csv_path, csv_text)
    out = {f"original/{layer}/{k}": p["original_weights"].numpy() for layer, tiles in params.items()
           for k, p in enumerate(tiles)}
    out[NAMES_KEY] = np.array(json.dumps({layer: [name, *weights[layer].shape] for layer, name in names.items()}))
    write_atomic(params_path(csv_path), npz_bytes(out))
    return names


def params_path(csv_path: str | Path) -> Path:
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + ".params.npz")


def import_fusion(csv_path: str | Path, params_file: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The weights (crossbar name -> (out, in)) that a Fusion CSV's conductances stand for."""
    from chiploop.devices.aihwkit import fusion_import_weights

    params_file = Path(params_file) if params_file else params_path(csv_path)
    try:
        with np.load(params_file, allow_pickle=False) as data:
            names = json.loads(str(data[NAMES_KEY]))
            params: dict[str, list] = {}
            originals = sorted((k for k in data.files if k.startswith("original/")),
                               key=lambda k: int(k.rsplit("/", 1)[1]))
            for key in originals:
                layer = key.split("/")[1]
                params.setdefault(layer, []).append({"original_weights": torch.from_numpy(data[key].copy())})
    except (OSError, KeyError, ValueError) as err:
        raise SpecError("<fusion params>", str(params_file), f"the .params.npz written beside the CSV by "
                        f"chiploop export --fusion ({err})") from None
    shapes = {layer: (out_size, in_size) for layer, (_, out_size, in_size) in names.items()}
    weights = fusion_import_weights(str(csv_path), shapes, params)
    return {names[layer][0]: w for layer, w in weights.items()}
