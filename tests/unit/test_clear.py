"""CLEAR-10: the loader on a generated tree in the release's layout, the bucket splits,
the crops, and a two-bucket run of the tiny CLEAR config through Snakemake."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from clpipe.catalog import bucket_files, checksums, dataset_info
from clpipe.data.pipeline import InputPipeline
from clpipe.data.readers import read_bucket
from clpipe.data.tasks import build_tasks
from clpipe.datasets import DataError, download_dataset, verify_dataset
from helpers.clear_tree import make_clear_tree

INFO = dataset_info("clear10")
SPEC = {
    "data": {
        "image_size": 40,
        "max_test_per_task": None,
        "max_train_per_task": None,
        "split_seed": 0,
        "test_fraction": 0.3,
        "validation_fraction": 0.1,
    },
    "tasks": [{"bucket": b, "classes": list(range(11)), "dataset": "clear10"} for b in (1, 2)],
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_clear_tree(tmp_path_factory.mktemp("clear"), images_per_class=10)


def test_bucket_files_are_in_class_then_name_order_with_release_labels(tree):
    files = bucket_files(tree, INFO, 3)
    assert len(files) == 110
    assert [label for _, label in files] == sorted(label for _, label in files)
    assert files[0][0].startswith("BACKGROUND/") and files[0][1] == 0
    assert files[-1][0].startswith("sweater/") and files[-1][1] == 10
    names = [rel for rel, label in files if label == 1]
    assert names == sorted(names) and all(n.startswith("baseball/") for n in names)


def test_a_broken_tree_is_named_with_how_to_get_the_data(tmp_path):
    root = make_clear_tree(tmp_path, images_per_class=1)
    verify_dataset(root, "clear10")  # complete: no error
    bus = INFO.bucket_dir(root, 3) / "bus"
    for f in bus.iterdir():
        f.unlink()
    bus.rmdir()
    (INFO.bucket_dir(root, 5) / "cat").mkdir()
    with pytest.raises(DataError) as err:
        verify_dataset(root, "clear10")
    text = str(err.value)
    assert "labeled_images/3/bus: missing" in text and "labeled_images/5/cat: not a class" in text
    assert "clear-benchmark.github.io" in text
    with pytest.raises(DataError, match="cannot be downloaded by the pipeline.*clear10-public.zip"):
        download_dataset(tmp_path / "elsewhere", "clear10")


def test_an_unreadable_image_is_named(tmp_path):
    root = make_clear_tree(tmp_path, images_per_class=1, buckets=[1])
    bad = INFO.bucket_dir(root, 1) / "dress" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="dress/broken.jpg: cannot be read as an image"):
        read_bucket(root, INFO, 1, 16)


def test_shorter_side_resized_then_centre_cropped(tmp_path):
    root = make_clear_tree(tmp_path, images_per_class=1, buckets=[1])
    # 80 x 40 (w x h): red | green (the middle 60%) | blue
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, :16, 0] = 255
    pixels[:, 16:64, 1] = 255
    pixels[:, 64:, 2] = 255
    Image.fromarray(pixels).save(INFO.bucket_dir(root, 1) / "bus" / "zz.png")
    x, y = read_bucket(root, INFO, 1, 20)
    files = bucket_files(root, INFO, 1)
    i = [rel for rel, _ in files].index("bus/zz.png")
    assert y[i] == 2 and x.shape[1:] == (3, 20, 20)
    img = x[i].int()  # 40 x 20 after the resize (green 8..32); the centre 20 x 20 is all green
    assert (img[1] > 250).all() and (img[0] < 5).all() and (img[2] < 5).all()


def test_each_bucket_is_split_by_class_disjointly_and_the_same_every_time(tree):
    a, b = build_tasks(tree, SPEC), build_tasks(tree, SPEC)
    for ta, tb in zip(a, b, strict=True):
        for split in ("train", "val", "test"):
            assert torch.equal(ta[split]["index"], tb[split]["index"])
            assert torch.equal(ta[split]["x"], tb[split]["x"])
        parts = [set(ta[s]["index"].tolist()) for s in ("train", "val", "test")]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert set().union(*parts) == set(range(110))
        assert ta["test"]["y"].bincount(minlength=11).tolist() == [3] * 11  # round(0.3 * 10)
        assert ta["val"]["y"].bincount(minlength=11).tolist() == [1] * 11  # round(0.1 * 7)
        assert ta["bucket"] in (1, 2)
    # the images are the bucket's files, in the order source indices refer to
    x, _ = read_bucket(tree, INFO, 2, 40)
    assert torch.equal(a[1]["test"]["x"], x[a[1]["test"]["index"]])
    # another split seed, another split
    other = build_tasks(tree, {**SPEC, "data": {**SPEC["data"], "split_seed": 1}})
    assert not torch.equal(other[0]["test"]["index"], a[0]["test"]["index"])


def test_bucket_fingerprints_ignore_touching_and_see_new_images(tmp_path):
    root = make_clear_tree(tmp_path, images_per_class=1)
    before = checksums(root, "clear10")
    assert (
        sorted(before) == [f"clear10/labeled_images/{b}" for b in sorted(INFO.buckets, key=str)]
        or len(before) == 10
    )
    assert before["clear10/labeled_images/4"].endswith("(11 images)")
    some = next((INFO.bucket_dir(root, 4) / "racing").iterdir())
    os.utime(some, (1, 1))
    assert checksums(root, "clear10") == before
    Image.new("RGB", (40, 50)).save(INFO.bucket_dir(root, 4) / "racing" / "new.jpg")
    after = checksums(root, "clear10")
    assert after["clear10/labeled_images/4"] != before["clear10/labeled_images/4"]
    assert {k: v for k, v in after.items() if not k.endswith("/4")} == {
        k: v for k, v in before.items() if not k.endswith("/4")
    }


def test_crops_random_for_training_centre_otherwise():
    x = torch.arange(4 * 3 * 10 * 10, dtype=torch.int64).remainder(251).to(torch.uint8).view(4, 3, 10, 10)
    pipe = InputPipeline({"size": 6, "channels": 3, "crop": {"size": 6}}, torch.device("cpu"))
    assert torch.equal(pipe(x), x[..., 2:8, 2:8].float() / 255)
    out = pipe.train_batch(x, torch.Generator().manual_seed(0))
    again = pipe.train_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    corners = set()
    for i in range(4):  # every sample is some 6 x 6 window of its own image
        found = [
            (top, left)
            for top in range(5)
            for left in range(5)
            if torch.equal(out[i], x[i, :, top : top + 6, left : left + 6].float() / 255)
        ]
        assert len(found) == 1
        corners.add(found[0])
    assert len(corners) > 1  # not the same window for the whole batch
    no_crop = InputPipeline(
        {"size": 6, "channels": 3, "crop": {"size": 6, "train": "none", "eval": "none"}}, "cpu"
    )
    assert no_crop(x).shape[-1] == 6  # no crop: resized instead
