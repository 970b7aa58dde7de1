"""A config's own datasets through Snakemake: a tensor file and an image folder trained
on end to end, a loader's data step; reruns follow their content, not their mtimes.

Everything is generated in the test's working directory (no MNIST); the config names
the datasets by paths relative to it, as a user's config would.
"""

import os
import re

import pandas as pd
import pytest
import torch
import yaml

from clpipe import io
from conftest import snakemake
from helpers.user_data_files import LOADER, make_image_folder, save_tensor_file, tensor_dataset

SMALL = {"mem_mb": 1000, "runtime": 10, "threads": 1}


def experiment(dataset, channels):
    return {
        "dataset": dataset,
        "tasks": [[0, 1], [2, 3]],
        "scenario": "domain",
        # a few generated images of each class: the data step's per-class minimum off
        "data": {
            "validation_fraction": 0.25,
            "min_images_per_class": {"train": 0, "validation": 0, "test": 0},
        },
        "input": {"size": 8, "channels": channels},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.01}},
        "arms": {"finetune": {"method": "finetune"}},
    }


CONFIG = {
    "data_dir": "data",
    "results_dir": "results",
    "device": "cpu",
    "seeds": [0],
    "resources": {kind: SMALL for kind in ("train", "evaluate", "data", "aggregate")},
    "datasets": {
        "digits": {"tensor_file": "data/digits.pt"},
        "shapes": {"image_folder": "data/shapes"},
        "generated": {"loader": "userloader.gen:load", "per_class": 6, "classes": 4},
    },
    "experiments": {
        "on_tensors": experiment("digits", 1),
        "on_images": experiment("shapes", 3),
        "on_loader": experiment("generated", 1),
    },
    # rule all: the two trained end to end; on_loader's data step is asked for by name
    "run": ["on_tensors", "on_images"],
}
COLOURS = {"ant": (200, 0, 0), "bee": (0, 200, 0), "cat": (0, 0, 200), "dog": (200, 200, 0)}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    work = tmp_path_factory.mktemp("user_datasets")
    (work / "data").mkdir()
    save_tensor_file(work / "data/digits.pt", tensor_dataset(n_train=64, n_test=32, classes=4))
    make_image_folder(work / "data/shapes", per_class=(8, 4), classes=COLOURS)
    (work / "userloader").mkdir()
    (work / "userloader/__init__.py").write_text("")
    (work / "userloader/gen.py").write_text(LOADER)
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(work))  # the loader's package, for the workflow and its jobs
        snakemake(work, "--cores", "2", "--configfile", str(cfg))
        snakemake(work, "results/on_loader/data/tasks.pt", "--cores", "2", "--configfile", str(cfg))
        yield work, cfg


def dry_run(work, cfg, *targets):
    return snakemake(
        work, "-n", *targets, "--configfile", str(cfg)
    ).stdout  # targets first: --configfile takes several


def test_both_datasets_are_trained_on_and_need_no_download(finished):
    work, _ = finished
    for name, dataset in (("on_tensors", "digits"), ("on_images", "shapes")):
        summary = pd.read_csv(work / f"results/{name}/summary.csv")
        assert list(summary["arm"]) == ["finetune"]
        tasks = io.load(work / f"results/{name}/data/tasks.pt", "tasks")
        assert [t["dataset"] for t in tasks["tasks"]] == [dataset, dataset]
        assert [sorted(set(t["test"]["y"].tolist())) for t in tasks["tasks"]] == [[0, 1], [2, 3]]
        assert tasks["spec"]["dataset_content"][dataset]  # what it was built from
    shapes = io.load(work / "results/on_images/data/tasks.pt", "tasks")["tasks"]
    assert shapes[0]["train"]["x"].shape[1:] == (3, 8, 8)
    assert len(shapes[0]["test"]["y"]) == 8 and len(shapes[0]["val"]["y"]) == 4  # 4 of 16 held out
    assert not (work / "results/datasets").exists() or not list((work / "results/datasets").glob("*.md5"))
    loaded = io.load(work / "results/on_loader/data/tasks.pt", "tasks")["tasks"]
    assert [len(t["train"]["y"]) + len(t["val"]["y"]) for t in loaded] == [12, 12]


def test_touched_files_rerun_nothing_and_changed_content_reruns_the_data_step(finished):
    work, cfg = finished
    later = (work / "data/digits.pt").stat().st_mtime + 3600
    for path in (work / "data/digits.pt", work / "data/shapes/train/ant/000.png"):
        os.utime(path, (later, later))
    assert "Nothing to be done" in dry_run(work, cfg)
    save_tensor_file(work / "data/digits.pt", tensor_dataset(n_train=64, n_test=32, classes=4, seed=1))
    out = dry_run(work, cfg)
    planned = re.findall(r"rule (\w+):\n(?:.*\n)*?\s+wildcards: experiment=(\w+)", out)
    assert ("prepare_data", "on_tensors") in planned
    assert "experiment=on_images" not in out  # the other dataset's experiment reruns nothing
    save_tensor_file(work / "data/digits.pt", tensor_dataset(n_train=64, n_test=32, classes=4))  # back
    assert "Nothing to be done" in dry_run(work, cfg)


def test_a_loader_s_code_reruns_its_data_step_and_its_comments_do_not(finished, monkeypatch):
    work, cfg = finished
    monkeypatch.setenv("PYTHONPATH", str(work))
    target = "results/on_loader/data/tasks.pt"
    assert "Nothing to be done" in dry_run(work, cfg, target)
    module = work / "userloader/gen.py"
    module.write_text(LOADER + "\n# only a comment\n")
    assert "Nothing to be done" in dry_run(work, cfg, target)
    module.write_text(LOADER.replace("split(2)", "split(3)"))
    assert "rule prepare_data:" in dry_run(work, cfg, target)
    module.write_text(LOADER)


def test_a_missing_dataset_is_refused_before_any_job_naming_key_and_path(finished):
    work, cfg = finished
    os.rename(work / "data/digits.pt", work / "data/moved.pt")
    try:
        proc = snakemake(work, "--cores", "2", "--configfile", str(cfg), check=False)
    finally:
        os.rename(work / "data/moved.pt", work / "data/digits.pt")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key 'datasets.digits.tensor_file': data/digits.pt" in out and "no such file" in out
    assert "Traceback" not in out
    assert (work / "results/on_tensors/data/tasks.pt").is_file()  # nothing was deleted
    assert torch.load(work / "data/digits.pt", weights_only=True)["train"]["images"].dtype == torch.uint8
