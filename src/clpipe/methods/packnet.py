"""PackNet (Mallya & Lazebnik 2018; docs/methods.md, section 6).

Each weight of the network's kernels belongs to the task whose training kept it, or is
free (clpipe.networks.masked). Training task t moves only free weights (the weights of
earlier tasks are frozen exactly; biases are trained with the first task only, then
fixed, as in the paper, and each task's rows of the output layer are its own head).
After the task (section 3 of the paper):

1. prune: in each kernel, the ``prune`` share of the free weights with the smallest
   magnitude is set to 0 and stays free for later tasks; the rest now belong to task t;
2. retrain: task t's weights are trained again for ``retrain_epochs`` epochs, the pruned
   ones held at 0, everything else frozen.

At evaluation task j uses the weights of tasks 1..j only (the network, called with the
task, masks the later ones out): a task answers with exactly the weights it had, so it
is never forgotten. Task-incremental only (each task its own outputs). ``prune`` is a
per-task setting; its arms train task 1 themselves (``trains_first_task``). MAG's
freezing of the largest weights is its closest relative: MAG freezes by magnitude too,
but keeps every weight in use for every task and prunes nothing.
"""

from __future__ import annotations

from clpipe.methods.traits import MethodTraits, SettingError


def task_incremental_only(settings, experiment) -> None:
    if experiment["scenario"] != "task":
        raise SettingError(
            "type",
            f"packnet answers each task with its own weights and outputs: the task-incremental "
            f"scenario only, but the experiment's scenario is {experiment['scenario']!r}",
        )


# The method as the workflow reads it, without importing what follows (clpipe.methods)
METHOD = MethodTraits(
    name="packnet",
    implementation=f"{__name__}:PackNet",
    description=(
        "PackNet: after each task, prune the smallest of its free weights, retrain the rest and "
        "freeze them; each task answers with the weights of the tasks up to it"
    ),
    settings={
        "retrain_epochs": {
            "type": "integer",
            "minimum": 0,
            "default": 1,
            "description": "epochs of retraining a task's kept weights after its pruning",
        },
    },
    per_task_settings={
        "prune": {
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": 1,
            "default": 0.5,
            "description": "share of each kernel's free weights pruned (set to 0, left free) after the task",
        },
    },
    trains_first_task=True,
    check_settings=task_incremental_only,
    palette="Purples",
)

# --- the implementation ------------------------------------------------------------

import logging
import math
from typing import Any

import torch
from torch import nn

from clpipe.methods.base import ContinualMethod, TaskContext
from clpipe.networks.masked import TaskMaskedNetwork
from clpipe.optim import StepScaler
from clpipe.scenarios import Scenario

log = logging.getLogger("clpipe")


def prune_free(
    weight: torch.Tensor, owner: torch.Tensor, share: float, task: int
) -> tuple[torch.Tensor, int]:
    """(the new owners, how many were pruned): of the free weights, the ``share`` with the
    smallest magnitude (rounded to the nearest count; ties by position) stay free and
    are to be set to 0, the others now belong to ``task``."""
    free = owner == 0
    n_free = int(free.sum())
    k = int(math.floor(share * n_free + 0.5))
    key = weight.detach().abs().float().masked_fill(~free, float("inf")).flatten()
    pruned = torch.zeros_like(free).flatten()
    pruned[torch.argsort(key, stable=True)[:k]] = True
    pruned = pruned.view_as(free)
    return torch.where(free & ~pruned, torch.full_like(owner, task), owner), k


class PackNet(ContinualMethod):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.share = 0.0
        self.task = 0
        self.ctx: TaskContext | None = None
        self.model: TaskMaskedNetwork | None = None
        self._scaler: StepScaler | None = None
        self._retraining = False  # after the pruning: only this task's kept weights move

    def prepare_model(
        self, model: nn.Module, model_spec: dict[str, Any], tasks: list[list[int]]
    ) -> nn.Module:
        if isinstance(model, TaskMaskedNetwork):
            return model  # a later task: the weights' owners come with the model file
        columns = Scenario("class", tasks)  # each task's outputs on the shared output layer
        spans = [(columns.offsets[i], columns.offsets[i] + len(t)) for i, t in enumerate(tasks)]
        return TaskMaskedNetwork(model, model_spec, spans)

    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        self.share = float(task_settings["prune"])
        self.task = ctx.task.index
        self.ctx, self.model = ctx, model

    def _rows(self, p: torch.Tensor) -> torch.Tensor:
        """A mask of ``p``'s rows (its first dimension) that are this task's outputs."""
        start, stop = self.model.columns[self.task - 1]
        mask = torch.zeros_like(p, dtype=torch.bool)
        mask[start:stop] = True
        return mask

    def _frozen(self) -> dict[nn.Parameter, torch.Tensor]:
        """What may not move: the earlier tasks' weights while training (during the
        retraining also the pruned ones: all but this task's), the output layer's rows of
        the other tasks' outputs, and every other bias after the first task."""
        model = self.model
        frozen = {}
        for name, p in model.base.named_parameters():
            if name in (model.head, model.head_bias):
                frozen[p] = ~self._rows(p)
            elif name in model.managed:
                owner = model.owner(name)
                frozen[p] = owner != self.task if self._retraining else owner != 0
            elif self.task > 1:
                frozen[p] = torch.ones_like(p, dtype=torch.bool)
        return frozen

    def attach(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        frozen = self._frozen()
        self._scaler = StepScaler(optimizer, {p: torch.ones_like(p) for p in frozen}, frozen)

    def end_task(self, model: nn.Module) -> dict[str, Any]:
        if self._scaler is not None:
            self._scaler.remove()
        pruned_all, kept = 0, 0
        with torch.no_grad():
            head = model.owner(model.head)  # the task's output rows are its head, not pruned
            model.set_owner(model.head, torch.where(self._rows(head), self.task, head).to(head.dtype))
            for name in model.managed:
                if name == model.head:
                    continue
                p = model.base.get_parameter(name)
                owner, pruned = prune_free(p, model.owner(name), self.share, self.task)
                model.set_owner(name, owner)
                p.masked_fill_(owner == 0, 0.0)  # the pruned (and any free) weights: 0
                pruned_all += pruned
                kept += int((owner == self.task).sum())
        log.info("packnet task %d: kept %d weights, pruned %d (set to 0, free)", self.task, kept, pruned_all)
        self._retrain(model)
        used = {
            t: sum(int((model.owner(n) == t).sum()) for n in model.managed) for t in range(1, self.task + 1)
        }
        return {"kept": kept, "pruned": pruned_all, "owned": used}

    def _retrain(self, model):
        epochs = int(self.settings["retrain_epochs"])
        if epochs == 0:
            return
        from clpipe.training import train_task

        ctx = self.ctx
        length = ("epochs", "iterations", "early_stopping", "schedule")  # the retraining's own
        train = {k: v for k, v in ctx.train_settings.items() if k not in length} | {"epochs": epochs}
        self._retraining = True
        try:
            train_task(
                model, ctx.task, scenario=ctx.scenario, pipeline=ctx.pipeline, train_cfg=train,
                method=Retraining(self), generator=ctx.generator, eval_batch_size=ctx.eval_batch_size,
                label=f"packnet task {self.task}, retraining",
            )  # fmt: skip
        finally:
            self._retraining = False


class Retraining(ContinualMethod):
    """PackNet's retraining after the pruning: only the task's kept weights move."""

    def __init__(self, packnet: PackNet) -> None:
        super().__init__({})
        self.packnet = packnet

    def attach(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        frozen = self.packnet._frozen()
        self._scaler = StepScaler(optimizer, {p: torch.ones_like(p) for p in frozen}, frozen)

    def end_task(self, model: nn.Module) -> dict[str, Any]:
        self._scaler.remove()
        return {}
