"""A dataset's files in data_dir: checked against the release (md5), fetched when missing.

Torch-free (torchvision is imported only to download): the data check runs on the
submitting node and must start fast; decoding the files into tasks is clpipe.data's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from clpipe.catalog import dataset_info, layout_problems
from clpipe.errors import InputError
from clpipe.md5_cache import md5sum

log = logging.getLogger("clpipe")


class DataError(InputError, RuntimeError):
    """Missing or corrupted dataset files; the message names the file."""


def verify_dataset(
    data_dir: str | Path, name: str, release_md5: bool = True, accepted: dict[str, str] | None = None
) -> dict[str, str]:
    """Check the dataset's files under data_dir exist and have the release's md5; return
    the md5 of each file's content (an image-folder dataset: nothing to check by md5, {}).

    ``release_md5=False`` (config ``verify_release_md5: false``): a file whose content
    differs from the release is used, with a warning naming it (generated test files
    cannot match); so is one whose md5 is the one ``accepted`` gives for its path (the
    data step's spec lists what the workflow planned with). A missing file is an error
    either way."""
    info = dataset_info(name)
    if info.kind == "image_folder":
        problems = layout_problems(data_dir, info, info.buckets)
        if problems:
            shown = "; ".join(problems[:5]) + (
                f"; ... ({len(problems)} problems)" if len(problems) > 5 else ""
            )
            raise DataError(f"dataset {name!r} in {data_dir}: {shown}. To get it: {info.how_to_get}")
        return {}
    sums = {}
    for rel, expected in info.files.items():
        path = Path(data_dir) / rel
        if not path.is_file():
            raise DataError(
                f"{path}: missing (dataset {name!r}; set config key 'data_dir' to the folder "
                f"holding {info.folder}/, or let the download_data rule fetch it)"
            )
        actual = md5sum(path)
        if actual != expected:
            planned = (accepted or {}).get(rel)
            if release_md5 and actual != planned:
                also = f" nor the {planned} the workflow planned with" if planned else ""
                raise DataError(
                    f"{path}: md5 {actual} does not match the release's {expected}{also}; re-download it"
                )
            log.warning(
                "%s: md5 %s does not match the release's %s; used anyway (verify_release_md5: false)",
                path,
                actual,
                expected,
            )
        sums[rel] = actual
    return sums


def download_dataset(data_dir: str | Path, name: str, release_md5: bool = True) -> dict[str, str]:
    """Fetch a dataset into data_dir with torchvision (needs internet); the md5 of each
    file (:func:`verify_dataset`)."""
    import torchvision

    info = dataset_info(name)
    if info.torchvision_class is None:
        raise DataError(f"dataset {name!r} cannot be downloaded by the pipeline: {info.how_to_get}")
    cls = getattr(torchvision.datasets, info.torchvision_class)
    try:
        for train in (True, False):
            cls(root=str(data_dir), train=train, download=True)
    except Exception as err:  # no internet, a proxy, a full disk: say what to do instead
        raise DataError(
            f"dataset {name!r}: could not download it into {data_dir} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}); without internet, copy its "
            f"files into {Path(data_dir) / info.folder} (torchvision's layout), or set config key "
            "'data_dir' to a folder that has them"
        ) from None
    return verify_dataset(data_dir, name, release_md5)
