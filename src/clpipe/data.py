"""Datasets into task tensors, once; per-batch preprocessing on the device.

The data step decodes the datasets an experiment uses into one file of uint8 tensors
(``tasks.pt``): for every task its train, validation and test split with the original
labels and the indices into the source dataset (for an image-folder dataset such as
CLEAR-10: into the bucket's sorted file list, :func:`clpipe.catalog.bucket_files`).
Every later job loads that file and moves it to the device once; cropping, resizing,
channel repeat and normalisation happen per batch on the device (:class:`InputPipeline`),
with no per-sample PIL work.
"""

from __future__ import annotations

import copy
import logging
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clpipe import io, plugins, transforms
from clpipe.catalog import DatasetInfo, bucket_files, dataset_info
from clpipe.datasets import DataError, verify_dataset
from clpipe.errors import ConfigError
from clpipe.user_datasets import SPLITS, UserDataset, image_files
from clpipe.user_datasets import content as user_content

log = logging.getLogger("clpipe")


def read_dataset(data_dir: str | Path, name: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (uint8, N x C x H x W) and labels (int64) of one split."""
    info = dataset_info(name)
    if info.file_format == "cifar":
        return read_cifar(data_dir, info, train)
    prefix = "train" if train else "t10k"
    folder = Path(data_dir) / info.folder / "raw"
    x = read_idx(folder / f"{prefix}-images-idx3-ubyte")
    y = read_idx(folder / f"{prefix}-labels-idx1-ubyte").to(torch.int64)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{folder}: {tuple(x.shape)} images for {tuple(y.shape)} labels ({prefix} split)")
    return x.unsqueeze(1).contiguous(), y  # N x 1 x H x W


IDX_TYPES = {0x08: torch.uint8}  # the idx type codes MNIST and Fashion-MNIST use


def read_idx(path: str | Path) -> torch.Tensor:
    """An idx file (MNIST's format: a big-endian header of type and dimensions, then the
    values), read as torchvision reads it but without importing torchvision (which pulls
    in torch's compiler stack: about a second of every data step)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(f"{path}: not an idx file of unsigned bytes (its header: {raw[:4].hex()})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    count = math.prod(dims)
    if len(raw) != start + count:
        raise DataError(f"{path}: {len(raw) - start} bytes of values for shape {dims}; truncated or damaged")
    return torch.frombuffer(bytearray(raw[start:]), dtype=IDX_TYPES[raw[2]]).reshape(dims)


def read_cifar(data_dir: str | Path, info: DatasetInfo, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of CIFAR-10 / CIFAR-100 from the release's python pickles, as
    torchvision reads them (without its md5 check on every load: the data step checks
    the files once): the batches in torchvision's order, each a dict whose ``data`` is
    N x 3072 uint8 (1024 red, then green, then blue values, each 32 x 32 row-major) and
    whose labels are ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100). Images come
    back N x 3 x 32 x 32 (uint8), labels int64. A file that is not such a batch raises
    :class:`DataError` naming it and what is wrong.

    Like torchvision, this unpickles the files (``encoding="latin1"``, the release was
    pickled by Python 2): read only files you trust, i.e. the release (whose md5 the
    data step checks unless ``verify_release_md5`` is off)."""
    import numpy as np

    side = int(info.size)
    pixels = info.channels * side * side
    xs, ys = [], []
    for rel in info.train_files if train else info.test_files:
        path = Path(data_dir) / rel
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
        except FileNotFoundError:
            raise DataError(f"{path}: missing (dataset {info.name!r})") from None
        except Exception as err:  # noqa: BLE001 -- unpickling raises anything
            raise DataError(f"{path}: not a pickled CIFAR batch ({type(err).__name__}: {err})") from err
        if not isinstance(entry, dict):
            raise DataError(f"{path}: holds a {type(entry).__name__}, not a CIFAR batch (a dict)")
        for key in ("data", info.label_key):
            if key not in entry:
                keys = ", ".join(map(str, entry)) or "none"
                raise DataError(f"{path}: no {key!r} in the batch (its keys: {keys})")
        data, labels = entry["data"], entry[info.label_key]
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
            what = (
                f"a {data.dtype} array of shape {data.shape}"
                if isinstance(data, np.ndarray)
                else f"a {type(data).__name__}"
            )
            raise DataError(f"{path}: 'data' is {what}, not N x {pixels} uint8")
        if data.shape[1] != pixels:
            raise DataError(
                f"{path}: 'data' has {data.shape[1]} values per image, not {pixels} "
                f"({info.channels} x {side} x {side})"
            )
        try:
            y = torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1))
        except (TypeError, ValueError) as err:
            raise DataError(f"{path}: {info.label_key!r} is not a list of integers ({err})") from err
        if len(y) != len(data):
            raise DataError(f"{path}: {len(y)} {info.label_key!r} for {len(data)} images")
        bad = y[(y < 0) | (y >= info.n_classes)]
        if len(bad):
            raise DataError(
                f"{path}: label {int(bad[0])} in {info.label_key!r} is not a class of "
                f"{info.name!r} (0..{info.n_classes - 1})"
            )
        xs.append(torch.from_numpy(np.ascontiguousarray(data)).view(-1, info.channels, side, side))
        ys.append(y)
    return torch.cat(xs).contiguous(), torch.cat(ys)


def decode_images(paths: list[Path], image_size: int | None, channels: int = 3) -> torch.Tensor:
    """Image files decoded once (uint8, N x C x S x S): RGB (``channels`` 3) or
    grayscale (1); the shorter side resized to ``image_size`` (bilinear, antialiased)
    and centre-cropped to a square. ``image_size`` None: as stored, every image the size
    of the first (else :class:`DataError` naming the file)."""
    from PIL import Image

    mode = {1: "L", 3: "RGB"}[channels]
    x = None
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                w, h = img.size
                if image_size is not None:
                    scale = image_size / min(w, h)
                    nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
                    img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
                    left, top = (nw - image_size) // 2, (nh - image_size) // 2
                    img = img.crop((left, top, left + image_size, top + image_size))
                    w = h = image_size
                if x is None:
                    x = torch.empty((len(paths), channels, h, w), dtype=torch.uint8)
                elif (h, w) != tuple(x.shape[2:]):
                    raise DataError(
                        f"{path}: {w} x {h} px, but {paths[0]} is {x.shape[3]} x {x.shape[2]}: images "
                        "of different sizes need an image_size to be resized to"
                    )
                x[i] = (
                    torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
                    .view(h, w, channels)
                    .permute(2, 0, 1)
                )
        except OSError as err:
            raise DataError(f"{path}: cannot be read as an image ({err})") from err
    if x is None:
        side = image_size or 0
        x = torch.empty((0, channels, side, side), dtype=torch.uint8)
    return x


def read_bucket(
    data_dir: str | Path, info: DatasetInfo, bucket: int, image_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of one bucket of an image-folder dataset, decoded once: RGB, the
    shorter side resized to ``image_size`` (bilinear, antialiased), centre-cropped to a
    square (uint8, N x 3 x S x S), and the labels; in :func:`bucket_files` order."""
    root = info.bucket_dir(data_dir, bucket)
    files = bucket_files(data_dir, info, bucket)
    x = decode_images([root / rel for rel, _ in files], image_size, info.channels)
    y = torch.tensor([label for _, label in files], dtype=torch.int64)
    return x, y


# --- the config's own datasets (clpipe.user_datasets) ---------------------------------

SPLIT_KEYS = ("images", "labels")


def check_splits(obj: Any, where: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A user dataset's splits, as a tensor file or a loader gives them: exactly
    ``{"train": {"images": X, "labels": Y}, "test": {...}}``, X a uint8 tensor N x H x W
    (one channel) or N x C x H x W, Y an int64 tensor of N labels >= 0, the same C x H x W
    in both splits. Returns {split: (images N x C x H x W, labels)}; anything else raises
    :class:`DataError` naming ``where`` (the file or loader, and its config key) and the
    key that is missing or wrong."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: holds a {type(obj).__name__}, not a dict {{'train': ..., 'test': ...}}")
    for split in SPLITS:
        if split not in obj:
            raise DataError(f"{where}: no {split!r} split (its keys: {', '.join(map(repr, obj)) or 'none'})")
    for k in obj:
        if k not in SPLITS:
            raise DataError(
                f"{where}: {k!r} is not a split the pipeline reads (only 'train' and 'test'; "
                "the validation split is carved from train)"
            )
    out = {}
    for split in SPLITS:
        part, at = obj[split], f"{where}: {split!r}"
        if not isinstance(part, dict):
            raise DataError(f"{at} is a {type(part).__name__}, not a dict {{'images': ..., 'labels': ...}}")
        for k in SPLIT_KEYS:
            if k not in part:
                raise DataError(f"{at} has no {k!r} (its keys: {', '.join(map(repr, part)) or 'none'})")
        for k in part:
            if k not in SPLIT_KEYS:
                raise DataError(f"{at}: {k!r} is not read (a split holds only 'images' and 'labels')")
        x, y = part["images"], part["labels"]
        if not (isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and x.ndim in (3, 4)):
            what = (
                f"a {x.dtype} tensor of shape {tuple(x.shape)}"
                if isinstance(x, torch.Tensor)
                else f"a {type(x).__name__}"
            )
            hint = (
                " (floats in [0, 1]: (x * 255).round().to(torch.uint8))"
                if isinstance(x, torch.Tensor) and x.is_floating_point()
                else ""
            )
            raise DataError(f"{at}.images is {what}, not a uint8 tensor N x H x W or N x C x H x W{hint}")
        if not (isinstance(y, torch.Tensor) and y.dtype == torch.int64 and y.ndim == 1):
            what = (
                f"a {y.dtype} tensor of shape {tuple(y.shape)}"
                if isinstance(y, torch.Tensor)
                else f"a {type(y).__name__}"
            )
            raise DataError(f"{at}.labels is {what}, not an int64 tensor of N labels (y.long())")
        if len(y) != len(x):
            raise DataError(f"{at}: {len(y)} labels for {len(x)} images")
        if len(y) and int(y.min()) < 0:
            raise DataError(f"{at}.labels: label {int(y.min())} is negative (classes are 0, 1, ...)")
        x = x.unsqueeze(1) if x.ndim == 3 else x
        out[split] = (x.contiguous(), y.contiguous())
    shapes = {split: tuple(out[split][0].shape[1:]) for split in SPLITS}
    if shapes["train"] != shapes["test"]:
        raise DataError(
            f"{where}: train images are {shapes['train']} (C x H x W), test images {shapes['test']}; "
            "give both splits the same"
        )
    return out


def read_user_dataset(ds: UserDataset) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Both splits of a config's own dataset: {split: (images N x C x H x W, labels)}."""
    where = f"{ds.path} (config key '{ds.source_key}')"
    if ds.kind == "tensor_file":
        try:
            obj = torch.load(ds.path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise DataError(f"{where}: missing") from None
        except Exception as err:  # noqa: BLE001 -- a damaged file, a pickle of other objects
            why = (str(err).splitlines() or [""])[0].split(". ")[0]
            raise DataError(
                f"{where}: not a file torch.save wrote of tensors in dicts ({type(err).__name__}: {why})"
            ) from err
        return check_splits(obj, where)
    if ds.kind == "loader":
        function = plugins.load(ds.loader, ds.source_key)
        if not callable(function):
            raise DataError(
                f"{ds.loader!r} (config key '{ds.source_key}'): not a function (a {type(function).__name__})"
            )
        returned = function(copy.deepcopy(ds.settings))
        return check_splits(returned, f"what {ds.loader!r} returned (config key '{ds.source_key}')")
    out = {}
    for split in SPLITS:
        files = image_files(ds.path, split, ds.class_names)
        x = decode_images([Path(ds.path) / rel for rel, _ in files], ds.image_size, ds.channels)
        out[split] = (x, torch.tensor([label for _, label in files], dtype=torch.int64))
    return out


def verify_user_dataset(ds: UserDataset, planned: str | None) -> None:
    """Refuse a dataset whose content changed since the workflow planned the data step
    (``planned``: the content its spec records; None: nothing to check)."""
    if planned is None:
        return
    try:
        now = user_content(ds)
    except ConfigError as err:
        raise DataError(str(err)) from None
    if now != planned:
        raise DataError(
            f"dataset {ds.name!r} ({ds.path or ds.loader}, config key '{ds.source_key}') changed since "
            f"the workflow planned this job ({now}, planned {planned}); run the workflow again"
        )


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
    a handful of images (a test split of one image scores 1.0 or 0.0); refused naming
    the task, split, class, its count and the setting that made it so."""
    least = opts.get("min_images_per_class", {})
    for split, key in (("train", "train"), ("val", "validation"), ("test", "test")):
        need = int(least.get(key, 0))
        if need == 0 or (split == "val" and opts["validation_fraction"] == 0):
            continue
        counts = torch.bincount(task[split]["y"], minlength=max(task["classes"]) + 1)
        for c in task["classes"]:
            if int(counts[c]) < need:
                raise DataError(
                    f"task {i} ({task['dataset']} {list(task['classes'])}): its {split} split has "
                    f"{int(counts[c])} image(s) of class {c}, fewer than data.min_images_per_class.{key} "
                    f"({need}): an accuracy over so few images means nothing. Keep more with "
                    f"{SPLIT_SETTINGS[split]}, or lower the minimum"
                )


def _subsample(n: int, keep: int | None, generator: torch.Generator) -> torch.Tensor:
    if keep is None or keep >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:keep].sort().values


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
    own = {n: UserDataset.from_spec(n, s) for n, s in spec.get("datasets", {}).items()}
    cache: dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def source(name: str, train: bool):
        if (name, train) not in cache:
            if name in own:
                splits = read_user_dataset(own[name])
                cache[(name, True)], cache[(name, False)] = splits["train"], splits["test"]
            else:
                cache[(name, train)] = read_dataset(data_dir, name, train)
        return cache[(name, train)]

    for name in sorted({t["dataset"] for t in spec["tasks"]}):
        if name in own:
            verify_user_dataset(own[name], spec.get("dataset_content", {}).get(name))
        else:
            verify_dataset(data_dir, name, release_md5, spec.get("unreleased_md5"))

    tasks = []
    shared: dict[tuple, dict[str, Any]] = {}  # tasks of the same images under other transforms
    for i, task in enumerate(spec["tasks"], start=1):
        base = (task["dataset"], tuple(task["classes"]), task.get("bucket"))
        if task.get("transform") and base in shared:  # the same images and splits, stored once
            tasks.append({**shared[base], "transform": dict(task["transform"])})
            continue
        g = torch.Generator().manual_seed(opts["split_seed"] * 1000 + i)
        if task.get("bucket") is not None:
            tasks.append(_bucket_task(data_dir, task, opts, g))
            shared[base] = {k: v for k, v in tasks[-1].items() if k != "transform"}
            continue
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
        if task["dataset"] in own:
            ds = own[task["dataset"]]
            _check_task_classes(i, task, ds.path or ds.loader, source(task["dataset"], True)[1], len(idx))
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
        shared[base] = tasks[-1]
        if task.get("transform"):
            tasks[-1] = {**tasks[-1], "transform": dict(task["transform"])}
    for i, task in enumerate(tasks, start=1):
        check_split_sizes(i, task, opts)
    return tasks


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
        name: {"x": x[idx], "y": y[idx], "index": idx}
        for name, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx))
    }
    return {"dataset": task["dataset"], "classes": list(task["classes"]), "bucket": task["bucket"], **splits}


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
