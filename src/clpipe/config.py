"""Configuration: the checks a JSON schema cannot express, and the normalised view.

The workflow validates the raw config against ``workflow/schemas/config.schema.yaml``
(which also fills in defaults), then calls :func:`check_config`. That turns every
experiment into an :class:`Experiment`: tasks resolved to (dataset, classes), named
method configurations completed with their defaults, and every arm's place in the task
sequence. Any problem raises :class:`ConfigError` naming the offending key, before a
single job runs. Torch-free: the workflow imports this while it builds the DAG.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from clpipe.catalog import DATASETS
from clpipe.config_input import (
    check_finite,
    check_names,
    check_settings,
    dotted_key,
    schema_error,
    validator_with_defaults,
)
from clpipe.errors import ConfigError
from clpipe.experiment import Arm, Experiment, TaskSpec, resolve_arms, resolve_methods, resolve_tasks
from clpipe.layout import EXPERIMENT_FIGURES
from clpipe.methods import REGISTRY, SettingError, forget_user_methods, method_schema
from clpipe.methods import traits as method_traits
from clpipe.model_settings import (
    GROWING_MODELS,
    MODEL_INITS,
    MODEL_SETTINGS,
    PLAIN_INITS,
    TASK_HEADED_MODELS,
)
from clpipe.plugins import MODEL_ENTRY_POINTS, declared_settings, resolve
from clpipe.user_datasets import UserDataset
from clpipe.user_datasets import resolve as resolve_datasets

# Names below: ``_check_*`` only checks a part of an experiment; ``_complete_*`` checks it
# and fills in its defaults (the experiment dict then holds every setting a job reads).


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


def _check_arms_fit_model(key: str, exp: dict[str, Any], methods, arms: dict[str, Arm]) -> None:
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


def _validation_size(data: dict[str, Any]) -> int | None:
    """Validation samples of a task when the config caps its training samples (the data
    step keeps round(fraction x n) of n; None: the dataset's size decides)."""
    cap = data.get("max_train_per_task")
    return None if cap is None else int(round(data["validation_fraction"] * cap))


def _needs_validation_split(key: str, what: str, exp: dict[str, Any]) -> None:
    """``key`` (which ``what``) is refused when the experiment holds out no validation split."""
    data = exp["data"]
    if data["validation_fraction"] == 0:
        raise ConfigError(key, f"{what}, but data.validation_fraction is 0 (no validation split)")
    if _validation_size(data) == 0:
        raise ConfigError(
            key,
            f"{what}, but the validation split is empty: data.validation_fraction "
            f"{data['validation_fraction']:g} of data.max_train_per_task {data['max_train_per_task']} "
            "rounds to 0",
        )


def _check_meaningful(key: str, exp: dict[str, Any], tasks: list[TaskSpec]) -> None:
    """Configs whose results could not mean anything: a head that cannot be wrong (fewer
    than two outputs), a task of one class where the scenario labels within the task, a
    task left with no training samples."""
    scenario = exp["scenario"]
    if scenario in ("domain", "task"):
        for t in tasks:
            if len(t.classes) < 2:
                raise ConfigError(
                    f"{key}.tasks[{t.index - 1}]",
                    f"task {t.index} has one class ({t.classes[0]}); in the {scenario!r} scenario a task's "
                    "labels are its own classes, so a model could not be wrong on it (accuracy 1.0 without "
                    "learning anything): give every task at least two classes",
                )
    elif sum(len(t.classes) for t in tasks) < 2:
        raise ConfigError(f"{key}.tasks", "one class in all: a head needs at least two outputs to be wrong")
    data = exp["data"]
    cap, val = data.get("max_train_per_task"), _validation_size(data)
    if cap is not None and cap - val < 1:
        raise ConfigError(
            f"{key}.data.validation_fraction",
            f"{data['validation_fraction']:g} of data.max_train_per_task {cap} leaves no training samples",
        )


def _check_methods(key: str, exp: dict[str, Any], methods: dict[str, dict[str, Any]]) -> None:
    """Method settings that depend on the rest of the experiment: of the methods the
    config configures or its arms use (every built-in one is known by its name too)."""
    arms = exp["arms"].values() if isinstance(exp.get("arms"), dict) else ()
    used = set(exp.get("methods", {})) | {a["method"] for a in arms if isinstance(a, dict) and "method" in a}
    for name, settings in methods.items():
        if name not in used:
            continue
        check = method_traits(settings["type"]).check_settings
        try:
            deciding = check(settings, exp) if check is not None else None
        except SettingError as err:
            raise ConfigError(f"{key}.methods.{name}.{err.key}", str(err)) from None
        if deciding is not None:
            _needs_validation_split(
                f"{key}.methods.{name}.{deciding}", "decides on the validation split", exp
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


def _complete_model(key: str, exp: dict[str, Any]) -> None:
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
    _complete_train(key, exp["train"], exp)


OPTIMIZER_SETTINGS = {
    "adam": {"name", "lr", "betas", "eps", "weight_decay"},
    "adamw": {"name", "lr", "betas", "eps", "weight_decay"},
    "sgd": {"name", "lr", "momentum", "weight_decay", "nesterov"},
}


def _complete_train(key: str, train: dict[str, Any], exp: dict[str, Any]) -> None:
    """A train block (the experiment's, or an arm's with its changes; ``key``: whose)
    against the rest of the experiment."""
    _complete_schedule(key, train)
    if "early_stopping" in train:
        _needs_validation_split(f"{key}.train.early_stopping", "watches the validation split", exp)
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


def _arm_training(
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
        _complete_train(akey, train, exp)
        carried = train.get("optimizer_state") == "carry"
        if carried and train["optimizer"]["name"] != before["optimizer"]["name"]:
            raise ConfigError(
                f"{akey}.train.optimizer.name",
                f"{train['optimizer']['name']!r}, but with optimizer_state carry the arm goes on from the "
                f"{before['optimizer']['name']!r} state of the model it starts from; keep its optimizer",
            )
        out[name] = dataclasses.replace(arm, train=train)
    return out


IMAGE_FOLDER_DATA = {"image_size": 256, "test_fraction": 0.3}  # data settings -> defaults


def _complete_data_and_input(
    key: str, exp: dict[str, Any], tasks: list[TaskSpec], declared: dict[str, UserDataset]
) -> None:
    """Image-folder settings only where a built-in image-folder dataset is used (defaults
    filled there and only there, so other experiments' data specs stay as they were; a
    declared image folder has its own); a crop must fit in the stored images, where
    their size is known before the data step (not a tensor file's or a loader's)."""
    data, inp = exp["data"], exp["input"]
    used = dict.fromkeys(t.dataset for t in tasks)
    datasets = [DATASETS[d] for d in used if d in DATASETS]
    folders = [d for d in datasets if d.kind == "image_folder"]
    for k, default in IMAGE_FOLDER_DATA.items():
        if folders:
            data.setdefault(k, default)
        elif k in data:
            raise ConfigError(
                f"{key}.data.{k}",
                f"only for image-folder datasets ({', '.join(n for n, d in DATASETS.items() if d.buckets)})",
            )
    crop = inp.get("crop")
    sizes = [(data["image_size"] if d.kind == "image_folder" else d.size) for d in datasets]
    sizes += [declared[d].image_size for d in used if d in declared and declared[d].image_size]
    if crop is not None and sizes:
        stored = min(sizes)
        if crop["size"] > stored:
            raise ConfigError(
                f"{key}.input.crop.size",
                f"{crop['size']} is larger than the stored images ({stored} px)",
            )


def _complete_schedule(key: str, train: dict[str, Any]) -> None:
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


def _check_figures(key: str, methods: dict[str, dict[str, Any]], arms: dict[str, Arm]) -> None:
    """The methods' own figures (their declarations' figures) take no name of every
    experiment's figures, and two methods that name the same figure declare the same."""
    declared: dict[str, tuple[str, Any]] = {}
    for name, arm in arms.items():
        kind = methods[arm.method]["type"]
        for figure in method_traits(kind).figures:
            mkey = f"{key}.arms.{name}.method"
            if figure.name in EXPERIMENT_FIGURES:
                raise ConfigError(
                    mkey,
                    f"method {kind!r} declares a figure {figure.name!r}, the name of one every "
                    f"experiment draws ({', '.join(EXPERIMENT_FIGURES)}); rename it",
                )
            first = declared.setdefault(figure.name, (kind, figure))
            if first[1] != figure:
                raise ConfigError(
                    mkey,
                    f"method {kind!r} declares a figure {figure.name!r} other than method "
                    f"{first[0]!r}'s of that name; rename one",
                )


def _check_report(key: str, exp: dict[str, Any], arms: dict[str, Arm]) -> None:
    """Choices among arms (report.select) compare like with like on a validation split;
    the arms compared with (report.compare_to) exist."""
    report = exp.get("report") or {}
    groups = report.get("select") or {}
    for group, members in groups.items():
        gkey = f"{key}.report.select.{group}"
        if group in arms:
            raise ConfigError(gkey, f"{group!r} is already an arm's name; name the selected arm otherwise")
        for i, member in enumerate(members):
            if member not in arms:
                raise ConfigError(f"{gkey}[{i}]", f"arm {member!r} does not exist (arms: {', '.join(arms)})")
        spans = {(arms[m].last_task) for m in members}
        if len(spans) > 1:
            raise ConfigError(
                gkey,
                "its arms end at different tasks ("
                + ", ".join(f"{m}: {arms[m].last_task}" for m in members)
                + "); a choice compares final models that trained the same tasks",
            )
        _needs_validation_split(gkey, "chooses on the validation split", exp)
    for i, ref in enumerate(report.get("compare_to") or []):
        if ref not in arms and ref not in groups:
            raise ConfigError(
                f"{key}.report.compare_to[{i}]",
                f"{ref!r} is no arm or selected arm (arms: {', '.join(arms)})",
            )


def check_experiment(
    name: str,
    exp: dict[str, Any],
    default_seeds: list[int],
    resources: dict[str, Any] | None = None,
    datasets: dict[str, UserDataset] | None = None,
) -> Experiment:
    """``datasets``: the config's own datasets (clpipe.user_datasets.resolve)."""
    key = f"experiments.{name}"
    declared = datasets or {}
    tasks = resolve_tasks(key, exp, declared)
    _check_meaningful(key, exp, tasks)
    written_train = copy.deepcopy(exp["train"])
    _complete_model(key, exp)
    _complete_data_and_input(key, exp, tasks, declared)
    methods = resolve_methods(exp)
    _check_methods(key, exp, methods)
    arms = _arm_training(key, exp, written_train, resolve_arms(key, exp, len(tasks), methods))
    _check_arms_fit_model(key, exp, methods, arms)
    _check_figures(key, methods, arms)
    _check_report(key, exp, arms)
    own = exp.get("resources", {})
    merged = {kind: {**values, **own.get(kind, {})} for kind, values in (resources or {}).items()}
    return Experiment(
        name=name,
        raw=exp,
        tasks=tasks,
        seeds=list(exp.get("seeds", default_seeds)),
        methods=methods,
        arms=arms,
        resources=merged,
        datasets={t.dataset: declared[t.dataset] for t in tasks if t.dataset in declared},
    )


def check_config(config: dict[str, Any]) -> dict[str, Experiment]:
    """Semantic checks of a schema-validated config; returns the experiments by name."""
    declared = resolve_datasets(config.get("datasets"))
    experiments = {
        name: check_experiment(name, exp, config["seeds"], config.get("resources"), declared)
        for name, exp in config["experiments"].items()
    }
    for i, name in enumerate(config.get("run", [])):
        if name not in experiments:
            raise ConfigError(
                f"run[{i}]",
                f"experiment {name!r} does not exist (experiments: {', '.join(experiments)})",
            )
    return experiments


def _integer_seeds_from_the_command_line(config: dict[str, Any]) -> None:
    """``--config seeds=[0,1]`` gives strings (Snakemake parses lists as plain YAML text)."""
    experiments = config.get("experiments")
    holders = [config] + [
        e for e in (experiments.values() if isinstance(experiments, dict) else ()) if isinstance(e, dict)
    ]
    for holder in holders:
        seeds = holder.get("seeds")
        if isinstance(seeds, list):
            holder["seeds"] = [int(s) if isinstance(s, str) and s.isdigit() else s for s in seeds]


# Keys of earlier versions, refused with their new name (a schema would only say "unexpected").
RENAMED_RESOURCES = {"consolidate": "importance"}  # the compute_importance and update_progress jobs


def _refuse_renamed_keys(config: dict[str, Any]) -> None:
    experiments = config.get("experiments")
    sections = [("resources", config.get("resources"))] + [
        (f"experiments.{name}.resources", exp.get("resources"))
        for name, exp in (experiments.items() if isinstance(experiments, dict) else ())
        if isinstance(exp, dict)
    ]
    for where, resources in sections:
        for old, new in RENAMED_RESOURCES.items():
            if isinstance(resources, dict) and old in resources:
                raise ConfigError(
                    f"{where}.{old}",
                    f"renamed {new!r} (the compute_importance and update_progress jobs): write {where}.{new}",
                )


def _method_types(config: dict[str, Any]) -> list[str]:
    """The type of every ``methods:`` entry of the config, each known (a built-in method,
    or a user's: its declaration is read here); a malformed entry is the schema's to refuse."""
    experiments = config.get("experiments")
    types = []
    for name, exp in experiments.items() if isinstance(experiments, dict) else ():
        methods = exp.get("methods") if isinstance(exp, dict) else None
        for method, settings in methods.items() if isinstance(methods, dict) else ():
            kind = settings.get("type") if isinstance(settings, dict) else None
            if isinstance(kind, str):
                method_traits(kind, f"experiments.{name}.methods.{method}.type")
                types.append(kind)
    return types


def train_changes_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An arm's ``train``: the experiment's train block with every key optional, the
    optimizer's too (clpipe.config.changed_train completes it)."""
    train = copy.deepcopy(schema["$defs"]["experiment"]["properties"]["train"])
    for k in ("required", "oneOf"):
        train.pop(k, None)
    optimizer = copy.deepcopy(schema["$defs"]["optimizer"])
    optimizer.pop("required", None)
    train["properties"]["optimizer"] = optimizer
    return train


def validate_config(config: dict[str, Any], schema_path: str) -> dict[str, Experiment]:
    """Schema validation (defaults filled in place), then the semantic checks.

    Errors name the dotted key, e.g. ``config key 'experiments.x.model.name': 'resnet'
    is not one of ['vgg16', 'mlp']``.
    """
    import yaml

    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise ConfigError(
            "(top level)", f"a config is a mapping of keys to values, not {type(config).__name__}"
        )
    _integer_seeds_from_the_command_line(config)
    check_finite(config)
    _refuse_renamed_keys(config)
    forget_user_methods()  # read each user's method as its file is now
    schema["$defs"]["method"] = method_schema([*REGISTRY, *_method_types(config)])
    arm_train = schema["$defs"]["arm"]["properties"]["train"]
    schema["$defs"]["arm"]["properties"]["train"] = train_changes_schema(schema) | {
        "description": arm_train["description"]
    }
    validator = validator_with_defaults(schema)
    found = schema_error(validator, config)
    if found is not None:
        raise ConfigError(dotted_key(found[0]), found[1])
    check_names(config)
    return check_config(config)
