"""The datasets' file formats, decoded into uint8 image tensors and int64 labels.

The built-in datasets as the catalog describes them (:mod:`clpipe.catalog`): MNIST's and
Fashion-MNIST's idx files (:func:`read_idx`), the CIFAR releases' pickled batches
(:func:`read_cifar`), an image-folder dataset's bucket (:func:`read_bucket`); and image
files decoded once (:func:`decode_images`, which a config's own image folder uses too).
Each reader names the file that is missing or malformed and what is wrong
(:class:`clpipe.datasets.DataError`). Which files may be read (their md5) is
:mod:`clpipe.datasets`'s.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import torch

from clpipe.catalog import DatasetInfo, bucket_files, dataset_info
from clpipe.datasets import DataError


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
    xs, ys = [], []
    for rel in info.train_files if train else info.test_files:
        path = Path(data_dir) / rel
        x, y = _cifar_batch(_unpickled(path, info), path, info)
        xs.append(x)
        ys.append(y)
    return torch.cat(xs).contiguous(), torch.cat(ys)


def _unpickled(path: Path, info: DatasetInfo) -> dict[str, Any]:
    """A CIFAR batch file's dict, or :class:`DataError` naming the file."""
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
    return entry


def _cifar_batch(entry: dict[str, Any], path: Path, info: DatasetInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's images (N x C x H x W uint8) and labels (int64), checked."""
    import numpy as np

    side = int(info.size)
    pixels = info.channels * side * side
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
    return torch.from_numpy(np.ascontiguousarray(data)).view(-1, info.channels, side, side), y


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
