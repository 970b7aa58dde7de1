"""md5 sums of data files, cached so a DAG build reads only new or changed files.

Both fingerprints of input data use it: the catalogued datasets' files
(:func:`clpipe.catalog.checksums`) and users' own datasets
(:func:`clpipe.user_datasets.content`). A sum is trusted while its file's size and
modification time are the ones it was computed for, with two guards:

- a file modified in the last :data:`RECENT` seconds is read but not cached: a file
  system's clock ticks coarsely, so a file rewritten again within the same tick, with
  the same size, would keep its mtime and, cached, its stale sum;
- a caller that knows the sum a file should have (a release's) passes it as
  ``expected``, and a cached sum that differs is read again rather than believed: a
  damaged cache must not blame an intact file.

The cache is a JSON object ``{resolved path: [size, mtime_ns, md5]}``, written with
:func:`clpipe.io.atomic_write` (a DAG build and a job may write it at once).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from clpipe.io import atomic_write

RECENT = 2.0  # seconds: a file modified since is read but not cached


def md5sum(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class Md5Cache:
    """md5 sums by resolved path, loaded from and saved to ``cache_file`` (None: in
    memory only). A cache file that cannot be read counts as empty."""

    def __init__(self, cache_file: str | Path | None):
        self.file = cache_file
        self.entries: dict[str, list] = {}
        self.changed = False
        if cache_file is not None:
            try:
                loaded = json.loads(Path(cache_file).read_text())
            except (OSError, ValueError):
                loaded = {}
            self.entries = {
                where: entry
                for where, entry in (loaded.items() if isinstance(loaded, dict) else ())
                if isinstance(entry, list) and len(entry) == 3
            }

    def md5(self, path: str | Path, expected: str | None = None) -> str:
        """``path``'s md5, from the cache while its size and mtime are unchanged (and
        its cached sum is ``expected``, where given)."""
        path = Path(path)
        st = path.stat()
        where = str(path.resolve())
        entry = self.entries.get(where)
        if entry is not None and entry[:2] == [st.st_size, st.st_mtime_ns]:
            if expected is None or entry[2] == expected:
                return entry[2]
        md5 = md5sum(path)
        if time.time() - st.st_mtime > RECENT:
            self.entries[where] = [st.st_size, st.st_mtime_ns, md5]
            self.changed = True
        elif where in self.entries:  # its old entry would be wrong now
            del self.entries[where]
            self.changed = True
        return md5

    def forget_under(self, folder: Path, kept: set[str]) -> None:
        """Drop the entries of files under ``folder`` that are gone (not in ``kept``)."""
        prefix = f"{folder.resolve()}{os.sep}"
        for where in [w for w in self.entries if w.startswith(prefix) and w not in kept]:
            del self.entries[where]
            self.changed = True

    def save(self) -> None:
        if self.file is None or not self.changed:
            return
        text = json.dumps(self.entries, indent=0, sort_keys=True)
        atomic_write(self.file, lambda f: f.write(text), mode="w")
        self.changed = False
