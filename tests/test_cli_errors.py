"""Every bad invocation of `chiploop` gets exit code 2 and exactly one line on stderr that names what
was wrong (the field, the flag or the file), with no traceback and before anything is trained.

Each case is a process of its own, with its own stdout, stderr and exit code, in one directory that
holds the files the cases name; no case may leave a `runs/` behind. The cases are forked from one
interpreter that imported the CLI once (``processes.Forked``: milliseconds a case, not the seconds of
importing torch); a sample of them, and `--help` and `--version` of the command and of every
subcommand, run as `python -m chiploop.experiments.cli` from scratch."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from processes import Forked

from chiploop.experiments.sweeps.lock import exclusive

CLI = [sys.executable, "-m", "chiploop.experiments.cli"]
SUBCOMMANDS = ["run", "export", "sweep", "report", "ablate", "devices", "rules", "demo", "evaluate", "serve"]

GOOD = "name: tiny\ndevice: ideal\nepochs: 1\nmodel: {sizes: [64, 8, 10]}\n"
FILES = {
    "good.yaml": GOOD,
    "empty.yaml": "",
    "comment.yaml": "# only a comment\n",
    "bad_yaml.yaml": "name: x\nlr: [0.1\n",
    "list.yaml": "- a\n- b\n",
    "epochs0.yaml": GOOD.replace("epochs: 1", "epochs: 0"),
    "unknown_key.yaml": GOOD + "learning_rate: 0.1\n",
    "unknown_rule.yaml": GOOD + "rule: hebbian\n",
    "bad_option.yaml": GOOD + "rule: {name: feedback_alignment, feedback: wireless}\n",
    "unknown_option.yaml": GOOD + "rule: {name: backprop, momentum: 0.9}\n",
    "task3.yaml": GOOD + "task: 3\n",
    "sizes.yaml": GOOD.replace("[64, 8, 10]", "[10, 8, 10]"),
    "rnn_rule.yaml": GOOD + "rule: eprop\n",
    "bad_device.yaml": GOOD.replace("device: ideal", "device: reram-xx"),
    "negative_lr.yaml": GOOD + "lr: -1\n",
    "torch_tt.yaml": GOOD.replace("device: ideal", "device: {preset: reram-sb-tt, engine: torch}"),
    "bad_engine.yaml": GOOD.replace("device: ideal", "device: {preset: constant-step, engine: numpy}"),
    "sweep.yaml": "base: {device: ideal, epochs: 1, model: {sizes: [64, 8, 10]}}\ngrid: {lr: [0.1, 0.2]}\n",
    "sweep_grid.yaml": "base: {device: ideal, epochs: 1}\ngrid: {lr: 0.1}\n",
    "sweep_base.yaml": "base: {device: ideal, epochs: 0}\ngrid: {lr: [0.1]}\n",
    "sweep_key.yaml": "base: {device: ideal}\ngrdi: {lr: [0.1]}\n",
    "sweep_population.yaml": "base: {device: ideal, epochs: 1}\ngrid: {lr: [0.1]}\npopulation: sometimes\n",
    "suite.yaml": "seeds: 0\nbase: {device: ideal}\nruns: [{name: a}]\n",
    "suite_target.yaml": "base: {device: ideal}\nruns: [{name: a}]\ntarget_from: b\n",
    "card.yaml": "format_version: 1\n",
    "stdp_on_mlp.yaml": GOOD + "rule: sym_stdp\n",
    "snn_on_digits.yaml": "device: ideal\nepochs: 1\nmodel: {kind: snn}\nrule: sym_stdp\n",
    "snn_dt.yaml": "device: ideal\nepochs: 1\ntask: {name: spike_digits, dt: 0.5}\nmodel: {kind: snn}\n",
    "snn_threshold.yaml": "device: ideal\nepochs: 1\ntask: spike_digits\nmodel: {kind: snn, v_th: -70}\n",
    "snn_readout.yaml": "device: ideal\nepochs: 1\ntask: spike_digits\nmodel: {kind: snn, readout: current}\n",
    "stdp_out_rate.yaml": "device: ideal\nepochs: 1\ntask: spike_digits\nmodel: {kind: snn}\n"
                          "rule: {name: sym_stdp, out_rate: 0}\n",
    "spike_rate.yaml": "device: ideal\nepochs: 1\ntask: {name: spike_digits, max_rate: 900, dt: 2}\n"
                       "model: {kind: snn, dt: 2}\n",
    "a_file.txt": "not a directory\n",
    "done/result.json": "{}\n",
    "empty_dir/.keep": "",
    "token.txt": "t0ken\n",
    "remote_noport.yaml": GOOD + "chip: {remote: localhost, token_file: token.txt}\n",
    "remote_notoken.yaml": GOOD + "chip: {remote: '127.0.0.1:1', token_file: missing.txt}\n",
    "remote_nobody.yaml": GOOD + "chip: {remote: '127.0.0.1:1', token_file: token.txt, timeout_s: 2, retries: 0}\n",
    "remote_crossbar.yaml": GOOD + "crossbar: ideal\nchip: {remote: '127.0.0.1:1', token_file: token.txt}\n",
}

# (id, argv, text the one stderr line must contain)
CASES = [
    # the command line itself
    ("no command", [], "required: command"),
    ("unknown command", ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("unknown flag", ["run", "good.yaml", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ("run without spec", ["run"], "SPEC / --card"),
    ("run with spec and card", ["run", "good.yaml", "--card", "card.yaml"], "SPEC / --card"),
    ("report without dir", ["report"], "required: SWEEP_DIR"),
    ("devices bad action", ["devices", "remove"], "invalid choice: 'remove'"),
    ("rules bad action", ["rules", "explain"], "invalid choice: 'explain'"),
    # spec files
    ("missing spec", ["run", "missing.yaml"], "missing.yaml: field '<file>'"),
    ("directory as spec", ["run", "empty_dir"], "Is a directory"),
    ("bad YAML", ["run", "bad_yaml.yaml"], "line 3, column 1"),
    ("empty spec", ["run", "empty.yaml"], "at least one field"),
    ("comment-only spec", ["run", "comment.yaml"], "at least one field"),
    ("list spec", ["run", "list.yaml"], "field '<top level>'"),
    ("epochs 0", ["run", "epochs0.yaml"], "field 'epochs'"),
    ("unknown key", ["run", "unknown_key.yaml"], "field 'learning_rate'"),
    ("unknown rule", ["run", "unknown_rule.yaml"], "field 'rule.name'"),
    ("bad rule option", ["run", "bad_option.yaml"], "field 'rule.options.feedback'"),
    ("unknown rule option", ["run", "unknown_option.yaml"], "field 'rule.options.momentum'"),
    ("task: 3", ["run", "task3.yaml"], "field 'task'"),
    ("sizes for the task", ["run", "sizes.yaml"], "field 'model.sizes'"),
    ("rule for another network", ["run", "rnn_rule.yaml"], "field 'rule"),
    ("unknown device", ["run", "bad_device.yaml"], "field 'device.preset'"),
    ("unknown engine", ["run", "bad_engine.yaml"], "field 'device.engine'"),
    ("compound device on the torch engine", ["run", "torch_tt.yaml"], "on engine torch"),
    ("bad engine device", ["run", "good.yaml", "--set", "device={preset: constant-step, engine_device: tpu}"],
     "engine_device"),
    ("STDP on an MLP", ["run", "stdp_on_mlp.yaml"], "field 'rule.name'"),
    ("spiking network on rate digits", ["run", "snn_on_digits.yaml"], "field 'model.kind'"),
    ("snn dt not the task's", ["run", "snn_dt.yaml"], "field 'model.dt'"),
    ("margin on a 10-class task", ["run", "good.yaml", "--set", "task={name: digits, margin: 10}"],
     "field 'task.margin'"),
    ("too many train points", ["run", "good.yaml", "--set", "task={name: digits_parity, train_points: 5000}"],
     "field 'task.train_points'"),
    ("batch larger than train points", ["run", "good.yaml", "--set",
                                        "task={name: digits_parity, train_points: 20}", "--set", "model.sizes=[64, 8, 1]",
                                        "--set", "batch_size=32"], "field 'batch_size'"),
    ("batch size neither a number nor all", ["run", "good.yaml", "--set", "batch_size=full"], "field 'batch_size'"),
    ("injected convention unknown", ["run", "good.yaml", "--set", "injected={convention: authors}"],
     "field 'injected.convention'"),
    ("train points on teacher-student", ["run", "good.yaml", "--set",
                                         "task={name: teacher_student, train_points: 50}"], "field 'task.train_points'"),
    ("snn threshold below rest", ["run", "snn_threshold.yaml"], "field 'model.v_th'"),
    ("snn readout unknown", ["run", "snn_readout.yaml"], "field 'model.readout'"),
    ("stdp out_rate zero", ["run", "stdp_out_rate.yaml"], "field 'rule.options.out_rate'"),
    ("spike rate over one per step", ["run", "spike_rate.yaml"], "field 'task.max_rate'"),
    ("negative lr", ["run", "negative_lr.yaml"], "field 'lr'"),
    ("mlp init unknown", ["run", "good.yaml", "--set", "model.init=xavier"], "field 'model.init'"),
    ("decorrelation variance unknown", ["run", "good.yaml", "--set", "decorrelation={variance: median}"],
     "field 'decorrelation.variance'"),
    ("decorrelation target zero", ["run", "good.yaml", "--set", "decorrelation={target: 0}"],
     "field 'decorrelation.target'"),
    ("missing card", ["run", "--card", "missing.yaml"], "missing.yaml"),
    ("bad card", ["run", "--card", "card.yaml"], "card.yaml: field 'rule'"),
    # --set
    ("--set without =", ["run", "good.yaml", "--set", "lr"], "field '--set'"),
    ("--set bad value", ["run", "good.yaml", "--set", "lr=-1"], "--set lr=-1: field 'lr'"),
    ("--set unknown key", ["run", "good.yaml", "--set", "lrr=0.1"], "--set lrr=0.1: field 'lrr'"),
    ("--set bad YAML", ["run", "good.yaml", "--set", "model.sizes=[1,"], "--set model.sizes"),
    ("--set unknown preset", ["run", "good.yaml", "--set", "device=nope"], "--set device=nope"),
    # output locations
    ("run --out on a file", ["run", "good.yaml", "--out", "a_file.txt"], "field '--out'"),
    ("run --out under a file", ["run", "good.yaml", "--out", "a_file.txt/run"], "a_file.txt is a file"),
    ("run --out on a finished run", ["run", "good.yaml", "--out", "done"], "done/result.json exists; --overwrite"),
    ("sweep dir in use", ["sweep", "sweep.yaml", "--out", "busy", "--workers", "0"], "busy is in use by chiploop "
                                                                                    "process"),
    # sweeps
    ("sweep missing spec", ["sweep", "missing.yaml"], "missing.yaml"),
    ("sweep grid not a list", ["sweep", "sweep_grid.yaml"], "field 'grid.lr'"),
    ("sweep bad base", ["sweep", "sweep_base.yaml", "--dry-run"], "field 'epochs'"),
    ("sweep unknown key", ["sweep", "sweep_key.yaml"], "field 'grdi'"),
    ("sweep population not a bool", ["sweep", "sweep_population.yaml", "--dry-run"], "field 'population'"),
    ("sweep --no-population with a value", ["sweep", "sweep.yaml", "--no-population=yes"], "--no-population"),
    ("sweep --workers not a number", ["sweep", "sweep.yaml", "--workers", "two"], "argument --workers"),
    ("sweep --workers negative", ["sweep", "sweep.yaml", "--workers", "-1"], "field '--workers'"),
    ("sweep --scheduler no scheme", ["sweep", "sweep.yaml", "--scheduler", "localhost:8786"], "field '--scheduler'"),
    ("sweep --workers and --scheduler", ["sweep", "sweep.yaml", "--workers", "2", "--scheduler",
                                         "tcp://127.0.0.1:8786"], "field '--workers'"),
    ("sweep --set swept field", ["sweep", "sweep.yaml", "--set", "lr=0.5", "--dry-run"], "lr is swept"),
    ("sweep --set bad value", ["sweep", "sweep.yaml", "--set", "epochs=0", "--dry-run"], "--set epochs=0"),
    ("sweep --set without =", ["sweep", "sweep.yaml", "--set", "epochs"], "field '--set'"),
    # ablate and demo
    ("ablate --seeds 0", ["ablate", "good.yaml", "--seeds", "0"], "field '--seeds'"),
    ("ablate --seeds not a number", ["ablate", "good.yaml", "--seeds", "three"], "argument --seeds"),
    ("ablate --workers negative", ["ablate", "good.yaml", "--workers", "-2"], "field '--workers'"),
    ("ablate bad spec", ["ablate", "epochs0.yaml"], "field 'epochs'"),
    ("demo --seeds 0", ["demo", "--seeds", "0"], "field '--seeds'"),
    ("demo --epochs 0", ["demo", "--epochs", "0"], "field '--epochs'"),
    ("demo missing suite", ["demo", "--suite", "missing.yaml"], "missing.yaml"),
    ("demo bad suite", ["demo", "--suite", "suite.yaml", "--out", "demo_out"], "field 'seeds'"),
    ("demo bad target", ["demo", "--suite", "suite_target.yaml", "--out", "demo_out"], "field 'target_from'"),
    # reading results
    ("export without output", ["export", "done"], "-o / --weights"),
    ("export dir without runs", ["export", "empty_dir", "-o", "card_out.yaml"], "field 'RUN_DIR'"),
    ("export missing dir", ["export", "nowhere", "-o", "card_out.yaml"], "field 'RUN_DIR'"),
    ("export weights of two runs", ["export", "done", "done", "--weights", "w.npz"], "field '--weights'"),
    ("export weights of a sweep dir", ["export", "empty_dir", "--weights", "w.npz"], "field '--weights'"),
    ("export weights without weights", ["export", "done", "--weights", "w.npz"], "weights.npz"),
    ("export fusion without weights", ["export", "done", "--fusion", "f.csv"], "field '--fusion'"),
    ("export nir of two runs", ["export", "done", "done", "--nir", "net.nir"], "field '--nir'"),
    ("export nir of a sweep dir", ["export", "empty_dir", "--nir", "net.nir"], "field '--nir'"),
    ("export nir of a bad run", ["export", "done", "--nir", "net.nir"], "done/result.json"),
    ("report of a non-sweep dir", ["report", "empty_dir"], "field 'SWEEP_DIR'"),
    ("report of a file", ["report", "a_file.txt"], "field 'SWEEP_DIR'"),
    ("evaluate of a non-run dir", ["evaluate", "empty_dir"], "field 'RUN_DIR'"),
    ("evaluate --repeats not a number", ["evaluate", "done", "--repeats", "many"], "argument --repeats"),
    ("evaluate --times not a number", ["evaluate", "done", "--times", "soon"], "argument --times"),
    # a chip over gRPC
    ("serve without token", ["serve"], "required: --token-file"),
    ("serve missing token file", ["serve", "--token-file", "missing.txt"], "field '--token-file'"),
    ("serve empty token file", ["serve", "--token-file", "empty.yaml"], "is empty"),
    ("serve unknown device", ["serve", "--token-file", "token.txt", "--device", "reram-xx"], "field '--device'"),
    ("serve cert without key", ["serve", "--token-file", "token.txt", "--tls-cert", "a_file.txt"],
     "field '--tls-cert / --tls-key'"),
    ("serve missing cert", ["serve", "--token-file", "token.txt", "--tls-cert", "no.pem", "--tls-key", "no.pem"],
     "field '--tls-cert'"),
    ("serve bad port", ["serve", "--token-file", "token.txt", "--port", "70000"], "field '--port'"),
    ("serve bad session timeout", ["serve", "--token-file", "token.txt", "--session-timeout", "0"],
     "field '--session-timeout'"),
    ("serve on a foreign address", ["serve", "--token-file", "token.txt", "--host", "203.0.113.7", "--port", "0"],
     "field '--host/--port'"),
    ("remote chip without port", ["run", "remote_noport.yaml"], "field 'chip.remote'"),
    ("remote chip token file missing", ["run", "remote_notoken.yaml"], "field 'chip.token_file'"),
    ("remote chip not answering", ["run", "remote_nobody.yaml"], "field 'chip.remote'"),
    ("remote chip with ideal crossbars", ["run", "remote_crossbar.yaml"], "field 'crossbar'"),
    # discovering devices and rules
    ("devices show unknown", ["devices", "show", "reram-xx"], "'reram-xx'"),
    ("devices show without name", ["devices", "show"], "devices show NAME"),
    ("rules show unknown", ["rules", "show", "backprops"], "did you mean 'backprop'"),
    ("rules show without name", ["rules", "show"], "rules show NAME"),
]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, cwd=cwd, timeout=300)


def _layout(root: Path) -> Path:
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> tuple[Path, dict[str, subprocess.CompletedProcess]]:
    """Every case run once, each in a forked process, in one directory laid out from FILES."""
    root = _layout(tmp_path_factory.mktemp("cli"))
    outputs = tmp_path_factory.mktemp("outputs")
    forked = Forked()
    try:
        with exclusive(root / "busy"):
            done = {name: forked.run(argv, root, outputs / str(k)) for k, (name, argv, _) in enumerate(CASES)}
    finally:
        forked.close()
    return root, done


def test_there_are_enough_cases_and_each_is_distinct():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES) and len({tuple(c[1]) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_a_bad_invocation_exits_2_with_one_line_naming_the_problem(outcomes, name, argv, expected):
    proc = outcomes[1][name]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert proc.stderr.startswith("chiploop"), proc.stderr


# the same, each from a fresh `python -m chiploop.experiments.cli`: the real entry point
FROM_SCRATCH = ["no command", "bad YAML", "epochs 0", "--set bad value", "run --out on a finished run",
                "sweep --workers not a number", "ablate --seeds 0", "rules show unknown", "devices show unknown",
                "report of a non-sweep dir"]


def test_a_sample_of_the_cases_from_scratch_give_the_same_line(outcomes, tmp_path):
    root = _layout(tmp_path)
    cases = [c for c in CASES if c[0] in FROM_SCRATCH]
    assert len(cases) == len(FROM_SCRATCH)
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(lambda case: _run(case[1], root), cases))
    for (name, _, _), proc in zip(cases, procs):
        forked = outcomes[1][name]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (name, proc.stderr)
        assert proc.stderr == forked.stderr.replace(str(outcomes[0]), str(root)), name


def test_no_bad_invocation_trained_or_wrote_anything(outcomes):
    root = outcomes[0]
    assert not (root / "runs").exists()
    assert sorted(p.name for p in (root / "done").iterdir()) == ["result.json"]
    assert not (root / "busy" / "ledger.sqlite").exists() and not (root / "demo_out").exists()
    assert not (root / "card_out.yaml").exists() and not (root / "w.npz").exists()


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--version"], *([c, "--help"] for c in SUBCOMMANDS)],
                         ids=lambda argv: " ".join(argv))
def test_help_and_version_exit_0(argv, tmp_path):
    proc = _run(argv, tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    if argv == ["--version"]:
        assert proc.stdout.startswith("chiploop 0.") and "torch 2." in proc.stdout and "aihwkit 1." in proc.stdout
    else:
        assert proc.stdout.startswith("usage: chiploop")
