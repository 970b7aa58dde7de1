"""Datasets into task tensors, once; per-batch preprocessing on the device.

The data step decodes the datasets an experiment uses into one file of uint8 tensors
(``tasks.pt``): for every task its train, validation and test split with the original
labels and the indices into the source dataset. Every later job loads that file and
moves it to the device once; resizing, channel repeat and normalisation happen per
batch on the device (:class:`InputPipeline`), with no per-sample PIL work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clpipe import io
from clpipe.catalog import dataset_info, md5sum

log = logging.getLogger("clpipe")


class DataError(RuntimeError):
    """Missing or corrupted dataset files; the message names the file."""


def verify_dataset(data_dir: str | Path, name: str) -> None:
    """Check the dataset's files under data_dir exist and have the expected md5."""
    info = dataset_info(name)
    for rel, expected in info.files.items():
        path = Path(data_dir) / rel
        if not path.is_file():
            raise DataError(
                f"{path}: missing (dataset {name!r}; set config key 'data_dir' to the folder "
                f"holding {info.folder}/, or let the download_data rule fetch it)"
            )
        actual = md5sum(path)
        if actual != expected:
            raise DataError(f"{path}: md5 {actual} does not match the release's {expected}; re-download it")


def download_dataset(data_dir: str | Path, name: str) -> None:
    """Fetch a dataset into data_dir with torchvision (needs internet)."""
    import torchvision

    info = dataset_info(name)
    cls = getattr(torchvision.datasets, info.torchvision_class)
    for train in (True, False):
        cls(root=str(data_dir), train=train, download=True)
    verify_dataset(data_dir, name)


def read_dataset(data_dir: str | Path, name: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (uint8, N x C x H x W) and labels (int64) of one split."""
    import torchvision

    info = dataset_info(name)
    cls = getattr(torchvision.datasets, info.torchvision_class)
    ds = cls(root=str(data_dir), train=train, download=False)
    x = torch.as_tensor(ds.data)
    if x.ndim == 3:  # gray: N x H x W
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[-1] in (1, 3):  # N x H x W x C (numpy layout)
        x = x.permute(0, 3, 1, 2)
    y = torch.as_tensor(ds.targets, dtype=torch.int64)
    return x.contiguous(), y


def _subsample(n: int, keep: int | None, generator: torch.Generator) -> torch.Tensor:
    if keep is None or keep >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:keep].sort().values


def build_tasks(data_dir: str | Path, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Tensors for every task of an experiment, from ``plan.data_spec``.

    The validation split is carved from the train split with a fixed seed
    (``data.split_seed``), so every seed and arm sees the same split; the test split is
    kept whole (or subsampled for tests) and is only ever reported.
    """
    opts = spec["data"]
    cache: dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def source(name: str, train: bool):
        if (name, train) not in cache:
            cache[(name, train)] = read_dataset(data_dir, name, train)
        return cache[(name, train)]

    for name in sorted({t["dataset"] for t in spec["tasks"]}):
        verify_dataset(data_dir, name)

    tasks = []
    for i, task in enumerate(spec["tasks"], start=1):
        g = torch.Generator().manual_seed(opts["split_seed"] * 1000 + i)
        classes = torch.tensor(task["classes"])
        splits: dict[str, dict[str, torch.Tensor]] = {}
        x, y = source(task["dataset"], True)
        idx = torch.nonzero(torch.isin(y, classes)).flatten()
        idx = idx[_subsample(len(idx), opts["max_train_per_task"], g)]
        n_val = int(round(opts["validation_fraction"] * len(idx)))
        perm = torch.randperm(len(idx), generator=g)
        val_idx = idx[perm[:n_val].sort().values]
        train_idx = idx[perm[n_val:].sort().values]
        splits["train"] = {"x": x[train_idx], "y": y[train_idx], "index": train_idx}
        splits["val"] = {"x": x[val_idx], "y": y[val_idx], "index": val_idx}
        x, y = source(task["dataset"], False)
        idx = torch.nonzero(torch.isin(y, classes)).flatten()
        idx = idx[_subsample(len(idx), opts["max_test_per_task"], g)]
        splits["test"] = {"x": x[idx], "y": y[idx], "index": idx}
        log.info(
            "task %d (%s %s): train %d, val %d, test %d",
            i,
            task["dataset"],
            task["classes"],
            len(train_idx),
            len(val_idx),
            len(idx),
        )
        tasks.append({"dataset": task["dataset"], "classes": list(task["classes"]), **splits})
    return tasks


@dataclass
class Split:
    x: torch.Tensor  # uint8, N x C x H x W
    y: torch.Tensor  # int64 labels of the source dataset
    index: torch.Tensor  # int64 indices into the source dataset's split

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device), self.index.to(device))


@dataclass
class Task:
    index: int  # 1-based
    dataset: str
    classes: tuple[int, ...]
    train: Split
    val: Split
    test: Split

    def to(self, device: torch.device) -> Task:
        return Task(
            self.index,
            self.dataset,
            self.classes,
            self.train.to(device),
            self.val.to(device),
            self.test.to(device),
        )


def load_tasks(path: str | Path, device: torch.device | None = None) -> list[Task]:
    obj = io.load(path, "tasks")
    tasks = []
    for i, t in enumerate(obj["tasks"], start=1):
        splits = {s: Split(t[s]["x"], t[s]["y"], t[s]["index"]) for s in ("train", "val", "test")}
        task = Task(i, t["dataset"], tuple(t["classes"]), **splits)
        tasks.append(task.to(device) if device is not None else task)
    return tasks


class InputPipeline:
    """uint8 batches -> float model inputs, on the device: scale, resize, channels, normalise.

    Resizing is bilinear with half-pixel centres (TensorFlow 2's ``tf.image.resize``,
    which the headline source used); it runs on the 1-channel image before the channel
    repeat, which is then a free broadcast.
    """

    def __init__(self, input_cfg: dict[str, Any], device: torch.device):
        self.size = int(input_cfg["size"])
        self.channels = int(input_cfg["channels"])
        norm = input_cfg.get("normalize")
        if norm is None:
            self.mean = self.std = None
        else:
            shape = (1, -1, 1, 1)
            self.mean = torch.tensor(norm["mean"], dtype=torch.float32, device=device).view(shape)
            self.std = torch.tensor(norm["std"], dtype=torch.float32, device=device).view(shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if x.shape[1] != self.channels:
            if x.shape[1] != 1:
                raise ValueError(f"cannot turn {x.shape[1]}-channel images into {self.channels} channels")
            x = x.expand(-1, self.channels, -1, -1)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x
