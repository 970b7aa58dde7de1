"""Synaptic intelligence (Zenke, Poole & Ganguli 2017; docs/methods.md, section 6).

While a task mu trains, every parameter k accumulates its contribution to the drop of
the task's loss along the path the optimizer took (eq. 3 of the paper, the path
integral summed over the updates):

    omega_k += -g_k(t) * delta_theta_k(t)

with ``g`` the gradient of the task's loss alone (before the method's own penalty is
added) and ``delta_theta`` the optimizer's update. After the task (eq. 5):

    Omega_k <- Omega_k + omega_k / (Delta_k ** 2 + xi),   Delta_k = theta_k(end) - theta_k(start)

summed over the tasks so far, and training a later task adds the surrogate loss (eq. 4)

    c * sum_k Omega_k * (theta_k - theta~_k) ** 2

towards the weights after the previous task, ``theta~``. ``c`` is a per-task setting of
the arm, ``xi`` (the paper's damping) a setting of the method. The path integral runs
during the first task too, so SI's arms train task 1 themselves (``trains_first_task``):
without it SI would be fine-tuning on a two-task experiment.

The pipeline's files: the training job's record holds the task's ``omega`` and its
starting weights; the progress step hands them on; the importance step adds them to the
previous task's ``Omega`` and keeps the weights after the task as the anchor.
"""

from __future__ import annotations

from clpipe.methods.traits import MethodTraits

# The method as the workflow reads it, without importing what follows (clpipe.methods)
METHOD = MethodTraits(
    name="si",
    implementation=f"{__name__}:SynapticIntelligence",
    description=(
        "synaptic intelligence: each weight's importance is its share of the loss's drop along the "
        "training path; a penalty c * sum Omega (theta - theta~)^2 towards the last task's weights"
    ),
    settings={
        "xi": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 0.1,
            "description": "damping of Omega = omega / (Delta^2 + xi) (the paper's xi)",
        },
    },
    per_task_settings={
        # no default: every SI arm says its strength
        "c": {
            "type": "number",
            "minimum": 0,
            "description": "strength of the surrogate loss c * sum Omega (theta - theta~)^2",
        },
    },
    importance=True,
    importance_settings=("xi",),
    progress=True,
    chained_importance=True,
    trains_first_task=True,
    palette="RdPu",
)

# --- the implementation ------------------------------------------------------------

from typing import Any

import torch
from torch import nn

from clpipe.methods.base import ContinualMethod, TaskContext, add_quadratic_gradient, check_matches


def trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def consolidated(
    previous: dict[str, torch.Tensor] | None,
    omega: dict[str, torch.Tensor],
    start: dict[str, torch.Tensor],
    end: dict[str, torch.Tensor],
    xi: float,
) -> dict[str, torch.Tensor]:
    """Eq. 5: Omega after a task, from the task's path integral ``omega`` and the weights
    at its ``start`` and ``end``, added to the Omega before it."""
    out = {}
    for k, w in omega.items():
        delta = end[k] - start[k]
        new = w / (delta.pow(2) + xi)
        out[k] = new if previous is None else previous[k] + new
    return out


class SynapticIntelligence(ContinualMethod):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.xi = float(self.settings["xi"])
        self.c = 0.0
        self.params: dict[str, nn.Parameter] = {}
        self.omega: dict[str, torch.Tensor] = {}  # this task's path integral so far
        self.start: dict[str, torch.Tensor] = {}  # the weights the task started from
        self._importance: dict[str, torch.Tensor] = {}  # Omega of the earlier tasks
        self._anchor: dict[str, torch.Tensor] = {}  # theta~: the weights after the last task
        self._terms: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]] = []  # (theta, Omega, theta~)
        self._grad: dict[str, torch.Tensor] = {}  # this step's task-loss gradient
        self._before: dict[str, torch.Tensor] = {}  # this step's weights before the update

    # -- after a task ------------------------------------------------------------------
    def update_progress(self, previous: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
        return record  # the task's omega and starting weights, for its importance step

    def compute_importance(
        self,
        model: nn.Module,
        ctx: TaskContext,
        previous: dict[str, Any] | None,
        progress: dict[str, Any] | None,
    ) -> dict[str, Any]:
        end = {k: p.detach().cpu().clone() for k, p in trainable(model).items()}
        if progress is None:
            raise ValueError("si needs the record of the task it trained (its path integral)")
        check_matches(model, progress["omega"], "the path integral of the task")
        before = previous["importance"] if previous is not None else None
        omega = consolidated(before, progress["omega"], progress["start"], end, self.xi)
        return {"importance": omega, "anchor": end}

    # -- training a task ---------------------------------------------------------------
    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        self.c = float(task_settings["c"])
        self.params = trainable(model)
        if importance is not None:
            check_matches(model, importance["importance"], "SI's importance (Omega)")
            self._importance = {k: v.to(ctx.device) for k, v in importance["importance"].items()}
            self._anchor = {k: v.to(ctx.device) for k, v in importance["anchor"].items()}
        self._terms = (
            [(p, self._importance[k], self._anchor[k]) for k, p in self.params.items()]
            if self._importance
            else []
        )
        self.start = {k: p.detach().clone() for k, p in self.params.items()}
        self.omega = {k: torch.zeros_like(p) for k, p in self.params.items()}

    def after_backward(self, model: nn.Module) -> None:
        for k, p in self.params.items():
            # the task's loss alone (a weight the loss does not reach has none: g = 0)
            self._grad[k] = None if p.grad is None else p.grad.detach().clone()
            self._before[k] = p.detach().clone()
        if self._importance and self.c != 0.0:  # the surrogate loss's gradient, 2 c Omega (theta - theta~)
            add_quadratic_gradient(self._terms, self.c)

    def after_step(self, model: nn.Module) -> None:
        with torch.no_grad():
            for k, p in self.params.items():
                if self._grad[k] is not None:
                    self.omega[k] -= self._grad[k] * (p.detach() - self._before[k])

    def state_dict(self) -> dict[str, Any]:
        return {
            "omega": {k: v.cpu() for k, v in self.omega.items()},
            "start": {k: v.cpu() for k, v in self.start.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = next(iter(self.params.values())).device
        self.omega = {k: v.to(device) for k, v in state["omega"].items()}
        self.start = {k: v.to(device) for k, v in state["start"].items()}

    def end_task(self, model: nn.Module) -> dict[str, Any]:
        return {
            "omega": {k: v.cpu() for k, v in self.omega.items()},
            "start": {k: v.cpu() for k, v in self.start.items()},
        }
