"""Datasets into task tensors (real MNIST) and per-batch preprocessing."""

import json
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

from clpipe.data.pipeline import InputPipeline
from clpipe.data.tasks import build_tasks
from clpipe.datasets import DataError, verify_dataset
from clpipe.scenarios import Scenario

HEADLINE = [[0, 1], [2, 3], [4, 5]]


def spec(tasks, **data):
    opts = {
        "validation_fraction": 0.0,
        "split_seed": 0,
        "max_train_per_task": None,
        "max_test_per_task": None,
    }
    opts.update(data)
    return {"tasks": [{"dataset": "mnist", "classes": c} for c in tasks], "data": opts}


@pytest.fixture(scope="module")
def headline(data_dir):
    return build_tasks(data_dir, spec(HEADLINE))


def test_headline_task_sizes_match_the_source(headline):
    # docs/methods.md: 12,665 / 12,089 / 11,263 training images
    assert [len(t["train"]["y"]) for t in headline] == [12665, 12089, 11263]
    assert [len(t["test"]["y"]) for t in headline] == [2115, 2042, 1874]
    for task, classes in zip(headline, HEADLINE, strict=True):
        assert set(task["train"]["y"].unique().tolist()) == set(classes)
        assert task["train"]["x"].dtype == torch.uint8
        assert task["train"]["x"].shape[1:] == (1, 28, 28)


def test_validation_is_carved_from_train_with_a_fixed_seed(data_dir):
    a = build_tasks(data_dir, spec([[0, 1]], validation_fraction=0.1))[0]
    b = build_tasks(data_dir, spec([[0, 1]], validation_fraction=0.1))[0]
    n_train, n_val = len(a["train"]["y"]), len(a["val"]["y"])
    assert n_train + n_val == 12665 and n_val == round(0.1 * 12665)
    assert not set(a["train"]["index"].tolist()) & set(a["val"]["index"].tolist())
    assert torch.equal(a["val"]["index"], b["val"]["index"])
    c = build_tasks(data_dir, spec([[0, 1]], validation_fraction=0.1, split_seed=1))[0]
    assert not torch.equal(a["val"]["index"], c["val"]["index"])


def test_subsampling(data_dir):
    t = build_tasks(
        data_dir, spec([[4, 5]], max_train_per_task=100, max_test_per_task=50, validation_fraction=0.2)
    )[0]
    assert (len(t["train"]["y"]), len(t["val"]["y"]), len(t["test"]["y"])) == (80, 20, 50)


def test_domain_labels_are_even_zero_odd_one(headline):
    scenario = Scenario("domain", HEADLINE)
    for i, task in enumerate(headline, start=1):
        y = task["train"]["y"]
        assert torch.equal(scenario.targets(i, y), y % 2)


def test_a_corrupted_file_is_named(data_dir, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (data_dir / "MNIST" / "raw").iterdir():
        (raw / f.name).symlink_to(f)
    verify_dataset(tmp_path, "mnist")
    bad = raw / "t10k-labels-idx1-ubyte"
    bad.unlink()
    shutil.copy(data_dir / "MNIST" / "raw" / bad.name, bad)
    with open(bad, "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: md5 .* does not match"):
        verify_dataset(tmp_path, "mnist")
    bad.unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: missing .*data_dir"):
        verify_dataset(tmp_path, "mnist")


def test_input_pipeline_resizes_and_repeats_on_the_batch():
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    out = InputPipeline({"size": 224, "channels": 3, "normalize": None}, torch.device("cpu"))(x)
    assert out.shape == (5, 3, 224, 224) and out.dtype == torch.float32
    ref = F.interpolate(x.float() / 255, size=(224, 224), mode="bilinear", align_corners=False)
    for c in range(3):
        torch.testing.assert_close(out[:, c : c + 1], ref)
    same = InputPipeline(
        {"size": 28, "channels": 1, "normalize": {"mean": [0.5], "std": [0.5]}}, torch.device("cpu")
    )(x)
    torch.testing.assert_close(same, (x.float() / 255 - 0.5) / 0.5)


def test_checksums_follow_content_not_mtime(tmp_path):
    from clpipe.catalog import checksums, dataset_info
    from clpipe.md5_cache import md5sum

    files = list(dataset_info("mnist").files)
    for i, rel in enumerate(files):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(bytes([i]) * 100)
        os.utime(tmp_path / rel, (1000, 1000))  # not just written: cached (clpipe.md5_cache)
    cache = tmp_path / "cache.json"
    first = checksums(tmp_path, "mnist", cache)
    assert first == {rel: md5sum(tmp_path / rel) for rel in files}
    target = tmp_path / files[0]
    later = target.stat().st_mtime + 3600
    os.utime(target, (later, later))
    assert checksums(tmp_path, "mnist", cache) == first  # touched: same sums
    target.write_bytes(b"other content")
    os.utime(target, (2000, 2000))
    changed = checksums(tmp_path, "mnist", cache)
    assert changed[files[0]] != first[files[0]] and changed[files[1]] == first[files[1]]
    assert len(json.loads(cache.read_text())) == len(files)  # one cache entry per file
    target.unlink()
    assert checksums(tmp_path, "mnist", cache)[files[0]] == "missing"


def test_the_idx_reader_reads_mnist_as_torchvision_does(data_dir):
    """clpipe.data.readers.read_idx (no torchvision import) against torchvision's own classes."""
    import torchvision

    from clpipe.data.readers import read_dataset

    datasets = torchvision.datasets
    for name, cls in (("mnist", datasets.MNIST), ("fashion_mnist", datasets.FashionMNIST)):
        if not (data_dir / cls.__name__ / "raw" / "t10k-images-idx3-ubyte").is_file():
            continue
        for train in (True, False):
            x, y = read_dataset(data_dir, name, train)
            ds = cls(root=str(data_dir), train=train, download=False)
            assert torch.equal(x[:, 0], ds.data) and torch.equal(y, ds.targets), (name, train)
            assert x.shape[1] == 1 and x.dtype == torch.uint8 and y.dtype == torch.int64


def test_a_truncated_idx_file_is_named(tmp_path):
    from clpipe.data.readers import read_idx

    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3]))  # 5 labels announced, 3 there
    with pytest.raises(DataError, match="3 bytes of values for shape \\[5\\]; truncated"):
        read_idx(path)
    path.write_bytes(b"\x89PNG....")
    with pytest.raises(DataError, match="not an idx file"):
        read_idx(path)


def test_the_release_check_names_only_present_files_that_differ_from_the_release():
    """The decisions the workflow's DAG build takes on the data files (common.smk only
    calls these): which files are not the release's, what is said of them, and whether
    the data step follows its manifest's mtime."""
    from clpipe.catalog import DATASETS, manifest_is_ancient, release_mismatch, unreleased

    release = dict(DATASETS["mnist"].files)
    first = sorted(release)[0]
    assert unreleased("mnist", release) == {}
    assert unreleased("mnist", {**release, first: "missing"}) == {}
    assert unreleased("mnist", {**release, first: "0" * 32}) == {first: "0" * 32}
    assert unreleased("mnist", {**release, "MNIST/raw/extra": "1" * 32}) == {}  # not a release file
    stop = release_mismatch("/data", "mnist", first, "0" * 32, verify=True)
    assert stop.startswith(f"/data/{first}: md5 {'0' * 32} does not match the release's {release[first]}")
    assert "set verify_release_md5: false" in stop
    warn = release_mismatch("/data", "mnist", first, "0" * 32, verify=False)
    assert warn.endswith("used anyway (verify_release_md5: false)")
    assert manifest_is_ancient({}) and not manifest_is_ancient({first: "0" * 32})
    folders = [n for n, d in DATASETS.items() if not d.files]
    assert folders and unreleased(folders[0], {"any/bucket": "f" * 32}) == {}


MINIMUM = {"train": 10, "validation": 5, "test": 10}


@pytest.mark.parametrize(
    "data, split, key",
    [
        ({"max_test_per_task": 1}, "test", "test"),  # ACC 1.000 off one image, before
        ({"validation_fraction": 0.99, "max_train_per_task": 100}, "train", "train"),  # one image a class
        ({"validation_fraction": 0.01, "max_train_per_task": 200}, "val", "validation"),
    ],
    ids=["test", "train", "validation"],
)
def test_a_split_with_too_few_images_of_a_class_is_refused_naming_it(data_dir, data, split, key):
    with pytest.raises(
        DataError, match=rf"task 1 \(mnist \[0, 1\]\): its {split} split has \d image\(s\) of class"
    ) as err:
        build_tasks(data_dir, spec([[0, 1]], min_images_per_class=MINIMUM, **data))
    assert f"data.min_images_per_class.{key} ({MINIMUM[key]})" in str(err.value)


def test_the_minimum_holds_for_what_a_split_keeps_and_0_turns_it_off(data_dir):
    kept = build_tasks(data_dir, spec([[0, 1]], max_test_per_task=40, min_images_per_class=MINIMUM))[0]
    assert torch.bincount(kept["test"]["y"]).min() >= 10
    off = {"train": 0, "validation": 0, "test": 0}
    few = build_tasks(data_dir, spec([[0, 1]], max_test_per_task=6, min_images_per_class=off))[0]
    assert len(few["test"]["y"]) == 6 and torch.bincount(few["test"]["y"])[[0, 1]].min() >= 1
    # but never a split without a class of its task, whatever the minimum: the task's
    # accuracy would be over its other classes only
    with pytest.raises(DataError, match=r"task 1 \(mnist \[0, 1\]\): its test split has no image of class"):
        build_tasks(data_dir, spec([[0, 1]], max_test_per_task=1, min_images_per_class=off))
