"""Growing a task-masked network by a column per task (METHODS.md section 4, "SynapticNet").

The model is a :class:`clpipe.growing.GrowingTaskNet` (config ``model: {name: growing}``)
in the task scenario. Task 1 is the network as built (trained by the shared first-task
step). Before each later task the network grows a column for it: ``grow_conv`` channels
in every conv layer (one count, or one per layer), ``grow_hidden`` hidden units and a
head with the task's classes (per-task settings of the arm; the source: 64 / 512, and
128 / 1024 for CIFAR-100). Training then moves only the new column: every other entry
is put back bit for bit after each optimizer step (:meth:`GrowingTaskNet.protect`), so
in ``isolated`` mode every earlier task's test accuracy stays exactly what it was, and
in ``read`` mode the new column also reads the earlier columns' frozen features.

``mode`` (a method setting): ``isolated`` or ``read``; null keeps the model's
``model.mode``. The first task computes the same function in both modes, so arms of the
two modes share task 1; a network that already has two tasks cannot change its mode.

The record of each task (record.pt) holds the growth and the parameter counts; the same
counts are columns of history.csv (``clpipe.models.parameter_report``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from clpipe.growing import GrowingTaskNet
from clpipe.methods.base import ContinualMethod, TaskContext
from clpipe.models import parameter_report
from clpipe.optim import StepScaler


class GrowingNetwork(ContinualMethod):
    def __init__(self, settings: dict[str, Any]):
        super().__init__(settings)
        self.mode = self.settings.get("mode")
        self._scaler: StepScaler | None = None
        self._task = 0

    def begin_task(self, model: nn.Module, importance, task_settings: dict[str, Any], ctx: TaskContext):
        if not isinstance(model, GrowingTaskNet):
            raise ValueError(f"the growing method needs model 'growing', not a {type(model).__name__}")
        task = ctx.task.index
        if model.n_tasks != task - 1:
            raise ValueError(
                f"task {task}: the network has heads for tasks 1..{model.n_tasks}; "
                f"it grows for task {task} only after task {task - 1}"
            )
        mode = self.mode or model.mode
        if mode != model.mode:
            if model.n_tasks > 1:
                raise ValueError(
                    f"the network already runs {model.n_tasks} tasks in mode {model.mode!r}; "
                    f"switching to {mode!r} would change what the earlier tasks compute"
                )
            model.mode = mode  # one task computes the same in either mode
        conv = task_settings.get("grow_conv", 64)
        model.grow(
            task,
            conv=list(conv) if isinstance(conv, list) else int(conv),
            hidden=int(task_settings.get("grow_hidden", 512)),
            outputs=len(ctx.task.classes),
            init=model.init,
        )
        self._task = task

    def attach(self, optimizer, model: nn.Module) -> None:
        # the optimizer is built after growing: it holds the grown parameters
        self._scaler = model.protect(optimizer, self._task)

    def end_task(self, model: nn.Module) -> dict[str, Any]:
        if self._scaler is not None:
            self._scaler.remove()
            self._scaler = None
        return {
            "task": self._task,
            "mode": model.mode,
            "growth": dict(model.growth[-1]),
            **parameter_report(model, self._task),
        }
