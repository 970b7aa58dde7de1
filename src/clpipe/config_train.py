"""The train settings in the config: the experiment's train block and each arm's, its
changes applied over the arm's ancestors' (epochs and iterations replace each other; an
optimizer of another name replaces the block), and the validation split the settings
that watch it need. Part of :func:`clpipe.config.check_experiment`; torch-free.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from clpipe.errors import ConfigError
from clpipe.experiment import Arm
from clpipe.model_settings import GROWING_MODELS


def validation_size(data: dict[str, Any]) -> int | None:
    """Validation samples of a task when the config caps its training samples (the data
    step keeps round(fraction x n) of n; None: the dataset's size decides)."""
    cap = data.get("max_train_per_task")
    return None if cap is None else int(round(data["validation_fraction"] * cap))


def needs_validation_split(key: str, what: str, exp: dict[str, Any]) -> None:
    """``key`` (which ``what``) is refused when the experiment holds out no validation split."""
    data = exp["data"]
    if data["validation_fraction"] == 0:
        raise ConfigError(key, f"{what}, but data.validation_fraction is 0 (no validation split)")
    if validation_size(data) == 0:
        raise ConfigError(
            key,
            f"{what}, but the validation split is empty: data.validation_fraction "
            f"{data['validation_fraction']:g} of data.max_train_per_task {data['max_train_per_task']} "
            "rounds to 0",
        )


OPTIMIZER_SETTINGS = {
    "adam": {"name", "lr", "betas", "eps", "weight_decay"},
    "adamw": {"name", "lr", "betas", "eps", "weight_decay"},
    "sgd": {"name", "lr", "momentum", "weight_decay", "nesterov"},
}


def complete_train(key: str, train: dict[str, Any], exp: dict[str, Any]) -> None:
    """A train block (the experiment's, or an arm's with its changes; ``key``: whose)
    against the rest of the experiment."""
    complete_schedule(key, train)
    if "early_stopping" in train:
        needs_validation_split(f"{key}.train.early_stopping", "watches the validation split", exp)
    if train.get("optimizer_state") == "carry" and exp["model"]["name"] in GROWING_MODELS:
        raise ConfigError(
            f"{key}.train.optimizer_state",
            f"carry needs the same parameters in every task; model {exp['model']['name']!r} "
            "changes them from task to task (use reset)",
        )
    opt = train["optimizer"]
    allowed = OPTIMIZER_SETTINGS[opt["name"]]
    for k in opt:
        if k not in allowed:
            raise ConfigError(
                f"{key}.train.optimizer.{k}",
                f"not a setting of optimizer {opt['name']!r} (settings: {', '.join(sorted(allowed))})",
            )


# train settings that replace each other: an arm that gives one drops the other
EXCLUSIVE_TRAIN = {"epochs": "iterations", "iterations": "epochs"}


def changed_train(train: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A train block with an arm's ``changes``: epochs and iterations replace each
    other; an optimizer of another name replaces the optimizer block, one of the same
    name (or none) changes only the keys given; every other key is replaced whole."""
    out = copy.deepcopy(train)
    for k, v in changes.items():
        out.pop(EXCLUSIVE_TRAIN.get(k, ""), None)
        if k == "optimizer" and v.get("name", out[k]["name"]) == out[k]["name"]:
            out[k] = {**out[k], **copy.deepcopy(v)}
        else:
            out[k] = copy.deepcopy(v)
    return out


def arm_training(
    key: str, exp: dict[str, Any], written: dict[str, Any], arms: dict[str, Arm]
) -> dict[str, Arm]:
    """Each arm's train settings: the experiment's (``written``: before the checks
    completed it, so a schedule's t_max follows the arm's own epochs), changed by its
    ancestors' and its own ``train`` (arms resolve parents first), checked like the
    experiment's. With optimizer_state carry an arm keeps the optimizer the model it
    starts from was trained with (its state is carried on)."""
    out: dict[str, Arm] = {}
    as_written: dict[str, dict[str, Any]] = {}  # each arm's train before the checks complete it
    for name, arm in arms.items():
        akey = f"{key}.arms.{name}"
        parent = out[arm.start_from].train if arm.start_from else None
        before = exp["train"] if parent is None else parent
        changes = exp["arms"][name].get("train")
        as_written[name] = as_written[arm.start_from] if arm.start_from else written
        if not changes:
            out[name] = dataclasses.replace(arm, train=parent)
            continue
        as_written[name] = changed_train(as_written[name], changes)
        train = copy.deepcopy(as_written[name])
        complete_train(akey, train, exp)
        carried = train.get("optimizer_state") == "carry"
        if carried and train["optimizer"]["name"] != before["optimizer"]["name"]:
            raise ConfigError(
                f"{akey}.train.optimizer.name",
                f"{train['optimizer']['name']!r}, but with optimizer_state carry the arm goes on from the "
                f"{before['optimizer']['name']!r} state of the model it starts from; keep its optimizer",
            )
        out[name] = dataclasses.replace(arm, train=train)
    return out


def complete_schedule(key: str, train: dict[str, Any]) -> None:
    for part in ("schedule", "early_stopping"):
        if part in train and "epochs" not in train:
            raise ConfigError(
                f"{key}.train.{part}", "needs train.epochs (it works per epoch), not iterations"
            )
    stop = train.get("early_stopping")
    if stop is not None and stop["min_epochs"] > train["epochs"]:
        raise ConfigError(
            f"{key}.train.early_stopping.min_epochs",
            f"{stop['min_epochs']} is more than train.epochs ({train['epochs']})",
        )
    schedule = train.get("schedule")
    if schedule is not None and schedule.get("t_max") is None:
        schedule["t_max"] = train["epochs"]


def train_changes_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An arm's ``train``: the experiment's train block with every key optional, the
    optimizer's too (:func:`changed_train` completes it)."""
    train = copy.deepcopy(schema["$defs"]["experiment"]["properties"]["train"])
    for k in ("required", "oneOf"):
        train.pop(k, None)
    optimizer = copy.deepcopy(schema["$defs"]["optimizer"])
    optimizer.pop("required", None)
    train["properties"]["optimizer"] = optimizer
    return train
