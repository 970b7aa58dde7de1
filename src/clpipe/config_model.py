"""The experiment's model block in the config: a built-in model's settings (only its
own, defaults filled in), a user's model (module:function or an entry point, found
without being imported), what the schema cannot say of an architecture, and which arms'
methods fit the model. Part of :func:`clpipe.config.check_experiment`; torch-free.
"""

from __future__ import annotations

import copy
from typing import Any

from clpipe.config_input import check_settings
from clpipe.errors import ConfigError
from clpipe.experiment import Arm
from clpipe.methods import traits as method_traits
from clpipe.model_settings import MODEL_INITS, MODEL_SETTINGS, PLAIN_INITS, TASK_HEADED_MODELS
from clpipe.plugins import MODEL_ENTRY_POINTS, declared_settings, resolve


def _check_architecture(key: str, exp: dict[str, Any]) -> None:
    """What the schema cannot say about a model's settings (it allows every model's forms)."""
    model = exp["model"]
    name, mkey = model["name"], f"{key}.model"
    inits = MODEL_INITS.get(name, PLAIN_INITS)
    if model.get("init", inits[0]) not in inits:
        raise ConfigError(
            f"{mkey}.init", f"{model['init']!r} is not an init of model {name!r} (inits: {', '.join(inits)})"
        )
    if name in ("mlp", "cnn") and not isinstance(model["hidden"], list):
        raise ConfigError(f"{mkey}.hidden", f"model {name!r} takes a list of hidden layer sizes")
    if name == "cnn":
        for i, layer in enumerate(model["conv"]):
            if not isinstance(layer, dict):
                raise ConfigError(f"{mkey}.conv[{i}]", "model 'cnn' takes {channels, kernel, stride} a layer")
    if name in MODEL_INITS:
        _check_growing_architecture(key, exp)


def _check_growing_architecture(key: str, exp: dict[str, Any]) -> None:
    """The growing network's family (the models with inits of their own)."""
    model, inp = exp["model"], exp["input"]
    name, mkey = model["name"], f"{key}.model"
    for i, channels in enumerate(model["conv"]):
        if not isinstance(channels, int):
            raise ConfigError(f"{mkey}.conv[{i}]", f"model {name!r} takes the channels of each conv layer")
    if not isinstance(model["hidden"], int):
        raise ConfigError(f"{mkey}.hidden", f"model {name!r} takes one hidden layer: its number of units")
    if len(model["pool_after"]) != len(model["conv"]):
        raise ConfigError(
            f"{mkey}.pool_after",
            f"has {len(model['pool_after'])} entries for {len(model['conv'])} conv layer(s); one per layer",
        )
    if model["kernel"] % 2 != 1:
        raise ConfigError(f"{mkey}.kernel", f"must be odd (same padding), got {model['kernel']}")
    pools = sum(map(bool, model["pool_after"]))
    if inp["size"] // 2**pools < 1:
        raise ConfigError(f"{key}.input.size", f"{inp['size']} px do not survive {pools} 2x2 max-pools")
    if name in TASK_HEADED_MODELS and exp["scenario"] != "task":
        raise ConfigError(
            f"{key}.scenario",
            f"model {name!r} has a head per task and is given the task id: scenario 'task', "
            f"not {exp['scenario']!r}",
        )


def _complete_built_in_model(key: str, exp: dict[str, Any]) -> None:
    """A built-in model's settings: only its own, its defaults filled in, its architecture."""
    model = exp["model"]
    settings = MODEL_SETTINGS[model["name"]]
    for k in model:
        if k != "name" and k not in settings:
            raise ConfigError(
                f"{key}.model.{k}",
                f"not a setting of model {model['name']!r} (settings: {', '.join(settings)})",
            )
    for k, default in settings.items():
        if k not in model:
            if default is None:
                raise ConfigError(f"{key}.model.{k}", f"required by model {model['name']!r}")
            model[k] = copy.deepcopy(default)
    _check_architecture(key, exp)


def check_arms_fit_model(key: str, exp: dict[str, Any], methods, arms: dict[str, Arm]) -> None:
    """A growing network trains its later tasks with the growing method only, and the
    growing method needs a growing network."""
    model = exp["model"]
    for name, arm in arms.items():
        traits = method_traits(methods[arm.method]["type"])
        akey = f"{key}.arms.{name}"
        if model["name"] in TASK_HEADED_MODELS and not traits.grows:
            if traits.mixes_tasks:
                why = (
                    f"trains on batches that mix tasks, but a {model['name']!r} network is called "
                    "with one task id per batch (a head per task)"
                )
            else:
                why = f"cannot give a {model['name']!r} network the units and head of a new task"
            raise ConfigError(
                f"{akey}.method",
                f"arm {name!r}: method {traits.name!r} {why}; its arms use method 'growing' (a "
                "baseline on the same architecture: model 'growing_fixed' in an experiment of its own)",
            )
        if traits.grows and model["name"] not in TASK_HEADED_MODELS:
            raise ConfigError(
                f"{akey}.method",
                f"arm {name!r}: method {traits.name!r} grows a growing network: it needs model "
                f"'growing', not {model['name']!r}",
            )
        if traits.grows:
            for task, values in arm.per_task.items():
                conv = values["grow_conv"]
                if isinstance(conv, list) and len(conv) != len(model["conv"]):
                    raise ConfigError(
                        f"{akey}.grow_conv",
                        f"task {task}: {len(conv)} counts for {len(model['conv'])} conv layer(s); "
                        "give one count, or one per layer",
                    )


def _complete_user_model(key: str, model: dict[str, Any]) -> None:
    """A user's model (module:function, or an entry point of group clpipe.models) is a
    plain network (no head per task, never grown). Its module must be there (found, not
    imported: it imports torch); its keys are its own, checked against the SETTINGS its
    module declares, if any (their defaults filled in), else passed as written."""
    name, nkey = model["name"], f"{key}.model.name"
    reference = resolve(name, MODEL_ENTRY_POINTS)
    if reference is None:
        raise ConfigError(
            nkey,
            f"unknown model {name!r}: built-in models are {', '.join(MODEL_SETTINGS)}; a model of "
            "your own is named by module:function (its module on PYTHONPATH) or by an entry "
            f"point of group {MODEL_ENTRY_POINTS!r}",
        )
    for k in ("n_outputs", "outputs", "input"):
        if k in model:
            raise ConfigError(
                f"{key}.model.{k}",
                "set by the pipeline for the builder (n_outputs: the scenario's head; "
                "input: the experiment's input settings); give your model's own keys another name",
            )
    settings = declared_settings(reference, nkey)  # finds the module, or refuses
    if settings is not None:
        own = {k: v for k, v in model.items() if k != "name"}
        check_settings(own, settings, f"{key}.model")
        model.update(own)


def complete_model(key: str, exp: dict[str, Any]) -> None:
    model, inp = exp["model"], exp["input"]
    if model["name"] not in MODEL_SETTINGS:
        _complete_user_model(key, model)
    else:
        _complete_built_in_model(key, exp)
    if model["name"] == "vgg16" and inp["size"] < 32:
        raise ConfigError(
            f"{key}.input.size",
            f"vgg16 needs inputs of at least 32 px (five 2x2 max-pools), got {inp['size']}",
        )
    norm = inp.get("normalize")
    if norm is not None:
        for part in ("mean", "std"):
            if len(norm[part]) not in (1, inp["channels"]):
                raise ConfigError(
                    f"{key}.input.normalize.{part}",
                    f"has {len(norm[part])} values; give 1 or one per channel ({inp['channels']})",
                )
