"""The spec path stays light: reading specs, listing rules and reporting a spec error load neither
torch nor aihwkit nor the data stack (issue 11: every CLI call used to cost ~3 s before it did
anything). Each case runs in a fresh interpreter and lists the heavy libraries it really executed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "aihwkit", "numpy", "pandas", "dask", "distributed", "matplotlib", "sklearn", "scipy")


def _executed(code: str, tmp_path) -> list[str]:
    """Run ``code`` in a fresh interpreter; the heavy libraries it executed (lazily registered ones
    that were never touched do not count)."""
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        from chiploop.lazy import loaded
        print("HEAVY", json.dumps([m for m in {HEAVY!r} if loaded(m)]))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("HEAVY ")][-1]
    return json.loads(line[len("HEAVY "):])


CASES = {
    "import every spec module": """
        import chiploop.experiments.spec, chiploop.experiments.sweeps.spec, chiploop.experiments.cli
        from chiploop.learning import RULES, make_rule
        from chiploop.emulator.networks import NETWORKS
        """,
    "rules list and show": """
        from chiploop.experiments.cli import main
        assert main(["rules", "list"]) == 0
        for name in ("eprop", "backprop", "node_perturbation"):
            assert main(["rules", "show", name]) == 0
        """,
    "devices list": """
        from chiploop.experiments.cli import main
        assert main(["devices", "list"]) == 0
        """,
    "spec errors through the CLI": """
        from pathlib import Path
        from chiploop.experiments.cli import main
        bad = {"rule: {name: eprop, feedback: sideways}\\ntask: seq_digits\\nmodel: {kind: rnn}\\n": "rule",
               "model: {kind: rnn, hidden: 0}\\ntask: seq_digits\\n": "model",
               "rule: {name: bptt}\\n": "bptt",
               "device: {preset: reram-sb, dw_min: -3}\\n": "dw_min",
               "task: digits\\nepochs: 0\\n": "epochs"}
        for i, text in enumerate(bad):
            Path(f"bad{i}.yaml").write_text(text)
            assert main(["run", f"bad{i}.yaml"]) == 2, text
        """,
    "every rule built from its options": """
        from chiploop.learning import RULES, make_rule, chain, decorrelate, inject
        rules = [make_rule(name) for name in RULES]
        chain(rules[0], decorrelate(), inject(bias=0.1))
        """,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_spec_path_loads_no_heavy_library(case, tmp_path):
    assert _executed(CASES[case], tmp_path) == []


def test_torch_loads_on_first_use_and_is_then_the_real_module(tmp_path):
    code = """
        import sys
        from chiploop.lazy import loaded, torch
        from chiploop.emulator import IdealCrossbar
        assert not loaded("torch")
        xb = IdealCrossbar(torch.ones(2, 3))
        import torch as real
        assert loaded("torch") and torch is real and sys.modules["torch"] is real
        assert xb.forward(real.ones(1, 3)).tolist() == [[3.0, 3.0]]
        """
    assert "torch" in _executed(code, tmp_path)


def test_the_detector_sees_a_module_level_use(tmp_path):
    """The check above can fail: a module-level ``torch.X`` (as once in the activation table) loads it."""
    code = """
        from chiploop.lazy import torch
        TABLE = {"relu": torch.relu}
        """
    assert "torch" in _executed(code, tmp_path)
