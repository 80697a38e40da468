"""Final metrics of a few ideal-chip configurations, to the last digit: ideal runs are deterministic,
so a refactoring that changes none of the maths must leave every number equal.

    .venv/bin/python experiments/ideal_fingerprint.py OUT.json          # train and write the metrics
    .venv/bin/python experiments/ideal_fingerprint.py --compare A.json B.json   # list what differs

The configurations cover the demo's ideal row (3 seeds), feedback alignment with the update probe
and curvature, node perturbation (anp) with decorrelation, DFA on a deeper tanh net, SPSA, sign
symmetry with decorrelation, FA with on-chip decorrelation and analog feedback (ideal device),
node perturbation on teacher-student regression with curvature every epoch, and backprop with
injected bias/variance and the probe.
"""
import json
import math
import sys
from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import train

BASE = {"task": {"name": "digits"}, "model": {"sizes": [64, 64, 10], "activation": "relu"}, "device": "ideal",
        "batch_size": 32}
CONFIGS = {
    "demo-ideal-bp": {"rule": "backprop", "lr": 1.0, "schedule": "cosine", "epochs": 20},
    "fa-probe-curv": {"rule": "feedback_alignment", "lr": 0.5, "epochs": 5, "diagnostics": {"every": 20, "repeats": 4},
                      "curvature": "end"},
    "anp-decorr": {"rule": {"name": "node_perturbation", "options": {"variant": "anp", "sigma": 0.01}}, "lr": 0.05,
                   "epochs": 5, "decorrelation": {"eta": 0.001}, "curvature": "end"},
    "dfa-tanh-deep": {"rule": "direct_feedback_alignment", "lr": 0.3, "epochs": 5, "model": {"sizes": [64, 32, 16, 10], "activation": "tanh"}},
    "spsa-bp-injected": {"rule": {"name": "spsa", "options": {"samples": 8}}, "lr": 0.1, "epochs": 2},
    "ss-fa-decorr": {"rule": {"name": "sign_symmetry", "options": {"refresh_every": 3}}, "lr": 0.3, "epochs": 3, "decorrelation": {"eta": 0.005}},
    "fa-decorr-onchip": {"rule": {"name": "feedback_alignment", "options": {"feedback": "analog"}}, "lr": 0.3, "epochs": 3, "decorrelation": {"eta": 0.005, "on_chip": True}},
    "np-teacher": {"task": {"name": "teacher_student", "kind": "regression"}, "model": {"sizes": [20, 32, 5], "activation": "sigmoid"}, "rule": {"name": "node_perturbation", "options": {"sigma": 0.001}}, "lr": 0.05, "epochs": 3, "curvature": "epochs"},
    "bp-injected": {"rule": "backprop", "lr": 0.3, "epochs": 3, "injected": {"bias": 0.3, "variance": 0.5}, "diagnostics": {"every": 30, "repeats": 3}},
}


def compare(a_path: str, b_path: str) -> int:
    a, b = json.load(open(a_path)), json.load(open(b_path))
    differ = 0
    for run in a:
        for key, value in a[run].items():
            other = b.get(run, {}).get(key)
            nan = isinstance(value, float) and isinstance(other, float) and math.isnan(value) and math.isnan(other)
            if value != other and not nan:
                differ += 1
                print(f"{run} {key}: {value!r} -> {other!r}")
    print(f"{differ} of {sum(len(v) for v in a.values())} numbers differ")
    return 1 if differ else 0


if sys.argv[1] == "--compare":
    sys.exit(compare(sys.argv[2], sys.argv[3]))
out = {}
for name, cfg in CONFIGS.items():
    for seed in ((0, 1, 2) if name == "demo-ideal-bp" else (0,)):
        spec = experiment_from_data({**BASE, **cfg, "seed": seed, "name": name})
        r = train(spec, None, progress=False)
        out[f"{name}-s{seed}"] = {k: v for k, v in r.final.items() if k != "wall_s"}
        print(name, seed, {k: r.final[k] for k in ("train_loss", "test_acc") if k in r.final}, flush=True)
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
