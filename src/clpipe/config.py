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
from typing import Any

from clpipe.catalog import DATASETS
from clpipe.config_input import (
    check_finite,
    check_names,
    dotted_key,
    schema_error,
    validator_with_defaults,
)
from clpipe.config_model import check_arms_fit_model, complete_model
from clpipe.config_train import (
    arm_training,
    complete_train,
    needs_validation_split,
    train_changes_schema,
    validation_size,
)
from clpipe.errors import ConfigError
from clpipe.experiment import Arm, Experiment, TaskSpec, resolve_arms, resolve_methods, resolve_tasks
from clpipe.layout import EXPERIMENT_FIGURES
from clpipe.methods import REGISTRY, SettingError, forget_user_methods, method_schema
from clpipe.methods import traits as method_traits
from clpipe.user_datasets import UserDataset
from clpipe.user_datasets import resolve as resolve_datasets

# Names below: ``_check_*`` only checks a part of an experiment; ``_complete_*`` checks it
# and fills in its defaults (the experiment dict then holds every setting a job reads).


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
    cap, val = data.get("max_train_per_task"), validation_size(data)
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
            needs_validation_split(f"{key}.methods.{name}.{deciding}", "decides on the validation split", exp)


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
        needs_validation_split(gkey, "chooses on the validation split", exp)
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
    complete_model(key, exp)
    complete_train(key, exp["train"], exp)
    _complete_data_and_input(key, exp, tasks, declared)
    methods = resolve_methods(exp)
    _check_methods(key, exp, methods)
    arms = arm_training(key, exp, written_train, resolve_arms(key, exp, len(tasks), methods))
    check_arms_fit_model(key, exp, methods, arms)
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
