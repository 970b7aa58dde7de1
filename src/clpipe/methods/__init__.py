"""Continual-learning methods: the registry the workflow reads (torch-free).

A method is one file in this package with a class implementing
:class:`clpipe.methods.base.ContinualMethod`. The workflow never imports that class; it
only reads the method's :class:`MethodTraits` below to know which steps the method
needs after each task (an importance step, a progress step). Adding a method means: its
file, one entry in ``REGISTRY``, and its settings in the config schema. No rule changes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


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


REQUIRED = None

REGISTRY: dict[str, MethodTraits] = {
    "finetune": MethodTraits(
        name="finetune",
        implementation="clpipe.methods.finetune:FineTune",
        description="plain training on each task in turn (no continual-learning method)",
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
