"""Where a result came from: code version, package versions, device, job spec hash."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

from clpipe import __version__
from clpipe.config import stable_hash


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
def versions() -> dict[str, str]:
    import numpy
    import torch

    found = {
        "python": platform.python_version(),
        "clpipe": __version__,
        "torch": str(torch.__version__),  # a str subclass that weights_only loading refuses
        "numpy": str(numpy.__version__),
    }
    try:
        import torchvision

        found["torchvision"] = str(torchvision.__version__)
    except Exception:  # torchvision is optional for most steps
        found["torchvision"] = "unavailable"
    return found


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}"


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
    if runtime is not None:
        meta["device"] = device_name(runtime.device)
    return meta
