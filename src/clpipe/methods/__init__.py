"""Continual-learning methods: the registry the workflow reads (torch-free).

A method is one file in this package with a class implementing
:class:`clpipe.methods.base.ContinualMethod`. The workflow never imports that class; it
only reads the method's :class:`MethodTraits` below to know which steps the method
needs after each task (an importance step, a progress step). Adding a method means: its
file, one entry in ``REGISTRY``, and its settings in the config schema. No rule changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class ArmSettingError(ValueError):
    """An arm setting a method refuses; ``key`` is the setting's name under the arm."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class MethodTraits:
    """What the workflow needs to know about a method to build its part of the DAG."""

    name: str
    implementation: str  # "module:Class", imported only by the steps that run it
    description: str
    # Method-level settings and their defaults (the config's ``methods:`` entries).
    defaults: dict[str, Any] = field(default_factory=dict)
    # Per-task settings of an arm (a value, or a list with one value per task) and their
    # defaults; REQUIRED: every arm of the method must give it.
    per_task: dict[str, Any] = field(default_factory=dict)
    # After a task: a "compute importance" step writes what the next task needs.
    importance: bool = False
    # Settings the importance step depends on (the others only affect training).
    importance_settings: tuple[str, ...] = ()
    # After a task: an "update progress" step merges the task's record into the
    # method's running state (MAG: the cumulative set of frozen weights).
    progress: bool = False
    # The importance step of task t also reads the importance file of task t-1.
    chained_importance: bool = False
    # Rewrites an arm's settings before they are resolved per task (e.g. MAG's
    # cumulative freeze_total into per-task freeze); gets the arm's settings and the
    # per-task settings of the tasks its history trained before it.
    arm_settings: Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any]] | None = None
    # The arm is one job per seed: the random init trained on every task at once (its
    # history is the init and the model after the last task; no start_from).
    joint: bool = False
    # Trains on batches that mix tasks (a replay buffer, joint training): impossible for
    # a model called with one task id per batch (a growing network).
    mixes_tasks: bool = False
    # Grows a growing network (model "growing") by a column and a head before each task:
    # the only kind of method such a network can train its later tasks with.
    grows: bool = False
    # How the reports treat the method's arms: "baseline" (its first arm is what every arm
    # is compared with unless report.compare_to says otherwise, and the figures' dashed
    # reference line), "upper_bound" (compared with by default too), or None.
    role: str | None = None
    # The figures' colours: shades of this seaborn palette, one per arm in config order;
    # or ``colour``, one colour for every arm of the method.
    palette: str = "viridis"
    colour: str | None = None
    # Figures drawn for an experiment with arms of this method, beside every experiment's
    # ("freeze": ACC and forgetting against the share of weights frozen, per-task "freeze").
    figures: tuple[str, ...] = ()


ROLES = ("baseline", "upper_bound")  # in the order the default comparisons are listed


def _mag_arm_settings(spec: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """``freeze_total``: the share of each tensor frozen in all after each task.

    It must not decrease, nor fall below what the arm's history already froze; it is
    turned into ``freeze``, the share of the still-trainable weights frozen at each task:
    q = (T_t - T_{t-1}) / (100 - T_{t-1}).
    """
    if "freeze_total" not in spec:
        return spec
    if "freeze" in spec:
        raise ArmSettingError("freeze_total", "give either freeze or freeze_total, not both")
    totals = spec["freeze_total"] if isinstance(spec["freeze_total"], list) else [spec["freeze_total"]]
    kept = 1.0
    for h in history:
        kept *= 1.0 - float(h.get("freeze", 0.0)) / 100.0
    before = 100.0 * (1.0 - kept)
    freeze = []
    for i, total in enumerate(totals):
        if total < before - 1e-9:
            where = "the arm it starts from" if i == 0 else f"task {i}'s {before:g}"
            raise ArmSettingError(
                f"freeze_total[{i}]",
                f"{total:g}% is less than what is already frozen ({before:g}% after {where}); "
                "freeze_total is cumulative and must not decrease",
            )
        freeze.append(100.0 * (total - before) / (100.0 - before))
        before = float(total)
    out = {k: v for k, v in spec.items() if k != "freeze_total"}
    out["freeze"] = freeze
    return out


REQUIRED = None

REGISTRY: dict[str, MethodTraits] = {
    "finetune": MethodTraits(
        name="finetune",
        implementation="clpipe.methods.finetune:FineTune",
        description="plain training on each task in turn (no continual-learning method)",
        role="baseline",
        palette="Greys",
        colour="#404040",
    ),
    "mag": MethodTraits(
        name="mag",
        implementation="clpipe.methods.mag:MagnitudePlasticity",
        description=(
            "magnitude-based per-weight learning rates (freezing values) with freezing of the largest weights"
        ),
        defaults={"gamma": 1.0, "scale_biases": False},
        per_task={"freeze": 0.0},
        importance=True,
        importance_settings=("gamma", "scale_biases"),
        progress=True,
        arm_settings=_mag_arm_settings,
        palette="Blues",
        figures=("freeze",),
    ),
    "ewc": MethodTraits(
        name="ewc",
        implementation="clpipe.methods.ewc:ElasticWeightConsolidation",
        description=(
            "elastic weight consolidation: a Fisher-weighted quadratic penalty towards "
            "the weights after each earlier task (or one running Fisher: online EWC)"
        ),
        defaults={
            "fisher_labels": "empirical",
            "fisher_samples": None,
            "fisher_batch_size": 64,
            "online": False,
            "decay": 1.0,
        },
        per_task={"lambda": REQUIRED},
        importance=True,
        importance_settings=("fisher_labels", "fisher_samples", "fisher_batch_size", "online", "decay"),
        chained_importance=True,
        palette="Oranges",
    ),
    "joint": MethodTraits(
        name="joint",
        implementation="clpipe.methods.joint:JointTraining",
        description="the upper bound: one model trained on every task's data at once",
        joint=True,
        mixes_tasks=True,
        role="upper_bound",
        palette="Purples",
    ),
    "replay": MethodTraits(
        name="replay",
        implementation="clpipe.methods.replay:ExperienceReplay",
        description=(
            "experience replay: after each task its hardest (or easiest) training samples "
            "by EL2N, entropy or margin (or random ones) join a buffer trained on with later tasks"
        ),
        defaults={
            "score": "random",
            "keep": "hardest",
            "budget": {"fraction": 0.01},
            "mode": "concat",
            "replay_batch_size": None,
            "replay_weight": 1.0,
        },
        importance=True,
        importance_settings=("score", "keep", "budget"),
        chained_importance=True,
        mixes_tasks=True,
        palette="Greens",
    ),
    "growing": MethodTraits(
        name="growing",
        implementation="clpipe.methods.growing:GrowingNetwork",
        description=(
            "a task-masked network that grows a column of units and a head per task and "
            "trains only the new column (METHODS.md section 4)"
        ),
        # mode None: the model's mode. auto_grow ({threshold, probe_epochs}: grow a task's
        # column only if a head over the earlier columns falls short) has no default
        # here: absent means always grow, and the jobs of arms without it keep their specs
        defaults={"mode": None},
        # units added to every conv layer (one count, or a list with one per layer) and
        # to the hidden layer for each task (the source: 64 / 512; 128 / 1024 for CIFAR-100)
        per_task={"grow_conv": 64, "grow_hidden": 512},
        grows=True,
        palette="Reds",
    ),
}


def traits(method_type: str) -> MethodTraits:
    try:
        return REGISTRY[method_type]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"unknown method {method_type!r}; known methods: {known}") from None


def load_method(settings: dict[str, Any]):
    """Instantiate the method described by a normalised method config (has ``type``)."""
    info = traits(settings["type"])
    module_name, class_name = info.implementation.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls({k: v for k, v in settings.items() if k != "type"})
