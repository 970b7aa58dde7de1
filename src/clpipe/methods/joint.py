"""Joint training, the upper bound ("iid" in the replay source): one job per seed trains
the random init on every task's training data at once, shuffled together, and is
evaluated like every other model. Its accuracy matrix has the init row and the final
row only, so ACC is defined and BWT, FWT and forgetting are not (NaN). The validation
figures in its training log are those of the last task's validation split."""

from __future__ import annotations

import torch

from clpipe.methods.base import ContinualMethod, TaskContext


class JointTraining(ContinualMethod):
    def begin_task(self, model, importance, task_settings, ctx: TaskContext) -> None:
        self.samples = None
        earlier = [] if ctx.all_tasks is None else ctx.all_tasks[: ctx.task.index - 1]
        if ctx.task.index > 1 and len(earlier) != ctx.task.index - 1:
            raise ValueError("joint training needs every task's data")
        if not earlier:
            return
        shapes = {tuple(t.train.x.shape[1:]) for t in earlier} | {tuple(ctx.task.train.x.shape[1:])}
        if len(shapes) > 1:
            raise ValueError(f"joint training cannot mix images of different shapes: {sorted(shapes)}")
        x = torch.cat([t.train.x for t in earlier]).to(ctx.device)
        y = torch.cat([ctx.scenario.targets(t.index, t.train.y) for t in earlier]).to(ctx.device)
        ids = torch.cat([torch.full((len(t.train),), t.index, dtype=torch.int64) for t in earlier])
        self.samples = (x, y, ids.to(ctx.device))

    def extra_training_samples(self):
        return self.samples
