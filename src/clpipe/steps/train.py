"""Steps train_first_task and train_next_task: one task of one arm, any method."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from clpipe import io
from clpipe.checkpoints import carried_optimizer_state, load_model, save_model
from clpipe.data.pipeline import load_tasks
from clpipe.epochs import EpochCheckpoint
from clpipe.hashing import stable_hash
from clpipe.layout import SCRATCH
from clpipe.live import LiveLog, run_dir
from clpipe.methods import load_method
from clpipe.methods.base import ContinualMethod
from clpipe.methods.finetune import FineTune
from clpipe.networks import parameter_report, spec_of
from clpipe.optim import CarriedOptimizerState
from clpipe.provenance import provenance
from clpipe.runtime import Runtime, derive_seed, seed_everything
from clpipe.steps.context import task_context
from clpipe.steps.evaluate import TASK_SPEC_KEYS, write_cache
from clpipe.training import train_task

log = logging.getLogger("clpipe")


def _file_identity(path: str | None) -> list[Any] | None:
    if path is None:
        return None
    st = os.stat(path)
    return [path, st.st_size, st.st_mtime_ns]


def _train(
    step: str,
    *,
    model_in: str,
    data: str,
    spec: dict[str, Any],
    method: ContinualMethod,
    importance: str | None,
    model_out: str,
    history_out: str,
    runtime: Runtime,
    scripts_dir: str | None = None,
) -> dict[str, Any]:
    """Train one task (the two training rules); returns the method's record of it.

    With ``scripts_dir`` (the rule scripts' folder) it also evaluates the model file it
    wrote, for the evaluate rule to use (clpipe.steps.evaluate)."""
    previous = io.load_saved(importance, "importance") if importance else None
    # Seeded by run seed and task only (not the arm): two arms that do the same thing
    # on a task give bit-identical results.
    generator = seed_everything(derive_seed(spec["seed"], "train", spec["task"]))
    model, loaded = load_model(model_in, runtime.device)
    model = method.prepare_model(model, loaded["model_spec"], spec["tasks"])
    tasks = load_tasks(data)
    scenario, pipeline, ctx = task_context(spec, tasks, runtime, generator, model)
    method.begin_task(model, previous, method.per_task(spec.get("task_settings", {})), ctx)
    label = f"{spec['experiment']} seed {spec['seed']} {spec.get('arm', SCRATCH)} task {spec['task']}"
    epochs = _epoch_checkpoint(spec, runtime, model_out, (model_in, data, importance))
    carried = _carried_optimizer_state(spec, model_in, loaded)
    # a live view (logging.tensorboard): this job's run, named by its path
    live = LiveLog(run_dir(model_out)) if runtime.live else None
    t0 = time.perf_counter()
    try:
        history = train_task(
            model, ctx.task, scenario=scenario, pipeline=pipeline, train_cfg=spec["train"], method=method,
            generator=generator, eval_batch_size=ctx.eval_batch_size, label=label, checkpoint=epochs,
            validation=method.validation_splits(ctx), on_epoch=None if live is None else live.epoch,
            carried=carried,
        )  # fmt: skip
    finally:  # the event file closed also when training fails (a non-finite loss)
        if live is not None:
            live.close()
    record = method.end_task(model)
    meta = provenance(step, spec, runtime)
    meta["train_seconds"] = time.perf_counter() - t0
    _write_model_and_history(model, loaded, meta, carried, history, spec, model_out, history_out)
    epochs.discard()
    if scripts_dir is not None:
        evaluation = {k: spec[k] for k in TASK_SPEC_KEYS} | {"owner": spec.get("arm", SCRATCH)}
        write_cache(model_out, data, evaluation, runtime, scripts_dir)
    return record


def _epoch_checkpoint(spec: dict[str, Any], runtime: Runtime, model_out: str, inputs) -> EpochCheckpoint:
    """Epoch checkpoints beside the outputs (not an output: Snakemake leaves it alone
    when it reruns the killed job), valid for exactly this job and these input files."""
    path = os.path.join(os.path.dirname(model_out), "train.resume.pt") if runtime.resume else None
    key = stable_hash({"spec": spec, "inputs": [_file_identity(p) for p in inputs]})
    return EpochCheckpoint(path, key, every_s=runtime.checkpoint_every_s)


def _carried_optimizer_state(spec: dict[str, Any], model_in: str, loaded) -> CarriedOptimizerState | None:
    """train.optimizer_state: carry -- the optimizer goes on from the state of the model
    file this task starts from (one optimizer over the sequence); reset: a new one."""
    if spec["train"].get("optimizer_state", "reset") != "carry":
        return None
    return CarriedOptimizerState(carried_optimizer_state(model_in, loaded), model_in)


def _write_model_and_history(model, loaded, meta, carried, history, spec, model_out, history_out) -> None:
    """The trained model file (a network that grew for this task is stored as what it is
    now: the next step rebuilds it from the file alone) and the task's history rows."""
    save_model(
        model_out,
        model,
        spec_of(model, loaded["model_spec"]),
        meta,
        optimizer_state=None if carried is None else carried.by_name,
    )
    job = {
        "experiment": spec["experiment"],
        "seed": spec["seed"],
        "arm": spec.get("arm", SCRATCH),
        "task": spec["task"],
        **parameter_report(model, spec["task"]),
    }
    io.save_rows(history_out, [{**row, **job} for row in history])


def train_first_task(
    model_in: str,
    data: str,
    spec: dict[str, Any],
    model_out: str,
    history_out: str,
    runtime: Runtime,
    scripts_dir: str | None = None,
) -> None:
    """Task 1 from the random init, plain training; shared by every arm."""
    _train(
        "train_first_task",
        model_in=model_in,
        data=data,
        spec=spec,
        method=FineTune({}),
        importance=None,
        model_out=model_out,
        history_out=history_out,
        runtime=runtime,
        scripts_dir=scripts_dir,
    )


def train_next_task(
    model_in: str,
    data: str,
    importance: str | None,
    spec: dict[str, Any],
    model_out: str,
    history_out: str,
    record_out: str,
    runtime: Runtime,
    scripts_dir: str | None = None,
) -> None:
    """A later task of an arm: its method, the last task's importance, its settings."""
    record = _train(
        "train_next_task",
        model_in=model_in,
        data=data,
        spec=spec,
        method=load_method(spec["method"]),
        importance=importance,
        model_out=model_out,
        history_out=history_out,
        runtime=runtime,
        scripts_dir=scripts_dir,
    )
    io.save(record_out, "record", provenance("train_next_task", spec, runtime), **record)
