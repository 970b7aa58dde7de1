"""CIFAR-10 / CIFAR-100: the catalog, the reader of the releases' pickles (checked against
torchvision's own classes on generated files, tests/helpers/cifar_files.py), the release-md5
switch, and the growing network's four-dataset benchmark (MNIST -> Fashion-MNIST ->
CIFAR-10 -> CIFAR-100) end to end through Snakemake."""

import logging
import pickle
import re
import types

import numpy as np
import pytest
import torch
import torchvision
import yaml

from clpipe import plan
from clpipe.catalog import DATASETS, dataset_info
from clpipe.config import ConfigError, validate_config
from clpipe.data.readers import read_cifar, read_dataset
from clpipe.data.tasks import build_tasks
from clpipe.datasets import DataError, verify_dataset
from clpipe.md5_cache import md5sum
from clpipe.methods import load_method
from clpipe.networks import build_model, count_parameters
from clpipe.networks.growing import GrowingTaskNet
from conftest import ROOT, SCHEMA
from helpers.cifar_files import flat_index, make_cifar10, make_cifar100, read_batch, write_batch
from helpers.growing_schedule import source_schedule_parameters

TORCHVISION = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """A data dir with both generated trees (3 images of a class per CIFAR-10 batch)."""
    root = tmp_path_factory.mktemp("cifar")
    make_cifar10(root, per_class_per_batch=3, test_per_class=2)
    make_cifar100(root, train_per_class=3, test_per_class=2)
    return root


def tree_copy(trees, tmp_path, name):
    """A data dir of its own holding a symlink per file of one generated tree, except
    those the test replaces (unlink first)."""
    info = dataset_info(name)
    for rel in info.files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).symlink_to(trees / rel)
    return tmp_path


# --- the catalog -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_the_catalog_lists_torchvisions_files_and_release_md5s(name):
    info, cls = dataset_info(name), TORCHVISION[name]
    assert info.torchvision_class == cls.__name__ and info.folder == cls.base_folder
    assert (info.channels, info.size, info.n_classes) == (3, 32, 10 if name == "cifar10" else 100)
    listed = {f"{cls.base_folder}/{f}": md5 for f, md5 in cls.train_list + cls.test_list}
    listed[f"{cls.base_folder}/{cls.meta['filename']}"] = cls.meta["md5"]
    assert info.files == listed
    assert info.train_files == tuple(f"{cls.base_folder}/{f}" for f, _ in cls.train_list)
    assert info.test_files == tuple(f"{cls.base_folder}/{f}" for f, _ in cls.test_list)
    assert info.file_format == "cifar"
    # the values of the releases, as written down in the issue
    assert DATASETS["cifar10"].files["cifar-10-batches-py/data_batch_1"] == "c99cafc152244af753f735de768cd75f"
    assert DATASETS["cifar100"].files["cifar-100-python/meta"] == "7973b15100ade9c7d40fb424638fde48"


def test_cifar_tasks_are_checked_against_the_class_count():
    cfg = yaml.safe_load((ROOT / "tests/configs/growing_tiny.yaml").read_text())
    exp = cfg["experiments"]["growing_tiny"]
    exp["tasks"] = [{"dataset": "cifar100", "classes": [98, 99]}, {"dataset": "cifar10", "classes": [10]}]
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, str(SCHEMA))
    assert info.value.key == "experiments.growing_tiny.tasks[1]" and "0..9" in str(info.value)


# --- the reader --------------------------------------------------------------------------


@pytest.fixture
def torchvision_unchecked(monkeypatch):
    """torchvision's CIFAR classes with their md5 checks off (the generated files cannot
    match): the data files' (_check_integrity) and the meta file's (check_integrity)."""
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_the_reader_agrees_with_torchvision(trees, torchvision_unchecked, name, train):
    x, y = read_dataset(trees, name, train)
    ds = TORCHVISION[name](root=str(trees), train=train, download=False)
    assert x.dtype == torch.uint8 and x.shape == (len(ds), 3, 32, 32) and x.is_contiguous()
    assert y.dtype == torch.int64
    assert torch.equal(x, torch.from_numpy(ds.data).permute(0, 3, 1, 2))  # torchvision: N x H x W x C
    assert y.tolist() == list(ds.targets)
    per_class = (3 * 5 if name == "cifar10" else 3) if train else 2
    assert torch.bincount(y).tolist() == [per_class] * dataset_info(name).n_classes
    if name == "cifar100":  # the fine labels, not the coarse ones
        batch = read_batch(trees / ("cifar-100-python/train" if train else "cifar-100-python/test"))
        assert y.tolist() == batch["fine_labels"] != batch["coarse_labels"]


def test_a_known_pixel_lands_at_its_channel_row_and_column(trees, tmp_path, torchvision_unchecked):
    root = tree_copy(trees, tmp_path, "cifar10")
    path = root / "cifar-10-batches-py/data_batch_2"
    batch = read_batch(path)
    path.unlink()
    image, (c, r, col) = 4, (2, 5, 17)  # blue, row 5, column 17 of the batch's 5th image
    batch["data"][image] = 0
    batch["data"][image, flat_index(c, r, col)] = 255
    batch["data"][image, flat_index(0, 31, 0)] = 7  # red, bottom-left corner
    write_batch(path, batch)
    x, _ = read_dataset(root, "cifar10", train=True)
    first = len(read_batch(root / "cifar-10-batches-py/data_batch_1")["labels"])  # batch 1 comes first
    img = x[first + image]
    assert img[c, r, col] == 255 and img[0, 31, 0] == 7 and int(img.sum()) == 255 + 7
    ds = torchvision.datasets.CIFAR10(root=str(root), train=True, download=False)
    assert ds.data[first + image][r, col, c] == 255  # torchvision: row, column, channel


def _drop(key):
    return lambda b: {k: v for k, v in b.items() if k != key}


def _set(key, value):
    return lambda b: {**b, key: value(b)}


B1 = "cifar-10-batches-py/data_batch_1"
TEST100 = "cifar-100-python/test"
# (file, what replaces it: bytes, or a batch made from the generated one, the message)
MALFORMED = [
    (B1, lambda b: b"not a pickle at all", "not a pickled CIFAR batch"),
    (B1, lambda b: pickle.dumps([1, 2, 3]), "holds a list, not a CIFAR batch"),
    (B1, _drop("data"), "no 'data' in the batch"),
    (B1, _drop("labels"), "no 'labels' in the batch"),
    (TEST100, _drop("fine_labels"), "no 'fine_labels' in the batch"),
    (B1, _set("data", lambda b: b["data"].astype(np.float32)), "'data' is a float32 array"),
    (B1, _set("data", lambda b: b["data"].reshape(-1, 3, 32, 32)), "'data' is a uint8 array of shape"),
    (B1, _set("data", lambda b: b["data"].tolist()), "'data' is a list, not N x 3072 uint8"),
    (B1, _set("data", lambda b: b["data"][:, :1024]), "has 1024 values per image, not 3072"),
    (B1, _set("labels", lambda b: b["labels"][:-1]), "29 'labels' for 30 images"),
    (B1, _set("labels", lambda b: [10] + b["labels"][1:]), "label 10 in 'labels' is not a class"),
    (TEST100, _set("fine_labels", lambda b: ["x"] * len(b["fine_labels"])), "not a list of integers"),
]


@pytest.mark.parametrize("rel,change,message", MALFORMED, ids=[m for _, _, m in MALFORMED])
def test_a_malformed_file_is_named_with_what_is_wrong(trees, tmp_path, rel, change, message):
    name = "cifar10" if rel.startswith("cifar-10-batches-py/") else "cifar100"
    root = tree_copy(trees, tmp_path, name)
    (root / rel).unlink()
    replacement = change(read_batch(trees / rel))
    if isinstance(replacement, bytes):
        (root / rel).write_bytes(replacement)
    else:
        write_batch(root / rel, replacement)
    with pytest.raises(DataError) as info:
        read_dataset(root, name, train=not rel.endswith("test"))
    assert str(info.value).startswith(f"{root / rel}: ") and message in str(info.value), str(info.value)


def test_a_missing_batch_is_named(trees, tmp_path):
    root = tree_copy(trees, tmp_path, "cifar10")
    (root / "cifar-10-batches-py/data_batch_5").unlink()
    with pytest.raises(DataError, match=r"data_batch_5: missing \(dataset 'cifar10'\)"):
        read_cifar(root, dataset_info("cifar10"), train=True)
    assert len(read_cifar(root, dataset_info("cifar10"), train=False)[1]) == 20  # the test batch is there


# --- the release-md5 switch --------------------------------------------------------------


def test_files_that_are_not_the_release_stop_unless_the_switch_is_off(trees, caplog):
    for name in ("cifar10", "cifar100"):
        first = next(iter(dataset_info(name).files))
        with pytest.raises(DataError, match=rf"{re.escape(first)}: md5 \w+ does not match the release's"):
            verify_dataset(trees, name)
        with caplog.at_level(logging.WARNING, logger="clpipe"):
            caplog.clear()
            sums = verify_dataset(trees, name, release_md5=False)
        assert sums == {rel: md5sum(trees / rel) for rel in dataset_info(name).files}  # content md5s
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == len(sums)  # each file named once
        for rel in sums:
            assert any(m.startswith(f"{trees / rel}: md5 ") and "used anyway" in m for m in warned), rel


def test_the_data_step_reads_what_the_workflow_accepted(trees):
    spec = {
        "tasks": [{"dataset": "cifar10", "classes": [0, 1, 2]}, {"dataset": "cifar100", "classes": [5, 99]}],
        "data": {
            "validation_fraction": 0.2,
            "split_seed": 0,
            "max_train_per_task": None,
            "max_test_per_task": None,
        },
    }
    with pytest.raises(DataError, match="does not match the release's"):
        build_tasks(trees, spec)
    tasks = build_tasks(trees, spec, release_md5=False)
    # the md5s the workflow planned with (its spec's unreleased_md5) are accepted too
    sums = {rel: md5sum(trees / rel) for name in ("cifar10", "cifar100") for rel in dataset_info(name).files}
    same = build_tasks(trees, {**spec, "unreleased_md5": sums})
    for a, b in zip(tasks, same, strict=True):
        assert all(torch.equal(a[s][k], b[s][k]) for s in ("train", "val", "test") for k in a[s])
    changed = {**sums, "cifar-100-python/meta": "0" * 32}
    with pytest.raises(
        DataError, match="cifar-100-python/meta: md5 .* nor the 0{32} the workflow planned with"
    ):
        build_tasks(trees, {**spec, "unreleased_md5": changed})
    cifar10, cifar100 = tasks
    assert cifar10["train"]["x"].shape[1:] == (3, 32, 32)
    assert len(cifar10["train"]["y"]) + len(cifar10["val"]["y"]) == 3 * 15
    assert len(cifar10["test"]["y"]) == 3 * 2 and set(cifar100["test"]["y"].tolist()) == {5, 99}
    x, y = read_dataset(trees, "cifar10", train=True)
    assert torch.equal(cifar10["train"]["x"], x[cifar10["train"]["index"]])  # indices into the source


def test_the_switch_is_a_boolean_that_defaults_to_on():
    cfg = yaml.safe_load((ROOT / "tests/configs/growing_tiny.yaml").read_text())
    validate_config(cfg, str(SCHEMA))
    assert cfg["verify_release_md5"] is True
    cfg["verify_release_md5"] = "no"
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, str(SCHEMA))
    assert info.value.key == "verify_release_md5"


# --- the faithful experiment's network ---------------------------------------------------


def test_the_four_dataset_experiment_grows_to_the_sources_16_2m_parameters():
    """config/config.yaml's four_datasets_growing, built and grown as the pipeline does
    (the model spec of its init step, then each arm's growing method before each task)."""
    exp = validate_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()), str(SCHEMA))[
        "four_datasets_growing"
    ]
    assert [t.dataset for t in exp.tasks] == ["mnist", "fashion_mnist", "cifar10", "cifar100"]
    assert "four_datasets_growing" in yaml.safe_load((ROOT / "config/config.yaml").read_text())["run"]
    for arm in ("growing_isolated", "growing_read"):
        torch.manual_seed(0)
        model = build_model(plan.init_spec(exp, 0)["model"])
        assert isinstance(model, GrowingTaskNet) and count_parameters(model) == 642_506
        for task in range(2, exp.n_tasks + 1):
            spec = plan.next_task_spec(exp, 0, arm, task)
            ctx = types.SimpleNamespace(
                task=types.SimpleNamespace(index=task, classes=exp.tasks[task - 1].classes)
            )
            load_method(spec["method"]).begin_task(model, None, spec["task_settings"], ctx)
        assert model.outputs_per_task == [10, 10, 10, 100] and model.mode == arm.removeprefix("growing_")
        assert count_parameters(model) == source_schedule_parameters() == 16_217_410
