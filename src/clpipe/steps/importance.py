"""Steps compute_importance and update_progress: a method's importance, what it carries
from a task to the next, and its progress, its running state over the tasks."""

from __future__ import annotations

import logging
import time
from typing import Any

from clpipe import io
from clpipe.checkpoints import load_model
from clpipe.data.pipeline import load_tasks
from clpipe.methods import load_method
from clpipe.provenance import provenance
from clpipe.runtime import Runtime, derive_seed, seed_everything
from clpipe.steps.context import task_context

log = logging.getLogger("clpipe")


def compute_importance(
    model_in: str,
    data: str,
    progress: str | None,
    previous: str | None,
    spec: dict[str, Any],
    output: str,
    runtime: Runtime,
) -> None:
    method = load_method(spec["method"])
    generator = seed_everything(derive_seed(spec["seed"], "importance", spec["task"]))
    model, _ = load_model(model_in, runtime.device)
    tasks = load_tasks(data)
    _, _, ctx = task_context(spec, tasks, runtime, generator, model)
    prog = io.load_saved(progress, "progress") if progress else None
    prev = io.load_saved(previous, "importance") if previous else None
    t0 = time.perf_counter()
    result = method.compute_importance(model, ctx, prev, prog)
    seconds = time.perf_counter() - t0
    log.info("%s importance of task %d in %.1f s", spec["method"]["type"], spec["task"], seconds)
    meta = provenance("compute_importance", spec, runtime) | {"compute_seconds": seconds}
    io.save(output, "importance", meta, **result)


def update_progress(record: str, previous: str | None, spec: dict[str, Any], output: str) -> None:
    method = load_method(spec["method"])
    rec = io.load_saved(record, "record")
    prev = io.load_saved(previous, "progress") if previous else None
    result = method.update_progress(prev, rec)
    io.save(output, "progress", provenance("update_progress", spec), **result)
