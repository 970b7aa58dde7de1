"""Step evaluate: test accuracy and loss of one model on every task (one row of R)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from clpipe import io
from clpipe.checkpoints import load_model
from clpipe.data import InputPipeline, load_tasks
from clpipe.evaluation import evaluate_split
from clpipe.models import evaluation_parameters
from clpipe.provenance import device_name
from clpipe.runtime import Runtime
from clpipe.scenarios import Scenario

log = logging.getLogger("clpipe")


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
                "clpipe_version": meta.get("versions", {}).get("clpipe", "unknown"),
            }
        )
        log.info("task %d: accuracy %.4f loss %.4f (n=%d)", task.index, acc, loss, len(task.test))
    io.save_csv(output, pd.DataFrame(rows))
