"""A user's datasets in their on-disk forms: a tensor file, an image folder, a loader module."""

import numpy as np
import torch
from PIL import Image


def tensor_dataset(n_train=30, n_test=12, classes=3, shape=(8, 8), seed=0):
    """{"train": ..., "test": ...} as a tensor file holds it: label i has pixel value 10 i."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = torch.arange(n) % classes
        y = y[torch.randperm(n, generator=g)]
        x = (y * 10).to(torch.uint8).view(-1, *([1] * len(shape))).expand(-1, *shape).contiguous()
        out[split] = {"images": x, "labels": y}
    return out


def save_tensor_file(path, data=None):
    torch.save(data if data is not None else tensor_dataset(), path)
    return path


COLOURS = {"ant": (200, 0, 0), "bee": (0, 200, 0), "cat": (0, 0, 200)}  # sorted: ant 0, bee 1, cat 2


def make_image_folder(root, per_class=(4, 2), size=(8, 8), classes=COLOURS, suffix="png"):
    """root/train/<class>/*.png and root/test/<class>/*.png, one colour per class."""
    for split, n in zip(("train", "test"), per_class, strict=True):
        for name, colour in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
                pixels[0, 0] = i  # each image its own content
                Image.fromarray(pixels, "RGB").save(folder / f"{i:03d}.{suffix}")
    return root


LOADER = '''
import torch


def load(settings):
    """A user's dataset: ``settings`` are the config entry's other keys."""
    n, classes = settings["per_class"], settings["classes"]
    def split(m):
        y = torch.arange(classes).repeat_interleave(m)
        return {"images": (y * 20).to(torch.uint8).view(-1, 1, 1).expand(-1, 6, 6).contiguous(), "labels": y}
    return {"train": split(n), "test": split(2)}
'''
