"""Files steps hand to each other: written atomically, loaded safely, checked.

Every file is a dict ``{"format": "clpipe.<kind>/<version>", "meta": {...}, ...}`` of
tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``:
loading never runs code from the file. A file that is truncated, is not ours, or is of
another kind fails with :class:`FileFormatError` naming the file and, when it can be
read, the step that wrote it.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


class FileFormatError(RuntimeError):
    """A pipeline file that cannot be used; the message names the file."""


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it.

    A job killed halfway leaves at most a stray temporary file, never a half-written
    ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save(path: str | os.PathLike, kind: str, meta: dict[str, Any], **payload: Any) -> None:
    import torch  # here, not at the top: the analysis steps use this module without torch

    obj = {"format": f"clpipe.{kind}/{FORMAT_VERSION}", "meta": meta, **payload}
    buffer = _io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def save_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame atomically."""
    text = frame.to_csv(index=False, lineterminator="\n")
    atomic_write(path, lambda f: f.write(text), mode="w")


def _describe(meta: Any) -> str:
    if not isinstance(meta, dict):
        return "unknown step"
    parts = [f"step {meta.get('step', '?')}"]
    for key in ("experiment", "seed", "arm", "task"):
        if key in meta:
            parts.append(f"{key} {meta[key]}")
    return ", ".join(parts)


def _reason(err: Exception) -> str:
    """The informative line of a torch.load error (its first lines are boilerplate)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line:  # weights_only refused an object that is not plain data
            line = line.removeprefix("WeightsUnpickler error: ").split(". Please use")[0]
            return f"refused to load a Python object: {line}"
    return f"{type(err).__name__}: {lines[0] if lines else 'no detail'}"


def load(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """Load a pipeline file of the given kind (e.g. "model", "importance")."""
    import torch

    path = Path(path)
    made_by = MADE_BY.get(kind, "an unknown step")
    if not path.exists():
        raise FileFormatError(f"{path}: file is missing (expected a clpipe {kind} file, made by {made_by})")
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
    return obj


def describe(obj: dict[str, Any]) -> str:
    """Which step wrote a loaded file, for error messages."""
    return _describe(obj.get("meta"))
