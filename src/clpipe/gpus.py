"""One GPU per GPU job on a machine with several: slots claimed with file locks.

Snakemake assigns no GPU ids to local jobs (``--resources gpu=N`` only limits how many
run at once; every job still sees every GPU: snakemake/snakemake#281). So a job that
runs a model claims a *slot* before it touches CUDA: slot ``s`` of GPU ``g`` is an
exclusive ``flock`` on ``<lock dir>/gpu-<g>.slot<s>.lock``. The kernel drops the lock
when the process ends, however it ends (SIGKILL and out-of-memory kills included), so
a stale claim can never block a GPU; nothing has to be cleaned up. Slots are tried
slot-major (slot 0 of every GPU before slot 1 of any), so jobs spread over the GPUs
first and share one only when ``gpu_slots_per_device`` allows it.

The GPUs a run may use are the visible ones: the entries of ``CUDA_VISIBLE_DEVICES``
when it is set (indices or UUIDs, as CUDA reads them), else ``0..count-1``. A lock is
named by that entry, so two runs on one machine that see the same GPUs share their
slots. Under SLURM (``SLURM_JOB_ID`` set) nothing is claimed: the scheduler's
allocation (its ``CUDA_VISIBLE_DEVICES``) is used as it is.

Torch-free: the claim is made before CUDA is initialised, and tests simulate GPUs.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("clpipe")

LOCK_DIR_ENV = "CLPIPE_GPU_LOCK_DIR"


def lock_dir() -> Path:
    """Where the slot locks live: ``$CLPIPE_GPU_LOCK_DIR``, else one folder in the
    machine's temporary directory shared by every run on it."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "clpipe-gpu-slots")


def visible_gpus(count: int | None = None, environ=os.environ) -> list[str]:
    """The ids of the GPUs this process may use, in CUDA's order: the entries of
    ``CUDA_VISIBLE_DEVICES`` (CUDA ignores everything from the first invalid one on;
    an empty value hides every GPU), else ``0..count-1``."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return [str(i) for i in range(count or 0)]
    ids = []
    for entry in value.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-"):  # CUDA stops at an invalid entry
            break
        ids.append(entry)
    return ids if count is None else ids[:count]


# where a GPU driver shows its devices: NVIDIA's (one folder per GPU), AMD's ROCm
GPU_DRIVER_PATHS = ("/proc/driver/nvidia/gpus", "/dev/kfd")


def machine_has_gpu(environ=os.environ, driver_paths=GPU_DRIVER_PATHS) -> bool:
    """Whether this machine shows this process a GPU, found without torch or CUDA: a
    GPU driver's devices, and CUDA_VISIBLE_DEVICES not hiding them all."""
    if environ.get("CUDA_VISIBLE_DEVICES") is not None and not visible_gpus(None, environ):
        return False
    for path in map(Path, driver_paths):
        if (path.is_dir() and any(path.iterdir())) or (path.exists() and not path.is_dir()):
            return True
    return False


def allocated_gpus(environ=os.environ) -> int:
    """GPUs a cluster scheduler gave this job: SLURM's count on this node, else the
    entries of CUDA_VISIBLE_DEVICES; at least 1 (a limit of 0 would refuse every step)."""
    count = environ.get("SLURM_GPUS_ON_NODE", "")
    if count.isdigit():
        return max(1, int(count))
    return max(1, len(visible_gpus(None, environ)))


@dataclass
class GpuClaim:
    """A claimed slot: ``index`` is the GPU's position among the visible ones (torch's
    ``cuda:<index>``), ``gpu_id`` its entry in ``CUDA_VISIBLE_DEVICES`` (or the index),
    ``slot`` which of its slots. The claim lasts while ``fd`` is open (the process)."""

    index: int
    gpu_id: str
    slot: int
    path: Path
    fd: int | None
    waited_s: float = 0.0

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None

    def describe(self) -> str:
        return f"GPU {self.index} (id {self.gpu_id}, slot {self.slot}, lock {self.path})"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _try_lock(path: Path, holder: str) -> int | None:
    """An fd holding an exclusive lock on ``path``, or None when another process has it.
    The holder's description is written into the file for a person looking at it (the
    lock is what counts, not the text)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        writable = True
    except PermissionError:  # another user's lock file: flock works on a read-only fd
        fd = os.open(path, os.O_RDONLY)
        writable = False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
            return None
        raise
    if writable:
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
    return fd


def claim_slot(
    gpu_ids: list[str],
    slots_per_device: int = 1,
    directory: Path | None = None,
    poll_s: float = 0.2,
    timeout_s: float | None = None,
    label: str = "",
) -> GpuClaim:
    """Claim a free slot among ``gpu_ids``; waits (polling) while every slot is taken.

    Raises ``ValueError`` for no GPUs or no slots, ``TimeoutError`` after ``timeout_s``.
    """
    if not gpu_ids:
        raise ValueError("no GPU to claim: none is visible (CUDA_VISIBLE_DEVICES, torch)")
    if slots_per_device < 1:
        raise ValueError(f"config key 'gpu_slots_per_device': {slots_per_device} (at least 1)")
    directory = Path(directory or lock_dir())
    directory.mkdir(parents=True, exist_ok=True)
    try:  # shared by every user's runs on the machine, like /tmp itself
        os.chmod(directory, 0o1777)
    except OSError:
        pass
    candidates = [
        (index, gpu_id, slot, directory / f"gpu-{_safe(gpu_id)}.slot{slot}.lock")
        for slot in range(slots_per_device)
        for index, gpu_id in enumerate(gpu_ids)
    ]
    holder = f"pid {os.getpid()} {label.rstrip(': ')}\n"
    start = time.monotonic()
    announced = False
    while True:
        for index, gpu_id, slot, path in candidates:
            fd = _try_lock(path, holder)
            if fd is not None:
                return GpuClaim(index, gpu_id, slot, path, fd, time.monotonic() - start)
        waited = time.monotonic() - start
        if timeout_s is not None and waited >= timeout_s:
            raise TimeoutError(
                f"{label}no free GPU slot among {len(candidates)} ({', '.join(gpu_ids)} x "
                f"{slots_per_device}) after {waited:.0f} s (locks in {directory})"
            )
        if not announced:
            log.info(
                "%severy GPU slot is taken (%d GPU(s) x %d slot(s)); waiting for one",
                label,
                len(gpu_ids),
                slots_per_device,
            )
            announced = True
        time.sleep(poll_s)


_HELD: list[GpuClaim] = []  # claims this process holds until it exits


def claim_for_this_process(count: int, slots_per_device: int, label: str = "") -> GpuClaim | None:
    """The slot a GPU job of this process uses, claimed once and held until the process
    ends; None under SLURM (its allocation is used as it is)."""
    if os.environ.get("SLURM_JOB_ID"):
        return None
    if _HELD:
        return _HELD[0]
    claim = claim_slot(visible_gpus(count), slots_per_device, label=label)
    _HELD.append(claim)
    return claim
