"""The tasks as every job after the data step uses them, and their per-batch preprocessing.

Every job after the data step loads its file (``tasks.pt``) once (:func:`load_tasks`:
:class:`Task` objects of :class:`Split` tensors, each task's images under its transform
if it has one) and moves it to the device once; cropping, resizing, channel repeat and
normalisation happen per batch on the device (:class:`InputPipeline`), with no
per-sample PIL work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clpipe import io, transforms


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
    bucket: int | None = None  # image-folder datasets: the time bucket

    def to(self, device: torch.device) -> Task:
        return Task(
            self.index,
            self.dataset,
            self.classes,
            self.train.to(device),
            self.val.to(device),
            self.test.to(device),
            self.bucket,
        )


def load_tasks(path: str | Path, device: torch.device | None = None) -> list[Task]:
    """Every task of a data file, each task's images under its transform, if it has one
    (clpipe.transforms: stored once, transformed here)."""
    obj = io.load(path, "tasks")
    tasks = []
    for i, t in enumerate(obj["tasks"], start=1):
        splits = {
            s: Split(transforms.apply(t.get("transform"), t[s]["x"]), t[s]["y"], t[s]["index"])
            for s in ("train", "val", "test")
        }
        task = Task(i, t["dataset"], tuple(t["classes"]), **splits, bucket=t.get("bucket"))
        tasks.append(task.to(device) if device is not None else task)
    return tasks


class InputPipeline:
    """uint8 batches -> float model inputs, on the device: crop, scale, resize, channels,
    normalise.

    ``input.crop`` (optional) first cuts a ``size`` x ``size`` window out of each stored
    image: at a random place per sample for training batches (:meth:`train_batch`,
    RandomCrop) and in the centre for everything else (:meth:`__call__`: evaluation,
    scoring, Fisher; CenterCrop), or ``none``. Resizing is bilinear with half-pixel
    centres (TensorFlow 2's ``tf.image.resize``, which the headline source used); it runs
    on the 1-channel image before the channel repeat, which is then a free broadcast.
    """

    def __init__(self, input_cfg: dict[str, Any], device: torch.device):
        self.size = int(input_cfg["size"])
        self.channels = int(input_cfg["channels"])
        crop = input_cfg.get("crop") or {}
        self.crop_size = int(crop["size"]) if crop else None
        self.train_crop = crop.get("train", "random") if crop else "none"
        self.eval_crop = crop.get("eval", "center") if crop else "none"
        norm = input_cfg.get("normalize")
        if norm is None:
            self.mean = self.std = None
        else:
            shape = (1, -1, 1, 1)
            self.mean = torch.tensor(norm["mean"], dtype=torch.float32, device=device).view(shape)
            self.std = torch.tensor(norm["std"], dtype=torch.float32, device=device).view(shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs for evaluation (and anything else that must be deterministic)."""
        return self._finish(self._crop(x, self.eval_crop, None))

    def train_batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Inputs for a training step: random crops drawn from ``generator`` (CPU)."""
        return self._finish(self._crop(x, self.train_crop, generator))

    def _crop(self, x: torch.Tensor, how: str, generator: torch.Generator | None) -> torch.Tensor:
        if how == "none" or self.crop_size is None:
            return x
        c = self.crop_size
        h, w = x.shape[-2], x.shape[-1]
        if c > h or c > w:
            raise ValueError(f"cannot crop {c} x {c} out of {h} x {w} images")
        if how == "center":
            top, left = (h - c) // 2, (w - c) // 2
            return x[..., top : top + c, left : left + c]
        # random: one window per sample, gathered with index grids (no per-sample loop)
        n = x.shape[0]
        offsets = torch.randint(0, (h - c + 1) * (w - c + 1), (n,), generator=generator).to(x.device)
        top, left = offsets // (w - c + 1), offsets % (w - c + 1)
        ar = torch.arange(c, device=x.device)
        rows = (top[:, None] + ar)[:, None, :, None]  # n x 1 x c x 1
        cols = (left[:, None] + ar)[:, None, None, :]  # n x 1 x 1 x c
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        return x[batch, chans, rows, cols]

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
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
