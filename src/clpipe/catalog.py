"""Static facts about the datasets the pipeline knows (torch-free).

Each entry says where the dataset lives under ``data_dir`` and what it holds. Two kinds:

- ``torchvision``: the files torchvision reads, with the md5 of each (of the
  uncompressed files). The data step checks them, so a corrupted or half-downloaded file
  is named before any training starts (config ``verify_release_md5: false`` turns a
  mismatch into a warning, for files that are not the release's, e.g. generated ones).
  ``file_format`` says how the pipeline reads them, with its own readers (torchvision
  is only for downloading): ``idx`` for MNIST and Fashion-MNIST
  (:func:`clpipe.data.readers.read_idx`: importing torchvision costs about a second), ``cifar``
  for the CIFAR release's pickled batches (:func:`clpipe.data.readers.read_cifar`;
  torchvision's classes re-check the release md5 on every load).
- ``image_folder``: a tree of image files in time buckets,
  ``<folder>/<images>/<bucket>/<class name>/<file>`` (CLEAR-10's release layout). There
  is no per-file md5 to check against; the workflow fingerprints each bucket by the
  names and sizes of its files, so an added, removed or replaced image reruns the data
  step and a touched one does not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from clpipe.md5_cache import Md5Cache


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # config name, e.g. "mnist"
    torchvision_class: str | None  # class in torchvision.datasets (None: not a torchvision one)
    folder: str  # folder under data_dir that holds it
    n_classes: int
    channels: int
    size: int | None  # height == width (None: images of any size, resized by the data step)
    files: dict[str, str]  # path relative to data_dir -> md5 of its content
    kind: str = "torchvision"  # or "image_folder"
    buckets: tuple[int, ...] = ()  # image_folder: the bucket folder names, in time order
    class_names: tuple[str, ...] = ()  # image_folder: class folder names; label = position
    images: str = ""  # image_folder: the folder of buckets under ``folder``
    how_to_get: str = ""  # where to get it when no code can download it
    file_format: str = "idx"  # idx: MNIST's format, read_idx; cifar: the pickles, read_cifar
    train_files: tuple[str, ...] = ()  # cifar: the training batches, in torchvision's order
    test_files: tuple[str, ...] = ()  # cifar: the test batches
    label_key: str = ""  # cifar: the key of the labels in each batch

    def bucket_dir(self, data_dir: str | Path, bucket: int) -> Path:
        return Path(data_dir) / self.folder / self.images / str(bucket)


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
# The CIFAR releases' python pickles, as torchvision.datasets.CIFAR10 / CIFAR100 list
# them: the md5 of each uncompressed file, in the order torchvision reads the batches.
_CIFAR10_TRAIN = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
}
_CIFAR10_TEST = {"test_batch": "40351d587109b95175f43aff81a1287e"}
_CIFAR10_META = {"batches.meta": "5ff9c542aee3614f3951f8cda6e48888"}
_CIFAR100_TRAIN = {"train": "16019d7e3df5f24257cddd939b257f8d"}
_CIFAR100_TEST = {"test": "f0ef6b0ae62326f3e7ffdfab6717acfc"}
_CIFAR100_META = {"meta": "7973b15100ade9c7d40fb424638fde48"}


def _cifar(
    name: str,
    torchvision_class: str,
    folder: str,
    n_classes: int,
    train: dict[str, str],
    test: dict[str, str],
    meta: dict[str, str],
    label_key: str,
) -> DatasetInfo:
    """A CIFAR release: 32 x 32 RGB images in pickled batches under ``folder``."""
    return DatasetInfo(
        name=name,
        torchvision_class=torchvision_class,
        folder=folder,
        n_classes=n_classes,
        channels=3,
        size=32,
        files={f"{folder}/{k}": v for k, v in {**train, **test, **meta}.items()},
        file_format="cifar",
        train_files=tuple(f"{folder}/{k}" for k in train),
        test_files=tuple(f"{folder}/{k}" for k in test),
        label_key=label_key,
    )


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
    "cifar10": _cifar(
        name="cifar10",
        torchvision_class="CIFAR10",
        folder="cifar-10-batches-py",
        n_classes=10,
        train=_CIFAR10_TRAIN,
        test=_CIFAR10_TEST,
        meta=_CIFAR10_META,
        label_key="labels",
    ),
    "cifar100": _cifar(
        name="cifar100",
        torchvision_class="CIFAR100",
        folder="cifar-100-python",
        n_classes=100,
        train=_CIFAR100_TRAIN,
        test=_CIFAR100_TEST,
        meta=_CIFAR100_META,
        label_key="fine_labels",  # the 100 classes (coarse_labels: the 20 superclasses)
    ),
    "clear10": DatasetInfo(
        name="clear10",
        torchvision_class=None,
        folder="clear10",
        n_classes=11,
        channels=3,
        size=None,
        files={},
        kind="image_folder",
        buckets=tuple(range(1, 11)),
        # Folder names of the release; BACKGROUND is a class like the others.
        class_names=(
            "BACKGROUND",
            "baseball",
            "bus",
            "camera",
            "cosplay",
            "dress",
            "hockey",
            "laptop",
            "racing",
            "soccer",
            "sweater",
        ),
        images="labeled_images",
        how_to_get=(
            "download clear10-public.zip from https://clear-benchmark.github.io "
            "(https://huggingface.co/datasets/elvishelvis6/CLEAR-Continual_Learning_Benchmark) "
            "and unzip it so that <data_dir>/clear10/labeled_images/1/baseball/ holds images"
        ),
    ),
}

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def bucket_files(data_dir: str | Path, info: DatasetInfo, bucket: int) -> list[tuple[str, int]]:
    """(path relative to the bucket folder, label) of every image of a bucket, sorted by
    class then name: the order the data step indexes (and replay buffers refer to)."""
    root = info.bucket_dir(data_dir, bucket)
    files = []
    for label, name in enumerate(info.class_names):
        folder = root / name
        if folder.is_dir():
            files += [
                (f"{name}/{f.name}", label)
                for f in sorted(folder.iterdir())
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
            ]
    return files


def layout_problems(data_dir: str | Path, info: DatasetInfo, buckets) -> list[str]:
    """What is wrong with an image_folder dataset's tree (empty list: nothing)."""
    problems = []
    for bucket in buckets:
        root = info.bucket_dir(data_dir, bucket)
        if not root.is_dir():
            problems.append(f"{root}: missing")
            continue
        present = {p.name for p in root.iterdir() if p.is_dir()}
        for name in info.class_names:
            if name not in present:
                problems.append(f"{root / name}: missing (class {name!r} of bucket {bucket})")
            elif not any(f.suffix.lower() in IMAGE_SUFFIXES for f in (root / name).iterdir()):
                problems.append(f"{root / name}: no images")
        for name in sorted(present - set(info.class_names)):
            problems.append(
                f"{root / name}: not a class of {info.name} (classes: {', '.join(info.class_names)})"
            )
    return problems


def bucket_fingerprint(data_dir: str | Path, info: DatasetInfo, bucket: int) -> str:
    """sha256 of the bucket's image names and sizes, and their count ("missing" if absent)."""
    root = info.bucket_dir(data_dir, bucket)
    if not root.is_dir():
        return "missing"
    h = hashlib.sha256()
    files = bucket_files(data_dir, info, bucket)
    for rel, _ in files:
        h.update(f"{rel}\t{(root / rel).stat().st_size}\n".encode())
    return f"{h.hexdigest()[:32]} ({len(files)} images)"


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}") from None


def checksums(
    data_dir: str | Path, name: str, cache_file: str | Path | None = None, write_cache: bool = True
) -> dict[str, str]:
    """md5 of each of the dataset's files under data_dir ("missing" if absent); for an
    image_folder dataset, the fingerprint of each bucket.

    The workflow passes these to the data step as params, so Snakemake reruns it when a
    file's *content* changes, not when it is merely touched. Sums are cached in
    ``cache_file`` (:class:`clpipe.md5_cache.Md5Cache`), so only new or touched files
    are read; a cached sum that differs from the release's is read again, not believed.
    ``write_cache=False`` (a dry run) leaves the cache file as it is.
    """
    info = dataset_info(name)
    if info.kind == "image_folder":
        return {
            f"{info.folder}/{info.images}/{b}": bucket_fingerprint(data_dir, info, b) for b in info.buckets
        }
    cache = Md5Cache(cache_file)
    out = {}
    for rel, release in info.files.items():
        path = Path(data_dir) / rel
        out[rel] = cache.md5(path, expected=release) if path.is_file() else "missing"
    if write_cache:
        cache.save()
    return out


# --- the release check: what the workflow does with files that are not the release's ---


def unreleased(name: str, sums: dict[str, str]) -> dict[str, str]:
    """{file: md5} of the dataset's files that are there and whose content is not the
    release's (``sums``: :func:`checksums`). Empty for the release, for missing files
    (the download step fetches them) and for datasets without release sums (image
    folders)."""
    known = dataset_info(name).files
    return {rel: md5 for rel, md5 in sums.items() if rel in known and md5 not in ("missing", known[rel])}


def release_mismatch(data_dir: str | Path, name: str, rel: str, md5: str, verify: bool) -> str:
    """What to say of one file that is not the release's: why the run stops
    (``verify_release_md5: true``) or the warning it runs with (false)."""
    release = dataset_info(name).files[rel]
    message = f"{data_dir}/{rel}: md5 {md5} does not match the release's {release} (dataset {name!r})"
    if verify:
        return (
            f"{message}; re-download it, e.g. delete it and run again (or set "
            "verify_release_md5: false to use files that are not the release's)"
        )
    return f"{message}; used anyway (verify_release_md5: false)"


def manifest_is_ancient(unreleased_files: dict[str, str]) -> bool:
    """The data step follows its manifest's checksums, not its mtime (rechecking the
    release's files retrains nothing), unless some file is not the release's: then a
    rewritten manifest means its content changed, and the data step reruns."""
    return not unreleased_files
