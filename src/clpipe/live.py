"""A live view of long runs: TensorBoard event files, written as the jobs go (optional).

With ``logging: {tensorboard: true}`` every training job writes its per-epoch metrics
(losses, accuracies, learning rate, images per second) to a run of its own, named by
the job's path, and the aggregation writes the experiment's final tables, so

    tensorboard --logdir results/<experiment>/tensorboard

shows every curve while a multi-hour run is still going::

    results/<experiment>/tensorboard/seed<seed>/<owner>/task<t>/   one training job
    results/<experiment>/tensorboard/tables/                        the final tables

The event files are written here, in TensorBoard's documented format (TFRecord framing
of ``tensorflow.Event`` protocol buffers), so writing them needs neither TensorFlow nor
the ``tensorboard`` package: nothing new to install in any environment, conda's
included; only viewing them needs ``pip install tensorboard``. tests/test_live.py reads
them back with TensorBoard's own reader. Off by default; it changes no result, so
turning it on or off reruns nothing.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

from clpipe.layout import identity_of

SCALARS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "images_per_second")
EVENT_FILE = "events.out.tfevents"  # the part of a name TensorBoard looks for


def run_dir(output: str | Path) -> Path:
    """The run of the job that writes ``output``: ``tensorboard/seed<s>/<owner>/task<t>``
    under its experiment's folder (``tensorboard/tables`` for the experiment's tables)."""
    output = Path(output)
    node = identity_of(output)
    if node is None or "seed" not in node:  # an experiment-level file (the tables)
        return output.parent / "tensorboard" / "tables"
    experiment_dir = output.parents[3]  # <experiment>/seed<s>/<owner>/task<t>/<file>
    return experiment_dir / "tensorboard" / f"seed{node['seed']}" / node["owner"] / f"task{node['task']}"


# --- the format: protocol-buffer fields and TFRecord framing --------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _bytes(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


def _uint(number: int, value: int) -> bytes:
    return _field(number, 0, _varint(value))


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> bytes:
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


def _event(step: int, summary: bytes | None = None, file_version: str | None = None) -> bytes:
    """A ``tensorflow.Event``: wall_time = 1, step = 2, file_version = 3, summary = 5."""
    out = _field(1, 1, struct.pack("<d", time.time())) + _uint(2, max(0, int(step)))
    if file_version is not None:
        out += _bytes(3, file_version.encode())
    if summary is not None:
        out += _bytes(5, summary)
    return out


def _scalar_value(tag: str, value: float) -> bytes:
    """A ``Summary.Value`` with tag = 1 and simple_value = 2 (a float)."""
    return _bytes(1, tag.encode()) + _field(2, 5, struct.pack("<f", value))


def _text_value(tag: str, markdown: str) -> bytes:
    """A ``Summary.Value`` for the text plugin: a string tensor (tensor = 8) with
    metadata = 9 naming the plugin (plugin_data = 1, plugin_name = 1)."""
    shape = _bytes(2, _uint(1, 1))  # TensorShapeProto: one dim of size 1
    tensor = _uint(1, 7) + _bytes(2, shape) + _bytes(8, markdown.encode())  # dtype DT_STRING
    metadata = _bytes(1, _bytes(1, b"text"))
    return _bytes(1, tag.encode()) + _bytes(8, tensor) + _bytes(9, metadata)


class LiveLog:
    """One job's run: scalars per epoch, text at the end.

    A job that runs again (rerun, retried, resumed) starts its run afresh: the earlier
    attempt's event files are removed, so a curve is never drawn twice; a resumed
    training job writes its restored epochs again first."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob(f"{EVENT_FILE}.*"):
            old.unlink()
        name = f"{EVENT_FILE}.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = self.folder / name
        self._file = open(self.path, "ab")
        self._write(_event(0, file_version="brain.Event:2"))

    def _write(self, event: bytes) -> None:
        self._file.write(_record(event))
        self._file.flush()  # a live view: every epoch is on disk when it ends

    def scalars(self, step: int, values: dict[str, Any], prefix: str = "") -> None:
        summary = b"".join(
            _bytes(1, _scalar_value(f"{prefix}{k}", float(v)))
            for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        )
        if summary:
            self._write(_event(step, summary))

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        self._write(_event(step, _bytes(1, _text_value(tag, markdown))))

    def epoch(self, row: dict[str, Any]) -> None:
        """A training job's epoch (its history row), at its optimizer step count."""
        self.scalars(row["step"], {k: row[k] for k in SCALARS if k in row})

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LiveLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
