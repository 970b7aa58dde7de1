"""Step evaluate: test accuracy and loss of one model on every task (one row of R).

A model is evaluated where it is trained, too: the training job, with the model and the
data already in memory, evaluates the model file it has just written (loaded back, as
this step would load it) and leaves the rows beside it in ``eval.cache.json``, keyed by
everything they depend on: that model file and the data file (their size and the
hash of their first and last MiB), the
evaluation's spec, the code of this step (its script and the clpipe modules it runs,
clpipe.fingerprint), the device kind and, on a CPU, the threads. The evaluate rule is
still the step that makes ``eval.csv`` and still reruns when its script, its code or an
``eval`` setting change; when the key matches, it writes the rows it finds instead of
paying for torch and a second pass (about a second per model for a small one), and
otherwise it evaluates as always. So a rerun of the evaluations after any change that
could alter them evaluates again, and the rows are the same either way.

Torch-free at import: the step that only copies rows never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from clpipe import io, receipts

log = logging.getLogger("clpipe")

CACHE = "eval.cache.json"
CACHE_FORMAT = "clpipe.eval-cache/1"
# The spec of a model's evaluation is the part of its training spec that feeds it a
# task's data, and the model's owner (clpipe.plan.evaluation_spec).
TASK_SPEC_KEYS = ("experiment", "seed", "task", "scenario", "tasks", "input", "eval")


def evaluation_rows(model_in: str, data: str, spec: dict[str, Any], runtime) -> list[dict[str, Any]]:
    """The model file's accuracy and loss on every task's test split, one row per task."""
    from clpipe.checkpoints import load_model
    from clpipe.data.pipeline import InputPipeline, load_tasks
    from clpipe.evaluation import evaluate_split
    from clpipe.networks import evaluation_parameters
    from clpipe.provenance import device_name
    from clpipe.scenarios import Scenario

    model, checkpoint = load_model(model_in, runtime.device)
    tasks = load_tasks(data)  # only the test splits go to the device
    # a growing network answers only for the tasks it has grown for: NaN for the others
    scenario = Scenario.for_model(spec["scenario"], spec["tasks"], model)
    pipeline = InputPipeline(spec["input"], runtime.device)
    meta = checkpoint["meta"]
    # the model's size after its task (per task for a growing network; NaN where undefined)
    parameters = evaluation_parameters(model, int(spec["task"]))
    rows = []
    batch_size = int(spec["eval"]["batch_size"])
    for task in tasks:
        t0 = time.perf_counter()
        test = task.test.to(runtime.device)
        acc, loss = evaluate_split(model, test, task.index, scenario, pipeline, batch_size)
        seconds = time.perf_counter() - t0  # the pass itself (benchmarks/small_experiment.py)
        # the validation split too: what a choice among arms may look at (never the test)
        val_acc, val_loss = evaluate_split(
            model, task.val.to(runtime.device), task.index, scenario, pipeline, batch_size
        )
        rows.append(
            {
                "experiment": spec["experiment"],
                "seed": spec["seed"],
                "owner": spec["owner"],
                "trained_task": spec["task"],
                "eval_task": task.index,
                "dataset": task.dataset,
                "classes": " ".join(map(str, task.classes)),
                "accuracy": acc,
                "loss": loss,
                "n": len(task.test),
                "val_accuracy": val_acc,
                "val_loss": val_loss,
                "val_n": len(task.val),
                "spec_hash": meta.get("spec_hash", "unknown"),
                "config_hash": meta.get("config_hash", "unknown"),
                "git_commit": meta.get("git_commit", "unknown"),
                "device": device_name(runtime.device),
                "torch": meta.get("versions", {}).get("torch", "unknown"),
                **parameters,
                # how the model was made: its job's threads (a CPU result depends on
                # them) and whether the code had uncommitted changes
                "threads": meta.get("threads"),
                "git_dirty": meta.get("git_dirty"),
                "clpipe_version": meta.get("versions", {}).get("clpipe", "unknown"),
                # the CPU kernels the model's training dispatched to (clpipe.cpu_isa)
                "cpu_kernels": meta.get("cpu", {}).get("torch_cpu_capability", "unknown"),
                "seconds": seconds,
            }
        )
        log.info("task %d: accuracy %.4f loss %.4f (n=%d)", task.index, acc, loss, len(task.test))
    return rows


def _content(path: str, edge: int = 1 << 20) -> list:
    """A file's size and the sha256 of its first and last MiB: a model file begins with
    its metadata (the model it was made for, its training's provenance) and ends with
    tensor data, so a file retrained, swapped or copied in differs here. Not its time:
    Snakemake touches a job's outputs after the job."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(edge))
        if size > edge:
            f.seek(max(edge, size - edge))
            digest.update(f.read(edge))
    return [size, digest.hexdigest()[:32]]


def step_code(scripts_dir: str | os.PathLike) -> str:
    """The code this step runs: its script and the clpipe modules it imports."""
    from clpipe.fingerprint import code_of_file, job_code, method_modules
    from clpipe.hashing import stable_hash

    script = Path(scripts_dir) / "evaluate.py"
    return stable_hash([job_code(str(script), None, method_modules()), code_of_file(script)])


def cache_key(model_in: str, data: str, spec: dict[str, Any], code: str, device: str, threads: int) -> dict:
    """What the rows of a model's evaluation depend on (threads only on a CPU, where a
    sum's split over threads can change its last bits)."""
    return {
        "model": _content(model_in),
        "data": _content(data),
        "spec": spec,
        "code": code,
        "device": device,
        "threads": threads if device == "cpu" else None,
    }


def cache_path(model: str) -> Path:
    """Where a training job leaves its evaluation of the model it wrote."""
    return Path(model).parent / CACHE


def write_cache(model_in: str, data: str, spec: dict[str, Any], runtime, scripts_dir: str) -> None:
    """Evaluate the model file a training job has just written and leave the rows beside it."""
    rows = evaluation_rows(model_in, data, spec, runtime)
    key = cache_key(model_in, data, spec, step_code(scripts_dir), runtime.device.type, runtime.threads)
    path = cache_path(model_in)
    text = json.dumps({"format": CACHE_FORMAT, "key": key, "rows": rows}, default=str)
    io.atomic_write(path, lambda f: f.write(text), mode="w")


def cached_rows(model_in: str, data: str, spec: dict[str, Any], code: str, device: str, threads: int):
    """The rows the model's training job left, if they are what this evaluation would make
    (rows edited after the job wrote them are refused: clpipe.receipts)."""
    path = cache_path(model_in)
    try:
        receipts.check_file(path)
    except receipts.EditedFileError as err:  # edited since the training job wrote it
        log.warning("not using the training job's rows: %s", err)
        return None
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cache, dict) or cache.get("format") != CACHE_FORMAT:
        return None
    found = cache.get("key", {})
    devices = ("cpu", "cuda") if device == "auto" else (device,)
    if found.get("device") not in devices:
        return None
    expected = cache_key(model_in, data, spec, code, found["device"], threads)
    return cache["rows"] if found == json.loads(json.dumps(expected, default=str)) else None


def evaluate(
    model_in: str,
    data: str,
    spec: dict[str, Any],
    output: str,
    runtime,
    scripts_dir: str | None = None,
    device: str = "cpu",
    threads: int = 1,
) -> None:
    """Test accuracy and loss on every task of the experiment (one row of R).

    ``runtime`` is the job's runtime, or a function that makes it (called only when the
    model is evaluated here). With ``scripts_dir`` (the rule scripts' folder), rows its
    training job left in ``eval.cache.json`` are used when they match this evaluation
    (``device``: the config's device, or ``cpu`` when the job has no GPU; ``threads``:
    this job's)."""
    if scripts_dir is not None:
        rows = cached_rows(model_in, data, spec, step_code(scripts_dir), device, threads)
        if rows is not None:
            log.info("%s: the rows its training job computed for this evaluation", cache_path(model_in))
            io.save_rows(output, rows)
            return
    if callable(runtime):
        runtime = runtime()
    io.save_rows(output, evaluation_rows(model_in, data, spec, runtime))
