"""Every spec shipped in ``experiments/`` still loads: a single run (``chiploop run``), a sweep
(``base`` + ``grid``/``zip``: ``chiploop sweep``) or a suite (``base`` + ``runs``: ``chiploop demo
--suite``), each expanded to its runs and validated, so a renamed field or task cannot leave a
published command broken. (The ``--base`` specs of ``tune_lr.py`` are single runs without a rule.)"""

from pathlib import Path

import runpy

import pytest
import yaml

from chiploop.experiments.spec import load_experiment
from chiploop.experiments.sweeps.spec import expand, load_sweep
from chiploop.experiments.sweeps.suite import load_suite, suite_runs

SPECS = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_a_shipped_spec_loads_and_expands(path):
    data = yaml.safe_load(path.read_text())
    if "runs" in data:
        runs = [spec for specs in suite_runs(load_suite(path), str(path)).values() for spec in specs]
    elif "base" in data:
        runs = expand(load_sweep(path))
    elif path.with_suffix(".py").is_file():  # a study config read by its script, which builds the sweeps
        script = runpy.run_path(str(path.with_suffix(".py")))
        runs = [spec for sweep in script["sweeps"](data) for spec in expand(sweep)]
    else:
        runs = [load_experiment(path)]
    assert runs and len({spec.spec_hash() for spec in runs}) == len(runs)


def test_the_shipped_specs_were_found():
    assert len(SPECS) >= 15
