"""Memory aware synapses (Aljundi et al. 2018; docs/methods.md, section 6).

After a task, each parameter's importance is how much the network's output moves when
it moves, without labels (eq. 2 and 4 of the paper):

    Omega_k = 1/N sum_n | d ||F(x_n)||_2^2 / d theta_k |

the gradient of the squared L2 norm of the outputs ``F(x)`` (the outputs the task's
scenario reads: its own in the task-incremental scenario, all of them otherwise) taken
per sample over N of the task's training images, its absolute value averaged. The
importance is summed over the tasks so far and the anchor is the weights after the last
one; training a later task adds (eq. 3)

    lambda * sum_k Omega_k (theta_k - theta*_k) ** 2

whose gradient, ``2 lambda Omega (theta - theta*)``, is added to the weights' gradients
after each backward pass. ``lambda`` is a per-task setting of the arm.
"""

from __future__ import annotations

from clpipe.methods.traits import MethodTraits

# The method as the workflow reads it, without importing what follows (clpipe.methods)
METHOD = MethodTraits(
    name="mas",
    implementation=f"{__name__}:MemoryAwareSynapses",
    description=(
        "memory aware synapses: each weight's importance is the mean absolute gradient of the squared "
        "L2 norm of the outputs (no labels); a penalty lambda * sum Omega (theta - theta*)^2"
    ),
    settings={
        "samples": {
            "type": ["integer", "null"],
            "minimum": 1,
            "default": None,
            "description": "training images the importance averages over (null = the whole task)",
        },
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "default": 64,
            "description": "images per batch of per-sample gradients (memory, not the result)",
        },
    },
    per_task_settings={
        # no default: every MAS arm says its strength
        "lambda": {
            "type": "number",
            "minimum": 0,
            "description": "strength of lambda * sum Omega (theta - theta*)^2",
        },
    },
    importance=True,
    importance_settings=("samples", "batch_size"),
    chained_importance=True,
    palette="YlOrBr",
)

# --- the implementation ------------------------------------------------------------

from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from clpipe.methods.base import ContinualMethod, TaskContext, add_quadratic_gradient, check_matches


def output_sensitivity(
    model: nn.Module, x: torch.Tensor, columns: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Sum over the batch of each sample's |d ||F(x)||^2 / d theta| (``columns``: the
    outputs F reads; None: all)."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def squared_norm(p, xi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        if columns is not None:
            out = out[:, columns]
        return out.pow(2).sum()

    per_sample = vmap(grad(squared_norm), in_dims=(None, 0))(params, x)
    return {k: g.abs().sum(dim=0) for k, g in per_sample.items()}


def importance(
    model: nn.Module, ctx: TaskContext, samples: int | None = None, batch_size: int = 64
) -> tuple[dict[str, torch.Tensor], int]:
    """Eq. 4: the mean over (a seeded subset of) the task's training images of each
    sample's output sensitivity, in eval mode (no dropout)."""
    split = ctx.task.train
    n_all = len(split)
    if samples is None or samples >= n_all:
        index = torch.arange(n_all)
    else:
        index = torch.randperm(n_all, generator=ctx.generator)[:samples].sort().values
    mask = ctx.scenario.logit_mask(ctx.task.index, split.x.device)
    columns = None if mask is None else torch.nonzero(mask).flatten()
    was_training = model.training
    model.eval()
    total: dict[str, torch.Tensor] | None = None
    for start in range(0, len(index), batch_size):
        x = ctx.pipeline(split.x[index[start : start + batch_size].to(split.x.device)])
        part = output_sensitivity(model, x, columns)
        total = part if total is None else {k: total[k] + part[k] for k in total}
    model.train(was_training)
    return {k: (v / len(index)).cpu() for k, v in (total or {}).items()}, len(index)


class MemoryAwareSynapses(ContinualMethod):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.strength = 0.0
        self._terms: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]] = []

    # -- after a task ------------------------------------------------------------------
    def compute_importance(
        self,
        model: nn.Module,
        ctx: TaskContext,
        previous: dict[str, Any] | None,
        progress: dict[str, Any] | None,
    ) -> dict[str, Any]:
        omega, n = importance(model, ctx, self.settings["samples"], int(self.settings["batch_size"]))
        if previous is not None:
            check_matches(model, previous["importance"], "MAS's importance of the earlier tasks")
            omega = {k: previous["importance"][k] + v for k, v in omega.items()}  # summed over tasks
        anchor = {k: p.detach().cpu().clone() for k, p in model.named_parameters() if k in omega}
        return {"importance": omega, "anchor": anchor, "samples": n}

    # -- training a task ---------------------------------------------------------------
    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        if importance is None:
            raise ValueError("mas needs the importance of the previous task(s)")
        check_matches(model, importance["importance"], "MAS's importance")
        self.strength = float(task_settings["lambda"])
        params = dict(model.named_parameters())
        self._terms = [
            (params[k], omega.to(ctx.device), importance["anchor"][k].to(ctx.device))
            for k, omega in importance["importance"].items()
        ]

    def after_backward(self, model: nn.Module) -> None:
        if self.strength != 0.0:  # the penalty's gradient, 2 lambda Omega (theta - theta*)
            add_quadratic_gradient(self._terms, self.strength)
