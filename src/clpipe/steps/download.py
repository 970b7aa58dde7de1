"""Step download_data: check a dataset's files in data_dir (fetch them when missing) and
write their checksums, the manifest the data step depends on."""

from __future__ import annotations

import logging
import os

from clpipe import io
from clpipe.catalog import checksums, dataset_info
from clpipe.datasets import download_dataset, verify_dataset

log = logging.getLogger("clpipe")


def download_data(data_dir: str, dataset: str, manifest: str, verify_release_md5: bool = True) -> None:
    """Make sure a dataset is in data_dir (download it if missing); write its checksums:
    the md5 of each file's content (the release's, unless ``verify_release_md5`` is off
    and a file differs: then its own, with a warning in the log)."""
    info = dataset_info(dataset)
    missing = [f for f in info.files if not os.path.isfile(os.path.join(data_dir, f))]
    if missing:
        log.info("%s: %d file(s) missing in %s; downloading", dataset, len(missing), data_dir)
        sums = download_dataset(data_dir, dataset, verify_release_md5)
    else:
        sums = verify_dataset(data_dir, dataset, verify_release_md5)
    if info.kind == "image_folder":  # no release sums: each bucket's fingerprint
        lines = [f"{fp}  {rel}\n" for rel, fp in checksums(data_dir, dataset).items()]
        log.info("%s: %d bucket(s) in %s complete", dataset, len(lines), data_dir)
    else:
        lines = [f"{md5}  {rel}\n" for rel, md5 in sums.items()]
        differ = sum(md5 != info.files[rel] for rel, md5 in sums.items())
        log.info(
            "%s: %d file(s) in %s, %d of them match the release's md5 sums",
            dataset,
            len(sums),
            data_dir,
            len(sums) - differ,
        )
    io.atomic_write(manifest, lambda f: f.writelines(lines), mode="w")
