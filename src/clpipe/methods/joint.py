"""Joint training, the upper bound ("iid" in the replay source): one job per seed trains
the random init on every task's training data at once, shuffled together, and is
evaluated like every other model. Its accuracy matrix has the init row and the final
row only, so ACC is defined and BWT, FWT and forgetting are not (NaN). It validates on
every task's validation split together (its training log's val_accuracy, and what early
stopping watches)."""

from __future__ import annotations

from clpipe.methods.traits import MethodTraits

# The method as the workflow reads it, without importing what follows (clpipe.methods)
METHOD = MethodTraits(
    name="joint",
    implementation=f"{__name__}:JointTraining",
    description="the upper bound: one model trained on every task's data at once",
    joint=True,
    mixes_tasks=True,
    role="upper_bound",
    palette="Purples",
)

# --- the implementation ------------------------------------------------------------

from typing import Any

import torch
from torch import nn

from clpipe.data.pipeline import Split
from clpipe.methods.base import ContinualMethod, TaskContext, training_samples


class JointTraining(ContinualMethod):
    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        earlier = dict.fromkeys(range(1, ctx.task.index))  # every row of tasks 1..t-1
        self.samples = training_samples(ctx, earlier, "joint training") if earlier else None

    def extra_training_samples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        return self.samples

    def validation_splits(self, ctx: TaskContext) -> list[tuple[int, Split]]:
        tasks = ctx.all_tasks[: ctx.task.index] if ctx.all_tasks is not None else [ctx.task]
        return [(t.index, ctx.task.val if t.index == ctx.task.index else t.val.to(ctx.device)) for t in tasks]
