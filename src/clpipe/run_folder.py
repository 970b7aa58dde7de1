"""The results folder: which folders may be one, and one run at a time in it.

A results folder is refused when it is a system folder, the filesystem root, a home
folder itself, the data folder (or inside it, or holding it), the checkout that holds
the workflow (or a folder above it), or the checkout's committed reference results.
A folder that exists and holds files this pipeline did not make is refused too (its
files could be overwritten), unless ``allow_foreign_files: true``; a folder the
pipeline made is marked with ``.clpipe-results``.

A run holds an exclusive ``flock`` on ``<results>/.clpipe-run.lock`` while it builds
the DAG and runs its jobs: Snakemake's own lock lives in the working directory, so two
runs started from different folders on one results folder would otherwise write the
same files together. The kernel drops the lock when the run's process ends, however it
ends, so a killed run never leaves a stale lock behind; the file names the holder
(process, host, start, command) for the message a second run gets.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from clpipe.errors import ConfigError, InputError

MARKER = ".clpipe-results"
LOCK = ".clpipe-run.lock"
# Folders no run may write into: exactly these, or anything below them.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
                "/sbin", "/sys", "/usr")  # fmt: skip
# Folders that hold other folders: a run may write below them, not into them.
SYSTEM_FOLDERS = ("/", "/home", "/mnt", "/media", "/opt", "/srv", "/tmp", "/var", "/root")


class RunFolderBusy(InputError):
    """Another run holds the results folder."""


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_results_dir(
    results: str, data_dir: str, checkout: str | os.PathLike, allow_foreign: bool, cwd: str | None = None
) -> None:
    """Refuse a results folder that is not safe to write the pipeline's files into."""
    base = Path(cwd or os.getcwd())
    folder = (base / results).resolve()
    data = (base / data_dir).resolve()
    checkout = Path(checkout).resolve()
    home = Path.home().resolve()
    reason = None
    if any(_within(folder, Path(t)) for t in SYSTEM_TREES):
        reason = "it is a system folder"
    elif str(folder) in SYSTEM_FOLDERS or folder == home:
        reason = "it holds other folders of the system or a user (make a folder of its own below it)"
    elif _within(folder, data) or _within(data, folder):
        reason = f"it is, holds or is inside the data folder ({data}); results and data are kept apart"
    elif _within(checkout, folder):
        reason = f"it is or holds the checkout of this workflow ({checkout})"
    elif _within(folder, checkout / "results" / "reference"):
        reason = "it holds the committed reference results; a run writes its own folder"
    if reason:
        raise ConfigError("results_dir", f"{results!r} ({folder}): {reason}")
    if allow_foreign or not folder.is_dir() or (folder / MARKER).exists():
        return
    # the checkout's own results/ holds its README and the committed reference results
    tracked = {"README.md", "reference"} if folder == checkout / "results" else set()
    foreign = [name for name in foreign_entries(folder) if name not in tracked]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f", ... ({len(foreign)} in all)" if len(foreign) > 5 else "")
        raise ConfigError(
            "results_dir",
            f"{results!r} ({folder}) holds files this pipeline did not make ({shown}), which a run could "
            "overwrite: give a new or empty folder, or set allow_foreign_files: true",
        )


def _looks_like_ours(entry: Path) -> bool:
    """A top-level entry of a results folder made before the marker existed."""
    if entry.name in (MARKER, LOCK):
        return True
    if not entry.is_dir():
        return False
    if entry.name == "datasets":
        return all(p.suffix in (".md5", ".log", ".tsv", ".json") for p in entry.iterdir())
    return (
        (entry / "data" / "tasks.pt").exists()
        or (entry / "metrics.csv").exists()
        or any(p.name.startswith("seed") and p.name[4:].isdigit() for p in entry.iterdir())
    )


def foreign_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not _looks_like_ours(p))


def mark(folder: str | os.PathLike) -> None:
    """Record that the pipeline made this folder (its later runs know it as theirs)."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if not marker.exists():
        marker.write_text("This folder holds the results of a clpipe workflow run.\n")


_HELD: dict[str, int] = {}  # results folder -> lock fd, held until the process exits


def hold(folder: str | os.PathLike) -> None:
    """Take the results folder's run lock for this process, or refuse naming the holder."""
    path = Path(folder).resolve()
    if str(path) in _HELD:
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise RunFolderBusy(
                f"results folder {path} is in use by another run ({holder}); wait for it to end, or "
                "give this run another results_dir (a run that was killed holds no lock)"
            ) from None
        raise
    os.ftruncate(fd, 0)
    command = " ".join(sys.argv)[:500]
    holder = f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}: {command}\n"
    os.pwrite(fd, holder.encode(), 0)
    _HELD[str(path)] = fd
