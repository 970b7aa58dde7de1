"""A small CLEAR-10 tree in the release's on-disk layout, generated for the tests.

``<root>/clear10/labeled_images/<bucket 1..10>/<class>/<n>.jpg`` with the release's 11
class folders (BACKGROUND included). Images are JPEGs of assorted non-square sizes; each
class has its own colour (plus noise and a drift per bucket), so a network can learn it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clpipe.catalog import dataset_info


def class_colour(label: int) -> np.ndarray:
    hue = label / 11
    return np.array([np.cos(2 * np.pi * (hue + k / 3)) for k in range(3)]) * 100 + 128


def make_clear_tree(root: Path, images_per_class: int = 4, seed: int = 0, buckets=None) -> Path:
    """Write the tree under ``root`` (the pipeline's data_dir) and return ``root``."""
    info = dataset_info("clear10")
    rng = np.random.default_rng(seed)
    for bucket in buckets or info.buckets:
        for label, name in enumerate(info.class_names):
            folder = info.bucket_dir(root, bucket) / name
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(images_per_class):
                h, w = int(rng.integers(36, 60)), int(rng.integers(36, 60))
                colour = class_colour(label) + 4 * bucket
                pixels = colour + rng.normal(0, 20, size=(h, w, 3))
                img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
                img.save(folder / f"{bucket:02d}{label:02d}{n:04d}.jpg", quality=90)
    return root
