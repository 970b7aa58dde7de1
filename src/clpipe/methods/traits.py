"""What the workflow knows of a method without importing its implementation (torch-free).

Every method file declares one :class:`MethodTraits` as ``METHOD`` before its
implementation's imports; :mod:`clpipe.methods` reads that part of the file without
running the rest (no torch at DAG time).

A method's settings are declared as JSON schemas, each with its ``default`` (a
per-task setting without one is REQUIRED: every arm of the method gives it). The
config's validation is generated from them (:func:`clpipe.methods.method_schema`, and
the arms' per-task values by :mod:`clpipe.experiment`); their defaults are what a job
gets for a setting the config leaves out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REQUIRED = None  # a per-task setting without a default: every arm of the method gives it
ROLES = ("baseline", "upper_bound")  # in the order the default comparisons are listed


class SettingError(ValueError):
    """A setting a method refuses; ``key`` is its name under the arm or the method's
    entry (``freeze_total[1]``, ``auto_grow``)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class SettingFigure:
    """A figure of the method's own: ACC and forgetting right after each task an arm of
    the method trains, against a number its per-task settings give by then (MAG: the
    share of each kernel frozen in all), one colour per task, the baseline arm as a
    dashed line per task. Drawn as ``figures/<name>.png`` by the plot_setting_figure
    rule; every field reaches that job through its spec (clpipe.plan.figures_spec)."""

    name: str  # figures/<name>.png; a method-free name ("forgetting" etc. are taken)
    axis: str  # the x axis' label
    # the per-task settings of the tasks 2..t of the arm's history, in order -> x after task t
    value: Callable[[list[dict[str, Any]]], float]
    title: str  # the question it answers; the figure adds "right after each task (mean ± sd ...)"
    caption: str  # the report's caption: what is drawn
    reference_note: str = ""  # after the baseline arm's name in the legend
    axis_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class MethodTraits:
    """What the workflow needs to know about a method to build its part of the DAG."""

    name: str
    implementation: str  # "module:Class", imported only by the steps that run it
    description: str
    # Method-level settings (the config's ``methods:`` entries): name -> the JSON schema
    # of its value, with its "default" (none: the setting may be left out, and is then
    # absent from the job's settings).
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per-task settings of an arm (a value, or a list with one value per task): name ->
    # the JSON schema of one task's value, with its "default" (none: REQUIRED, every arm
    # of the method gives it).
    per_task_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
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
    # Arm settings only arm_settings reads (a value, or one per task): name -> the JSON
    # schema of one task's value; they never reach a job.
    rewritten_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Checks a configuration of the method against the rest of its experiment (the
    # validated config section), beyond what the schemas say; raises SettingError
    # naming the setting. Returns the setting that decides on the validation split, if
    # any (the experiment must hold one out), else None.
    check_settings: Callable[[dict[str, Any], dict[str, Any]], str | None] | None = None
    # The arm is one job per seed: the random init trained on every task at once (its
    # history is the init and the model after the last task; no start_from).
    joint: bool = False
    # Trains on batches that mix tasks (a replay buffer, joint training): impossible for
    # a model called with one task id per batch (a growing network).
    mixes_tasks: bool = False
    # Acts during its first task too (a path integral over every update, an online buffer,
    # its own pruning): its arms train task 1 themselves from the random init, instead of
    # starting from the fine-tuned task 1 every other arm shares.
    trains_first_task: bool = False
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
    # Figures of its own, drawn for an experiment with arms of this method beside every
    # experiment's (MAG: ACC and forgetting against the share of weights frozen).
    figures: tuple[SettingFigure, ...] = ()

    def __post_init__(self):
        declarations = {
            "settings": self.settings,
            "per_task_settings": self.per_task_settings,
            "rewritten_settings": self.rewritten_settings,
        }
        for kind, declared in declarations.items():
            for key, schema in declared.items():
                if not isinstance(schema, dict):
                    raise TypeError(
                        f"method {self.name!r}: {kind}[{key!r}] is a JSON schema (a dict, e.g. "
                        f'{{"type": "number", "default": 1.0}}), not {schema!r}'
                    )
        names = [k for declared in declarations.values() for k in declared]
        twice = sorted({k for k in names if names.count(k) > 1})
        if twice:
            raise TypeError(f"method {self.name!r}: {twice} declared twice (settings, per task, rewritten)")
        if self.rewritten_settings and self.arm_settings is None:
            raise TypeError(
                f"method {self.name!r}: rewritten_settings without the arm_settings that rewrites them"
            )

    @property
    def defaults(self) -> dict[str, Any]:
        """The method-level settings' defaults (those that have one)."""
        return {k: s["default"] for k, s in self.settings.items() if "default" in s}

    @property
    def per_task(self) -> dict[str, Any]:
        """Each per-task setting's default, or REQUIRED."""
        return {k: s.get("default", REQUIRED) for k, s in self.per_task_settings.items()}
