"""Learning without forgetting (Li & Hoiem 2017; docs/methods.md, section 6).

Before training task t, the model as it is (after task t-1) is kept as a frozen teacher.
Every training step adds the distillation of the teacher's outputs on the same batch
into the model's (eq. 2 of the paper, Hinton's knowledge distillation at temperature T)

    alpha * T^2 * mean_n [ -sum_i softmax(z_teacher / T)_i * log softmax(z / T)_i ]

over the outputs of the earlier tasks, chosen per scenario as van de Ven & Tolias 2019
choose them (their ``loss_fn_kd``):

- task-incremental: each earlier task's own outputs (its head), one distillation per
  earlier task, averaged;
- domain-incremental: the shared head, every output;
- class-incremental: the model's outputs for every class seen so far against the
  teacher's for the earlier tasks' classes, its target zero for the current task's.

``T`` (``temperature``, default 2 as in the paper) is a setting of the method, ``alpha``
(the paper's lambda_o, default 1) a per-task setting of the arm: van de Ven & Tolias
weight the current task 1/t and the distillation 1 - 1/t, which for Adam is alpha
= t - 1 for task t (the overall scale aside).
"""

from __future__ import annotations

from clpipe.methods.traits import MethodTraits

# The method as the workflow reads it, without importing what follows (clpipe.methods)
METHOD = MethodTraits(
    name="lwf",
    implementation=f"{__name__}:LearningWithoutForgetting",
    description=(
        "learning without forgetting: the model before the task is a frozen teacher whose outputs "
        "on each batch, at temperature T, the model is distilled towards (no stored data)"
    ),
    settings={
        "temperature": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 2.0,
            "description": "temperature T of the distillation (the paper's 2)",
        },
    },
    per_task_settings={
        "alpha": {
            "type": "number",
            "minimum": 0,
            "default": 1.0,
            "description": "weight of the distillation beside the task's loss (the paper's lambda_o)",
        },
    },
    palette="BuGn",
)

# --- the implementation ------------------------------------------------------------

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clpipe.methods.base import Batch, ContinualMethod, TaskContext


def distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation loss at temperature T, times T^2 (so that its gradients keep
    their size as T changes): the mean over the batch of the cross-entropy of the
    teacher's softened outputs and the student's. A student with more outputs than the
    teacher (class-incremental: the current task's classes) gets target 0 for the rest."""
    target = F.softmax(teacher / temperature, dim=1)
    if student.shape[1] > target.shape[1]:
        target = F.pad(target, (0, student.shape[1] - target.shape[1]))
    log_student = F.log_softmax(student / temperature, dim=1)
    return -(target * log_student).sum(dim=1).mean() * temperature**2


class LearningWithoutForgetting(ContinualMethod):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.temperature = float(self.settings["temperature"])
        self.alpha = 0.0
        self.teacher: nn.Module | None = None
        self.ctx: TaskContext | None = None

    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        self.alpha = float(task_settings["alpha"])
        self.ctx = ctx
        self.teacher = copy.deepcopy(model).eval()  # the model after the previous task
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def batch_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        if self.teacher is None or batch.task <= 1 or self.alpha == 0.0:
            return None
        scenario = self.ctx.scenario
        with torch.no_grad():
            old = self.teacher(batch.inputs).float()
        t = batch.task
        if scenario.kind == "task":  # each earlier head, averaged
            losses = [
                distillation(
                    batch.outputs[:, scenario.columns(p)], old[:, scenario.columns(p)], self.temperature
                )
                for p in range(1, t)
            ]
            loss = torch.stack(losses).mean()
        elif scenario.kind == "class":  # every class so far, the earlier ones' targets
            seen = scenario.columns(t).stop
            loss = distillation(
                batch.outputs[:, :seen], old[:, : scenario.columns(t).start], self.temperature
            )
        else:  # domain: the shared head
            loss = distillation(batch.outputs, old, self.temperature)
        return self.alpha * loss
