"""Files steps hand to each other: written atomically, loaded safely, checked.

Every file is a dict ``{"format": "clpipe.<kind>/<version>", "meta": {...}, ...}`` of
tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``:
loading never runs code from the file. A file that is truncated, is not ours, or is of
another kind fails with :class:`FileFormatError` naming the file and, when it can be
read, the step that wrote it.
"""

from __future__ import annotations

import contextlib
import glob
import io as _io
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clpipe import receipts
from clpipe.errors import InputError
from clpipe.layout import identity_of

FORMAT_VERSION = 1

# The steps (rules) that write each kind of file: named when a file cannot be read,
# since a truncated file no longer says where it came from.
MADE_BY = {
    "tasks": "prepare_data",
    "model": "init_model, train_first_task or train_next_task",
    "importance": "compute_importance",
    "record": "train_next_task",
    "progress": "update_progress",
    "resume": "a training job (its epoch checkpoint)",
}


class FileFormatError(InputError, RuntimeError):
    """A pipeline file that cannot be used; the message names the file."""


def current_umask() -> int:
    """The process's umask, read without changing it where the kernel says it (Linux's
    /proc/self/status); elsewhere set and put back at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it.

    A job killed halfway leaves at most a stray temporary file, never a half-written
    ``path``; the next write of ``path`` removes it. The file gets the mode any tool's
    new file gets (0666 less the umask: group-readable on a shared cluster folder with
    umask 0022 or 0002), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_leftovers(path: Path) -> list[Path]:
    """Delete the temporary files an earlier writer of ``path`` left when it was killed
    mid-write (SIGKILL, out of memory: no cleanup runs); a temporary file names its
    writer's process, so one still being written by a live process is kept."""
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 :].split(".")
        if not parts[0].isdigit():
            continue
        try:
            os.kill(int(parts[0]), 0)
            continue  # its writer is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's live process
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


LAST_GOOD = "last_good"


def keep_last_good(path: str | os.PathLike, experiment_dir: str | os.PathLike) -> Path:
    """Copy a table or figure the step just wrote to ``<experiment>/last_good/``, where
    Snakemake leaves it alone: a later run of the step deletes its outputs before it
    starts, and if it then fails, the last good results stay readable there."""
    path, experiment_dir = Path(path), Path(experiment_dir)
    target = experiment_dir / LAST_GOOD / path.relative_to(experiment_dir)
    data = path.read_bytes()
    atomic_write(target, lambda f: f.write(data))
    return target


def save(path: str | os.PathLike, kind: str, meta: dict[str, Any], **payload: Any) -> None:
    """Write a pipeline file; its meta records the model (or data) its path belongs to,
    which every later reader checks (:func:`load`)."""
    import torch  # here, not at the top: the analysis steps use this module without torch

    node = identity_of(path)
    if node is not None:
        meta = {**meta, "node": node}
    obj = {"format": f"clpipe.{kind}/{FORMAT_VERSION}", "meta": meta, **payload}
    buffer = _io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def save_rows(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Write rows (dicts with the same keys) as CSV atomically, the way pandas writes a
    DataFrame of them (NaN and None as empty fields), without importing pandas: the
    steps that write a table of their own (training history, evaluation) stay light."""
    import csv
    import math

    columns = list(dict.fromkeys(k for row in rows for k in row))

    def cell(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return value

    def write(f) -> None:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(columns)
        out.writerows([cell(row.get(c)) for c in columns] for row in rows)

    atomic_write(path, write, mode="w")


def _describe(meta: Any) -> str:
    if not isinstance(meta, dict):
        return "unknown step"
    parts = [f"step {meta.get('step', '?')}"]
    for key in ("experiment", "seed", "arm", "task"):
        if key in meta:
            parts.append(f"{key} {meta[key]}")
    return ", ".join(parts)


def _reason(err: Exception) -> str:
    """The informative part of a torch.load error (its first lines are boilerplate, and
    its advice to load with weights_only=False would run whatever code the file holds)."""
    text = str(err)
    if "Weights only load failed" in text or "WeightsUnpickler" in text or "GLOBAL" in text:
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:Check the documentation|$)", text, re.S)
        detail = found.group(1) if found else text
        # torch's advice around it (load it with weights_only=False: run its code) is left out
        sentences = re.split(r"(?<=\.)\s+", " ".join(detail.split()))
        detail = " ".join(x for x in sentences if "GLOBAL" in x or "nsupported" in x) or "not plain data"
        detail = detail.split(" Please use")[0].rstrip(".")
        return (
            f"refused to load it: it holds Python objects, not only tensors and plain values ({detail}), "
            "and loading those could run code; this pipeline never writes such a file"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else 'no detail'}"


def load(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """Load a pipeline file of the given kind (e.g. "model", "importance")."""
    import torch

    path = Path(path)
    made_by = MADE_BY.get(kind, "an unknown step")
    if not path.exists():
        raise FileFormatError(f"{path}: file is missing (expected a clpipe {kind} file, made by {made_by})")
    receipts.check_file(path)  # what its job wrote, not a file edited since
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, objects not allowed, ...
        raise FileFormatError(
            f"{path}: cannot be read as a clpipe {kind} file ({_reason(err)}). "
            f"It may be truncated, corrupted or not made by this pipeline; delete it and "
            f"rerun the step that makes it ({made_by})."
        ) from err
    if not isinstance(obj, dict) or not isinstance(obj.get("format"), str):
        raise FileFormatError(
            f"{path}: not a clpipe file (no 'format' entry); expected a {kind} file made by {made_by}"
        )
    expected = f"clpipe.{kind}/{FORMAT_VERSION}"
    if obj["format"] != expected:
        raise FileFormatError(
            f"{path}: is a {obj['format']!r} file ({_describe(obj.get('meta'))}), expected {expected!r}"
        )
    check_identity(path, obj.get("meta"), made_by)
    return obj


FILE_KEYS = ("format", "meta")  # what every file adds to what its step saved


def load_saved(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """A file's content exactly as its step handed it to :func:`save`, without the
    format's own keys: what a method gets back from its importance, record or progress."""
    return {k: v for k, v in load(path, kind).items() if k not in FILE_KEYS}


def _made_for(meta: Any) -> dict[str, Any]:
    """The model a file was made for: its recorded node, or (files written before nodes
    were recorded) what its spec's keys say."""
    if not isinstance(meta, dict):
        return {}
    if isinstance(meta.get("node"), dict):
        return meta["node"]
    found = {k: meta[k] for k in ("experiment", "seed", "task") if k in meta}
    if "arm" in meta:
        found["owner"] = meta["arm"]
    return found


def _node_text(node: dict[str, Any]) -> str:
    return ", ".join(f"{k} {node[k]}" for k in ("experiment", "seed", "owner", "task", "method") if k in node)


def check_identity(path: str | os.PathLike, meta: Any, made_by: str = "the step that makes it") -> None:
    """Refuse a file whose recorded node is not the one its path belongs to (a file
    swapped with another arm's, or copied in from another experiment or seed)."""
    expected = identity_of(path)
    if expected is None:
        return
    found = _made_for(meta)
    differ = [k for k in expected if k in found and found[k] != expected[k]]
    if differ:
        raise FileFormatError(
            f"{path}: was made for {_node_text(found)}, but its place is {_node_text(expected)}'s; "
            f"it was copied or moved here from another run, experiment, seed or arm. Delete it and "
            f"rerun the step that makes it ({made_by})"
        )


def describe(obj: dict[str, Any]) -> str:
    """Which step wrote a loaded file, for error messages."""
    return _describe(obj.get("meta"))
