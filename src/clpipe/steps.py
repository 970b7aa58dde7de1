"""The workflow's steps as functions: read files, call the library, write files.

Each rule's script in ``src/`` unpacks Snakemake's inputs, outputs and params and calls
one function here; the same functions can be called from Python or a notebook. ``spec``
is the job's definition (its Snakemake params, see clpipe.plan): it alone decides the
result, and its hash is stored with every output.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import pandas as pd
import torch

from clpipe import io
from clpipe.catalog import checksums, dataset_info
from clpipe.config import stable_hash
from clpipe.data import InputPipeline, build_tasks, download_dataset, load_tasks, verify_dataset
from clpipe.evaluation import evaluate_split
from clpipe.methods import load_method
from clpipe.methods.base import ContinualMethod, TaskContext
from clpipe.methods.finetune import FineTune
from clpipe.models import build_model, count_parameters, evaluation_parameters, parameter_report, spec_of
from clpipe.provenance import device_name, provenance
from clpipe.runtime import Runtime, derive_seed, seed_everything
from clpipe.scenarios import Scenario
from clpipe.training import EpochCheckpoint, train_task

log = logging.getLogger("clpipe")


# --- files ---------------------------------------------------------------------------


def save_model(path: str, model: torch.nn.Module, model_spec: dict[str, Any], meta: dict[str, Any]) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    io.save(path, "model", meta, model_spec=model_spec, state_dict=state)


def load_model(path: str, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model from its checkpoint alone (the file stores its spec)."""
    obj = io.load(path, "model")
    model = build_model(obj["model_spec"], device="meta")
    try:
        model.load_state_dict(obj["state_dict"], strict=True, assign=True)
    except RuntimeError as err:
        raise io.FileFormatError(
            f"{path}: weights do not fit the model its spec describes ({io.describe(obj)}): {err}"
        ) from err
    return model.to(device), obj


# --- data ----------------------------------------------------------------------------


def download_data(data_dir: str, dataset: str, manifest: str, verify_release_md5: bool = True) -> None:
    """Make sure a dataset is in data_dir (download it if missing); write its checksums:
    the md5 of each file's content (the release's, unless ``verify_release_md5`` is off
    and a file differs: then its own, with a warning in the log)."""
    info = dataset_info(dataset)
    missing = [f for f in info.files if not os.path.isfile(os.path.join(data_dir, f))]
    if missing:
        log.info("%s: %d file(s) missing in %s; downloading", dataset, len(missing), data_dir)
        sums = download_dataset(data_dir, dataset, verify_release_md5)
    else:
        sums = verify_dataset(data_dir, dataset, verify_release_md5)
    if info.kind == "image_folder":  # no release sums: each bucket's fingerprint
        lines = [f"{fp}  {rel}\n" for rel, fp in checksums(data_dir, dataset).items()]
        log.info("%s: %d bucket(s) in %s complete", dataset, len(lines), data_dir)
    else:
        lines = [f"{md5}  {rel}\n" for rel, md5 in sums.items()]
        differ = sum(md5 != info.files[rel] for rel, md5 in sums.items())
        log.info(
            "%s: %d file(s) in %s, %d of them match the release's md5 sums",
            dataset,
            len(sums),
            data_dir,
            len(sums) - differ,
        )
    io.atomic_write(manifest, lambda f: f.writelines(lines), mode="w")


def prepare_data(data_dir: str, spec: dict[str, Any], output: str) -> None:
    t0 = time.perf_counter()
    tasks = build_tasks(data_dir, spec)
    io.save(output, "tasks", provenance("prepare_data", spec), tasks=tasks, spec=spec)
    log.info("wrote %s in %.1f s", output, time.perf_counter() - t0)


# --- models --------------------------------------------------------------------------


def init_model(spec: dict[str, Any], output: str, runtime: Runtime) -> None:
    """The randomly initialised model every arm starts from (row 0 of R)."""
    seed_everything(derive_seed(spec["seed"], "init"))
    model = build_model(spec["model"])  # on the CPU: the same init on every device
    log.info("%s: %d parameters", spec["model"]["name"], count_parameters(model))
    save_model(output, model, spec["model"], provenance("init_model", spec, runtime))


def _context(
    spec: dict[str, Any], tasks, runtime: Runtime, generator, model: torch.nn.Module | None = None
) -> tuple[Scenario, InputPipeline, TaskContext]:
    """The task's data and scenario as ``model`` sees them (a head per task or not)."""
    scenario = Scenario.for_model(spec["scenario"], spec["tasks"], model)
    pipeline = InputPipeline(spec["input"], runtime.device)
    task = tasks[spec["task"] - 1].to(runtime.device)
    ctx = TaskContext(
        task=task,
        scenario=scenario,
        pipeline=pipeline,
        device=runtime.device,
        batch_size=int(spec["eval"]["batch_size"]),
        generator=generator,
        train_batch_size=int(spec["train"]["batch_size"]) if "train" in spec else 0,
        all_tasks=tasks,
        train=spec.get("train"),
    )
    return scenario, pipeline, ctx


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
) -> dict[str, Any]:
    """Train one task (the two training rules); returns the method's record of it."""
    consolidated = io.load(importance, "importance") if importance else None
    # Seeded by run seed and task only (not the arm): two arms that do the same thing
    # on a task give bit-identical results.
    generator = seed_everything(derive_seed(spec["seed"], "train", spec["task"]))
    model, loaded = load_model(model_in, runtime.device)
    tasks = load_tasks(data)
    scenario, pipeline, ctx = _context(spec, tasks, runtime, generator, model)
    method.begin_task(model, consolidated, spec.get("task_settings", {}), ctx)
    label = f"{spec['experiment']} seed {spec['seed']} {spec.get('arm', 'scratch')} task {spec['task']}"
    # Epoch checkpoints beside the outputs (not an output: Snakemake leaves it alone when
    # it reruns the killed job), valid for exactly this job and these input files.
    epochs = EpochCheckpoint(
        os.path.join(os.path.dirname(model_out), "train.resume.pt") if runtime.resume else None,
        stable_hash({"spec": spec, "inputs": [_file_identity(p) for p in (model_in, data, importance)]}),
    )
    t0 = time.perf_counter()
    history = train_task(
        model,
        ctx.task,
        scenario=scenario,
        pipeline=pipeline,
        train_cfg=spec["train"],
        method=method,
        generator=generator,
        eval_batch_size=ctx.batch_size,
        label=label,
        checkpoint=epochs,
        validation=method.validation_splits(ctx),
    )
    record = method.end_task(model)
    meta = provenance(step, spec, runtime)
    meta["train_seconds"] = time.perf_counter() - t0
    # a network that grew for this task is stored as what it is now: the next step
    # rebuilds it from the file alone
    save_model(model_out, model, spec_of(model, loaded["model_spec"]), meta)
    frame = pd.DataFrame(history).assign(
        experiment=spec["experiment"],
        seed=spec["seed"],
        arm=spec.get("arm", "scratch"),
        task=spec["task"],
        **parameter_report(model, spec["task"]),
    )
    io.save_csv(history_out, frame)
    epochs.discard()
    return record


def train_first_task(
    model_in: str, data: str, spec: dict[str, Any], model_out: str, history_out: str, runtime: Runtime
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
) -> None:
    """A later task of an arm: its method, what the last task consolidated, its settings."""
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
    )
    io.save(record_out, "record", provenance("train_next_task", spec, runtime), **record)


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
    _, _, ctx = _context(spec, tasks, runtime, generator, model)
    prog = io.load(progress, "progress") if progress else None
    prev = io.load(previous, "importance") if previous else None
    t0 = time.perf_counter()
    result = method.compute_importance(model, ctx, prev, prog)
    log.info(
        "%s importance of task %d in %.1f s", spec["method"]["type"], spec["task"], time.perf_counter() - t0
    )
    io.save(output, "importance", provenance("compute_importance", spec, runtime), **result)


def update_progress(record: str, previous: str | None, spec: dict[str, Any], output: str) -> None:
    method = load_method(spec["method"])
    rec = io.load(record, "record")
    prev = io.load(previous, "progress") if previous else None
    result = method.update_progress(prev, rec)
    io.save(output, "progress", provenance("update_progress", spec), **result)


# --- evaluation and aggregation --------------------------------------------------------


def evaluate(model_in: str, data: str, spec: dict[str, Any], output: str, runtime: Runtime) -> None:
    """Test accuracy and loss on every task of the experiment (one row of R)."""
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
        test = task.test.to(runtime.device)
        acc, loss = evaluate_split(model, test, task.index, scenario, pipeline, batch_size)
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
            }
        )
        log.info("task %d: accuracy %.4f loss %.4f (n=%d)", task.index, acc, loss, len(task.test))
    io.save_csv(output, pd.DataFrame(rows))
