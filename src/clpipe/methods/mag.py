"""Magnitude-based plasticity with freezing (docs/methods.md, section 1; the headline method).

After a task, every managed parameter tensor gets freezing values (FV)
``1 - (|w| / max|w|) ** gamma``: large weights learn slowly on the next task. Each
element's optimizer *step* is multiplied by its FV. At a new task, ``freeze`` percent of
each tensor's still-trainable elements -- those with the lowest FV, i.e. the largest
weights -- get FV = 0 and never move again. The frozen set only grows: the progress
step keeps the union over tasks, and an element frozen once keeps FV = 0 whatever its
magnitude becomes.

Which tensors are managed: kernels (conv and linear weights), and biases too when
``scale_biases`` is set (the source scaled kernels only).
"""

from __future__ import annotations

from typing import Any

from clpipe.methods.traits import MethodTraits, SettingError, SettingFigure

PERCENT = {"type": "number", "minimum": 0, "exclusiveMaximum": 100}


def frozen_share(history: list[dict[str, Any]]) -> float:
    """Percent of each tensor frozen in all after the tasks of ``history`` (their
    per-task settings): freezing p% then q% of the rest freezes 1 - (1-p)(1-q)."""
    kept = 1.0
    for h in history:
        kept *= 1.0 - float(h["freeze"]) / 100.0
    return 100.0 * (1.0 - kept)


def freeze_from_totals(spec: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """``freeze_total``: the share of each tensor frozen in all after each task.

    It must not decrease, nor fall below what the arm's history already froze; it is
    turned into ``freeze``, the share of the still-trainable weights frozen at each task:
    q = (T_t - T_{t-1}) / (100 - T_{t-1}).
    """
    if "freeze_total" not in spec:
        return spec
    if "freeze" in spec:
        raise SettingError("freeze_total", "give either freeze or freeze_total, not both")
    totals = spec["freeze_total"] if isinstance(spec["freeze_total"], list) else [spec["freeze_total"]]
    before = frozen_share(history)  # resolved per-task settings: freeze always there
    freeze = []
    for i, total in enumerate(totals):
        if total < before - 1e-9:
            where = "the arm it starts from" if i == 0 else f"task {i}'s {before:g}"
            raise SettingError(
                f"freeze_total[{i}]",
                f"{total:g}% is less than what is already frozen ({before:g}% after {where}); "
                "freeze_total is cumulative and must not decrease",
            )
        freeze.append(100.0 * (total - before) / (100.0 - before))
        before = float(total)
    out = {k: v for k, v in spec.items() if k != "freeze_total"}
    out["freeze"] = freeze
    return out


FREEZE_FIGURE = SettingFigure(
    name="freeze",
    axis="weights frozen in all (% of each kernel)",
    value=frozen_share,
    title="Does freezing help?",
    caption=(
        "The headline question: does freezing the largest weights help, and how much? ACC and "
        "forgetting right after each task, against the share of each kernel frozen in all by then "
        "(freezing p% then q% of the rest freezes 1-(1-p)(1-q)), one colour per task, error bars "
        "± one sd over seeds. Dashed lines and bands: fine-tuning (nothing frozen, no per-weight "
        "learning rate) after the same task."
    ),
    reference_note="(no freezing)",
    axis_range=(-3, 100),
)

# The method as the workflow reads it, without importing what follows (clpipe.methods)
METHOD = MethodTraits(
    name="mag",
    implementation=f"{__name__}:MagnitudePlasticity",
    description=(
        "magnitude-based per-weight learning rates (freezing values) with freezing of the largest weights"
    ),
    settings={
        "gamma": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 1.0,
            "description": "exponent of the freezing value 1 - (|w| / max|w|) ** gamma",
        },
        "scale_biases": {
            "type": "boolean",
            "default": False,
            "description": "scale (and freeze) biases too; the original scaled kernels only",
        },
    },
    per_task_settings={
        "freeze": {
            **PERCENT,
            "default": 0.0,
            "description": "percent of the still-trainable weights of each tensor frozen at the task",
        },
    },
    # an arm's alternative to freeze, rewritten into it (arm_settings) before the arm is resolved
    rewritten_settings={
        "freeze_total": {
            **PERCENT,
            "description": (
                "instead of freeze: percent of each tensor frozen in all after the task "
                "(cumulative over the arm's history, so it must not decrease; "
                "freeze_total [20, 60] is freeze [20, 50])"
            ),
        },
    },
    importance=True,
    importance_settings=("gamma", "scale_biases"),
    progress=True,
    arm_settings=freeze_from_totals,
    palette="Blues",
    figures=(FREEZE_FIGURE,),
)

# --- the implementation ------------------------------------------------------------

import math

import torch
from torch import nn

from clpipe.methods.base import ContinualMethod, TaskContext, check_matches
from clpipe.optim import StepScaler


def managed_parameters(model: nn.Module, scale_biases: bool) -> dict[str, nn.Parameter]:
    """The tensors MAG scales: kernels (ndim >= 2), plus 1-d tensors if scale_biases."""
    return {
        name: p for name, p in model.named_parameters() if p.requires_grad and (p.ndim >= 2 or scale_biases)
    }


def freezing_values(weight: torch.Tensor, gamma: float, frozen: torch.Tensor | None = None) -> torch.Tensor:
    """FV = 1 - (|w| / max|w|) ** gamma, and 0 wherever ``frozen``."""
    magnitude = weight.detach().abs().float()
    peak = magnitude.max()
    if peak > 0:
        fv = 1.0 - (magnitude / peak) ** gamma
    else:  # an all-zero tensor: nothing is more important than anything else
        fv = torch.ones_like(magnitude)
    if frozen is not None:
        fv = fv.masked_fill(frozen, 0.0)
    return fv


def select_to_freeze(fv: torch.Tensor, frozen: torch.Tensor, percent: float) -> torch.Tensor:
    """Newly frozen elements: ``percent`` % of the still-trainable ones, lowest FV first.

    The count is rounded to the nearest element, so after freezing p then q percent
    the frozen fraction is 1 - (1-p)(1-q) within one element. Ties are broken by
    position (a stable sort), so the choice is deterministic.
    """
    trainable = int((~frozen).sum())
    k = int(math.floor(percent / 100.0 * trainable + 0.5))
    new = torch.zeros_like(frozen)
    if k == 0:
        return new
    key = fv.detach().float().masked_fill(frozen, float("inf")).flatten()
    order = torch.argsort(key, stable=True)[:k]
    new.view(-1)[order] = True
    return new


class MagnitudePlasticity(ContinualMethod):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.gamma = float(self.settings["gamma"])
        self.scale_biases = bool(self.settings["scale_biases"])
        self._scales: dict[str, torch.Tensor] = {}
        self._frozen: dict[str, torch.Tensor] = {}
        self._new: dict[str, torch.Tensor] = {}
        self._percent = 0.0
        self._scaler: StepScaler | None = None

    # -- after a task ------------------------------------------------------------------
    def compute_importance(
        self,
        model: nn.Module,
        ctx: TaskContext,
        previous: dict[str, Any] | None,
        progress: dict[str, Any] | None,
    ) -> dict[str, Any]:
        params = managed_parameters(model, self.scale_biases)
        frozen = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in params.items()}
        if progress is not None:
            check_matches(model, progress["frozen"], "the freezing progress")
            missing = sorted(set(params) - set(progress["frozen"]))
            if missing:
                raise ValueError(f"the freezing progress has no mask for {', '.join(missing)}")
            frozen = {n: progress["frozen"][n].bool() for n in params}
        fv = {n: freezing_values(p.cpu(), self.gamma, frozen[n]) for n, p in params.items()}
        return {"fv": fv, "frozen": frozen}

    def update_progress(self, previous: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
        new = record["new_frozen"]
        if previous is None:
            return {"frozen": {n: m.clone() for n, m in new.items()}}
        old = previous["frozen"]
        if set(old) != set(new):
            raise ValueError(
                "the task's record and the previous progress manage different tensors: "
                f"{sorted(set(old) ^ set(new))}"
            )
        return {"frozen": {n: old[n] | new[n] for n in new}}

    # -- training a task ---------------------------------------------------------------
    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        if importance is None:
            raise ValueError("mag needs the freezing values of the previous task")
        params = managed_parameters(model, self.scale_biases)
        check_matches(model, importance["fv"], "the freezing values")
        missing = sorted(set(params) - set(importance["fv"]))
        if missing:
            raise ValueError(
                f"the freezing values have no entry for {', '.join(missing)} "
                "(computed with another 'scale_biases'?)"
            )
        self._percent = float(task_settings["freeze"])
        self._scales, self._frozen, self._new = {}, {}, {}
        for name in params:
            fv = importance["fv"][name].float()
            frozen = importance["frozen"][name].bool()
            new = select_to_freeze(fv, frozen, self._percent)
            self._new[name] = new
            self._frozen[name] = frozen | new
            self._scales[name] = fv.masked_fill(self._frozen[name], 0.0)

    def attach(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        params = managed_parameters(model, self.scale_biases)
        self._scaler = StepScaler(
            optimizer,
            {params[n]: s for n, s in self._scales.items()},
            {params[n]: f for n, f in self._frozen.items()},
        )

    def end_task(self, model: nn.Module) -> dict[str, Any]:
        if self._scaler is not None:
            self._scaler.remove()
        return {"new_frozen": self._new, "percent": self._percent}
