"""Update probes: bias and variance of the applied update, split into algorithmic, read and
write (device) parts."""

import pytest
import torch
from conftest import attach, ideal_problem

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run, train
from chiploop.learning import Backprop, FeedbackAlignment, make_rule
from chiploop.learning.diagnostics import probe


def parts(rows, layer=None):
    """{part: (mean rel bias, mean rel var)} over layers (or one layer)."""
    out = {}
    for part in {r["part"] for r in rows}:
        mine = [r for r in rows if r["part"] == part and (layer is None or r["layer"] == layer)]
        out[part] = (sum(r["rel_bias"] for r in mine) / len(mine), sum(r["rel_var"] for r in mine) / len(mine))
    return out


SMALL = (10, 12, 4)  # tanh, batch 16, seed 0


def test_backprop_on_ideal_crossbars_has_no_error_of_any_kind():
    net, batch, loss, _ = ideal_problem(SMALL)
    rows = probe(net, Backprop(), None, batch, loss, 0.1, repeats=4)
    assert {r["part"] for r in rows} == {"algorithmic", "read", "write", "physical", "total"}
    for part, (bias, var) in parts(rows).items():
        assert bias <= 1e-8 and var <= 1e-8, (part, bias, var)


def test_feedback_alignment_on_ideal_crossbars_is_biased_by_the_algorithm_only():
    net, batch, loss, gen = ideal_problem(SMALL)
    rule = FeedbackAlignment()
    rows = probe(net, rule, attach(rule, net, gen), batch, loss, 0.1, repeats=4)
    found = parts(rows, "layer0")
    for part in ("read", "write", "physical"):
        assert found[part][0] <= 1e-8 and found[part][1] <= 1e-8, (part, found[part])
    assert found["algorithmic"][0] > 0.1


def test_node_perturbation_bias_falls_with_repeats_and_its_variance_stays():
    """The mean of K draws of NP approaches the gradient: relative bias ~ 1/sqrt(K) (measured
    1.30, 0.52, 0.19 at K = 16, 128, 1024 on this net, relative variance about 35 at each);
    we ask for a halving per 8x."""
    net, batch, loss, gen = ideal_problem(SMALL)
    rule = make_rule("node_perturbation", {"sigma": 1e-3})
    state = attach(rule, net, gen)
    found = {K: parts(probe(net, rule, state, batch, loss, 0.1, repeats=K))["algorithmic"]
             for K in (16, 128, 1024)}
    assert found[128][0] < 0.5 * found[16][0] and found[1024][0] < 0.5 * found[128][0], found
    assert all(var > 1.0 for _, var in found.values())


def _physical_variance(**device) -> float:
    run = Run.build(experiment_from_data({"device": {"preset": "constant-step", "construction_seed": 1, **device}}))
    x, y = run.task.x_train[:32], run.task.y_train[:32]
    rows = probe(run.network, run.rule, run.state, (x, y), run.task.loss, 0.1, repeats=32)
    return parts(rows)["physical"][1]


def test_device_variance_follows_step_size_and_cycle_to_cycle_noise():
    """Backprop on constant-step, 32 clones per probe. Measured (3 runs): dw_min 0.004 / 0.001 /
    0.00025 -> 15.0-15.4 / 3.4-3.5 / 1.05-1.09; dw_min_std 0 / 1 / 3 -> 3.0-3.1 / 6.6-6.8 / 35.6-36.0.
    Each step is a factor 2 or more, so monotonicity is asked for with a 1.5x margin."""
    by_step = [_physical_variance(dw_min=v) for v in (0.004, 0.001, 0.00025)]
    assert by_step[0] > 1.5 * by_step[1] > 1.5 * 1.5 * by_step[2], by_step
    by_noise = [_physical_variance(dw_min_std=v) for v in (0.0, 1.0, 3.0)]
    assert by_noise[0] * 1.5 < by_noise[1] and by_noise[1] * 1.5 < by_noise[2], by_noise


def test_probing_never_changes_the_training_trajectory(tmp_path):
    base = {"device": "ideal", "epochs": 2, "lr": 0.5, "curvature": "end"}
    plain = train(experiment_from_data(base), progress=False)
    probed = train(experiment_from_data({**base, "diagnostics": {"every": 10, "repeats": 3}}), out_dir=tmp_path,
                   progress=False)
    assert [r["train_loss"] for r in plain.history] == [r["train_loss"] for r in probed.history]
    assert probed.final["physical_rel_var"] <= 1e-8 and probed.final["total_cos"] > 0.999
    lines = (tmp_path / "diagnostics.csv").read_text().splitlines()
    assert lines[0].startswith("step,epoch,layer,part") and len(lines) == 1 + 8 * 2 * 5  # 8 probes x 2 layers x 5 parts
    assert plain.final["hessian_top_eig"] > 0 and plain.final["hessian_trace"] > 0


def test_probing_an_analog_chip_leaves_it_alone():
    run = Run.build(experiment_from_data({"device": "reram-sb-tt"}))
    before = {k: v.clone() for k, v in run.network.chip.weights().items()}
    biases = {k: v.clone() for k, v in run.network.chip.biases.items()}
    rows = probe(run.network, run.rule, run.state, (run.task.x_train[:16], run.task.y_train[:16]), run.task.loss,
                 0.1, repeats=3)
    assert all(torch.equal(before[k], v) for k, v in run.network.chip.weights().items())
    assert all(torch.equal(biases[k], v) for k, v in run.network.chip.biases.items())
    assert parts(rows)["write"][1] > 0


@pytest.mark.parametrize("options, field", [({"every": 0}, "diagnostics.every"),
                                            ({"repeats": 1}, "diagnostics.repeats")])
def test_bad_diagnostics_options(options, field):
    from chiploop.specs import SpecError
    with pytest.raises(SpecError) as info:
        experiment_from_data({"diagnostics": options})
    assert info.value.field == field


def test_ablation_switches_off_each_nonideality_the_device_has(tmp_path):
    from chiploop.devices.spec import nonidealities
    from chiploop.experiments.sweeps.ablation import ablate, covered_fields, variants
    assert covered_fields() == set(nonidealities())  # every declared nonideality has an ablation
    spec = experiment_from_data({"device": "reram-sb", "epochs": 1, "lr": 0.3})
    found = variants(spec)
    assert {"as is", "no write noise", "no cycle-to-cycle", "no device-to-device", "no bounds", "no read noise",
            "no DAC/ADC", "no pulse granularity"} == set(found)  # reram-sb: no asymmetry, stuck devices, drift
    assert found["no write noise"].device.write_noise_std == 0 and found["no write noise"].device.dw_min_std == 3.75
    assert found["no bounds"].device.w_max == 125.0
    rows, counts = ablate(spec, seeds=2, out_dir=tmp_path, progress=False)
    assert {k: counts[k] for k in ("runs", "already_done", "ran")} == {"runs": 2 * len(found), "already_done": 0,
                                                                    "ran": 2 * len(found)}
    assert [r["variant"] for r in rows] == list(found)
    assert rows[0]["d_test_acc"] == 0 and all(r["physical_rel_var"] > 0 for r in rows)
    assert (tmp_path / "ablation.md").read_text().count("\n| no ") == len(found) - 1
