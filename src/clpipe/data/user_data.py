"""A config's own datasets (:mod:`clpipe.user_datasets`) in the data step: read and checked.

The workflow checks a user's dataset without torch and without opening it; this is the
data step's side: each of its splits read from its tensor file, its loader or its image
folder (:func:`read_user_dataset`), checked to be the documented
``{"train": {"images": X, "labels": Y}, "test": {...}}`` (:func:`check_splits`), and
refused if its content changed since the workflow planned the step
(:func:`verify_user_dataset`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from clpipe import plugins
from clpipe.data.readers import decode_images
from clpipe.datasets import DataError
from clpipe.errors import ConfigError
from clpipe.user_datasets import SPLITS, UserDataset, image_files
from clpipe.user_datasets import content as user_content

SPLIT_KEYS = ("images", "labels")


def check_splits(obj: Any, where: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A user dataset's splits, as a tensor file or a loader gives them: exactly
    ``{"train": {"images": X, "labels": Y}, "test": {...}}``, X a uint8 tensor N x H x W
    (one channel) or N x C x H x W, Y an int64 tensor of N labels >= 0, the same C x H x W
    in both splits. Returns {split: (images N x C x H x W, labels)}; anything else raises
    :class:`DataError` naming ``where`` (the file or loader, and its config key) and the
    key that is missing or wrong."""
    _check_split_names(obj, where)
    out = {split: _check_split(obj[split], f"{where}: {split!r}") for split in SPLITS}
    shapes = {split: tuple(out[split][0].shape[1:]) for split in SPLITS}
    if shapes["train"] != shapes["test"]:
        raise DataError(
            f"{where}: train images are {shapes['train']} (C x H x W), test images {shapes['test']}; "
            "give both splits the same"
        )
    return out


def _check_split_names(obj: Any, where: str) -> None:
    """``obj`` is a dict of exactly the splits the pipeline reads."""
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


def _check_split(part: Any, at: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split (``at``: where it is): a dict of exactly images and labels, checked;
    returned as (images N x C x H x W, labels)."""
    if not isinstance(part, dict):
        raise DataError(f"{at} is a {type(part).__name__}, not a dict {{'images': ..., 'labels': ...}}")
    for k in SPLIT_KEYS:
        if k not in part:
            raise DataError(f"{at} has no {k!r} (its keys: {', '.join(map(repr, part)) or 'none'})")
    for k in part:
        if k not in SPLIT_KEYS:
            raise DataError(f"{at}: {k!r} is not read (a split holds only 'images' and 'labels')")
    x, y = part["images"], part["labels"]
    _check_images(x, at)
    _check_labels(y, at)
    if len(y) != len(x):
        raise DataError(f"{at}: {len(y)} labels for {len(x)} images")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{at}.labels: label {int(y.min())} is negative (classes are 0, 1, ...)")
    x = x.unsqueeze(1) if x.ndim == 3 else x
    return x.contiguous(), y.contiguous()


def _described(value: Any) -> str:
    """What a value is, for a message: a tensor's dtype and shape, else its type."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _check_images(x: Any, at: str) -> None:
    if not (isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and x.ndim in (3, 4)):
        hint = (
            " (floats in [0, 1]: (x * 255).round().to(torch.uint8))"
            if isinstance(x, torch.Tensor) and x.is_floating_point()
            else ""
        )
        raise DataError(
            f"{at}.images is {_described(x)}, not a uint8 tensor N x H x W or N x C x H x W{hint}"
        )


def _check_labels(y: Any, at: str) -> None:
    if not (isinstance(y, torch.Tensor) and y.dtype == torch.int64 and y.ndim == 1):
        raise DataError(f"{at}.labels is {_described(y)}, not an int64 tensor of N labels (y.long())")


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
