"""What a step that feeds a model a task's data builds first: scenario, input pipeline,
the methods' task context."""

from __future__ import annotations

from typing import Any

import torch

from clpipe.data.pipeline import InputPipeline
from clpipe.methods.base import TaskContext
from clpipe.runtime import Runtime
from clpipe.scenarios import Scenario


def task_context(
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
        eval_batch_size=int(spec["eval"]["batch_size"]),
        generator=generator,
        train_batch_size=int(spec["train"]["batch_size"]) if "train" in spec else 0,
        all_tasks=tasks,
        train_settings=spec.get("train"),
    )
    return scenario, pipeline, ctx
