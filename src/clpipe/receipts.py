"""Receipts: what each job made, from what and under which settings, checked whatever
Snakemake remembers (torch-free).

Snakemake decides what is out of date from its metadata in ``.snakemake/`` (a job's
params and code, by output file) and the files' times. That record is easily gone or
misleading: ``.snakemake/`` deleted, results made by another checkout, a file edited by
hand, a model deleted after its evaluation was made (Snakemake does not remake a
missing intermediate file whose consumers are there). So every job also leaves a
receipt beside its log (``<log stem>.receipt.json``): the hash of its params (its spec
and its code fingerprint, as the workflow gave them), the sha256 of every input it read,
and the size, modification time and sha256 of every file it wrote. Then

- the workflow, while it builds the DAG, checks each job whose outputs exist against
  its receipt (:func:`check_job`): no receipt (results of an older version, or of
  unknown origin), a receipt of other params, an input that is gone or is not the one
  it read, or an output changed since it was written, reruns that job and what
  follows (with Snakemake's metadata intact, a changed setting reruns exactly the jobs
  Snakemake's own params trigger reruns);
- a step that reads a file checks it against its maker's receipt
  (:func:`check_file`): a file edited after it was made is refused, naming it.

``snakemake --touch`` accepts the results as they are: the workflow writes every
receipt afresh from the current params and files (:func:`check_job`) instead of
rerunning.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from clpipe.errors import InputError
from clpipe.hashing import stable_hash

FORMAT = "clpipe.receipt/1"
SUFFIX = ".receipt.json"


class EditedFileError(InputError, RuntimeError):
    """A file whose content is not what the job that made it wrote."""


def receipt_path(log: str | os.PathLike) -> Path:
    """A job's receipt: beside its (first) log, named after it."""
    log = Path(log)
    return log.with_name(log.name.rsplit(".", 1)[0] + SUFFIX)


def params_hash(params: dict[str, Any]) -> str:
    """The hash of a job's params (its spec and its code), as its receipt holds it."""
    return stable_hash(params)


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read(receipt: str | os.PathLike) -> dict[str, Any] | None:
    """A receipt, or None where there is none (or it is not one)."""
    try:
        record = json.loads(Path(receipt).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def _same_file(stamp: dict[str, Any], st: os.stat_result) -> bool:
    return st.st_size == stamp["size"] and st.st_mtime_ns == stamp["mtime_ns"]


def _maker_stamp(path: Path) -> tuple[dict[str, Any], str] | None:
    """(the stamp, the rule) of the receipt beside ``path`` that lists it, if any."""
    for receipt in sorted(path.parent.glob(f"*{SUFFIX}")):
        record = read(receipt)
        stamp = record["outputs"].get(path.name) if record else None
        if stamp is not None:
            return stamp, record["rule"]
    return None


@functools.lru_cache(maxsize=65536)
def _content(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, taken from its maker's receipt while the file has the size and
    time the receipt recorded (so reading a big input costs no hashing), else hashed."""
    found = _maker_stamp(Path(path))
    if found is not None and found[0]["size"] == size and found[0]["mtime_ns"] == mtime_ns:
        return found[0]["sha256"]
    return sha256(path)


def content(path: str | os.PathLike) -> str | None:
    """A file's sha256 as it is now (None: it is gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _content(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def _stamp(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256(path)}


def write(
    receipt: str | os.PathLike,
    rule: str,
    params: dict[str, Any],
    outputs: Iterable[str],
    inputs: Iterable[str] = (),
) -> None:
    """Record what a job made (its outputs as they are now) from what (its inputs) under
    ``params``; paths by their way from the receipt's folder."""
    from clpipe.io import atomic_write  # io's file checks use this module

    folder = Path(receipt).parent
    record = {
        "format": FORMAT,
        "rule": rule,
        "params": params_hash(params),
        "inputs": {os.path.relpath(p, folder): content(p) for p in inputs if Path(p).is_file()},
        "outputs": {os.path.relpath(p, folder): _stamp(Path(p)) for p in outputs if Path(p).is_file()},
    }
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    atomic_write(receipt, lambda f: f.write(text), mode="w")


def edited(path: str | os.PathLike, stamp: dict[str, Any]) -> bool:
    """Whether a file's content differs from what its receipt recorded; the same size
    and modification time are taken as the same content (a copy or a touch is hashed)."""
    try:
        st = os.stat(path)
    except OSError:
        return True
    if _same_file(stamp, st):
        return False
    return st.st_size != stamp["size"] or content(path) != stamp["sha256"]


def problems(receipt: str | os.PathLike, params: dict[str, Any], outputs: Iterable[str]) -> list[str]:
    """Why a job whose outputs exist is out of date, whatever Snakemake's metadata says:
    no receipt, a receipt of other params, an input gone or other than the one it read,
    an output changed since it was written. Empty: the outputs are what these params
    made from the inputs there are now (or the job has not run yet)."""
    present = [str(p) for p in outputs if Path(p).is_file()]
    if not present:
        return []
    record = read(receipt)
    if record is None:
        return [f"no receipt ({receipt}) says how {present[0]} was made"]
    if record["params"] != params_hash(params):
        return [f"{present[0]} was made under other settings or code than the config and code give now"]
    folder = Path(receipt).parent
    found = []
    for name, digest in record.get("inputs", {}).items():
        now = content(folder / name)
        if now != digest:
            state = "is gone" if now is None else "is not the one it was made from"
            found.append(f"its input {os.path.normpath(folder / name)} {state}")
    found += [
        f"{folder / name} was changed after its job wrote it"
        for name, stamp in record["outputs"].items()
        if str(folder / name) in present and edited(folder / name, stamp)
    ]
    return found


def check_job(
    rule: Any,
    wildcards: Any,
    expand: Callable[[str], str],
    inputs: Iterable[str] = (),
    accept: bool = False,
    write_receipt: bool = True,
) -> tuple[list[str], list[str]]:
    """(why a job is out of date, its outputs) for a Snakemake ``rule`` and a job's
    ``wildcards`` (``expand`` fills a path pattern with them): its params evaluated as the
    job gets them, its receipt beside its first log. Nothing to say for a job not run
    yet. ``accept`` (``snakemake --touch``): the outputs are taken as they are, their
    receipt written afresh with the job's ``inputs`` (unless ``write_receipt`` is False:
    a dry run)."""
    outputs = [expand(str(o)) for o in rule.output]
    if not any(Path(o).is_file() for o in outputs):
        return [], outputs
    params = {name: value(wildcards) if callable(value) else value for name, value in rule.params.items()}
    receipt = receipt_path(expand(str(rule.log[0])))
    why = problems(receipt, params, outputs)
    if why and accept:
        if write_receipt:
            write(receipt, rule.name, params, outputs, inputs)
        return [], outputs
    return why, outputs


def check_file(path: str | os.PathLike) -> None:
    """Refuse a file whose content is not what its job wrote, by the receipt beside it
    that lists it (a file no receipt lists, an older version's, is taken as it is)."""
    path = Path(path)
    if not path.is_file():
        return  # nothing to check: its reader says it is missing
    found = _maker_stamp(path)
    if found is not None and edited(path, found[0]):
        stamp, rule = found
        raise EditedFileError(
            f"{path}: its content is not what {rule} wrote (sha256 {stamp['sha256'][:12]}...): it was "
            "edited after it was made. Delete it (or put back what was there) and run the workflow "
            "again: its job makes it afresh"
        )
