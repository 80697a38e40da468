"""Inference over time after in-situ training: real aihwkit inference tiles, programmed and drifted."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel, ReRamCMONoiseModel
from aihwkit.inference.compensation.drift import PerColumnDriftCompensation

from chiploop.devices import InferenceSpec, load_device
from chiploop.devices.aihwkit import _io, to_inference_rpu_config
from chiploop.emulator import Crossbar
from chiploop.emulator.inference import InferenceCrossbar
from chiploop.experiments.cli import main
from chiploop.experiments.deploy import (
    evaluate_over_time,
    exact_accuracy,
    final_key,
    inference_model,
    summarise,
)
from chiploop.experiments.spec import experiment_from_data, load_experiment
from chiploop.experiments.train import Run, train
from chiploop.specs import SpecError

YEAR = 3.15e7


def trained(device, epochs=5, **extra):
    """A tiny digits MLP trained on ``device``: the Run (network, task) after ``epochs``."""
    spec = experiment_from_data({"device": device, "model": {"sizes": [64, 16, 10]}, "lr": 0.5,
                                 "epochs": epochs, **extra})
    run = Run.build(spec)
    with torch.no_grad():
        for epoch in range(1, epochs + 1):
            run.epoch(epoch)
    return run


@pytest.fixture(scope="module")
def constant_step_run():
    torch.set_num_threads(1)
    return trained("constant-step")


@pytest.fixture(scope="module")
def ideal_run():
    torch.set_num_threads(1)
    return trained("ideal")


def with_inference(device, **fields):
    return dataclasses.replace(device, inference=InferenceSpec(**fields))


def mean_acc(rows, time_s, compensation):
    return np.mean([r["test_acc"] for r in rows if r["time_s"] == time_s and r["compensation"] == compensation])


# ---------------------------------------------------------------- configs and the crossbar


def test_inference_rpu_config_follows_the_device_spec():
    spec = load_device("constant-step")
    config = to_inference_rpu_config(spec, compensation=True)
    assert isinstance(config.noise_model, PCMLikeNoiseModel)
    assert isinstance(config.drift_compensation, GlobalDriftCompensation)
    assert config.forward == _io(spec) and config.forward.out_noise == 0.06 and config.mapping.digital_bias
    assert to_inference_rpu_config(spec, compensation=False).drift_compensation is None
    column = to_inference_rpu_config(with_inference(spec, drift_compensation="per_column"), True)
    assert isinstance(column.drift_compensation, PerColumnDriftCompensation)
    assert to_inference_rpu_config(with_inference(spec, drift_compensation="none"), True).drift_compensation is None
    assert isinstance(to_inference_rpu_config(with_inference(spec, noise_model="reram"), True).noise_model,
                      ReRamCMONoiseModel)
    none = to_inference_rpu_config(with_inference(spec, noise_model="none"), True).noise_model
    assert none.prog_noise_scale == none.read_noise_scale == none.drift_scale == 0
    assert to_inference_rpu_config(load_device("ideal"), True).forward.is_perfect


def test_inference_crossbar_programs_drifts_and_reads_forward():
    torch.manual_seed(0)
    W = torch.randn(10, 40) * 0.2
    x = torch.rand(8, 40)
    exact = with_inference(load_device("ideal"), noise_model="none")
    xb = InferenceCrossbar.create(dataclasses.replace(exact, tile_size=16), 10, 40, compensation=True)
    assert isinstance(xb, Crossbar) and len(xb.tiles) == 1 and len(xb.tiles[0]) == 3
    xb.program(W)
    xb.drift(YEAR)
    assert torch.allclose(xb.weights(), W, atol=1e-6)
    assert torch.allclose(xb.forward(x), x @ W.T, atol=1e-5)
    with pytest.raises(NotImplementedError):
        xb.update(x, torch.zeros(8, 10), 0.1)

    pcm = InferenceCrossbar.create(load_device("constant-step"), 10, 40, compensation=False)
    pcm.program(W)
    programmed = pcm.weights()
    assert 0.02 < ((programmed - W).norm() / W.norm()).item() < 0.3  # PCM programming noise
    pcm.drift(YEAR)
    assert pcm.weights().abs().mean() < 0.8 * programmed.abs().mean()  # conductances drift down


def test_compensated_and_uncompensated_crossbars_share_one_noise_realisation():
    W = torch.randn(10, 64) * 0.2
    seen = []
    for compensation in (True, False):
        xb = InferenceCrossbar.create(load_device("constant-step"), 10, 64, compensation)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            xb.program(W)
            xb.drift(YEAR)
        seen.append((xb.weights(), xb.tiles[0][0].alpha.item()))
    assert torch.equal(seen[0][0], seen[1][0])
    assert seen[0][1] > 1.2 and seen[1][1] == 1.0  # global compensation undoes about a year of drift


# ---------------------------------------------------------------- evaluate over time


def test_no_noise_model_keeps_the_exact_accuracy_at_every_time(ideal_run):
    device = with_inference(ideal_run.spec.device, noise_model="none")
    reference = exact_accuracy(ideal_run.network, ideal_run.task)
    rows = evaluate_over_time(ideal_run.network, ideal_run.task, device, times=(1, 86400, YEAR), repeats=2)
    assert len(rows) == 3 * 2 * 2 and {r["compensation"] for r in rows} == {"global", "none"}
    assert set(rows[0]) == {"time_s", "compensation", "repeat", "test_acc", "test_loss"}
    assert reference > 0.8 and all(r["test_acc"] == reference for r in rows)  # ideal IO: no read noise either


def test_no_noise_model_on_a_noisy_chip_is_the_trained_accuracy_up_to_read_noise(constant_step_run):
    run = constant_step_run
    device = with_inference(run.spec.device, noise_model="none")
    trained_acc = run.evaluate()["test_acc"]
    rows = evaluate_over_time(run.network, run.task, device, times=(1, YEAR), repeats=3)
    assert trained_acc > 0.6
    assert all(abs(r["test_acc"] - trained_acc) < 0.05 for r in rows)


def test_pcm_drift_without_compensation_does_not_improve_accuracy(constant_step_run):
    run = constant_step_run
    assert run.spec.device.inference.noise_model == "pcm"
    rows = evaluate_over_time(run.network, run.task, run.spec.device, times=(1, 3600, YEAR), repeats=3,
                              generator=torch.Generator().manual_seed(1))
    # a year of uncompensated drift does not improve accuracy beyond the repeats' noise: the
    # difference of the two means within 3 standard errors (3 repeats each; the programming and read
    # noise of each repeat spread the accuracy by about 0.01-0.02)
    late, early = (np.array([r["test_acc"] for r in rows if r["time_s"] == t and r["compensation"] == "none"])
                   for t in (YEAR, 1.0))
    se = np.sqrt(late.var(ddof=1) / len(late) + early.var(ddof=1) / len(early))
    assert late.mean() <= early.mean() + 3 * max(se, 0.005), (late, early)
    assert mean_acc(rows, 1.0, "none") > 0.6
    summary = summarise(rows)
    assert [(s["time_s"], s["compensation"]) for s in summary] == [
        (1.0, "global"), (3600.0, "global"), (YEAR, "global"), (1.0, "none"), (3600.0, "none"), (YEAR, "none")]
    for s in summary:
        accs = [r["test_acc"] for r in rows if (r["time_s"], r["compensation"]) == (s["time_s"], s["compensation"])]
        assert s["n"] == 3 and s["min"] == min(accs) and s["max"] == max(accs)
        assert s["mean"] == pytest.approx(np.mean(accs)) and s["std"] == pytest.approx(np.std(accs, ddof=1))


def test_reram_and_per_column_models_run_at_every_default_time(constant_step_run):
    run = constant_step_run
    device = with_inference(run.spec.device, noise_model="reram", drift_compensation="per_column")
    rows = evaluate_over_time(run.network, run.task, device, repeats=1)  # default times, 1 s to 1 year
    assert len(rows) == 5 * 2 and {r["compensation"] for r in rows} == {"per_column", "none"}
    assert all(0 <= r["test_acc"] <= 1 and np.isfinite(r["test_loss"]) for r in rows)


def test_without_compensation_in_the_spec_only_the_uncompensated_chip_is_evaluated(constant_step_run):
    run = constant_step_run
    device = with_inference(run.spec.device, drift_compensation="none")
    rows = evaluate_over_time(run.network, run.task, device, times=(1,), repeats=2)
    assert [r["compensation"] for r in rows] == ["none", "none"]


def test_decorrelators_and_biases_stay_digital():
    run = trained("ideal", epochs=1, decorrelation={})
    net = inference_model(run.network, run.spec.device, compensation=True)
    assert isinstance(net.chip.crossbars["layer0"], InferenceCrossbar)
    assert torch.equal(net.chip.crossbars["decorr/layer0"].weights(), run.network.chip.crossbars["decorr/layer0"].weights())
    net.chip.biases["layer0"].add_(1.0)  # a copy: the trained chip keeps its own
    assert not torch.equal(net.chip.biases["layer0"], run.network.chip.biases["layer0"])
    device = with_inference(run.spec.device, noise_model="none")
    rows = evaluate_over_time(run.network, run.task, device, times=(1, YEAR), repeats=1)
    assert all(r["test_acc"] == exact_accuracy(run.network, run.task) for r in rows)


# ---------------------------------------------------------------- specs, training, CLI


def test_specs_validate_inference_fields(spec_file):
    spec = load_experiment(spec_file("device: {preset: reram-sb, inference: {noise_model: reram}}\n"
                                     "inference: {times: [1, 3.15e7], repeats: 2}\n"))
    assert spec.device.inference == InferenceSpec("reram", "global")
    assert spec.inference.times == (1.0, YEAR) and spec.inference.repeats == 2
    assert load_device("pcm").inference == InferenceSpec()
    bad = [({"device": {"preset": "ideal", "inference": {"noise_model": "pcn"}}}, "device.inference.noise_model"),
           ({"device": {"preset": "ideal", "inference": {"drift_compensation": "perColumn"}}},
            "device.inference.drift_compensation"),
           ({"inference": {"times": []}}, "inference.times"),
           ({"inference": {"times": [0, 1]}}, "inference.times"),
           ({"inference": {"times": [1, 1]}}, "inference.times"),
           ({"inference": {"times": 3600}}, "inference.times"),
           ({"inference": {"repeats": 0}}, "inference.repeats"),
           ({"inference": {"repeat": 2}}, "inference.repeat")]
    for data, field in bad:
        with pytest.raises(SpecError) as err:
            experiment_from_data(data)
        assert err.value.field == field


def test_train_with_an_inference_block_stores_rows_summary_and_plot(tmp_path):
    spec = experiment_from_data({"device": "constant-step", "model": {"sizes": [64, 16, 10]}, "lr": 0.5,
                                 "epochs": 2, "inference": {"times": [1, 3.15e7], "repeats": 2}})
    result = train(spec, out_dir=tmp_path, progress=False)
    stored = json.loads((tmp_path / "result.json").read_text())
    assert len(stored["inference"]) == 2 * 2 * 2 and stored["inference"] == result.inference
    for t in (1.0, YEAR):
        for c in ("global", "none"):
            assert stored["final"][final_key(t, c)] == pytest.approx(mean_acc(result.inference, t, c))
            assert final_key(t, c) + "_std" in stored["final"]
    assert "inf_acc_t3.15e+07_global" in stored["final"] and "inf_exact_acc" in stored["final"]
    assert (tmp_path / "inference.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "inference.csv").read_text().startswith("time_s,compensation,repeat,test_acc")


def test_cli_evaluate_round_trip(spec_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    path = spec_file("device: constant-step\nmodel: {sizes: [64, 16, 10]}\nlr: 0.5\nepochs: 2\n")
    assert main(["run", str(path), "--out", str(run_dir), "--quiet"]) == 0
    before = json.loads((run_dir / "result.json").read_text())
    assert before["inference"] == [] and not (run_dir / "inference.png").exists()
    before["note"] = "kept"  # keys evaluate does not know survive
    (run_dir / "result.json").write_text(json.dumps(before))
    capsys.readouterr()

    assert main(["evaluate", str(run_dir), "--times", "1", "3600", "3.15e7", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "| 1 s |" in out and "| 1 y |" in out and "global" in out and "trained weights read exactly" in out
    after = json.loads((run_dir / "result.json").read_text())
    assert after["note"] == "kept"
    for key in ("spec", "spec_hash", "status", "history", "wall_s", "versions", "diagnostics"):
        assert after[key] == before[key]
    assert {k: v for k, v in after["final"].items() if not k.startswith("inf_")} == before["final"]
    assert len(after["inference"]) == 3 * 2 * 2 and "inf_acc_t3600_none" in after["final"]
    assert (run_dir / "inference.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run_dir.glob(".*.tmp"))

    assert main(["evaluate", str(run_dir), "--times", "86400", "--repeats", "1"]) == 0  # replaces, not merges
    again = json.loads((run_dir / "result.json").read_text())
    assert len(again["inference"]) == 2 and "inf_acc_t3600_none" not in again["final"]
    assert "inf_acc_t86400_global" in again["final"] and again["final"]["test_acc"] == before["final"]["test_acc"]


def test_cli_evaluate_uses_the_spec_inference_block(spec_file, tmp_path):
    run_dir = tmp_path / "run"
    path = spec_file("device: {preset: ideal, inference: {noise_model: none}}\nmodel: {sizes: [64, 16, 10]}\n"
                     "lr: 0.5\nepochs: 1\ninference: {times: [10], repeats: 1}\n")
    assert main(["run", str(path), "--out", str(run_dir), "--quiet"]) == 0
    assert main(["evaluate", str(run_dir)]) == 0
    stored = json.loads((run_dir / "result.json").read_text())
    assert [(r["time_s"], r["compensation"]) for r in stored["inference"]] == [(10.0, "global"), (10.0, "none")]
    assert stored["final"]["inf_acc_t10_none"] == stored["final"]["inf_exact_acc"]


def test_cli_evaluate_rejects_bad_input(spec_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    path = spec_file("device: ideal\nmodel: {sizes: [64, 16, 10]}\nepochs: 1\n")
    assert main(["run", str(path), "--out", str(run_dir), "--quiet"]) == 0
    capsys.readouterr()

    def fails(argv, words):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("chiploop: error:") and words in err, err

    fails(["evaluate", str(tmp_path / "missing")], "RUN_DIR")
    fails(["evaluate", str(run_dir), "--repeats", "0"], "--repeats")
    fails(["evaluate", str(run_dir), "--times", "0"], "--times")
    fails(["evaluate", str(run_dir), "--times", "5", "5"], "distinct")

    good = (run_dir / "result.json").read_text()
    data = json.loads(good)
    data["spec"]["device"]["inference"]["noise_model"] = "flash"
    (run_dir / "result.json").write_text(json.dumps(data))
    fails(["evaluate", str(run_dir)], "device.inference.noise_model")
    (run_dir / "result.json").write_text("{not json")
    fails(["evaluate", str(run_dir)], "valid JSON")
    (run_dir / "result.json").write_text(good)

    weights = run_dir / "weights.npz"
    arrays = dict(np.load(weights))
    np.savez(weights, **{**arrays, "crossbar/layer1": np.zeros((10, 3), np.float32)})
    fails(["evaluate", str(run_dir)], "crossbar/layer1")
    np.savez(weights, **{k: v for k, v in arrays.items() if k != "bias/layer0"})
    fails(["evaluate", str(run_dir)], "bias/layer0")
    weights.unlink()
    fails(["evaluate", str(run_dir)], "weights.npz")
    assert json.loads((run_dir / "result.json").read_text())["inference"] == []  # nothing written on failure
