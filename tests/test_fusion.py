"""Fusion round trip: a trained run's weights exported to IBM's Fusion chip CSV through aihwkit's
``fusion_export`` and read back through ``fusion_import`` equal the run's weights to float32 precision
(the CSV holds the conductances as decimal float32 values; import rescales them by a linear fit)."""

from __future__ import annotations

import csv

import numpy as np
import torch

from chiploop.experiments.cli import main
from chiploop.experiments.fusion import import_fusion
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train
from chiploop.experiments.weights import load_weights


def test_fusion_export_then_import_gives_the_trained_weights(tmp_path, capsys):
    spec = experiment_from_data({"name": "fusion", "device": "ideal", "epochs": 1, "model": {"sizes": [64, 12, 10]},
                                 "rule": "feedback_alignment"})
    train(spec, out_dir=tmp_path / "run", progress=False)
    assert main(["export", str(tmp_path / "run"), "--fusion", str(tmp_path / "chip.csv")]) == 0
    assert "wrote" in capsys.readouterr().out
    rows = list(csv.reader((tmp_path / "chip.csv").read_text().splitlines()))
    assert rows[1] == ["AnalogLinear", "AnalogLinear"] and rows[2] == [str(12 * 64), str(10 * 12)]
    assert rows[5] == ["layer0", "layer1"]  # the weight crossbars only: feedback matrices are not chip arrays
    conductances = np.array([float(v) for v in rows[6]])
    assert conductances.min() >= 0 and conductances.max() == np.float32(40.0)  # µS, row maxima at g_max

    trained = load_weights(tmp_path / "run" / "weights.npz")
    back = import_fusion(tmp_path / "chip.csv")
    assert sorted(back) == ["layer0", "layer1"]
    for name, W in back.items():
        exact = trained[f"crossbar/{name}"]
        assert W.shape == exact.shape and W.dtype == torch.float32
        assert (W - exact).abs().max() <= 1e-6 * exact.abs().max(), name
