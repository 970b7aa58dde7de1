"""The interface every continual-learning method implements.

A method answers two questions (as in Mammoth/FACIL):

- *what to carry to the next task* -- :meth:`compute_importance` (the workflow's
  "compute importance" step, written as importance.pt: MAG's freezing values, EWC's
  Fisher and anchors, replay's buffer) and :meth:`update_progress` (the "update
  progress" step, progress.pt: MAG's cumulative frozen set);
- *how to train the next task* -- :meth:`begin_task` reads the previous task's importance,
  :meth:`attach` hooks into the optimizer, :meth:`penalty` adds to the loss,
  :meth:`after_backward` adjusts the gradients, and
  :meth:`end_task` returns the task's record for the progress step.

The training loop (clpipe.training) knows nothing about any method beyond these hooks.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from clpipe.data import InputPipeline, Split, Task
from clpipe.errors import InputError
from clpipe.scenarios import Scenario


@dataclass
class TaskContext:
    """A task's data and how to feed it to the model, for the methods' hooks."""

    task: Task
    scenario: Scenario
    pipeline: InputPipeline
    device: torch.device
    eval_batch_size: int  # for evaluation and scoring passes (eval.batch_size)
    generator: torch.Generator
    train_batch_size: int = 0
    # every task of the experiment, on the CPU (replay fetches earlier tasks' images)
    all_tasks: list[Task] | None = None
    # the job's train settings (optimizer, batch size, epochs): for a method that trains
    # on its own before the task's training (the growing network's growth probe)
    train: dict[str, Any] | None = None


class ContinualMethod:
    def __init__(self, settings: dict[str, Any]):
        # the method's own declaration (its file's METHOD, clpipe.methods.traits) fills in
        # what the settings leave out: its defaults are written once, there
        declared = getattr(sys.modules.get(type(self).__module__), "METHOD", None)
        self.settings = {**(declared.defaults if declared else {}), **settings}
        self._per_task_defaults = dict(declared.per_task) if declared else {}

    def per_task(self, task_settings: dict[str, Any]) -> dict[str, Any]:
        """A task's settings with the declared per-task defaults filled in (what the
        training step hands to begin_task)."""
        return {**self._per_task_defaults, **task_settings}

    # -- after a task ------------------------------------------------------------------
    def compute_importance(
        self,
        model: nn.Module,
        ctx: TaskContext,
        previous: dict[str, Any] | None,
        progress: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Tensors the next task's training needs (saved as importance.pt)."""
        raise NotImplementedError(f"{type(self).__name__} has no importance step")

    def update_progress(self, previous: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
        """Merge a task's record into the running state (saved as progress.pt)."""
        raise NotImplementedError(f"{type(self).__name__} has no progress step")

    # -- training a task ---------------------------------------------------------------
    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        """Prepare to train a task from the previous task's importance (None: the method
        has no importance step)."""

    def attach(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        """Hook into the task's optimizer (called once, before the first step)."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to every batch's loss, differentiated by autograd (None: nothing)."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Change the gradients before the optimizer step (e.g. add a penalty's gradient
        directly, cheaper than differentiating the penalty)."""

    def extra_training_samples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Samples trained on together with the task's own, shuffled with them:
        (uint8 images, targets, 1-based task of each), all on the device; None: none."""
        return None

    def validation_splits(self, ctx: TaskContext) -> list[tuple[int, Split]]:
        """(task, split) pairs validated after every epoch (early stopping watches them):
        the task's own validation split."""
        return [(ctx.task.index, ctx.task.val)]

    def end_task(self, model: nn.Module) -> dict[str, Any]:
        """What this task did, for the progress step (saved as record.pt)."""
        return {}


def training_samples(
    ctx: TaskContext, rows: dict[int, torch.Tensor | None], what: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples of other tasks to train on beside ``ctx.task`` (replay, joint training):
    (uint8 images, targets, 1-based task of each), on the device. ``rows`` maps a task
    to the rows of its training split to take (None: all of them)."""
    if ctx.all_tasks is None:
        raise ValueError(f"{what} needs every task's data")
    xs, ys, ids = [], [], []
    for t, positions in rows.items():
        split = ctx.all_tasks[t - 1].train
        x, y = (split.x, split.y) if positions is None else (split.x[positions], split.y[positions])
        xs.append(x)
        ys.append(ctx.scenario.targets(t, y))
        ids.append(torch.full((len(y),), t, dtype=torch.int64))
    shapes = {tuple(x.shape[1:]) for x in xs} | {tuple(ctx.task.train.x.shape[1:])}
    if len(shapes) > 1:
        raise ValueError(f"{what} cannot mix images of different shapes: {sorted(shapes)}")
    return torch.cat(xs).to(ctx.device), torch.cat(ys).to(ctx.device), torch.cat(ids).to(ctx.device)


class TensorMismatchError(InputError, ValueError):
    """Tensors from a file do not fit the model (another architecture or arm)."""


def check_matches(model: nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Refuse ``tensors`` (name -> tensor) unless each names a parameter of that shape."""
    params = dict(model.named_parameters())
    problems = []
    for name, t in tensors.items():
        if name not in params:
            problems.append(f"{name}: not a parameter of the model")
        elif tuple(t.shape) != tuple(params[name].shape):
            problems.append(f"{name}: shape {tuple(t.shape)} but the model has {tuple(params[name].shape)}")
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems)} in all)" if len(problems) > 8 else "")
        raise TensorMismatchError(f"{what} does not match the model: {shown}")
