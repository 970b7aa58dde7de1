"""A config's own datasets (top-level ``datasets:``): a tensor file, an image folder and
a user's loader, from the config check to the data step's tasks, and the refusals.

Everything is generated in tmp_path; no MNIST needed. The workflow runs are in
tests/workflow/test_user_datasets_workflow.py.
"""

import copy
import json
import os
import re
import sys
import textwrap

import pytest
import torch
import yaml
from PIL import Image

from clpipe import plan
from clpipe.config import ConfigError, validate_config
from clpipe.data.tasks import build_tasks
from clpipe.data.user_data import check_splits
from clpipe.datasets import DataError
from clpipe.fingerprint import _parsed
from clpipe.md5_cache import md5sum
from clpipe.user_datasets import content
from conftest import ROOT, SCHEMA
from helpers.user_data_files import COLOURS, LOADER, make_image_folder, save_tensor_file, tensor_dataset


def config(datasets, tasks, dataset=None, **experiment):
    """The tiny config with one experiment over ``tasks`` (a small MLP)."""
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    exp = cfg["experiments"]["tiny"]
    exp.pop("dataset")
    if dataset is not None:
        exp["dataset"] = dataset
    exp.update(
        {
            "tasks": tasks,
            # a few generated images of each class: the per-class minimum off
            "data": {
                "validation_fraction": 0.25,
                "max_train_per_task": None,
                "max_test_per_task": None,
                "min_images_per_class": {"train": 0, "validation": 0, "test": 0},
            },
            "input": {"size": 8, "channels": 3},
            "model": {"name": "mlp", "hidden": [8]},
            "methods": {},
            "arms": {"joint": {"method": "joint"}},  # one arm, any number of tasks
        }
        | experiment
    )
    cfg["datasets"] = datasets
    return cfg


def load(cfg):
    return validate_config(copy.deepcopy(cfg), str(SCHEMA))["tiny"]


def data_step_spec(exp):
    """The data step's spec as the workflow plans it (common.smk: prepare_data_spec)."""
    return {**plan.data_spec(exp), "dataset_content": {n: content(d) for n, d in exp.datasets.items()}}


# --- the three kinds, through the config check and the data step --------------------


def test_a_tensor_file_dataset_becomes_the_tasks_it_names(tmp_path):
    path = save_tensor_file(tmp_path / "digits.pt")
    exp = load(
        config({"digits": {"tensor_file": str(path)}}, [[0, 1], [2]], dataset="digits", scenario="class")
    )
    assert [t.dataset for t in exp.tasks] == ["digits", "digits"] and exp.tasks[1].classes == (2,)
    spec = data_step_spec(exp)
    assert spec["datasets"] == {"digits": {"kind": "tensor_file", "path": str(path)}}
    tasks = build_tasks("nowhere", spec)  # data_dir is not read for a user's dataset
    first, second = tasks
    assert (len(first["train"]["y"]), len(first["val"]["y"]), len(first["test"]["y"])) == (15, 5, 8)
    assert (len(second["train"]["y"]), len(second["val"]["y"]), len(second["test"]["y"])) == (8, 2, 4)
    assert set(first["train"]["y"].tolist()) == {0, 1} and set(second["test"]["y"].tolist()) == {2}
    for task in tasks:
        for split in ("train", "val", "test"):
            x, y = task[split]["x"], task[split]["y"]
            assert x.dtype == torch.uint8 and x.shape[1:] == (1, 8, 8)  # N x H x W: one channel
            assert torch.equal(x[:, 0, 3, 3], (y * 10).to(torch.uint8))  # each image its own label's
    assert not set(first["train"]["index"].tolist()) & set(first["val"]["index"].tolist())
    # the same split every time
    assert torch.equal(build_tasks("nowhere", spec)[0]["val"]["index"], first["val"]["index"])


def test_a_split_without_a_class_of_its_task_is_refused_whatever_the_minimum(tmp_path):
    """A dataset of the user's whose test split lacks a class of a task would score that
    task on its other classes alone (1.0 from one class): refused, naming task, split
    and class, though this config's minimum images per class are 0."""
    data = tensor_dataset()
    keep = data["test"]["labels"] != 1
    data["test"] = {k: v[keep] for k, v in data["test"].items()}
    path = save_tensor_file(tmp_path / "digits.pt", data)
    cfg = config({"digits": {"tensor_file": str(path)}}, [[0, 1], [2]], dataset="digits", scenario="class")
    message = r"task 1 \(digits \[0, 1\]\): its test split has no image of class 1"
    with pytest.raises(DataError, match=message):
        build_tasks("nowhere", data_step_spec(load(cfg)))


def test_n_x_c_x_h_x_w_images_keep_their_channels(tmp_path):
    data = tensor_dataset(shape=(3, 8, 8))
    path = save_tensor_file(tmp_path / "rgb.pt", data)
    exp = load(config({"rgb": {"tensor_file": str(path)}}, [{"dataset": "rgb", "classes": [0, 1, 2]}]))
    task = build_tasks(".", data_step_spec(exp))[0]
    assert task["train"]["x"].shape[1:] == (3, 8, 8) and len(task["test"]["y"]) == 12


def test_an_image_folder_is_decoded_with_classes_in_sorted_folder_order(tmp_path):
    root = make_image_folder(
        tmp_path / "shapes", classes={"cat": COLOURS["cat"], "ant": COLOURS["ant"], "bee": COLOURS["bee"]}
    )
    exp = load(config({"shapes": {"image_folder": str(root)}}, [{"dataset": "shapes"}], scenario="class"))
    assert exp.tasks[0].classes == (0, 1, 2)  # every class folder when the task names none
    assert exp.datasets["shapes"].class_names == ("ant", "bee", "cat")
    task = build_tasks(".", data_step_spec(exp))[0]
    assert (len(task["train"]["y"]), len(task["val"]["y"]), len(task["test"]["y"])) == (9, 3, 6)
    for split in ("train", "val", "test"):
        x, y = task[split]["x"], task[split]["y"]
        assert x.shape[1:] == (3, 8, 8)
        for image, label in zip(x, y, strict=True):  # each image has its class folder's colour
            assert tuple(image[:, 4, 4].tolist()) == COLOURS[("ant", "bee", "cat")[label]]
    # the index is the position in the split's sorted file list: test image 3 is bee/001.png
    test = task["test"]
    assert test["y"][test["index"].tolist().index(3)] == 1


def test_an_image_folder_s_image_size_and_channels(tmp_path):
    root = make_image_folder(tmp_path / "big", size=(16, 12))
    entry = {"image_folder": str(root), "image_size": 8, "channels": 1}
    exp = load(config({"big": entry}, [[0, 1, 2]], dataset="big", input={"size": 8, "channels": 1}))
    task = build_tasks(".", data_step_spec(exp))[0]
    assert task["train"]["x"].shape[1:] == (1, 8, 8)
    gray = round(0.299 * 200)  # ant: red 200, as PIL's "L" conversion weighs it
    ants = task["train"]["x"][task["train"]["y"] == 0]
    assert (ants[:, 0, 4, 4].int() - gray).abs().max() <= 1
    # without image_size, images of different sizes are refused, naming one
    (root / "train/bee/odd.png").parent.mkdir(exist_ok=True)
    Image.new("RGB", (9, 9)).save(root / "train/bee/odd.png")
    exp = load(config({"big": {"image_folder": str(root)}}, [[0, 1, 2]], dataset="big"))
    with pytest.raises(DataError, match=r"odd.png: 9 x 9 px, but .*000.png is 16 x 12.*image_size"):
        build_tasks(".", data_step_spec(exp))


@pytest.fixture
def loader_module(tmp_path, monkeypatch):
    """userpkg/mydata.py on sys.path, forgotten afterwards (imported and fingerprinted)."""
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mydata.py").write_text(LOADER)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package / "mydata.py"
    for name in ("userpkg.mydata", "userpkg"):
        sys.modules.pop(name, None)
    _parsed.cache_clear()


def test_a_loader_is_called_with_its_settings(loader_module):
    # its settings are its own, even those an image folder's have too (image_size: a string)
    entry = {"loader": "userpkg.mydata:load", "per_class": 5, "classes": 4, "image_size": "small"}
    exp = load(config({"gen": entry}, [[0, 1], [2, 3]], dataset="gen", input={"size": 6, "channels": 1}))
    spec = data_step_spec(exp)
    assert spec["datasets"]["gen"] == {
        "kind": "loader",
        "loader": "userpkg.mydata:load",
        "settings": {"classes": 4, "image_size": "small", "per_class": 5},
    }
    assert spec["dataset_content"]["gen"].startswith("code ")
    tasks = build_tasks(".", spec)
    assert [len(t["train"]["y"]) + len(t["val"]["y"]) for t in tasks] == [10, 10]
    assert set(tasks[1]["test"]["y"].tolist()) == {2, 3} and tasks[1]["test"]["x"].shape[1:] == (1, 6, 6)


def test_a_loader_s_fingerprint_follows_its_code_not_its_comments(loader_module):
    entry = {"loader": "userpkg.mydata:load", "per_class": 5, "classes": 4}
    ds = load(config({"gen": entry}, [[0, 1]], dataset="gen")).datasets["gen"]
    before = content(ds)
    loader_module.write_text(LOADER + "\n# a comment\n")
    _parsed.cache_clear()  # a workflow reads each file once: a new run, a new process
    assert content(ds) == before
    loader_module.write_text(LOADER.replace("split(2)", "split(3)"))
    _parsed.cache_clear()
    assert content(ds) != before


def test_a_loader_s_declared_settings_are_checked_and_their_defaults_filled(loader_module):
    loader_module.write_text(
        'SETTINGS = {"per_class": {"type": "integer", "minimum": 1, "default": 3},\n'
        '            "classes": {"type": "integer", "minimum": 2}}\n' + LOADER
    )
    ds = load(config({"gen": {"loader": "userpkg.mydata:load", "classes": 4}}, [[0, 1]], dataset="gen"))
    assert ds.datasets["gen"].settings == {"classes": 4, "per_class": 3}
    assert "userpkg.mydata" not in sys.modules  # read, not imported
    for entry, key in (
        ({"classes": 1}, "datasets.gen.classes"),
        ({"classes": 4, "size": 2}, "datasets.gen.size"),
    ):
        with pytest.raises(ConfigError) as err:
            load(config({"gen": {"loader": "userpkg.mydata:load", **entry}}, [[0, 1]], dataset="gen"))
        assert err.value.key == key


def test_a_loader_an_installed_package_registers_is_found_by_its_entry_point(loader_module):
    dist = loader_module.parent.parent / "userdata-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: userdata\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[clpipe.datasets]\nblocks = userpkg.mydata:load\n")
    exp = load(config({"gen": {"loader": "blocks", "per_class": 5, "classes": 4}}, [[0, 1]], dataset="gen"))
    assert exp.datasets["gen"].loader == "userpkg.mydata:load"  # what the data step calls


# --- what reruns the data step: content, not mtimes ------------------------------------


def test_a_tensor_file_s_content_is_its_md5_and_a_touch_changes_nothing(tmp_path):
    path = save_tensor_file(tmp_path / "digits.pt")
    ds = load(config({"digits": {"tensor_file": str(path)}}, [[0, 1]], dataset="digits")).datasets["digits"]
    cache = tmp_path / "cache.json"
    before = content(ds, cache)
    later = path.stat().st_mtime + 3600
    os.utime(path, (later, later))
    assert content(ds, cache) == before
    save_tensor_file(path, tensor_dataset(seed=1))
    assert content(ds, cache) != before


def test_an_image_folder_s_content_follows_names_and_pixels_not_mtimes(tmp_path):
    root = make_image_folder(tmp_path / "shapes", suffix="bmp")  # sizes: by dimensions only
    ds = load(config({"s": {"image_folder": str(root)}}, [[0, 1]], dataset="s")).datasets["s"]
    cache = tmp_path / "cache.json"
    before = content(ds, cache)
    assert before.endswith("(12 train, 6 test images)")
    image = root / "test/bee/001.bmp"
    os.utime(image, (1, 1))
    assert content(ds, cache) == before
    other = root / "test/bee/000.bmp"
    first, second = other.read_bytes(), image.read_bytes()
    assert len(first) == len(second) and first != second
    image.write_bytes(first)  # same name, same size: another image's pixels
    other.write_bytes(second)
    replaced = content(ds, cache)
    assert replaced != before
    (root / "test/bee/001.bmp").rename(root / "test/bee/002.bmp")
    assert content(ds, cache) not in (before, replaced)
    (root / "test/bee/notes.txt").write_text("not an image")
    assert content(ds, cache) == content(ds)  # other files do not count; the cache is the files' md5


def test_md5_sums_are_cached_by_size_and_mtime_but_not_for_a_file_just_written(tmp_path):
    path = save_tensor_file(tmp_path / "digits.pt")
    ds = load(config({"digits": {"tensor_file": str(path)}}, [[0, 1]], dataset="digits")).datasets["digits"]
    cache = tmp_path / "cache.json"
    content(ds, cache)
    assert not cache.exists()  # written a moment ago: it could change again within the clock's tick
    os.utime(path, (1000, 1000))
    first = content(ds, cache)
    assert json.loads(cache.read_text())[str(path.resolve())] == [
        path.stat().st_size,
        1000 * 10**9,
        md5sum(path),
    ]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    os.utime(path, (1000, 1000))
    assert content(ds, cache) == first  # same size and mtime: the cached sum, the file not read
    os.utime(path, (2000, 2000))
    assert content(ds, cache) != first
    assert content(ds, cache, write_cache=False) != first and len(json.loads(cache.read_text())) == 1


def test_the_data_step_refuses_a_dataset_changed_since_it_was_planned(tmp_path):
    path = save_tensor_file(tmp_path / "digits.pt")
    exp = load(config({"digits": {"tensor_file": str(path)}}, [[0, 1]], dataset="digits"))
    spec = data_step_spec(exp)
    save_tensor_file(path, tensor_dataset(seed=1))
    with pytest.raises(DataError, match=r"dataset 'digits' .*datasets.digits.tensor_file.* changed since"):
        build_tasks(".", spec)


# --- refusals: what is wrong and where -------------------------------------------------


def splits_missing(data):
    del data["test"]


def labels_missing(data):
    del data["train"]["labels"]


def float_images(data):
    data["train"]["images"] = data["train"]["images"].float() / 255


def int32_labels(data):
    data["test"]["labels"] = data["test"]["labels"].int()


def extra_split(data):
    data["val"] = data["test"]


def labels_short(data):
    data["train"]["labels"] = data["train"]["labels"][:-1]


def other_shapes(data):
    data["test"]["images"] = data["test"]["images"][:, :4]


def negative_label(data):
    data["train"]["labels"][0] = -1


@pytest.mark.parametrize(
    "change,message",
    [
        (splits_missing, r"no 'test' split \(its keys: 'train'\)"),
        (labels_missing, r"'train' has no 'labels' \(its keys: 'images'\)"),
        (float_images, r"'train'.images is a torch.float32 tensor .*not a uint8 tensor.*to\(torch.uint8\)"),
        (int32_labels, r"'test'.labels is a torch.int32 tensor .*not an int64 tensor"),
        (extra_split, r"'val' is not a split the pipeline reads"),
        (labels_short, r"'train': 29 labels for 30 images"),
        (other_shapes, r"train images are \(1, 8, 8\) .*test images \(1, 4, 8\)"),
        (negative_label, r"'train'.labels: label -1 is negative"),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_a_tensor_file_that_is_not_the_documented_shape_is_refused_naming_file_and_key(
    tmp_path, change, message
):
    data = tensor_dataset()
    change(data)
    path = save_tensor_file(tmp_path / "bad.pt", data)
    exp = load(config({"bad": {"tensor_file": str(path)}}, [[0, 1]], dataset="bad"))
    with pytest.raises(DataError, match=message) as err:
        build_tasks(".", data_step_spec(exp))
    assert f"{path} (config key 'datasets.bad.tensor_file')" in str(err.value)


def test_what_a_loader_returns_is_checked_like_a_tensor_file():
    with pytest.raises(DataError, match=r"what 'm:f' returned .*: holds a list, not a dict"):
        check_splits([], "what 'm:f' returned (config key 'datasets.x.loader')")


def test_a_file_torch_save_did_not_write_is_named(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a tensor file")
    exp = load(config({"bad": {"tensor_file": str(path)}}, [[0, 1]], dataset="bad"))
    with pytest.raises(
        DataError, match=r"notes.pt \(config key 'datasets.bad.tensor_file'\): not a file torch.save"
    ):
        build_tasks(".", data_step_spec(exp))


def test_a_class_without_training_images_is_refused_by_the_data_step(tmp_path):
    path = save_tensor_file(tmp_path / "digits.pt")  # classes 0, 1, 2
    exp = load(config({"digits": {"tensor_file": str(path)}}, [[0, 1], [2, 5]], dataset="digits"))
    with pytest.raises(
        DataError, match=r"task 2: class 5 has no training images in dataset 'digits' .*labels: 0, 1, 2"
    ):
        build_tasks(".", data_step_spec(exp))


def test_mismatching_class_folders_are_refused_naming_them(tmp_path):
    root = make_image_folder(tmp_path / "shapes")
    (root / "test/cat").rename(root / "test/dog")
    with pytest.raises(ConfigError) as err:
        load(config({"s": {"image_folder": str(root)}}, [[0, 1]], dataset="s"))
    assert err.value.key == "datasets.s.image_folder"
    assert f"{root}/test/cat: missing" in str(err.value) and f"{root}/train/dog: missing" in str(err.value)


# (datasets, tasks, experiment's own settings, the key refused, what the message says);
# "TENSOR", "FOLDER", "GONE": a tensor file, an image folder, a path that is not there
BAD = [
    ({"digits": {"tensor_file": "TENSOR"}}, [[0, 1], {"dataset": "digitz", "classes": [2]}],
     {"dataset": "digits"}, "experiments.tiny.tasks[1].dataset",
     r"unknown dataset 'digitz' \(built-in: cifar10, .*mnist; declared under datasets: digits\)"),
    ({}, [[0, 1]], {}, "experiments.tiny.dataset", r"'d' \(built-in: .*declared under datasets: none"),
    ({"d": {"tensor_file": "GONE"}}, [[0, 1]], {}, "datasets.d.tensor_file", "gone: no such file"),
    ({"d": {"tensor_file": "data/gone.pt"}}, [[0, 1]], {}, "datasets.d.tensor_file",
     r"data/gone.pt \(.*/data/gone.pt\): no such file .*relative to the working directory"),
    ({"d": {"image_folder": "GONE"}}, [[0, 1]], {}, "datasets.d.image_folder", "gone: no such folder"),
    ({"d": {"image_folder": "TENSOR"}}, [[0, 1]], {}, "datasets.d.image_folder", "a file, not a folder"),
    ({"mnist": {"tensor_file": "TENSOR"}}, [[0, 1]], {"dataset": "mnist"}, "datasets.mnist",
     "is a built-in dataset"),
    ({"d": {"tensor_file": "TENSOR", "loader": "a:b"}}, [[0, 1]], {}, "datasets.d",
     "exactly one of tensor_file.*it has tensor_file and loader"),
    ({"d": {"tensor_file": "TENSOR", "image_size": 8}}, [[0, 1]], {}, "datasets.d.image_size",
     "not a setting of a tensor_file dataset"),
    ({"d": {"image_folder": "FOLDER", "scale": 2}}, [[0, 1]], {}, "datasets.d.scale",
     "settings: image_size, channels"),
    ({"d": {"image_folder": "FOLDER", "channels": 2}}, [[0, 1]], {}, "datasets.d.channels", ""),
    ({"d": {"tensor_file": "TENSOR"}}, [{"dataset": "d"}], {}, "experiments.tiny.tasks[0].classes",
     "only the data step sees: list"),
    ({"d": {"image_folder": "FOLDER"}}, [[0, 3]], {}, "experiments.tiny.tasks[0]",
     r"class\(es\) \[3\] not in dataset 'd', which has classes 0..2"),
    ({"d": {"tensor_file": "TENSOR"}}, [{"classes": [0, 1], "bucket": 1}], {},
     "experiments.tiny.tasks[0].bucket", "no buckets"),
    ({"d": {"loader": "not a reference"}}, [[0, 1]], {}, "datasets.d.loader",
     "neither module:function nor an installed entry point"),
    ({"d": {"loader": "no_such_package_here.mod:load"}}, [[0, 1]], {}, "datasets.d.loader",
     "module 'no_such_package_here.mod' not found"),
    ({"d": {"image_folder": "FOLDER", "image_size": 8}}, [[0, 1]],
     {"input": {"size": 8, "channels": 3, "crop": {"size": 10}}}, "experiments.tiny.input.crop.size",
     r"larger than the stored images \(8 px\)"),
]  # fmt: skip


@pytest.mark.parametrize(
    "datasets,tasks,settings,key,message", BAD, ids=[f"{i}:{b[3]}" for i, b in enumerate(BAD)]
)
def test_bad_datasets_are_refused_with_the_key(tmp_path, datasets, tasks, settings, key, message):
    paths = {
        "TENSOR": str(save_tensor_file(tmp_path / "digits.pt")),
        "FOLDER": str(make_image_folder(tmp_path / "shapes")),
        "GONE": str(tmp_path / "gone"),
    }
    datasets = {n: {k: paths.get(v, v) for k, v in e.items()} for n, e in datasets.items()}
    with pytest.raises(ConfigError) as err:
        load(config(datasets, tasks, **({"dataset": "d"} | settings)))
    assert err.value.key == key, str(err.value)
    assert re.search(message, str(err.value)), str(err.value)


def test_an_empty_class_folder_and_a_missing_split_are_refused(tmp_path):
    root = make_image_folder(tmp_path / "shapes")
    for f in (root / "train/bee").iterdir():
        f.unlink()
    (root / "train/bee/.hidden.png").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"train/bee: no images"):
        load(config({"s": {"image_folder": str(root)}}, [[0, 1]], dataset="s"))
    other = make_image_folder(tmp_path / "other", per_class=(1, 1))
    for f in (other / "test").rglob("*.png"):
        f.unlink()
    for d in (other / "test").iterdir():
        d.rmdir()
    (other / "test").rmdir()
    with pytest.raises(
        ConfigError, match=r"other/test: missing \(an image folder holds train/<class>/ and test/<class>/\)"
    ):
        load(config({"s": {"image_folder": str(other)}}, [[0, 1]], dataset="s"))


def test_built_in_datasets_plan_as_before():
    """A config without datasets: plans the specs it planned before they existed."""
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    exp = validate_config(cfg, str(SCHEMA))["tiny"]
    assert exp.datasets == {} and set(plan.data_spec(exp)) == {"tasks", "data"}


def test_the_workflow_s_side_imports_no_torch(tmp_path):
    """Config check and content fingerprints of every kind, in a fresh interpreter."""
    import subprocess

    tensor = save_tensor_file(tmp_path / "digits.pt")
    folder = make_image_folder(tmp_path / "shapes")
    (tmp_path / "userpkg").mkdir()
    (tmp_path / "userpkg/__init__.py").write_text("")
    (tmp_path / "userpkg/mydata.py").write_text(LOADER)
    cfg = config(
        {
            "t": {"tensor_file": str(tensor)},
            "f": {"image_folder": str(folder)},
            "l": {"loader": "userpkg.mydata:load"},
        },
        [{"dataset": "t", "classes": [0, 1]}, {"dataset": "f"}, {"dataset": "l", "classes": [0, 1]}],
        scenario="class",
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    code = textwrap.dedent(
        f"""
        import sys, yaml
        sys.path[:0] = [{str(ROOT / "src")!r}, {str(tmp_path)!r}]
        from clpipe.config import validate_config
        from clpipe.user_datasets import content
        from clpipe import plan
        cfg = yaml.safe_load(open({str(tmp_path / "config.yaml")!r}))
        exp = validate_config(cfg, {str(SCHEMA)!r})["tiny"]
        plan.data_spec(exp)
        print(sorted(content(d)[:4] for d in exp.datasets.values()))
        assert "torch" not in sys.modules and "userpkg.mydata" not in sys.modules, "imported"
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
