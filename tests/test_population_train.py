"""A population of small chips trained in one process (chiploop.api.train_population; docs/torch_engine.md,
Populations): like P single runs, the same on the ideal chip, bit-identical when re-run."""

import math
import statistics

import numpy as np
import pytest
import torch

import chiploop.api as cl
from chiploop.experiments.population import train_population
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train
from chiploop.specs import SpecError

TORCH_DEVICE = {"preset": "constant-step", "engine": "torch"}


def base(**changes):
    return {"task": "digits", "model": {"sizes": [64, 16, 10]}, "device": "ideal", "rule": "backprop", "lr": 0.1,
            "epochs": 2, "batch_size": 32, **changes}


def without_wall(rows):
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


@pytest.mark.parametrize("rule", ["backprop", "feedback_alignment"])
def test_members_on_the_ideal_chip_are_their_single_runs(tmp_path, rule):
    """Everything is deterministic given the seed on the ideal chip: each member's history, final
    metrics and chip ledger are its single run's (to float32 rounding of the batched matmuls), and
    its weights.npz likewise."""
    seeds = [0, 1, 2]
    pop = cl.train_population(base(rule=rule), seeds, out=tmp_path / "pop", progress=False)
    assert [r.spec["seed"] for r in pop] == seeds
    for seed, member in zip(seeds, pop):
        single = train(experiment_from_data(base(rule=rule, seed=seed)), tmp_path / f"single{seed}", progress=False)
        assert member.status == single.status == "ok"
        assert member.spec_hash == single.spec_hash
        assert member.ledger == single.ledger
        for a, b in zip(without_wall(member.history), without_wall(single.history), strict=True):
            assert a.keys() == b.keys()
            for k in a:
                assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (seed, k)
        with np.load(tmp_path / "pop" / f"seed-{seed}" / "weights.npz", allow_pickle=False) as a, \
                np.load(tmp_path / f"single{seed}" / "weights.npz", allow_pickle=False) as b:
            assert sorted(a.files) == sorted(b.files)
            for k in a.files:
                if a[k].dtype.kind == "f":
                    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
                else:  # the chip's roles, as text
                    np.testing.assert_array_equal(a[k], b[k])


def test_a_torch_engine_population_rerun_is_bit_identical(tmp_path):
    spec = base(device=TORCH_DEVICE, epochs=1)
    first = cl.train_population(spec, [3, 4], out=tmp_path / "a", progress=False)
    again = cl.train_population(spec, [3, 4], out=tmp_path / "b", progress=False)
    for a, b in zip(first, again):
        assert without_wall(a.history) == without_wall(b.history)
        assert {k: v for k, v in a.final.items() if k != "wall_s"} == {k: v for k, v in b.final.items() if k != "wall_s"}
    for seed in (3, 4):
        with np.load(tmp_path / "a" / f"seed-{seed}" / "weights.npz", allow_pickle=False) as a, \
                np.load(tmp_path / "b" / f"seed-{seed}" / "weights.npz", allow_pickle=False) as b:
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k])
    assert first[0].final["test_acc"] != first[1].final["test_acc"]  # the members are different runs


@pytest.mark.slow
def test_torch_engine_members_are_statistically_like_single_runs():
    """constant-step, backprop, 2 epochs, 5 seeds each way: the mean final train loss and test accuracy
    of the population's members and of the single runs agree within 4 standard errors of their
    difference (plus 0.02: the two means' noise is of that size with 5 runs each); and every member
    learned (test accuracy well above chance, 0.1)."""
    seeds = list(range(5))
    pop = train_population([experiment_from_data(base(device=TORCH_DEVICE, seed=s)) for s in seeds], progress=False)
    singles = [train(experiment_from_data(base(device=TORCH_DEVICE, seed=s)), progress=False) for s in seeds]
    for metric in ("train_loss", "test_acc"):
        a = [r.final[metric] for r in pop]
        b = [r.final[metric] for r in singles]
        se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
        assert abs(statistics.mean(a) - statistics.mean(b)) <= 4 * se + 0.02, (metric, a, b)
    assert min(r.final["test_acc"] for r in pop) > 0.3
    assert all(r.final["chip_pulses_per_step"] > 0 for r in pop)  # each member's ledger saw its own pulses


@pytest.mark.parametrize("changes, field", [
    ({"device": {"preset": "constant-step"}}, "device.engine"),      # aihwkit: one tile at a time
    ({"rule": "sign_symmetry"}, "rule.name"),
    ({"model": {"kind": "rnn"}, "task": "seq_digits"}, "model.kind"),
    ({"diagnostics": {"every": 5, "repeats": 2}}, "diagnostics"),
])
def test_unsupported_populations_are_refused_naming_the_field(changes, field):
    with pytest.raises(SpecError) as err:
        train_population([experiment_from_data(base(**changes, seed=s)) for s in (0, 1)], progress=False)
    assert err.value.field == field


def test_members_must_differ_only_in_seed():
    specs = [experiment_from_data(base(seed=0)), experiment_from_data(base(seed=1, lr=0.2))]
    with pytest.raises(SpecError, match="differ only in seed"):
        train_population(specs, progress=False)
    with pytest.raises(SpecError, match="distinct seeds"):
        cl.train_population(base(), [1, 1], progress=False)


def test_members_may_differ_in_the_device_fields_drawn_at_creation(tmp_path):
    """Bounds and device-to-device spreads act only when the devices are drawn: members that differ in
    them share one program, and each member's devices are exactly its single run's draws."""
    from chiploop.emulator.ledger import unwrap
    from chiploop.emulator.population import PopulationChip
    from chiploop.experiments.train import Run

    devices = [{**TORCH_DEVICE, "w_bound_dtod": 0.0, "construction_seed": 7},
               {**TORCH_DEVICE, "w_bound_dtod": 0.4, "w_max": 0.8, "dw_min_dtod": 0.5, "construction_seed": 7},
               {**TORCH_DEVICE, "corrupt_devices_prob": 0.2, "up_down_dtod": 0.1, "construction_seed": 9}]
    specs = [experiment_from_data(base(device=d, seed=s, epochs=1)) for s, d in enumerate(devices)]
    runs = [Run.build(s) for s in specs]
    stacked = PopulationChip.stack([run.network.chip for run in runs])
    for name in stacked.crossbars:
        pop = unwrap(stacked.crossbars[name])
        for p, run in enumerate(runs):
            single = unwrap(run.network.chip.crossbars[name])
            for key, value in single.par.items():
                assert torch.equal(pop.par[key][p], value[0]), (name, p, key)
    assert unwrap(stacked.crossbars["layer0"]).par["max_bound"][0].std() < 1e-6 < \
        unwrap(stacked.crossbars["layer0"]).par["max_bound"][1].std()          # the draws do differ
    results = train_population(specs, progress=False)
    assert all(r.final["test_acc"] > 0.1 for r in results)
    with pytest.raises(SpecError, match="differ only in seed and the device fields"):   # a per-step scalar
        train_population([specs[0], experiment_from_data(base(device={**TORCH_DEVICE, "dw_min": 0.002}, seed=5))],
                         progress=False)
