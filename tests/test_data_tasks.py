"""Data tasks from files (npz, csv, parquet, MNIST-format IDX plain and gzip, 3-D sequences) and from
Python (arrays, tensors, a Dataset): each file written from a seed gives exactly the task of the
equivalent Python call (same arrays, same splits), trains, and is split and scaled as documented."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from data_files import write_all

import chiploop.api as cl
from chiploop.experiments.cli import main
from chiploop.experiments.data.load import load
from chiploop.experiments.spec import TaskSpec
from chiploop.experiments.tasks import make_task
from chiploop.specs import SpecError

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, write_all(root, seed=0)


def _pixels(u8: np.ndarray) -> np.ndarray:
    """What the IDX loader makes of uint8 images: flattened, / 255 in float32."""
    return u8.reshape(len(u8), -1).astype(np.float32) / np.float32(255)


# (id, file spec with paths relative to the data dir, the equivalent Python call's arguments)
FORMATS = [
    ("npz", {"path": "data.npz", "scale": "standard", "seed": 3},
     lambda a: ((a["x"], a["y"]), {"scale": "standard", "seed": 3})),
    ("csv", {"path": "data.csv", "x": "px", "y": "label", "scale": "minmax", "seed": 1},
     lambda a: ((a["x"], a["y"]), {"scale": "minmax", "seed": 1})),
    ("parquet", {"path": "data.parquet", "x_columns": [f"px{i}" for i in range(8)], "y": "label"},
     lambda a: ((a["x"], a["y"]), {})),
    ("idx plain + gzip", {"name": "idx", "train_images": "train-images", "train_labels": "train-labels",
                          "test_images": "test-images.gz", "test_labels": "test-labels.gz", "val_fraction": 0.2},
     lambda a: ((_pixels(a["train_x"]), a["train_y"]),
                {"test": (_pixels(a["test_x"]), a["test_y"]), "val_fraction": 0.2})),
    ("3-D sequences", {"path": "seq.npz", "seed": 2},
     lambda a: ((a["seq_x"], a["seq_y"]), {"seed": 2})),
    ("csv as sequences (time_steps)", {"path": "data.csv", "x": "px", "y": "label", "time_steps": 2},
     lambda a: ((a["x"].reshape(-1, 2, 4), a["y"]), {})),
]


def _file_spec(root, value: dict) -> dict:
    value = {"name": "file", **value}
    for key in ("path", "train_images", "train_labels", "test_images", "test_labels"):
        if key in value:
            value[key] = str(root / value[key])
    return value


@pytest.mark.parametrize("name, value, python", FORMATS, ids=[f[0] for f in FORMATS])
def test_a_file_gives_the_task_of_the_equivalent_python_call(files, name, value, python):
    root, written = files
    from_file = make_task(TaskSpec.from_value(_file_spec(root, value)))
    (x, y), options = python(written)
    from_python = cl.task(x, y, **options)
    as_tensors = cl.task(torch.as_tensor(x), torch.as_tensor(y), **options)
    for split in SPLITS:
        for a, b, c in zip(from_file.split(split), from_python.split(split), as_tensors.split(split)):
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), (name, split)
            assert torch.equal(a, c), (name, split)
    assert len(from_file.x_val) > 0 and len(from_file.x_test) > 0
    assert from_file.loss.kind == from_python.loss.kind == "cross_entropy"


@pytest.mark.parametrize("name, value, python", FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_trains(files, name, value, python):
    root, _ = files
    task = TaskSpec.from_value(_file_spec(root, value))
    n_in, n_out = task.dims
    model = ({"kind": "rnn", "n_in": n_in, "hidden": 16, "n_out": n_out} if task.sequential
             else {"sizes": [n_in, 16, n_out]})
    result = cl.train({"task": _file_spec(root, value), "model": model, "epochs": 10, "lr": 0.3, "batch_size": 16},
                      progress=False)
    assert result.status == "ok"
    assert result.final["train_loss"] < 0.9 * result.history[0]["train_loss"], (name, result.final)


def test_the_cli_trains_a_file_task_named_in_yaml(files, tmp_path, monkeypatch):
    root, _ = files
    monkeypatch.chdir(root)  # relative paths are from the working directory
    spec = tmp_path / "file.yaml"
    spec.write_text("task: {name: file, path: data.csv, x: px, y: label, scale: standard}\n"
                    "model: {sizes: [8, 16, 3]}\nepochs: 2\n")
    assert main(["run", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert (tmp_path / "run" / "result.json").is_file()


def test_held_out_splits_are_seeded_stratified_and_disjoint(files):
    root, written = files
    x, y = written["x"], written["y"]
    spec = TaskSpec.from_value(_file_spec(root, {"path": "data.npz", "seed": 5}))
    task = make_task(spec)
    n = len(x)
    n_test = math.ceil(0.2 * n)
    n_val = math.ceil(0.15 * (n - n_test))
    assert [len(task.split(s)[0]) for s in SPLITS] == [n - n_test - n_val, n_val, n_test]
    assert spec.train_samples == n - n_test - n_val
    rows = {tuple(np.float32(r)) for r in x}  # every sample in exactly one split
    seen = [tuple(r) for s in SPLITS for r in task.split(s)[0].numpy()]
    assert len(seen) == len(set(seen)) == n and set(seen) == rows
    share = np.bincount(y) / n
    for split in SPLITS:  # stratified: each split's class shares within one sample of the whole's
        labels = task.split(split)[1].numpy()
        assert np.all(np.abs(np.bincount(labels, minlength=3) - share * len(labels)) <= 1.0), split
    again = make_task(spec)
    other = make_task(TaskSpec.from_value(_file_spec(root, {"path": "data.npz", "seed": 6})))
    assert torch.equal(again.x_test, task.x_test) and not torch.equal(other.x_test, task.x_test)


def test_given_splits_are_used_as_they_are(files, tmp_path):
    root, written = files
    x, y = written["x"], written["y"]
    np.savez(tmp_path / "val.npz", x=x[:30], y=y[:30])
    np.savez(tmp_path / "test.npz", x=x[30:70], y=y[30:70])
    task = make_task(TaskSpec.from_value(_file_spec(root, {"path": "data.npz", "val": str(tmp_path / "val.npz"),
                                                           "test": str(tmp_path / "test.npz")})))
    assert len(task.x_train) == len(x)
    assert torch.equal(task.x_val, torch.as_tensor(x[:30], dtype=torch.float32))
    assert torch.equal(task.y_test, torch.as_tensor(y[30:70]))


@pytest.mark.parametrize("scale", ["standard", "minmax"])
def test_scaling_is_fitted_on_the_training_split_alone(files, scale):
    root, written = files
    raw = make_task(TaskSpec.from_value(_file_spec(root, {"path": "data.npz"})))
    task = make_task(TaskSpec.from_value(_file_spec(root, {"path": "data.npz", "scale": scale})))
    train = raw.x_train.double().numpy()
    if scale == "standard":
        shift, span = train.mean(0), train.std(0)
        assert np.allclose(task.x_train.mean(0), 0, atol=1e-5) and np.allclose(task.x_train.std(0, False), 1, atol=1e-5)
    else:
        shift, span = train.min(0), train.max(0) - train.min(0)
        assert np.allclose(task.x_train.min(0).values, 0) and np.allclose(task.x_train.max(0).values, 1)
    for split in ("val", "test"):  # the training split's statistics, not their own
        expected = (raw.split(split)[0].double().numpy() - shift) / span
        assert np.allclose(task.split(split)[0].numpy(), expected, atol=1e-5), split
    assert not np.allclose(task.x_test.mean(0), 0, atol=1e-3)


def test_a_dataset_a_tensor_pair_and_a_tensordataset_give_one_task(files):
    _, written = files
    x, y = torch.as_tensor(written["x"], dtype=torch.float32), torch.as_tensor(written["y"])

    class Pairs(torch.utils.data.Dataset):  # a map-style Dataset of (x, y) items
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i], y[i]

    tasks = [cl.task(Pairs()), cl.task((x, y)), cl.task(torch.utils.data.TensorDataset(x, y))]
    for split in SPLITS:
        for t in tasks[1:]:
            assert all(torch.equal(a, b) for a, b in zip(tasks[0].split(split), t.split(split)))


def test_a_python_run_records_the_digest_of_its_arrays(files):
    _, written = files
    x, y = written["x"], written["y"]
    spec = cl.spec({"task": (x, y), "model": {"sizes": [8, 4, 3]}, "epochs": 1})
    again = cl.spec({"task": {"x": x, "y": y}, "model": {"sizes": [8, 4, 3]}, "epochs": 1})
    changed = cl.spec({"task": (x + 1, y), "model": {"sizes": [8, 4, 3]}, "epochs": 1})
    assert spec.task.name == "arrays" and spec.task.data.startswith("sha256:")
    dataset = torch.utils.data.TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    from_dataset = cl.spec({"task": dataset, "model": {"sizes": [8, 4, 3]}, "epochs": 1})
    assert spec.spec_hash() == again.spec_hash() == from_dataset.spec_hash() != changed.spec_hash()
    with pytest.raises(SpecError, match="field 'task.data'.*in this Python process"):
        TaskSpec.from_value({"name": "arrays", "data": "sha256:0000000000000000"})


def test_regression_targets_and_sequences_feed_the_rnn(files):
    _, written = files
    x, y = written["seq_x"], written["seq_y"]
    spec = cl.spec({"task": {"data": (x, y)}, "model": {"kind": "rnn", "n_in": 4, "hidden": 8, "n_out": 2}})
    assert spec.task.sequential and spec.task.dims == (4, 2)
    with pytest.raises(SpecError, match="field 'model.kind'.*kind: rnn"):
        cl.spec({"task": (x, y), "model": {"sizes": [4, 8, 2]}})
    reg = cl.task(written["x"], written["x"][:, :2].sum(1), kind="regression")
    assert reg.loss.kind == "mse" and reg.y_train.shape[1:] == (1,) and reg.y_train.dtype == torch.float32


def test_idx_rows_read_as_time_steps_are_the_images_row_by_row(files):
    root, written = files
    value = _file_spec(root, {"name": "idx", "train_images": "train-images", "train_labels": "train-labels",
                              "test_images": "test-images.gz", "test_labels": "test-labels.gz"})
    flat, rows = make_task(TaskSpec.from_value(value)), make_task(TaskSpec.from_value({**value, "time_steps": 4}))
    assert rows.x_train.shape[1:] == (4, 4) and torch.equal(rows.x_train.reshape(len(rows.x_train), -1), flat.x_train)
    assert torch.equal(rows.x_test[:, 2], torch.as_tensor(_pixels(written["test_x"])[:, 8:12]))


def test_a_changed_file_is_read_again(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3))
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 2)
    spec = TaskSpec.from_value({"name": "file", "path": str(tmp_path / "d.npz")})
    assert load(spec).x.shape == (40, 3)
    np.savez(tmp_path / "d.npz", x=np.ones((50, 5)), y=np.arange(50) % 2)
    assert load(spec).x.shape == (50, 5)


def test_the_readme_examples_of_every_format_load_as_written(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    import pandas as pd
    import yaml

    from chiploop.experiments.data.idx import write_idx

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Your own data", 1)[1].split("\n## ", 1)[0]
    yaml_block, python_block = (re.search(rf"```{kind}\n(.*?)```", section, flags=re.S).group(1)
                                for kind in ("yaml", "python"))
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x, y = rng.random((200, 784)).astype(np.float32), np.arange(200) % 10
    np.savez("data.npz", X=x, y=y)
    frame = pd.DataFrame({**{f"px{i}": x[:, i] for i in range(784)}, "label": y})
    frame.to_csv("data.csv", index=False)
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": x[:, 3]}).to_parquet("data.parquet")
    for name, array in (("train-images-idx3-ubyte", rng.integers(0, 256, (200, 28, 28))), ("train-labels-idx1-ubyte", y),
                        ("t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28))),
                        ("t10k-labels-idx1-ubyte.gz", y[:20])):
        write_idx(name, array.astype(np.uint8))
    np.savez("seq.npz", x=x.reshape(200, 28, 28), y=y)
    np.savez("seq_test.npz", x=x[:20].reshape(20, 28, 28), y=y[:20])
    entries = re.split(r"\n(?=task:)", yaml_block.strip())
    assert len(entries) == 6
    for entry in entries:
        spec = TaskSpec.from_value(yaml.safe_load(entry)["task"])
        task = make_task(spec)
        assert len(task.x_train) and len(task.x_test), entry
        width = 3 if spec.path.endswith(".parquet") else 28 if spec.sequential else 784
        assert task.x_train.shape[-1] == width and (task.x_train.ndim == 3) == spec.sequential, entry
    namespace = {"cl": cl, "x": x, "y": y, "x_test": x[:20], "y_test": y[:20]}
    exec(compile(python_block, "README.md", "exec"), namespace)  # our own README, not user input
    assert namespace["result"].status == "ok" and namespace["task"].x_test.shape == (20, 784)


def test_a_task_with_given_splits_trains_on_the_loaded_arrays_without_a_copy(files):
    root, _ = files
    spec = TaskSpec.from_value(_file_spec(root, {"name": "idx", "train_images": "train-images",
                                                 "train_labels": "train-labels", "test_images": "test-images.gz",
                                                 "test_labels": "test-labels.gz", "val_fraction": 0}))
    task, data = make_task(spec), load(spec)
    assert np.shares_memory(task.x_train.numpy(), data.x) and np.shares_memory(task.x_test.numpy(), data.test[0])
    batches = list(task.batches(32, seed=0))
    assert sum(len(x) for x, _ in batches) == len(task.x_train) and max(len(x) for x, _ in batches) == 32
    assert not any(np.shares_memory(x.numpy(), data.x) for x, _ in batches)  # each batch its own 32 rows
