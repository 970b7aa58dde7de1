"""Growing a task-masked network by a column per task (docs/methods.md, section 4, "SynapticNet").

The model is a :class:`clpipe.networks.growing.GrowingTaskNet` (config ``model: {name: growing}``)
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

``auto_grow`` (a method setting, ``read`` mode only; null: always grow): the source's
future-work item, growing only when the existing capacity is not enough. The task first
gets a head only (no conv or hidden units), which reads the earlier tasks' frozen
features; that head is trained briefly (``probe_epochs`` epochs through
:func:`clpipe.training.train_task` on the task's training split, the task's optimizer
and batch size, constant learning rate, no early stopping, no epoch checkpoint, every
other entry protected as in the real training), its accuracy on the task's validation
split goes to :func:`decide_growth` (below), and only below ``threshold`` the
task's column is widened by ``grow_conv`` / ``grow_hidden`` (new head entries 0 with
``init: standard``, so the probed head keeps its function). The task's training then
starts from the probed head. In ``isolated`` mode a head-only task reads nothing, so
there is no free capacity to probe: the config refuses that. The probe draws from the
job's generator and torch's RNG before the training does, and is repeated exactly when
a killed job resumes (the epoch checkpoint then restores the training's own state).

The record of each task (record.pt) holds the growth, the parameter counts and, with
``auto_grow``, the decision (probe accuracy, threshold, grow or not, parameters before
and after) and the probe's epochs; the same counts are columns of history.csv
(``clpipe.networks.parameter_report``).
"""

from __future__ import annotations

from typing import Any

from clpipe.methods.traits import MethodTraits, SettingError

GROWTH = {"type": "integer", "minimum": 0}  # units added to a layer


def check_auto_grow(settings: dict[str, Any], experiment: dict[str, Any]) -> str | None:
    """auto_grow probes a head over the earlier columns' frozen features, which only
    mode read gives a task; it decides on the validation split."""
    if settings.get("auto_grow") is None:
        return None
    mode = settings.get("mode") or experiment["model"].get("mode")  # the model's, filled in
    if mode is None:
        return None  # no growing network: its arms are refused for that (clpipe.config)
    if mode != "read":
        raise SettingError(
            "auto_grow",
            f"probes a head over the earlier tasks' frozen features, which needs mode 'read'; "
            f"the method runs in mode {mode!r}"
            + ("" if settings.get("mode") else " (the model's: set the method's mode to 'read')")
            + ", where a task without units of its own reads nothing",
        )
    return "auto_grow"


# The method as the workflow reads it, without importing what follows (clpipe.methods)
METHOD = MethodTraits(
    name="growing",
    implementation=f"{__name__}:GrowingNetwork",
    description=(
        "a task-masked network that grows a column of units and a head per task and "
        "trains only the new column (docs/methods.md, section 4)"
    ),
    settings={
        "mode": {
            "enum": ["isolated", "read", None],
            "default": None,
            "description": (
                "mode of the grown network (null: the model's mode). isolated: each task runs its "
                "own column only; read: a task's column also reads every earlier column's frozen "
                "features. Task 1 computes the same in both"
            ),
        },
        # no default: absent means always grow, and the jobs of arms without it keep their specs
        "auto_grow": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "required": ["threshold"],
            "properties": {
                "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                "probe_epochs": {"type": "integer", "minimum": 1, "default": 1},
            },
            "description": (
                "automatic growth (mode read only; null or absent: always grow). Before a task's "
                "units are added, the task gets a head only, over the earlier tasks' frozen "
                "features, trained for probe_epochs [1] epochs (the task's optimizer and batch "
                "size, constant learning rate); the task's column (grow_conv / grow_hidden) is "
                "added only if that head's accuracy on the task's validation split is below "
                "threshold. The decision and the parameter counts go into the task's record.pt "
                "and its log"
            ),
        },
    },
    # the source: 64 / 512 per task; 128 / 1024 for CIFAR-100
    per_task_settings={
        "grow_conv": {
            "oneOf": [GROWTH, {"type": "array", "minItems": 1, "items": GROWTH}],
            "default": 64,
            "description": (
                "channels added to every conv layer for the task, or a list with one count per "
                "conv layer ([32, 32, 64, 64]); per task a list of those: [64, 64, 128] or "
                "[[32, 32, 64, 64]]"
            ),
        },
        "grow_hidden": {
            **GROWTH,
            "default": 512,
            "description": "hidden units added for the task",
        },
    },
    check_settings=check_auto_grow,
    grows=True,
    palette="Reds",
)

# --- the implementation ------------------------------------------------------------

import logging
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from clpipe.methods.base import ContinualMethod, TaskContext
from clpipe.networks import parameter_report
from clpipe.networks.growing import GrowingTaskNet
from clpipe.optim import StepScaler
from clpipe.training import train_task

log = logging.getLogger("clpipe")

# keys of train settings the probe does not take: it runs its own number of epochs, at
# the task's learning rate, and decides on its last epoch
PROBE_DROPS = ("epochs", "iterations", "schedule", "early_stopping")


def probe_train_config(train_cfg: dict[str, Any], epochs: int) -> dict[str, Any]:
    """The task's train settings for a growth probe of ``epochs`` epochs."""
    return {**{k: v for k, v in train_cfg.items() if k not in PROBE_DROPS}, "epochs": int(epochs)}


# --- automatic growth (the source's future work): whether a task's column is added ---


@dataclass(frozen=True)
class GrowthDecision:
    task: int
    accuracy: float  # validation accuracy after briefly training the existing capacity
    threshold: float
    grow: bool
    parameters_before: int
    parameters_after: int  # what growing gives, or parameters_before when not growing

    def record(self) -> dict[str, Any]:
        return asdict(self)


def decide_growth(
    task: int, accuracy: float, threshold: float, parameters_before: int, parameters_if_grown: int
) -> GrowthDecision:
    """Grow when the validation accuracy is below the threshold (the source's proposed
    trigger). The caller measures ``accuracy`` -- e.g. after briefly training the task's
    units, or in ``read`` mode only a head over earlier tasks' features -- and, on a
    decision to grow, calls :meth:`GrowingTaskNet.grow` with the counts it priced."""
    accuracy, threshold = float(accuracy), float(threshold)
    if not math.isfinite(accuracy) or not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"a validation accuracy in [0, 1] is needed to decide on growth, got {accuracy}")
    grow = accuracy < threshold
    return GrowthDecision(
        task=task,
        accuracy=accuracy,
        threshold=threshold,
        grow=grow,
        parameters_before=int(parameters_before),
        parameters_after=int(parameters_if_grown if grow else parameters_before),
    )


class GrowingNetwork(ContinualMethod):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.mode = self.settings["mode"]
        self.auto_grow: dict[str, Any] | None = self.settings.get("auto_grow")
        self._scaler: StepScaler | None = None
        self._task = 0
        self._decision: dict[str, Any] | None = None

    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
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
        conv = task_settings["grow_conv"]
        conv = list(conv) if isinstance(conv, list) else int(conv)
        hidden = int(task_settings["grow_hidden"])
        outputs = len(ctx.task.classes)
        self._task = task
        self._decision = None
        if self.auto_grow is None:
            model.grow(task, conv=conv, hidden=hidden, outputs=outputs, init=model.init)
            return
        if model.mode != "read":
            raise ValueError(
                f"auto_grow probes a head over the earlier tasks' frozen features: mode 'read' only; "
                f"in mode {model.mode!r} a task without units of its own reads nothing"
            )
        model.grow(task, conv=0, hidden=0, outputs=outputs, init=model.init)
        history = self._probe(model, ctx)
        accuracy = history[-1]["val_accuracy"]
        decision = decide_growth(
            task,
            accuracy,
            float(self.auto_grow["threshold"]),
            model.total_parameters(),
            model.parameters_after_grow(conv, hidden, 0),
        )
        if decision.grow:
            model.grow(task, conv=conv, hidden=hidden, outputs=0, init=model.init)
        self._decision = {
            **decision.record(),
            "probe_epochs": int(self.auto_grow.get("probe_epochs", 1)),
            "probe_history": history,
        }
        log.info(
            "task %d: growth probe (a head over the earlier tasks' features, %d epoch(s)) "
            "val_acc %.4f %s threshold %.4f: %s; %d parameters",
            task,
            self._decision["probe_epochs"],
            decision.accuracy,
            "<" if decision.grow else ">=",
            decision.threshold,
            f"grows (conv {conv}, hidden {hidden})" if decision.grow else "does not grow",
            model.total_parameters(),
        )

    def _probe(self, model: GrowingTaskNet, ctx: TaskContext) -> list[dict[str, Any]]:
        """Train the task's head briefly (the normal loop, this method's protection of
        every other entry); the per-epoch history, its last row's val_accuracy decides."""
        if ctx.train_settings is None:
            raise ValueError("auto_grow trains a probe: the task's context needs its train settings")
        cfg = probe_train_config(ctx.train_settings, int(self.auto_grow.get("probe_epochs", 1)))
        try:
            return train_task(
                model,
                ctx.task,
                scenario=ctx.scenario,
                pipeline=ctx.pipeline,
                train_cfg=cfg,
                method=self,
                generator=ctx.generator,
                eval_batch_size=ctx.eval_batch_size,
                label=f"task {ctx.task.index} growth probe",
                validation=self.validation_splits(ctx),
            )
        finally:
            self._release()

    def attach(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        # the optimizer is built after growing: it holds the grown parameters
        self._scaler = model.protect(optimizer, self._task)

    def _release(self) -> None:
        if self._scaler is not None:
            self._scaler.remove()
            self._scaler = None

    def end_task(self, model: nn.Module) -> dict[str, Any]:
        self._release()
        record = {
            "task": self._task,
            "mode": model.mode,
            "growth": model.growth_of(self._task),
            **parameter_report(model, self._task),
        }
        if self.auto_grow is not None:
            record["auto_grow"] = self._decision
        return record
