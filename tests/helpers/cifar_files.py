"""Tiny CIFAR-10 / CIFAR-100 trees in the releases' on-disk format, generated for the tests.

The "python version" of each release, as torchvision's CIFAR10 / CIFAR100 read it
under a root folder (the pipeline's data_dir):

- ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``,
  each a pickled dict ``{batch_label, labels, data, filenames}``, and ``batches.meta``
  ``{num_cases_per_batch, label_names, num_vis}``;
- ``cifar-100-python/``: ``train`` and ``test``, each ``{filenames, batch_label,
  fine_labels, coarse_labels, data}``, and ``meta`` ``{fine_label_names,
  coarse_label_names}``.

``data`` is an N x 3072 uint8 array, each row one image: 1024 red values, then 1024
green, then 1024 blue, each channel 32 x 32 row-major. Labels are lists of ints. Strings
are ``str`` (the releases were pickled by Python 2; loaded with ``encoding="latin1"``, as
torchvision does, their strings are ``str`` too). Only a few images per class, so the
files cannot have the release's md5: a config that reads them needs
``verify_release_md5: false``.

Each class has its own colour and a brighter square at a place of its own (plus noise),
so a small network can learn it. CIFAR-10's label names are the release's; CIFAR-100's
fine and coarse names are placeholders, and coarse label = fine label // 5 (the
release's 20 superclasses of 5 classes each, not its mapping).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR10_LABEL_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
PIXELS = 3 * 32 * 32


def flat_index(channel: int, row: int, column: int) -> int:
    """Position of a pixel value in a row of ``data``."""
    return channel * 1024 + row * 32 + column


def write_batch(path: Path, entry: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)
    return path


def read_batch(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def class_images(labels: list[int], n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """N x 3072 uint8 rows: each label's colour and square, plus noise."""
    images = np.empty((len(labels), 3, 32, 32), dtype=np.float64)
    for i, label in enumerate(labels):
        hue = label / n_classes
        colour = np.array([np.cos(2 * np.pi * (hue + k / 3)) for k in range(3)]) * 60 + 110
        img = colour[:, None, None] + rng.normal(0, 25, size=(3, 32, 32))
        top, left = (label * 7) % 24, (label * 13) % 24
        img[:, top : top + 8, left : left + 8] += 80
        images[i] = img
    return np.clip(images, 0, 255).astype(np.uint8).reshape(len(labels), PIXELS)


def _labels(n_classes: int, per_class: int, rng: np.random.Generator) -> list[int]:
    labels = [c for c in range(n_classes) for _ in range(per_class)]
    return [int(v) for v in rng.permutation(labels)]  # shuffled, as in the releases


def make_cifar10(root: Path, per_class_per_batch: int = 2, test_per_class: int = 2, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` (5 training batches with ``per_class_per_batch``
    images of each class, a test batch with ``test_per_class``); return ``root``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / CIFAR10_FOLDER
    batches = [(f"data_batch_{b}", f"training batch {b} of 5", per_class_per_batch) for b in range(1, 6)]
    batches.append(("test_batch", "testing batch 1 of 1", test_per_class))
    for name, batch_label, per_class in batches:
        labels = _labels(10, per_class, rng)
        write_batch(
            folder / name,
            {
                "batch_label": batch_label,
                "labels": labels,
                "data": class_images(labels, 10, rng),
                "filenames": [f"{CIFAR10_LABEL_NAMES[y]}_s_{name}_{i:06d}.png" for i, y in enumerate(labels)],
            },
        )
    write_batch(
        folder / "batches.meta",
        {
            "num_cases_per_batch": 10 * per_class_per_batch,
            "label_names": list(CIFAR10_LABEL_NAMES),
            "num_vis": PIXELS,
        },
    )
    return Path(root)


def make_cifar100(root: Path, train_per_class: int = 3, test_per_class: int = 1, seed: int = 0) -> Path:
    """Write ``root/cifar-100-python`` (``train``, ``test``, ``meta``); return ``root``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / CIFAR100_FOLDER
    fine_names = [f"class_{c:02d}" for c in range(100)]
    for name, batch_label, per_class in (
        ("train", "training batch 1 of 1", train_per_class),
        ("test", "testing batch 1 of 1", test_per_class),
    ):
        labels = _labels(100, per_class, rng)
        write_batch(
            folder / name,
            {
                "filenames": [f"{fine_names[y]}_s_{name}_{i:06d}.png" for i, y in enumerate(labels)],
                "batch_label": batch_label,
                "fine_labels": labels,
                "coarse_labels": [y // 5 for y in labels],
                "data": class_images(labels, 100, rng),
            },
        )
    write_batch(
        folder / "meta",
        {
            "fine_label_names": fine_names,
            "coarse_label_names": [f"superclass_{c:02d}" for c in range(20)],
        },
    )
    return Path(root)
