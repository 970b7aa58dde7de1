"""Static facts about the datasets the pipeline knows (torch-free).

Each entry says where torchvision keeps the dataset under ``data_dir``, which files must
be there, their md5 (of the uncompressed files torchvision reads), the number of classes
and the image shape. The data step checks the files against these sums, so a corrupted
or half-downloaded file is named before any training starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # config name, e.g. "mnist"
    torchvision_class: str  # class in torchvision.datasets
    folder: str  # folder under data_dir that torchvision uses
    n_classes: int
    channels: int
    size: int  # height == width
    files: dict[str, str]  # path relative to data_dir -> md5 of its content


_MNIST_FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
_FASHION_FILES = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        torchvision_class="MNIST",
        folder="MNIST",
        n_classes=10,
        channels=1,
        size=28,
        files={f"MNIST/raw/{k}": v for k, v in _MNIST_FILES.items()},
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        torchvision_class="FashionMNIST",
        folder="FashionMNIST",
        n_classes=10,
        channels=1,
        size=28,
        files={f"FashionMNIST/raw/{k}": v for k, v in _FASHION_FILES.items()},
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}") from None


def md5sum(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def checksums(data_dir: str | Path, name: str, cache_file: str | Path | None = None) -> dict[str, str]:
    """md5 of each of the dataset's files under data_dir ("missing" if absent).

    The workflow passes these to the data step as params, so Snakemake reruns it when a
    file's *content* changes, not when it is merely touched. Sums are cached in
    ``cache_file`` by path, size and mtime, so only new or touched files are read.
    """
    info = dataset_info(name)
    cache: dict[str, str] = {}
    if cache_file is not None:
        try:
            cache = json.loads(Path(cache_file).read_text())
        except (OSError, ValueError):
            cache = {}
    out, changed = {}, False
    for rel in info.files:
        path = Path(data_dir) / rel
        if not path.is_file():
            out[rel] = "missing"
            continue
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if key not in cache:
            stale = [k for k in cache if k.startswith(f"{path.resolve()}|")]
            for k in stale:  # one entry per file: the cache does not grow with every touch
                del cache[k]
            cache[key] = md5sum(path)
            changed = True
        out[rel] = cache[key]
    if changed and cache_file is not None:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{cache_file}.{os.getpid()}.tmp"
        Path(tmp).write_text(json.dumps(cache, indent=0, sort_keys=True))
        os.replace(tmp, cache_file)
    return out
