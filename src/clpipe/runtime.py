"""How a step runs: device, threads, determinism and seeds."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass

import torch

from clpipe.gpus import GpuClaim, claim_for_this_process

log = logging.getLogger("clpipe")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    deterministic: bool
    threads: int
    config_hash: str = "unknown"  # of the whole config the job ran under (provenance only)
    resume: bool = True  # training jobs keep epoch checkpoints and resume from them
    checkpoint_every_s: float = 0.0  # ... saved at most this often (seconds; 0: every epoch)
    gpu: GpuClaim | None = None  # the slot this job claimed on a machine of several GPUs
    live: bool = False  # training jobs write TensorBoard event files as they go (clpipe.live)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the GPU when there is one; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key 'device' is 'cuda' but torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"config key 'device': {name!r} is not one of auto, cpu, cuda")
    return torch.device(name)


def gpu_for_job(
    device: torch.device, slots_per_device: int = 1, label: str = ""
) -> tuple[torch.device, GpuClaim | None]:
    """The GPU a job runs on: a slot of its own among the visible GPUs (clpipe.gpus), or
    under SLURM the allocation's first GPU; the CPU stays the CPU."""
    if device.type != "cuda":
        return device, None
    claim = claim_for_this_process(torch.cuda.device_count(), slots_per_device, label=label)
    index = 0 if claim is None else claim.index
    torch.cuda.set_device(index)
    return torch.device("cuda", index), claim


def _use_deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True)`` without its import of
    ``torch._inductor.config``, which pulls in TorchDynamo: about 1 s on a CPU
    (benchmarks/workflow_overhead.py) for a compiler the pipeline never uses. Jobs that
    build no optimizer (evaluation, importance) no longer pay it; a training job
    still does, when torch.optim's first call imports TorchDynamo. The inductor's own
    flag is still set when something already imported it."""
    torch._C._set_deterministic_algorithms(True, warn_only=False)
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        inductor_config.deterministic = True


def make_runtime(
    device: str = "auto",
    deterministic: bool = True,
    threads: int = 1,
    config_hash: str = "unknown",
    resume: bool = True,
    gpu_slots_per_device: int = 1,
    label: str = "",
    checkpoint_every_s: float = 0.0,
    live: bool = False,
) -> Runtime:
    dev, claim = gpu_for_job(resolve_device(device), gpu_slots_per_device, label)
    torch.set_num_threads(max(1, threads))
    if deterministic:
        # Needed by cuBLAS for deterministic matrix products; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        _use_deterministic_algorithms()
        torch.backends.cudnn.benchmark = False
    return Runtime(
        device=dev,
        deterministic=deterministic,
        threads=torch.get_num_threads(),
        config_hash=config_hash,
        resume=resume,
        gpu=claim,
        checkpoint_every_s=checkpoint_every_s,
        live=live,
    )


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the run's seed and the job's role, stable across machines.

    Jobs that must see the same random stream (e.g. the same task of two arms, so a
    method that does nothing reproduces fine-tuning bit for bit) pass the same parts.
    """
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_everything(seed: int) -> torch.Generator:
    """Seeds torch's global RNG (dropout, init) and returns a CPU generator for shuffling."""
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def runtime_for(job) -> Runtime:
    """The runtime of a Snakemake job: device and determinism from the config, its threads.

    A job runs on a GPU only if it asked the scheduler for one (its ``gpu`` resource; the
    workflow asks for one in every step that runs a model unless ``device`` is ``cpu``);
    on a machine of several GPUs it claims one of its own (clpipe.gpus)."""
    from clpipe.hashing import stable_hash
    from clpipe.provenance import describe_runtime

    wants_gpu = int(getattr(job.resources, "gpu", 0) or 0) > 0
    device = job.config.get("device", "auto")
    runtime = make_runtime(
        device=device if wants_gpu else "cpu",
        deterministic=job.config.get("deterministic", True),
        threads=int(job.threads),
        config_hash=stable_hash(dict(job.config)),
        resume=job.config.get("resume", True),
        gpu_slots_per_device=int(job.config.get("gpu_slots_per_device", 1)),
        label=f"{job.rule} ",
        checkpoint_every_s=float(job.config.get("epoch_checkpoint_seconds", 0)),
        live=bool((job.config.get("logging") or {}).get("tensorboard", False)),
    )
    limit = getattr(job.resources, "runtime", None)  # minutes; longer on a retried attempt
    log.info("%s%s", describe_runtime(runtime), "" if limit is None else f", time limit {limit} min")
    return runtime
