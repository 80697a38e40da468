"""What `chiploop` prints and writes when all goes well: the run's summary line and files, a re-run as
a new sample, rules list/show, export from a sweep directory by validation accuracy, and the
report ranking by validation accuracy with test accuracy beside."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chiploop.experiments.cli import main
from chiploop.learning import RULES

TINY = "name: tiny\ndevice: ideal\nepochs: 2\nlr: 0.3\nmodel: {sizes: [64, 16, 10]}\n"


def test_run_prints_a_short_summary_and_names_every_file_it_wrote(spec_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = spec_file(TINY + "diagnostics: {every: 20, repeats: 2}\n")
    assert main(["run", str(path), "--quiet", "--out", "out"]) == 0
    summary, wrote = capsys.readouterr().out.strip().splitlines()
    assert summary.startswith("tiny: ok after 2 epochs; loss train ") and " / val " in summary
    assert "; accuracy train " in summary and summary.endswith(" s") and "gen_gap" not in summary
    files = wrote.removeprefix("wrote out/: ").split(", ")
    assert sorted(files) == sorted(p.name for p in (tmp_path / "out").iterdir())
    assert {"result.json", "history.csv", "weights.npz", "learning_curves.png", "diagnostics.csv"} <= set(files)
    assert (tmp_path / "out" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_a_rerun_is_a_new_sample_and_an_explicit_out_is_never_overwritten_silently(spec_file, tmp_path, capsys,
                                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = spec_file(TINY)
    assert main(["run", str(path), "--quiet"]) == 0
    first = capsys.readouterr().out
    (base,) = list((tmp_path / "runs").iterdir())
    assert f"wrote runs/{base.name}/" in first
    assert main(["run", str(path), "--quiet"]) == 0
    second = capsys.readouterr().out
    assert second.startswith(f"runs/{base.name} already holds a run of this spec; writing runs/{base.name}-2")
    assert main(["run", str(path), "--quiet"]) == 0
    assert f"writing runs/{base.name}-3" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [base.name, f"{base.name}-2", f"{base.name}-3"]

    before = (base / "result.json").read_text()
    assert main(["run", str(path), "--quiet", "--out", str(base)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (base / "result.json").read_text() == before
    assert main(["run", str(path), "--quiet", "--out", str(base), "--overwrite"]) == 0
    assert json.loads((base / "result.json").read_text())["status"] == "ok"


def test_rules_list_and_show_every_rule(capsys):
    assert main(["rules", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["rule", "trains", "what", "it", "is"] and len(lines) == 1 + len(RULES)
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(RULES) and "rnn" in rows["eprop"] and "mlp" not in rows["eprop"].split("  ")[1]
    assert all(len(row) < 200 and "``" not in row for row in rows.values())
    for name in RULES:
        assert main(["rules", "show", name]) == 0
        text = capsys.readouterr().out
        assert text.startswith(f"{name}: ") and "trains: " in text
    assert main(["rules", "show", "weight_perturbation"]) == 0
    shown = capsys.readouterr().out
    assert "epsilon" in shown and "= 0.01" in shown and "0.0 < value" in shown
    assert "gaussian | rademacher" in shown and "shared_seed" in shown and "= true" in shown


def test_export_takes_a_sweep_directory_and_picks_by_validation_accuracy(spec_file, tmp_path, capsys):
    sweep = spec_file("base: {device: ideal, epochs: 2, model: {sizes: [64, 16, 10]}}\n"
                      "grid: {lr: [0.02, 0.5]}\nseeds: [0, 1]\n", "sweep.yaml")
    out = tmp_path / "sweep"
    assert main(["sweep", str(sweep), "--out", str(out), "--workers", "0", "--quiet"]) == 0
    assert "4 runs: 0 already done, 4 ran on serial; 4 ok, 0 diverged, 0 failed" in capsys.readouterr().out
    card = tmp_path / "card.yaml"
    assert main(["export", str(out), "-o", str(card)]) == 0
    printed = capsys.readouterr().out
    assert "best of 4 runs by val_acc " in printed and ", test_acc " in printed
    assert "lr: 0.5" in card.read_text()

    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "configurations ranked by mean val_acc" in report
    best = report.split("## Best configuration per device")[1].split("##")[0]
    assert "| val_acc (mean ± 95 % CI) | test_acc (mean ± 95 % CI) |" in best and "| 0.5 |" in best
    assert "nan" not in report


def test_one_seed_tables_print_no_nan(spec_file, tmp_path, capsys):
    sweep = spec_file("base: {device: ideal, epochs: 1, model: {sizes: [64, 16, 10]}}\ngrid: {lr: [0.1, 0.3]}\n",
                      "sweep.yaml")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "s"), "--workers", "0", "--quiet"]) == 0
    assert main(["report", str(tmp_path / "s")]) == 0
    printed = capsys.readouterr().out
    assert "(1 seed)" in printed and "nan" not in printed
    assert main(["ablate", str(spec_file(TINY)), "--seeds", "1", "--workers", "0", "--quiet", "--out",
                 str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "(1 seed)" in printed and "nan" not in printed.split("\n| as is |")[1].split("\n\n")[0]


@pytest.mark.parametrize("argv, torch", [(["devices", "list"], False), (["rules", "list"], True)])
def test_listings_import_no_simulator_nor_data_libraries(argv, torch):
    code = ("import sys\nfrom chiploop.experiments.cli import main\nmain(sys.argv[1:])\n"
            "heavy = ['aihwkit', 'sklearn', 'pandas', 'dask', 'distributed', 'matplotlib', 'scipy', 'torch']\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == ("['torch']" if torch else "[]")  # the rules are torch code


def test_a_spec_error_imports_no_simulator_nor_data_libraries(spec_file):
    code = ("import sys\nfrom chiploop.experiments.cli import main\nassert main(sys.argv[1:]) == 2\n"
            "heavy = ['aihwkit', 'sklearn', 'pandas', 'dask', 'distributed', 'matplotlib', 'scipy', 'torch']\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, "run", str(spec_file(TINY + "epoch: 3\n"))],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "['torch']", proc.stderr  # the specs' networks are
    assert "did you mean 'epochs'" in proc.stderr
