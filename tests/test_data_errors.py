"""Bad data, one clear error each: every bad data file named in a spec makes `chiploop run` exit 2
with one line naming the file (or the field) and what is wrong, before anything trains; every bad
Python array makes :mod:`chiploop.api` raise one SpecError saying the same. The files are written
from a seed; the CLI cases are forked from one pre-imported interpreter (``processes.Forked``), as
in ``test_cli_errors.py``."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from data_files import arrays, images, table
from processes import Forked

import chiploop.api as cl
from chiploop.experiments.data.idx import write_idx
from chiploop.specs import SpecError

BASE = "name: d\ndevice: ideal\nepochs: 1\nmodel: {sizes: [8, 8, 3]}\n"


def _files(root: Path) -> None:
    """The data files the cases name, good and bad."""
    x, y = arrays(0, n=60)
    np.savez(root / "good.npz", x=x, y=y)
    np.savez(root / "nan.npz", x=np.where(np.arange(x.size).reshape(x.shape) == 17, np.nan, x), y=y)
    np.savez(root / "short_y.npz", x=x, y=y[:-5])
    np.savez(root / "flat.npz", x=x[:, 0], y=y)
    np.savez(root / "neg.npz", x=x, y=np.where(np.arange(60) == 3, -1, y))
    np.savez(root / "half.npz", x=x, y=y + 0.5)
    np.savez(root / "one_class.npz", x=x, y=np.zeros(60, int))
    np.savez(root / "narrow.npz", x=x[:, :5], y=y)
    np.savez(root / "seq.npz", x=x.reshape(60, 2, 4), y=y)
    np.save(root / "objects.npy", np.array([{"a": 1}], dtype=object))
    np.savez(root / "objects.npz", x=np.array([[{"a": 1}]] * 60, dtype=object), y=y)
    (root / "text.npz").write_text("x,y\n1,2\n")
    (root / "data.txt").write_text("1 2 3\n")
    table(x, y).to_csv(root / "good.csv", index=False)
    words = table(x, y).astype({"px3": object})
    words.loc[5, "px3"] = "abc"
    words.to_csv(root / "word.csv", index=False)
    inf = table(x, y)
    inf.loc[7, "px1"] = np.inf
    inf.to_csv(root / "inf.csv", index=False)
    names = table(x, y).astype({"label": object})
    names["label"] = [f"class{v}" for v in y]
    names.to_csv(root / "names.csv", index=False)
    table(x, y).to_parquet(root / "good.parquet")
    ix, iy = images(0, 40)
    write_idx(root / "img", ix)
    write_idx(root / "lbl", iy)
    write_idx(root / "lbl30", iy[:30])
    raw = (root / "img").read_bytes()
    (root / "magic").write_bytes(b"\x00\x00\x07\x03" + raw[4:])
    (root / "truncated").write_bytes(raw[:-10])
    (root / "trailing").write_bytes(raw + b"\x00")
    (root / "truncated.gz").write_bytes(gzip.compress(raw)[:-20])


IDX = "task: {{name: idx, train_images: {}, train_labels: {}, test_images: img, test_labels: lbl}}\n"
IMG_MODEL = "name: d\ndevice: ideal\nepochs: 1\nmodel: {sizes: [16, 8, 3]}\n"

# (id, spec text, text the one stderr line must contain)
CASES = [
    ("missing file", BASE + "task: {name: file, path: nowhere.npz}\n", "'nowhere.npz'; allowed: an existing data file"),
    ("directory as data", BASE + "task: {name: file, path: sub}\n", "'sub'; allowed: an existing data file (a directory"),
    ("unknown suffix", BASE + "task: {name: file, path: data.txt}\n", "'data.txt'; allowed: a .npz, .csv or .parquet"),
    ("npz missing input key", BASE + "task: {name: file, path: good.npz, x: X}\n",
     "field 'task.x': got 'X'; allowed: an array key of good.npz (it holds: x, y)"),
    ("npz missing target key", BASE + "task: {name: file, path: good.npz, y: labels}\n", "field 'task.y': got 'labels'"),
    ("not an npz", BASE + "task: {name: file, path: text.npz}\n", "'text.npz'; allowed: a NumPy .npz file"),
    ("pickled objects", BASE + "task: {name: file, path: objects.npz}\n", "would unpickle"),
    ("NaN in inputs", BASE + "task: {name: file, path: nan.npz}\n", "nan.npz'; allowed: finite inputs (it holds 1 NaN"),
    ("inf in a csv", BASE + "task: {name: file, path: inf.csv, x: px, y: label}\n",
     "inf.csv'; allowed: finite inputs (it holds 0 NaN and 1 inf; the first in sample 7)"),
    ("csv non-numeric feature", BASE + "task: {name: file, path: word.csv, x: px, y: label}\n",
     "word.csv'; allowed: numeric input columns (column 'px3' row 5 holds 'abc')"),
    ("csv missing target column", BASE + "task: {name: file, path: good.csv, x: px, y: target}\n",
     "field 'task.y': got 'target'; allowed: a column of good.csv"),
    ("csv no input columns", BASE + "task: {name: file, path: good.csv, x: feat, y: label}\n",
     "field 'task.x': got 'feat'; allowed: a prefix of input columns of good.csv"),
    ("csv missing named column", BASE + "task: {name: file, path: good.csv, x_columns: [px0, px99], y: label}\n",
     "missing 'px99'"),
    ("csv text labels", BASE + "task: {name: file, path: names.csv, x: px, y: label}\n", "a numeric column of names.csv"),
    ("parquet missing column", BASE + "task: {name: file, path: good.parquet, x: px, y: target}\n",
     "a column of good.parquet"),
    ("labels beyond classes", BASE + "task: {name: file, path: good.npz, classes: 2}\n",
     "good.npz'; allowed: class labels 0..1 (it holds 2)"),
    ("negative label", BASE + "task: {name: file, path: neg.npz}\n", "class labels 0..classes-1 (it holds -1)"),
    ("fractional labels", BASE + "task: {name: file, path: half.npz}\n", "integer class labels (it holds "),
    ("classes for regression", BASE + "task: {name: file, path: good.npz, kind: regression, classes: 3}\n",
     "field 'task.classes': got 3; allowed: 0 for kind: regression"),
    ("one class", BASE + "task: {name: file, path: one_class.npz}\n", "at least 2 classes"),
    ("targets and inputs differ in length", BASE + "task: {name: file, path: short_y.npz}\n",
     "short_y.npz'; allowed: one target per input sample (60 inputs"),
    ("1-D inputs", BASE + "task: {name: file, path: flat.npz}\n", "got shape (60,)"),
    ("inputs too narrow for the model", BASE + "task: {name: file, path: narrow.npz}\n",
     "field 'model.sizes': got [8, 8, 3]; allowed: widths starting with 5 and ending with 3 for task file (narrow.npz)"),
    ("sequences to an MLP", BASE + "task: {name: file, path: seq.npz}\n",
     "field 'model.kind': got 'mlp'; allowed: a recurrent network (kind: rnn) for task file (seq.npz)"),
    ("time_steps not a divisor", BASE + "task: {name: file, path: good.npz, time_steps: 3}\n",
     "field 'task.time_steps': got 3; allowed: a divisor of the 8 features of good.npz"),
    ("fewer samples than a batch", BASE + "batch_size: 64\ntask: {name: file, path: good.npz}\n",
     "field 'batch_size': got 64; allowed: at most the 40 training samples of task file (good.npz)"),
    ("test file of another width", BASE + "task: {name: file, path: good.npz, test: narrow.npz}\n",
     "narrow.npz'; allowed: inputs shaped like the training inputs (8,)"),
    ("file field on a named task", BASE + "task: {name: digits, path: good.npz}\n",
     "field 'task.path': got 'good.npz'; allowed: only with name: file"),
    ("idx wrong magic", IMG_MODEL + IDX.format("magic", "lbl"), "its first bytes are 0x00000703"),
    ("idx truncated", IMG_MODEL + IDX.format("truncated", "lbl"), "'truncated'; allowed: an IDX file of shape (40, 4, 4)"),
    ("idx trailing bytes", IMG_MODEL + IDX.format("trailing", "lbl"), "trailing bytes"),
    ("idx gzip truncated", IMG_MODEL + IDX.format("truncated.gz", "lbl"), "'truncated.gz'; allowed: a complete gzip file"),
    ("idx labels of another count", IMG_MODEL + IDX.format("img", "lbl30"),
     "field 'task.train_labels': got 'lbl30'; allowed: one label per image of img (40 images, 30 labels)"),
    ("idx file missing from the spec", IMG_MODEL + "task: {name: idx, train_images: img, train_labels: lbl}\n",
     "field 'task.test_images'"),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("bad_data")
    _files(root)
    (root / "sub").mkdir()
    outputs = tmp_path_factory.mktemp("outputs")
    forked = Forked(preload=("pandas", "pyarrow.parquet", "sklearn.model_selection"))
    try:
        done = {}
        for k, (name, text, _) in enumerate(CASES):
            (root / f"case{k}.yaml").write_text(text)
            done[name] = forked.run(["run", f"case{k}.yaml"], root, outputs / str(k))
    finally:
        forked.close()
    assert not (root / "runs").exists()  # nothing trained, no run directory left
    return done


def test_there_are_enough_cases_and_each_is_distinct():
    assert len(CASES) >= 15
    assert len({c[0] for c in CASES}) == len(CASES) and len({c[1] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name, text, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_data_exits_2_with_one_line_naming_the_file_and_the_problem(outcomes, name, text, expected):
    proc = outcomes[name]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("chiploop: error: case"), proc.stderr
    assert expected in proc.stderr, proc.stderr


X, Y = arrays(0, n=60)

# (id, the arguments of cl.task, text the SpecError must contain)
PYTHON_CASES = [
    ("NaN", (np.where(X > 2.5, np.nan, X), Y), "field 'task.data'.*finite inputs"),
    ("label beyond classes", (X, Y), "class labels 0..1 \\(it holds 2\\)"),
    ("lengths differ", (X, Y[:10]), "one target per input sample"),
    ("object inputs", (np.array([[object()]] * 60), Y), "field 'task.x'.*numeric arrays"),
    ("string labels", (X, np.array(["a"] * 60)), "field 'task.y'.*numeric arrays"),
    ("not a pair", (X,), "field 'task'.*\\(x, y\\)"),
    ("test of another width", (X, Y), "the test arrays.*shaped like the training inputs"),
]
PYTHON_OPTIONS = {"label beyond classes": {"classes": 2}, "test of another width": {"test": (X[:, :3], Y)}}


@pytest.mark.parametrize("name, args, expected", PYTHON_CASES, ids=[c[0] for c in PYTHON_CASES])
def test_bad_python_arrays_raise_one_spec_error(name, args, expected):
    data = args if len(args) == 2 else args[0]
    with pytest.raises(SpecError, match=expected):
        if len(args) == 2:
            cl.task(data[0], data[1], **PYTHON_OPTIONS.get(name, {}))
        else:
            cl.task(data)
