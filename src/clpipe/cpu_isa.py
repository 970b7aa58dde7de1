"""CPU results that are the same on every x86-64 machine: the instruction set pinned.

torch's CPU kernels are chosen per machine at run time: ATen's vectorised kernels by
the CPU's capability (AVX2, AVX-512), oneDNN's convolutions and matrix products by the
widest instruction set it finds, MKL's by its own dispatch. Kernels of different widths
sum in different orders, so the same config and seed give models that differ in their
last bits on another machine, and then, through training, by about the spread between
seeds (a committed table would not be reproduced). ``cpu_isa: avx2`` (the default)
pins all three to AVX2, which every x86-64 machine of the last decade has, before torch
loads in a job: ``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2`` and
``MKL_CBWR=AVX2,STRICT`` (MKL's conditional numerical reproducibility). ``native`` lets
each machine use its widest kernels (faster on AVX-512 machines, not portable).

Not covered: GPUs (their kernels differ by GPU model and CUDA version), other
architectures (Arm), a different torch, MKL or oneDNN version, and another number of
threads per job (a sum's split over threads is part of the result; see docs/reproducibility.md).
Torch-free, so a rule's script can call it before anything imports torch.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

PINS: dict[str, dict[str, str]] = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"},
    "native": {},
}


def pin(setting: str = "avx2") -> dict[str, str]:
    """Set the environment that pins the CPU kernels (before torch is imported)."""
    if setting not in PINS:
        raise ValueError(f"config key 'cpu_isa': {setting!r} is not one of {', '.join(PINS)}")
    if "torch" in sys.modules and PINS[setting]:
        # too late for this process: torch has read its settings already
        raise RuntimeError("clpipe.cpu_isa.pin must run before torch is imported")
    os.environ.update(PINS[setting])
    return dict(PINS[setting])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict[str, str]:
    """What a CPU result was computed with: the CPU, the kernels torch dispatched to, and
    the pins in effect (every result's provenance records it)."""
    import torch

    config = torch.__config__.show()
    onednn = next(
        (line.strip(" -") for line in config.splitlines() if "MKL-DNN" in line or "oneDNN" in line), ""
    )
    return {
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "mkl": str(torch.backends.mkl.is_available()),
        "onednn": onednn,
        "pins": ",".join(f"{k}={os.environ[k]}" for k in PINS["avx2"] if k in os.environ) or "none",
    }
