"""Where a result came from: code version, package versions, device, job spec hash."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from clpipe import __version__
from clpipe.hashing import stable_hash


@functools.cache
def git_commit() -> str:
    """The commit of the checkout this package runs from, or "unknown" outside one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if len(commit) == 40 else "unknown"


@functools.cache
def checkout_dirty() -> bool | None:
    """Whether the checkout this package runs from has uncommitted changes to tracked
    files (None outside a checkout): a result made by uncommitted code says so."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip())


@functools.cache
def versions() -> dict[str, str]:
    """The versions that make a result: Python, clpipe, torch (the one running), numpy and
    torchvision (as installed: read from their metadata, since importing torchvision
    pulls in torch's compiler stack, about a second, in steps that never use it)."""
    import torch

    found = {
        "python": platform.python_version(),
        "clpipe": __version__,
        "torch": str(torch.__version__),  # a str subclass that weights_only loading refuses
    }
    for package in ("numpy", "torchvision"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "unavailable"
    return found


def device_name(device) -> str:
    """``cuda:<index>:<GPU model>`` or ``cpu:<processor>`` (the ``device`` column)."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}:{torch.cuda.get_device_name(index)}"
    return f"cpu:{platform.processor() or platform.machine()}"


def gpu_details(runtime) -> dict[str, Any] | None:
    """The GPU a job ran on and the CUDA stack (None on the CPU): model, index among the
    visible GPUs and its id there (CUDA_VISIBLE_DEVICES), the slot claimed, compute
    capability, memory, CUDA and cuDNN versions, and whether TF32 was allowed (matmul,
    cuDNN), which changes results in the last bits."""
    import torch

    device = runtime.device
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    claim = getattr(runtime, "gpu", None)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "name": props.name,
        "index": index,
        "visible_id": claim.gpu_id
        if claim is not None
        else os.environ.get("CUDA_VISIBLE_DEVICES", str(index)),
        "slot": claim.slot if claim is not None else None,
        "scheduler": "slurm" if os.environ.get("SLURM_JOB_ID") else "local",
        "capability": f"{props.major}.{props.minor}",
        "memory_mb": int(props.total_memory // 2**20),
        "cuda": str(torch.version.cuda),
        "cudnn": str(cudnn),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
    }


@functools.cache
def cpu_details() -> dict[str, str]:
    """The CPU and the kernels torch dispatched to on it (clpipe.cpu_isa)."""
    from clpipe.cpu_isa import describe

    return describe()


def describe_runtime(runtime) -> str:
    """One log line: where the job runs (the GPU and its slot) and with how many threads."""
    where = device_name(runtime.device)
    details = gpu_details(runtime)
    if details is not None:
        where += (
            f" (visible id {details['visible_id']}"
            + (f", slot {details['slot']}" if details["slot"] is not None else ", the scheduler's allocation")
            + f"; CUDA {details['cuda']}, cuDNN {details['cudnn']}, TF32 matmul {details['tf32_matmul']})"
        )
    cpu = cpu_details()
    kernels = f"CPU kernels {cpu['torch_cpu_capability']} ({cpu['pins']})"
    return f"device {where}, {runtime.threads} thread(s); {kernels}"


def provenance(step: str, spec: dict[str, Any], runtime=None) -> dict[str, Any]:
    """Metadata stored in every file a step writes (plain types: loads with weights_only).

    ``spec_hash`` identifies the job's definition (its Snakemake params);
    ``config_hash`` the whole config it ran under.
    """
    meta: dict[str, Any] = {
        "step": step,
        "spec_hash": stable_hash(spec),
        "config_hash": getattr(runtime, "config_hash", "unknown"),
        "git_commit": git_commit(),
        "versions": dict(versions()),
    }
    for key in ("experiment", "seed", "arm", "task"):
        if key in spec:
            meta[key] = spec[key]
    meta["git_dirty"] = checkout_dirty()
    if runtime is not None:
        meta["device"] = device_name(runtime.device)
        meta["cpu"] = cpu_details()
        meta["threads"] = int(runtime.threads)
        gpu = gpu_details(runtime)
        if gpu is not None:
            meta["gpu"] = gpu
    return meta
