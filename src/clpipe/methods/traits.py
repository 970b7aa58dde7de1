"""What the workflow knows of a method without importing its implementation (torch-free).

Every method file declares one :class:`MethodTraits` as ``METHOD`` before its
implementation's imports; :mod:`clpipe.methods` reads that part of the file without
running the rest (no torch at DAG time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REQUIRED = None  # a per-task setting without a default: every arm of the method gives it
ROLES = ("baseline", "upper_bound")  # in the order the default comparisons are listed


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
