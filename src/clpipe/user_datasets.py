"""Datasets a config declares itself (top-level ``datasets:``), torch-free.

A user's own data, without editing the package: the config names it under
``datasets:`` and its experiments and tasks use that name wherever they would name a
built-in dataset (``dataset: mine``). Three kinds:

- ``{tensor_file: PATH}``: one file written by ``torch.save`` holding exactly
  ``{"train": {"images": X, "labels": Y}, "test": {"images": X, "labels": Y}}``: X a
  uint8 tensor N x H x W (one channel) or N x C x H x W, Y an int64 tensor of N labels
  >= 0, both splits with the same C x H x W; nothing else (:func:`clpipe.data.user_data.check_splits`
  names the file and the key it lacks). The file is read with ``weights_only=True``.
- ``{image_folder: PATH, image_size: S, channels: C}``: images under
  ``PATH/train/<class>/`` and ``PATH/test/<class>/`` (``.jpg .jpeg .png .bmp .webp``;
  other files and hidden folders are ignored); the same class folders in both splits,
  labelled 0, 1, ... in the sorted order of their names. The data step decodes them
  once: RGB (``channels: 3``, the default) or grayscale (``channels: 1``); with
  ``image_size`` the shorter side resized to S and centre-cropped square (CLEAR-10's
  decoding), without it every image must have the same size.
- ``{loader: "package.module:function", ...settings}``: the data step imports the
  module (on PYTHONPATH or installed) and calls ``function(settings)``, ``settings`` a
  dict of the entry's other keys; it returns what a tensor file holds. The workflow
  never imports the module (clpipe.plugins).

Paths are relative to the working directory, like ``data_dir``. Nothing is downloaded:
these datasets have no manifest and no download_data job. What the data step reads is
fingerprinted into its spec instead (:func:`content`, planned by the workflow and
checked again by the data step), so the data step reruns when a tensor file's content
changes (its md5), when an image folder's files change (their names and content), or
when a loader's code (:func:`clpipe.fingerprint.user_code` of its module) or
settings change, and not when a file is only touched. Files a loader reads itself are
not followed: give it a setting that changes with them (a version, a date).

Tensor-file and loader datasets are opened only by the data step, so the workflow does
not know their classes: their tasks list their classes (the data step refuses a class
with no training images). An image folder's classes are its class folders.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clpipe import plugins
from clpipe.catalog import DATASETS, IMAGE_SUFFIXES
from clpipe.config_input import NAME, check_settings, normalized_path
from clpipe.errors import ConfigError
from clpipe.md5_cache import Md5Cache

KINDS = ("tensor_file", "image_folder", "loader")
SPLITS = ("train", "test")
IMAGE_FOLDER_SETTINGS = {"image_size": None, "channels": 3}  # setting -> default


@dataclass(frozen=True)
class UserDataset:
    name: str  # its name under the config's datasets:
    kind: str  # one of KINDS
    path: str = ""  # tensor_file, image_folder: the file or folder (normalized)
    loader: str = ""  # loader: "module:function"
    settings: dict[str, Any] = field(default_factory=dict)  # loader: the entry's other keys
    class_names: tuple[str, ...] = ()  # image_folder: the class folders, sorted (label = position)
    image_size: int | None = None  # image_folder: shorter side resized to this (None: as stored)
    channels: int = 3  # image_folder: 3 (RGB) or 1 (grayscale)

    @property
    def key(self) -> str:
        """The config key that declares it."""
        return f"datasets.{self.name}"

    @property
    def source_key(self) -> str:
        """The config key of what it is read from (its path or loader)."""
        return f"{self.key}.{self.kind}"

    @property
    def n_classes(self) -> int | None:
        """Its number of classes where the workflow knows it (an image folder), else None."""
        return len(self.class_names) if self.kind == "image_folder" else None

    @property
    def module(self) -> str:
        return self.loader.split(":")[0]

    def spec(self) -> dict[str, Any]:
        """What the data step needs to read it (part of the data step's spec)."""
        if self.kind == "tensor_file":
            return {"kind": self.kind, "path": self.path}
        if self.kind == "image_folder":
            return {
                "kind": self.kind,
                "path": self.path,
                "classes": list(self.class_names),
                "image_size": self.image_size,
                "channels": self.channels,
            }
        return {"kind": self.kind, "loader": self.loader, "settings": copy.deepcopy(self.settings)}

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any]) -> UserDataset:
        return cls(
            name=name,
            kind=spec["kind"],
            path=spec.get("path", ""),
            loader=spec.get("loader", ""),
            settings=copy.deepcopy(spec.get("settings", {})),
            class_names=tuple(spec.get("classes", ())),
            image_size=spec.get("image_size"),
            channels=int(spec.get("channels", 3)),
        )


# --- the config: declared datasets, checked before any job starts ---------------------


def resolve(declared: dict[str, Any] | None) -> dict[str, UserDataset]:
    """The config's ``datasets:`` (schema-validated) as :class:`UserDataset` by name;
    each checked now (its file, folder or module there), raising :class:`ConfigError`
    that names the key and the path."""
    found = {}
    for name, entry in (declared or {}).items():
        key = f"datasets.{name}"
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(key, f"{name!r} is not a name: a letter, then letters, digits, '_', '.' or '-'")
        if name in DATASETS:
            raise ConfigError(
                key,
                f"{name!r} is a built-in dataset; give yours a name of its own "
                f"(built-in: {', '.join(sorted(DATASETS))})",
            )
        if not isinstance(entry, dict):
            raise ConfigError(key, f"a mapping with one of {', '.join(KINDS)}, not {entry!r}")
        kinds = [k for k in KINDS if k in entry]
        if len(kinds) != 1:
            given = f" (it has {' and '.join(kinds)})" if kinds else ""
            raise ConfigError(
                key,
                f"give exactly one of tensor_file (a file torch.save wrote), image_folder (a "
                f"folder of train/ and test/ class folders) or loader (module:function){given}",
            )
        found[name] = _resolve_one(name, kinds[0], entry)
    return found


def _resolve_one(name: str, kind: str, entry: dict[str, Any]) -> UserDataset:
    key = f"datasets.{name}"
    if kind == "loader":
        lkey = f"{key}.loader"
        loader = entry["loader"]
        reference = plugins.resolve(loader, plugins.DATASET_ENTRY_POINTS) if isinstance(loader, str) else None
        if reference is None:
            raise ConfigError(
                lkey,
                f"{loader!r} is neither module:function nor an installed entry point of group "
                f"{plugins.DATASET_ENTRY_POINTS!r}",
            )
        settings = {k: copy.deepcopy(v) for k, v in entry.items() if k != "loader"}
        # its module found without importing it; its SETTINGS, if it declares them
        declared = plugins.declared_settings(reference, lkey)
        if declared is not None:
            check_settings(settings, declared, key)
        return UserDataset(name, kind, loader=reference, settings=settings)
    allowed = IMAGE_FOLDER_SETTINGS if kind == "image_folder" else {}
    for k in entry:
        if k != kind and k not in allowed:
            also = f" (settings: {', '.join(allowed)})" if allowed else " (it has none besides the file)"
            raise ConfigError(f"{key}.{k}", f"not a setting of a {kind} dataset{also}")
    path = _existing(f"{key}.{kind}", entry[kind], folder=kind == "image_folder")
    if kind == "tensor_file":
        return UserDataset(name, kind, path=path)
    classes = _check_image_folder(f"{key}.{kind}", Path(path))
    settings = {k: entry.get(k, default) for k, default in IMAGE_FOLDER_SETTINGS.items()}
    return UserDataset(name, kind, path=path, class_names=classes, **settings)


def _existing(key: str, value: Any, folder: bool) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"a path, not {value!r}")
    path = normalized_path(value)
    absolute = str(Path(path).resolve())
    shown = value if value == absolute else f"{value} ({absolute})"
    what = "folder" if folder else "file"
    p = Path(path)
    if not p.exists():
        raise ConfigError(key, f"{shown}: no such {what} (paths are relative to the working directory)")
    if folder and not p.is_dir():
        raise ConfigError(key, f"{shown}: a file, not a folder of train/ and test/ class folders")
    if not folder and not p.is_file():
        raise ConfigError(key, f"{shown}: a folder, not a file torch.save wrote")
    return path


def class_folders(split_dir: Path) -> list[str]:
    """The class folders of a split, sorted by name (hidden ones left out)."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def image_files(root: str | Path, split: str, class_names: tuple[str, ...]) -> list[tuple[str, int]]:
    """(path relative to ``root``, label) of every image of a split, sorted by class then
    name: the order the data step indexes."""
    files = []
    for label, name in enumerate(class_names):
        folder = Path(root) / split / name
        if folder.is_dir():
            files += [(f"{split}/{name}/{f.name}", label) for f in sorted(folder.iterdir()) if _is_image(f)]
    return files


def _check_image_folder(key: str, root: Path) -> tuple[str, ...]:
    """The class names of an image folder (train's class folders, sorted), once train/
    and test/ are there with the same class folders, none of them empty."""
    for split in SPLITS:
        if not (root / split).is_dir():
            raise ConfigError(
                key, f"{root / split}: missing (an image folder holds train/<class>/ and test/<class>/)"
            )
    train, test = class_folders(root / "train"), class_folders(root / "test")
    if not train:
        raise ConfigError(key, f"{root / 'train'}: no class folders (train/<class>/<image>)")
    if train != test:
        problems = [
            f"{root / 'test' / c}: missing (a class of {root / 'train'})" for c in train if c not in test
        ]
        problems += [
            f"{root / 'train' / c}: missing (a class of {root / 'test'})" for c in test if c not in train
        ]
        raise ConfigError(key, "train and test hold different classes: " + "; ".join(problems))
    for split in SPLITS:
        for c in train:
            if not any(_is_image(f) for f in (root / split / c).iterdir()):
                raise ConfigError(key, f"{root / split / c}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return tuple(train)


# --- what the data step reads: its fingerprint ----------------------------------------


def content(ds: UserDataset, cache_file: str | Path | None = None, write_cache: bool = True) -> str:
    """What the data step reads of ``ds``, as a short string that changes with it: a
    tensor file's md5; an image folder's hash of every image's name and md5 (and their
    count); a loader's code fingerprint (its settings are in the spec already).

    md5 sums are cached in ``cache_file`` by path, size and mtime, so only new or
    touched files are read; ``write_cache=False`` (a dry run) leaves it as it is. A file
    or folder that is gone raises :class:`ConfigError` naming the key and the path."""
    if ds.kind == "loader":
        from clpipe.fingerprint import user_code  # the DAG's side only

        return f"code {user_code([ds.module], ds.source_key)}"
    cache = Md5Cache(cache_file)
    path = Path(ds.path)
    if ds.kind == "tensor_file":
        _existing(ds.source_key, ds.path, folder=False)
        out = f"md5 {cache.md5(path)}"
    else:
        _existing(ds.source_key, ds.path, folder=True)
        h = hashlib.sha256()
        counts, seen = [], set()
        for split in SPLITS:
            files = image_files(path, split, ds.class_names)
            for rel, _ in files:
                h.update(f"{rel}\t{cache.md5(path / rel)}\n".encode())
                seen.add(str((path / rel).resolve()))
            counts.append(f"{len(files)} {split}")
        cache.forget_under(path, seen)
        out = f"{h.hexdigest()[:32]} ({', '.join(counts)} images)"
    if write_cache:
        cache.save()
    return out
