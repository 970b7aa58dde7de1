"""The one md5 cache both data fingerprints use (clpipe.md5_cache)."""

import json
import os
from dataclasses import replace

from clpipe import catalog
from clpipe.catalog import checksums, dataset_info
from clpipe.md5_cache import Md5Cache, md5sum


def old_file(path, data: bytes, mtime: int = 1000):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def test_a_cached_sum_that_is_not_the_expected_one_is_read_again_and_repaired(tmp_path):
    path = old_file(tmp_path / "a.bin", b"intact")
    right = md5sum(path)
    cache_file = tmp_path / "cache.json"
    where = str(path.resolve())
    cache_file.write_text(json.dumps({where: [path.stat().st_size, path.stat().st_mtime_ns, "0" * 32]}))
    assert Md5Cache(cache_file).md5(path) == "0" * 32  # nothing to compare with: believed
    cache = Md5Cache(cache_file)
    assert cache.md5(path, expected=right) == right  # a release's sum: read again
    cache.save()
    assert json.loads(cache_file.read_text())[where][2] == right


def test_a_cache_file_that_cannot_be_read_counts_as_empty(tmp_path):
    path = old_file(tmp_path / "a.bin", b"data")
    for damaged in ("{not json", "[1, 2]", json.dumps({str(path.resolve()): "an old format's sum"})):
        (tmp_path / "cache.json").write_text(damaged)
        cache = Md5Cache(tmp_path / "cache.json")
        assert cache.md5(path) == md5sum(path)
        cache.save()
        assert json.loads((tmp_path / "cache.json").read_text()) == {
            str(path.resolve()): [4, 1000 * 10**9, md5sum(path)]
        }


def test_the_cache_file_is_readable_as_the_umask_says(tmp_path):
    old_file(tmp_path / "a.bin", b"data")
    old = os.umask(0o002)
    try:
        cache = Md5Cache(tmp_path / "cache.json")
        cache.md5(tmp_path / "a.bin")
        cache.save()
    finally:
        os.umask(old)
    assert (tmp_path / "cache.json").stat().st_mode & 0o777 == 0o664


def test_a_catalogued_dataset_s_files_get_the_clock_guard_too(tmp_path, monkeypatch):
    """A release's file rewritten within the file system's clock tick, with the same size
    and mtime, must not keep the release's sum: files that new are not cached."""
    files = list(dataset_info("mnist").files)
    for i, rel in enumerate(files):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(bytes([i]) * 100)
    release = {rel: md5sum(tmp_path / rel) for rel in files}  # these files are "the release"
    monkeypatch.setitem(catalog.DATASETS, "mnist", replace(dataset_info("mnist"), files=release))
    cache = tmp_path / "cache.json"
    assert checksums(tmp_path, "mnist", cache) == release
    target = tmp_path / files[0]
    st = target.stat()
    target.write_bytes(b"\xff" * 100)  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same clock tick
    assert checksums(tmp_path, "mnist", cache)[files[0]] == md5sum(target) != release[files[0]]
