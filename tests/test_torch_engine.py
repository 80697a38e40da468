"""The torch crossbar engine (issue #16): aihwkit's pulsed update and periphery, seeded and batched.

Oracles where the answer is exact (shape table, update management, ideal reads, tiles, clones,
population axis, bit-identical re-runs); statistical comparisons against real aihwkit tiles where
it is random (mean within 5 % and variance within 10 %, relative Frobenius, over >= 1,000 repeats).
"""

import dataclasses
import json

import numpy as np
import pytest
import torch

from chiploop.devices.spec import load_device
from chiploop.emulator import Chip, LayerSignal, TorchCrossbar, make_crossbar
from chiploop.emulator.torch_engine import devices
from chiploop.emulator.torch_engine.pulses import coincidences, management
from chiploop.experiments.engine_match import read_match, update_match
from chiploop.specs import SpecError

POW_STEP = {"preset": "constant-step", "response": "pow_step", "mirrors": "PowStepDevice"}
CASES = {"constant_step": "constant-step", "linear_step": "ecram", "soft_bounds": "reram-sb",
         "exp_step": "reram-es", "pow_step": POW_STEP}


def torch_device(preset, **fields):
    data = {"preset": preset} if isinstance(preset, str) else dict(preset)
    return load_device({**data, **fields, "engine": "torch"})


def test_shape_table_matches_aihwkit_classes():
    from chiploop.devices.aihwkit import mirror_classes
    names = {"A_up", "A_down", "a", "b", "dw_min_std_add", "dw_min_std_slope", "gamma_up", "gamma_down",
             "gamma_up_dtod", "gamma_down_dtod", "allow_increasing", "mean_bound_reference", "mult_noise",
             "slope_up_dtod", "slope_down_dtod", "reference_mean", "reference_std", "subtract_symmetry_point",
             "pow_gamma", "pow_gamma_dtod", "pow_up_down", "pow_up_down_dtod", "lifetime", "lifetime_dtod"}
    assert set(devices.SHAPES) == set(mirror_classes())
    for name, cls in mirror_classes().items():
        fields = dataclasses.asdict(cls())
        ours = devices.SHAPES[name]
        for key in names & set(fields):
            if key.startswith("lifetime") and fields.get("lifetime", 0) == 0:
                continue
            assert ours.get(key, 0.0 if key.startswith("lifetime") else None) == pytest.approx(fields[key]), (name, key)


def test_update_management_oracle():
    x = torch.tensor([[[0.5, -1.0, 0.0]]])
    d = torch.tensor([[[0.2, -0.1]]])
    bl, A, B = management(x, d, lr=0.1, dw_min=0.001, desired_bl=31)
    k = 0.1 * 1.0 * 0.2 / 0.001                                   # 20 pulses asked for
    assert int(bl) == 20
    a0 = (0.1 / (0.001 * 20)) ** 0.5
    assert float(A) == pytest.approx(a0 * (1.0 / 0.2) ** 0.5) and float(B) == pytest.approx(a0 * (0.2 / 1.0) ** 0.5)
    assert float(B) * 1.0 * float(A) * 0.2 * 20 == pytest.approx(k)   # max cell: BL p_x p_d = k
    bl, _, _ = management(x, d, lr=10.0, dw_min=0.001, desired_bl=31)
    assert int(bl) == 31                                           # clipped at desired_bl
    bl, _, _ = management(x, torch.zeros(1, 1, 2), lr=0.1, dw_min=0.001, desired_bl=31)
    assert int(bl) == 0


def test_mean_coincidences_are_lr_x_d_over_dw_min():
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([[0.9, -0.4, 0.1]]).expand(4000, 1, 3)
    d = torch.tensor([[0.3, -0.05]]).expand(4000, 1, 2)
    up, down = coincidences(x, d, 0.02, 0.001, 31, g)
    want = 0.02 * torch.outer(d[0, 0], x[0, 0]) / 0.001            # signed: down where x d > 0
    mean = (up - down).mean((0, 1))
    assert torch.allclose(mean, -want, rtol=0.05, atol=0.02)
    assert ((up > 0) & (down > 0)).sum() == 0


def test_engine_field_and_refusals():
    assert load_device("constant-step").engine == "aihwkit"
    assert isinstance(make_crossbar(torch_device("constant-step"), 3, 4), TorchCrossbar)
    with pytest.raises(SpecError, match="algorithm.*sgd on engine torch"):
        torch_device("reram-sb-tt")
    with pytest.raises(SpecError, match="drift.model.*none on engine torch"):
        torch_device("pcm")
    with pytest.raises(SpecError, match="engine_device.*cpu, cuda"):
        load_device({"preset": "constant-step", "engine_device": "tpu"})
    with pytest.raises(SpecError, match="engine"):
        load_device({"preset": "constant-step", "engine": "numpy"})


def test_ideal_io_reads_are_exact_across_tiles_and_population():
    spec = torch_device("constant-step", read_noise=0.0, dac_bits=0, adc_bits=0, out_bound=0.0, tile_size=4)
    xb = TorchCrossbar.create(spec, 6, 9, "layer0", population=3)
    g = torch.Generator().manual_seed(1)
    W = torch.rand(3, 6, 9, generator=g) * 0.2 - 0.1
    xb.program(W)
    x = torch.randn(3, 5, 9, generator=g)
    d = torch.randn(3, 5, 6, generator=g)
    assert torch.allclose(xb.forward(x), x @ W.transpose(1, 2), atol=1e-6)
    assert torch.allclose(xb.backward(d), d @ W, atol=1e-6)


def test_dac_adc_quantise_on_aihwkit_grid():
    spec = torch_device("constant-step", read_noise=0.0, dw_min_dtod=0.0, w_bound_dtod=0.0)
    xb = make_crossbar(spec, 1, 2)
    xb.program(torch.tensor([[0.5, 0.25]]))
    x = torch.tensor([[1.0, 0.3]])          # abs-max 1; steps are fractions of the full range 2·bound:
    y = xb.forward(x)                       # DAC 2/126 on [-1, 1], ADC 2·12/510 on [-12, 12]
    y_want = round((0.5 + 0.25 * round(0.3 * 63) / 63) * 510 / 24) * 24 / 510
    assert float(y) == pytest.approx(y_want, abs=1e-6)


def test_bound_management_halves_input_until_outputs_fit():
    spec = torch_device("constant-step", read_noise=0.0, dac_bits=0, adc_bits=0, out_bound=1.0,
                        w_bound_dtod=0.0, w_max=5.0, w_min=-5.0)
    xb = make_crossbar(spec, 1, 4)
    xb.program(torch.full((1, 4), 0.9))
    y = xb.forward(torch.ones(1, 4))                               # 3.6 > bound 1: read at 1/4 and rescaled
    assert float(y) == pytest.approx(3.6, rel=1e-6)
    z = xb.backward(torch.ones(1, 1))                              # transposed read: no bound management
    assert torch.allclose(z, torch.full((1, 4), 0.9))


def _quantised_read_by_hand(W, x, bm, dac_bits=7, adc_bits=9, bound=12.0):
    """One tile's noiseless read of one sample, in float64: abs-max, DAC, MVM, ADC, clip, and (forward)
    β = 1, 2, 4, ... while some output exceeds the bound, up to max_bm_res / r_in."""
    r_in, r_out = 2 / (2 ** dac_bits - 2), 2 * bound / (2 ** adc_bits - 2)
    s = float(np.abs(x).max())
    if s == 0:
        return np.zeros(W.shape[0])
    beta = 1.0
    while True:
        y = np.rint(W @ (np.rint(x / (s * beta) / r_in) * r_in) / r_out) * r_out
        if not bm or np.abs(y).max() <= bound or beta * 2 > 0.25 / r_in:
            return np.clip(y, -bound, bound) * s * beta
        beta *= 2


def test_noiseless_reads_are_the_quantised_product_by_hand():
    spec = torch_device("constant-step", read_noise=0.0, w_bound_dtod=0.0, w_max=5.0, w_min=-5.0, tile_size=8)
    g = torch.Generator().manual_seed(5)
    W = torch.rand(2, 5, 12, generator=g, dtype=torch.float64) - 0.5
    W[:, 0, :8] = 2.0                                  # 16 on an input of ones: bound management
    W[1, 1, 8:] = -4.0                                 # -16 on the second tile, population member 1
    x = torch.rand(2, 6, 12, generator=g, dtype=torch.float64) * 2 - 1
    x[:, 1] = 0.0                                      # a sample of zeros reads 0
    for b, s in ((0, 0.7), (2, 0.3), (3, 1.7), (4, 2.9)):  # bound management, then at β = 2 on the DAC
        x[:, b] = s                                        # grid's midpoints ±63/2 (and ∓63/4)
        x[:, b, 3] = -s / 2
    d = torch.randn(2, 6, 5, generator=g, dtype=torch.float64) * 3
    d[:, 1] = 0.0
    Wn, xn, dn = W.numpy(), x.numpy(), d.numpy()
    tiles = [slice(0, 8), slice(8, 12)]
    fwd = np.array([[sum(_quantised_read_by_hand(Wn[p][:, c], xn[p, b, c], True) for c in tiles)
                     for b in range(6)] for p in range(2)])
    bwd = np.array([[np.concatenate([_quantised_read_by_hand(Wn[p][:, c].T, dn[p, b], False) for c in tiles])
                     for b in range(6)] for p in range(2)])
    assert (np.abs(fwd[:, [0, 2, 3, 4], 0]) > 12 * x[:, [0, 2, 3, 4], 0].numpy()).all()  # bound management acted
    pop = TorchCrossbar.create(spec, 5, 12, population=2)
    pop.program(W.float())
    assert np.allclose(pop.forward(x.float()).numpy(), fwd, atol=1e-5)
    assert np.allclose(pop.backward(d.float()).numpy(), bwd, atol=1e-5)
    for p in range(2):                                 # one chip, 2-D reads (also of float64 inputs)
        one = make_crossbar(spec, 5, 12)
        one.program(W[p].float())
        assert np.allclose(one.forward(x[p]).numpy(), fwd[p], atol=1e-5)
        assert np.allclose(one.backward(d[p].float()).numpy(), bwd[p], atol=1e-5)
        assert one.forward(x[p, :0].float()).shape == (0, 5)


def test_same_seed_same_numbers_clones_independent_and_restore_exact():
    spec = torch_device("reram-sb")
    g = torch.Generator().manual_seed(0)
    W = torch.rand(5, 7, generator=g) * 0.2 - 0.1
    x, d = torch.rand(4, 7, generator=g), torch.randn(4, 5, generator=g) * 0.5

    def run():
        xb = make_crossbar(spec, 5, 7, name="layer0", seed=3)
        xb.program(W)
        xb.update(x, d, 0.05)
        return xb, xb.forward(x)

    (a, ya), (b, yb) = run(), run()
    assert torch.equal(a.weights(), b.weights()) and torch.equal(ya, yb)
    c = make_crossbar(spec, 5, 7, name="layer0", seed=4)
    c.program(W)
    assert not torch.equal(c.weights(), a.weights())
    k1, k2 = a.clone(), a.clone()
    k1.update(x, d, 0.05)
    k2.update(x, d, 0.05)
    assert not torch.equal(k1.weights(), k2.weights())
    k1.restore(a)
    assert torch.equal(k1.weights(), a.weights()) and torch.equal(k1.persistent, a.persistent)
    # cloning does not move the parent's stream: the same next update with and without clones
    b.update(x, d, 0.05)
    a.update(x, d, 0.05)
    assert torch.equal(a.weights(), b.weights())


@pytest.mark.parametrize("tile_size", [512, 4])   # 4: a 4x6 layer on a grid of tiles, each with its own management
def test_population_expand_is_one_program_of_independent_copies(tile_size):
    spec = torch_device("constant-step", dw_min_dtod=0.0, up_down_dtod=0.0, w_bound_dtod=0.0, tile_size=tile_size)
    xb = make_crossbar(spec, 4, 6, seed=2)
    xb.program(torch.full((4, 6), 0.05))
    pop = xb.expand(2000)
    assert torch.equal(pop.weights()[5], xb.weights())
    g = torch.Generator().manual_seed(0)
    x, d = torch.rand(3, 6, generator=g), torch.randn(3, 4, generator=g) * 0.5
    pop.update(x, d, 0.01)
    dW = pop.weights() - xb.weights()
    assert dW.std(0).min() > 0                                      # the copies draw their own pulses
    standard_error = dW.std(0) / 2000 ** 0.5
    assert ((dW.mean(0) + 0.01 * d.T @ x).abs() <= 5 * standard_error + 1e-6).all()   # unbiased


def test_stack_and_member_move_chips_in_and_out_of_a_population():
    spec = torch_device("reram-sb", read_noise=0.0, dac_bits=0, adc_bits=0, out_bound=0.0)
    chips = [make_crossbar(spec, 3, 5, name="layer0", seed=s) for s in range(4)]
    g = torch.Generator().manual_seed(0)
    for c in chips:
        c.program(torch.rand(3, 5, generator=g) * 0.2 - 0.1)
    pop = TorchCrossbar.stack(chips)
    assert pop.population == 4
    x = torch.rand(4, 2, 5, generator=g)
    assert torch.allclose(pop.forward(x), torch.stack([c.forward(x[p]) for p, c in enumerate(chips)]), atol=1e-6)
    pop.update(x, torch.randn(4, 2, 3, generator=g), 0.1)
    one = pop.member(2)
    assert torch.equal(one.weights(), pop.weights()[2]) and torch.equal(one.par["max_bound"], chips[2].par["max_bound"])
    assert torch.equal(one.persistent[0], pop.persistent[2])


def test_chip_with_torch_crossbars_trains_through_the_usual_verbs():
    spec = torch_device("ecram")
    chip = Chip(factory=lambda n, o, i: make_crossbar(spec, o, i, name=n, seed=1))
    chip.make("layer0", torch.zeros(3, 4), "weight", bias=torch.zeros(3))
    target = torch.tensor([[0.2, -0.1, 0.0, 0.1], [0.0, 0.1, -0.2, 0.0], [0.1, 0.1, 0.1, -0.1]])
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        x = torch.rand(8, 4, generator=g)
        _, y = chip.read("layer0", x)
        chip.apply([LayerSignal("layer0", x, (y - x @ target.T) / 8)], lr=0.5)
    assert (chip.weights()["layer0"] - target).abs().mean() < 0.04


@pytest.mark.parametrize("device", ["constant_step", "linear_step"])
def test_update_statistics_match_aihwkit(device):
    row = update_match(load_device(CASES[device]), repeats=1000, start="edge" if device == "linear_step" else "middle")
    assert row["mean_err"] <= 0.05 and row["var_err"] <= 0.10, row


def test_read_statistics_match_aihwkit():
    for scale in (1.0, 20.0):                                      # 20: outputs hit the bound
        row = read_match(load_device("constant-step"), repeats=2000, scale=scale)
        assert max(row["forward_mean_err"], row["backward_mean_err"]) <= 0.05, row
        assert max(row["forward_var_err"], row["backward_var_err"]) <= 0.10, row


VARIANT = {"up_down": 0.2, "dw_min_std": 1.0, "dw_min_dtod": 0.1, "w_bound_dtod": 0.1}  # 2nd parameter setting


@pytest.mark.slow
@pytest.mark.parametrize("device", list(CASES))
@pytest.mark.parametrize("setting, start", [("preset", "middle"), ("preset", "edge"), ("variant", "middle")])
def test_update_statistics_match_aihwkit_every_device(device, setting, start):
    data = {"preset": CASES[device]} if isinstance(CASES[device], str) else dict(CASES[device])
    spec = load_device({**data, **(VARIANT if setting == "variant" else {})})
    # exp_step (reram-es): at 8,000 repeats its persistent mean error was 0.023-0.053 over 20 runs of the
    # engine before the fourth session and 0.024-0.060 after, so the 0.05 target failed about one run in
    # ten; 16,000 repeats bring the usual run to 0.015-0.023. Runs at 0.041 and 0.069 remained (2 of 8),
    # and they come from aihwkit's side: two torch populations of 16,000 differ by 0.015-0.021 (12 runs)
    repeats = 16000 if spec.response == "exp_step" else 8000 if spec.dw_min_std > 1 else 4000
    row = update_match(spec, repeats=repeats, pulses=25, start=start)
    for key in ("mean_err", "persistent_mean_err"):
        assert row.get(key, 0) <= 0.05, row
    for key in ("var_err", "persistent_var_err"):
        assert row.get(key, 0) <= 0.10, row


def test_a_run_on_the_torch_engine_is_reproducible_bit_for_bit(tmp_path):
    from chiploop.experiments.spec import experiment_from_data
    from chiploop.experiments.train import train
    from chiploop.experiments.weights import load_weights
    data = {"device": {"preset": "reram-sb", "engine": "torch", "dw_min_dtod": 0.3, "corrupt_devices_prob": 0.02},
            "model": {"sizes": [64, 16, 10]}, "epochs": 1, "lr": 0.1, "seed": 3,
            "diagnostics": {"every": 20, "repeats": 2}}
    spec = experiment_from_data(data)
    assert spec.device.read_noise > 0 and spec.device.write_noise_std > 0 and spec.device.dac_bits > 0
    runs = []
    for name in ("a", "b"):
        train(spec, out_dir=tmp_path / name, progress=False)
        stored = json.loads((tmp_path / name / "result.json").read_text())
        untimed = [{k: v for k, v in row.items() if not k.endswith("_s")} for row in [stored["final"], *stored["history"]]]
        runs.append((untimed[0], untimed[1:], load_weights(tmp_path / name / "weights.npz")))
    (fa, ha, wa), (fb, hb, wb) = runs
    assert fa == fb and ha == hb
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    unprobed = train(experiment_from_data({k: v for k, v in data.items() if k != "diagnostics"}), progress=False)
    assert (unprobed.final["test_acc"], unprobed.final["test_loss"]) == (fa["test_acc"], fa["test_loss"])  # probes
    other = train(experiment_from_data({**data, "seed": 4}), progress=False)       # run on clones' own streams
    assert other.final["test_acc"] != fa["test_acc"] or other.final["test_loss"] != fa["test_loss"]


@pytest.mark.parametrize("preset", ["constant-step", "ecram", "capacitor", "reram-sb",
                                    {"preset": "reram-sb", "mirrors": "ReRamArrayHfO2PresetDevice"}])
def test_affine_walk_equals_pulse_by_pulse_with_the_same_steps(preset):
    from chiploop.emulator.torch_engine.crossbar import affine_walk
    spec = torch_device(preset)
    g = torch.Generator().manual_seed(0)
    K, L = 60, 37
    seq = torch.randint(-1, 2, (K, L), generator=g).float()
    par = devices.populate(spec, (K,), g)
    w = (torch.rand(K, generator=g) * 2 - 1) * 0.6
    xi = torch.randn(K, L, generator=g) * 3                          # large steps: the walks hit the bounds
    out = affine_walk(spec, w, seq, par, xi / 3 * 1.0)
    ref = w.clone()
    for t in range(L):
        ref = devices.pulse(spec, ref, seq[:, t], par, g, xi[:, t] / 3)
    assert out is not None and (out - ref).abs().max() < 1e-5
    big = torch_device(preset, dw_min=0.2)                           # steps large enough to clip
    par = devices.populate(big, (K,), g)
    out = affine_walk(big, w, seq, par, xi)
    ref = w.clone()
    for t in range(L):
        ref = devices.pulse(big, ref, seq[:, t], par, g, xi[:, t])
    if out is not None:                                              # None: some α <= 0, pulse by pulse instead
        assert (out - ref).abs().max() < 1e-5
    assert ((ref >= par["max_bound"] - par.get("reference", 0) - 1e-6)
            | (ref <= par["min_bound"] - par.get("reference", 0) + 1e-6)).any()


def test_bench_engine_runs_its_cpu_path_and_says_when_there_is_no_cuda(monkeypatch, capsys):
    import runpy
    import sys
    from pathlib import Path
    bench = Path(__file__).parent.parent / "benchmarks" / "bench_engine.py"
    monkeypatch.setattr(sys, "argv", ["bench_engine.py", "--sizes", "64", "8", "10", "--repeats", "2", "--epochs", "1",
                                      "--run-repeats", "1", "--population", "2"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(bench), run_name="__main__")
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "1. training step" in out and "2. torch-engine run" in out and "3. P = 2 chips" in out
    monkeypatch.setattr(sys, "argv", ["bench_engine.py", "--cuda"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(bench), run_name="__main__")
    out = capsys.readouterr().out
    assert done.value.code == 0
    if not torch.cuda.is_available():
        assert "no CUDA device" in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_engine_runs_on_cuda_with_the_same_exact_reads():
    spec = torch_device("constant-step", engine_device="cuda", read_noise=0.0, dac_bits=0, adc_bits=0, out_bound=0.0)
    xb = make_crossbar(spec, 6, 9, seed=1)
    W = torch.rand(6, 9) * 0.2 - 0.1
    xb.program(W)
    x = torch.rand(5, 9)
    assert torch.allclose(xb.forward(x).cpu(), x @ xb.weights().cpu().T, atol=1e-5)
    xb.update(x, torch.randn(5, 6) * 0.1, 0.1)
    assert xb.weights().device.type == "cuda"


@pytest.mark.parametrize("preset", __import__("chiploop.devices.spec", fromlist=["preset_names"]).preset_names())
def test_every_shipped_preset_runs_on_the_torch_engine_or_is_refused_by_name(preset):
    base = load_device(preset)
    if base.algorithm not in ("float", "sgd") or base.drift.model != "none":
        with pytest.raises(SpecError, match="on engine torch"):
            torch_device(preset)
        return
    spec = torch_device(preset)
    xb = make_crossbar(spec, 5, 7, ideal=spec.is_float, name="layer0", seed=1)
    g = torch.Generator().manual_seed(0)
    xb.program(torch.rand(5, 7, generator=g) * 0.2 - 0.1)
    x, d = torch.rand(4, 7, generator=g), torch.randn(4, 5, generator=g) * 0.3
    assert xb.forward(x).shape == (4, 5) and xb.backward(d).shape == (4, 7)
    before = xb.weights()
    copy = xb.clone()
    copy.update(x, d, 0.1)
    copy.post_update_step()
    assert not torch.equal(copy.weights(), before) and torch.equal(xb.weights(), before)
    copy.restore(xb)
    assert torch.equal(copy.weights(), before)
    assert torch.isfinite(xb.read_weights()).all()
