"""An experiment's tasks built from its datasets: the data step's tensors.

:func:`build_tasks` turns ``plan.data_spec`` into one dict per task, each with its
train, validation and test split (uint8 images, the original labels, and the indices
into the source dataset's split: for an image-folder dataset such as CLEAR-10, into the
bucket's sorted file list, :func:`clpipe.catalog.bucket_files`). The splits are drawn
with a fixed seed (``data.split_seed`` and the task's position), so every seed and arm
sees the same ones; tasks of the same images under other transforms store them once.
The tasks are checked before they are written: every class of a task over a config's
own dataset has training images, and every split the per-class minimum
(``data.min_images_per_class``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from clpipe.catalog import dataset_info
from clpipe.data.readers import read_bucket, read_dataset
from clpipe.data.user_data import read_user_dataset, verify_user_dataset
from clpipe.datasets import DataError, verify_dataset
from clpipe.user_datasets import UserDataset

log = logging.getLogger("clpipe")


def build_tasks(data_dir: str | Path, spec: dict[str, Any], release_md5: bool = True) -> list[dict[str, Any]]:
    """Tensors for every task of an experiment, from ``plan.data_spec``.

    The validation split is carved from the train split with a fixed seed
    (``data.split_seed``), so every seed and arm sees the same split; the test split is
    kept whole (or subsampled for tests) and is only ever reported. Data files must be
    the release's, or have the md5 the spec's ``unreleased_md5`` gives them (the
    workflow lists there the files it accepted with ``verify_release_md5: false``), or
    ``release_md5`` is False (:func:`verify_dataset`).

    The config's own datasets (``spec["datasets"]``, clpipe.user_datasets) are read
    from their file, folder or loader, not from ``data_dir``; their content must be what
    the spec's ``dataset_content`` says the workflow planned with, and every class of a
    task over one of them must have training images.
    """
    opts = spec["data"]
    sources = _Sources(data_dir, spec)
    sources.verify(spec, release_md5)
    tasks = []
    shared: dict[tuple, dict[str, Any]] = {}  # tasks of the same images under other transforms
    for i, task in enumerate(spec["tasks"], start=1):
        base = (task["dataset"], tuple(task["classes"]), task.get("bucket"))
        transform = task.get("transform")
        if transform and base in shared:  # the same images and splits, stored once
            tasks.append({**shared[base], "transform": dict(transform)})
            continue
        g = torch.Generator().manual_seed(opts["split_seed"] * 1000 + i)
        if task.get("bucket") is not None:
            # stored without its own transform, as build_tasks always has done (the tasks
            # that reuse its images get theirs)
            shared[base] = _bucket_task(data_dir, task, opts, g)
            tasks.append(shared[base])
            continue
        shared[base] = _class_task(i, task, opts, g, sources)
        tasks.append({**shared[base], "transform": dict(transform)} if transform else shared[base])
    for i, task in enumerate(tasks, start=1):
        check_split_sizes(i, task, opts)
    return tasks


class _Sources:
    """The splits of the datasets a spec's tasks use, each read once: the built-in ones
    from ``data_dir``, the config's own (``spec["datasets"]``) from their file, folder or
    loader."""

    def __init__(self, data_dir: str | Path, spec: dict[str, Any]):
        self.data_dir = data_dir
        self.own = {n: UserDataset.from_spec(n, s) for n, s in spec.get("datasets", {}).items()}
        self.cache: dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def verify(self, spec: dict[str, Any], release_md5: bool) -> None:
        """Every dataset the tasks use is the one the workflow planned with (a config's
        own: its content; a built-in one: the release's files, or those it accepted)."""
        for name in sorted({t["dataset"] for t in spec["tasks"]}):
            if name in self.own:
                verify_user_dataset(self.own[name], spec.get("dataset_content", {}).get(name))
            else:
                verify_dataset(self.data_dir, name, release_md5, spec.get("unreleased_md5"))

    def __call__(self, name: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of the train (``train``) or test split of dataset ``name``."""
        if (name, train) not in self.cache:
            if name in self.own:
                splits = read_user_dataset(self.own[name])
                self.cache[(name, True)], self.cache[(name, False)] = splits["train"], splits["test"]
            else:
                self.cache[(name, train)] = read_dataset(self.data_dir, name, train)
        return self.cache[(name, train)]


def _class_task(
    i: int, task: dict[str, Any], opts: dict[str, Any], g: torch.Generator, source: _Sources
) -> dict[str, Any]:
    """Task ``i``: the images of its classes, validation carved at random out of train
    (after subsampling train to ``max_train_per_task``), the test split whole or
    subsampled to ``max_test_per_task``; every draw from ``g``, in this order."""
    classes = torch.tensor(task["classes"])
    x, y = source(task["dataset"], True)
    idx = torch.nonzero(torch.isin(y, classes)).flatten()
    idx = idx[_subsample(len(idx), opts["max_train_per_task"], g)]
    n_val = int(round(opts["validation_fraction"] * len(idx)))
    perm = torch.randperm(len(idx), generator=g)
    val_idx = idx[perm[:n_val].sort().values]
    train_idx = idx[perm[n_val:].sort().values]
    splits = {"train": _split(x, y, train_idx), "val": _split(x, y, val_idx)}
    x, y = source(task["dataset"], False)
    idx = torch.nonzero(torch.isin(y, classes)).flatten()
    if task["dataset"] in source.own:
        ds = source.own[task["dataset"]]
        _check_task_classes(i, task, ds.path or ds.loader, source(task["dataset"], True)[1], len(idx))
    idx = idx[_subsample(len(idx), opts["max_test_per_task"], g)]
    splits["test"] = _split(x, y, idx)
    log.info(
        "task %d (%s %s): train %d, val %d, test %d",
        i,
        task["dataset"],
        task["classes"],
        len(train_idx),
        len(val_idx),
        len(idx),
    )
    return {"dataset": task["dataset"], "classes": list(task["classes"]), **splits}


def _split(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """The images and labels at ``idx`` of a source split, with ``idx`` itself."""
    return {"x": x[idx], "y": y[idx], "index": idx}


def _subsample(n: int, keep: int | None, generator: torch.Generator) -> torch.Tensor:
    if keep is None or keep >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:keep].sort().values


def _stratified_split(
    labels: torch.Tensor, fraction: float, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions into ``labels``: (held out, rest), ``round(fraction * n_c)`` of each
    class c held out at random; both sorted."""
    held, rest = [], []
    for c in labels.unique(sorted=True).tolist():
        pos = torch.nonzero(labels == c).flatten()
        pos = pos[torch.randperm(len(pos), generator=g)]
        k = int(round(fraction * len(pos)))
        held.append(pos[:k])
        rest.append(pos[k:])
    return torch.cat(held).sort().values, torch.cat(rest).sort().values


def _bucket_task(data_dir, task: dict[str, Any], opts: dict[str, Any], g: torch.Generator) -> dict[str, Any]:
    """One bucket of an image-folder dataset as a task: a train/test split of the bucket,
    stratified by class (``test_fraction`` of each class, seeded by ``split_seed`` and the
    task's position: the same for every seed and arm), then validation carved the same
    way out of the train part, never out of test."""
    info = dataset_info(task["dataset"])
    x, y = read_bucket(data_dir, info, task["bucket"], int(opts["image_size"]))
    keep = torch.nonzero(torch.isin(y, torch.tensor(task["classes"]))).flatten()
    test_pos, pool_pos = _stratified_split(y[keep], opts["test_fraction"], g)
    test_idx, pool = keep[test_pos], keep[pool_pos]
    pool = pool[_subsample(len(pool), opts["max_train_per_task"], g)]
    val_pos, train_pos = _stratified_split(y[pool], opts["validation_fraction"], g)
    val_idx, train_idx = pool[val_pos], pool[train_pos]
    test_idx = test_idx[_subsample(len(test_idx), opts["max_test_per_task"], g)]
    log.info(
        "task bucket %d (%s, %d classes): train %d, val %d, test %d (of %d images)",
        task["bucket"],
        task["dataset"],
        len(task["classes"]),
        len(train_idx),
        len(val_idx),
        len(test_idx),
        len(y),
    )
    splits = {
        name: _split(x, y, idx) for name, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx))
    }
    return {"dataset": task["dataset"], "classes": list(task["classes"]), "bucket": task["bucket"], **splits}


# --- the checks of the tasks built ------------------------------------------------------


def _check_task_classes(i: int, task: dict[str, Any], where: str, y_train: torch.Tensor, n_test: int) -> None:
    """Every class of a task over a config's own dataset has training images, and the
    task has test images (the config could not check: only the data step sees them)."""
    present = set(y_train.unique().tolist())
    for c in task["classes"]:
        if c not in present:
            shown = ", ".join(map(str, sorted(present)[:20])) + (", ..." if len(present) > 20 else "")
            raise DataError(
                f"task {i}: class {c} has no training images in dataset {task['dataset']!r} ({where}; "
                f"its training labels: {shown or 'none'})"
            )
    if n_test == 0:
        raise DataError(
            f"task {i}: no test images of classes {task['classes']} in dataset {task['dataset']!r} ({where})"
        )


# the data settings that decide how many images of a task each split keeps
SPLIT_SETTINGS = {
    "train": "data.max_train_per_task (and data.validation_fraction)",
    "val": "data.validation_fraction (of data.max_train_per_task)",
    "test": "data.max_test_per_task",
}


def check_split_sizes(i: int, task: dict[str, Any], opts: dict[str, Any]) -> None:
    """Every class of a task has at least ``data.min_images_per_class`` images in each
    split (the validation split's minimum when there is one), so no accuracy is read off
    a handful of images (a test split of one image scores 1.0 or 0.0), and the test split
    at least one whatever the minimum (a test split without a class scores the task on
    its other classes only); refused naming the task, split, class, its count and the
    setting that made it so."""
    least = opts.get("min_images_per_class", {})
    for split, key in (("train", "train"), ("val", "validation"), ("test", "test")):
        if split == "val" and opts["validation_fraction"] == 0:
            continue
        need = int(least.get(key, 0))
        counts = torch.bincount(task[split]["y"], minlength=max(task["classes"]) + 1)
        for c in task["classes"]:
            # the reported accuracy never leaves out a class of its task, even with the
            # minimum off (0 lets a tiny config train or validate without some class)
            if int(counts[c]) == 0 and need == 0 and split == "test":
                raise DataError(
                    f"task {i} ({task['dataset']} {list(task['classes'])}): its {split} split has no image "
                    f"of class {c}, so its accuracy would be over the task's other classes only. Give the "
                    f"dataset test images of class {c}, or keep more with {SPLIT_SETTINGS[split]}"
                )
            if int(counts[c]) < need:
                raise DataError(
                    f"task {i} ({task['dataset']} {list(task['classes'])}): its {split} split has "
                    f"{int(counts[c])} image(s) of class {c}, fewer than data.min_images_per_class.{key} "
                    f"({need}): an accuracy over so few images means nothing. Keep more with "
                    f"{SPLIT_SETTINGS[split]}, or lower the minimum"
                )
