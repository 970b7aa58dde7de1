"""The config as the user wrote it: what is checked before and beside the schema.

Torch-free; the workflow calls these while it builds the DAG, before any job:

- every config file is read again, strictly: a key given twice in one mapping (YAML
  and Snakemake keep the last one without a word) is refused naming the key and both
  lines, and a syntax error names the file, line and column;
- every number is finite: JSON Schema's ``minimum`` and ``maximum`` are false for NaN,
  so ``.nan`` and ``.inf`` would pass every bound and fail much later, unnamed;
- a name (experiment, arm, method) is one whole word of the allowed characters (a
  regular expression's ``$`` also matches before a final newline) and does not collide
  with a file or folder the results layout writes;
- a value given on the command line as ``true``/``false`` is a string to Snakemake:
  the message says to write ``True``/``False``;
- a path setting is normalised, so every spelling of one folder is the same run.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from clpipe.errors import ConfigError, InputError

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
# Folders and files the results layout writes where a name would go (clpipe.plan.Layout):
# the datasets' manifests beside the experiments; a node's own files beside its methods.
RESERVED_EXPERIMENT_NAMES = {
    "datasets": "the results folder's datasets/ (the dataset manifests)",
    "reference": "the results folder's reference/ (the committed reference results)",
    "README.md": "the results folder's README.md (what every file is)",
}
NODE_FILES = frozenset(
    {
        "model.pt",
        "eval.csv",
        "history.csv",
        "record.pt",
        "progress.pt",
        "train.resume.pt",
        "train.log",
        "evaluate.log",
        "init_model.log",
        "update_progress.log",
        "train.benchmark.tsv",
        "evaluate.benchmark.tsv",
        "init_model.benchmark.tsv",
        "update_progress.benchmark.tsv",
        "train.receipt.json",
        "evaluate.receipt.json",
        "init_model.receipt.json",
        "update_progress.receipt.json",
        "eval.cache.json",
    }
)


class ConfigFileError(InputError):
    """A config file that cannot be read as written (syntax, a key given twice)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigFileError(
                f"{loader.name}: key {key!r} is given twice in one mapping (lines {seen[key]} and {line}); "
                "YAML keeps the last one without a word: delete one"
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _json_pairs(path: Path):
    def hook(pairs):
        keys = [k for k, _ in pairs]
        doubled = sorted({k for k in keys if keys.count(k) > 1})
        if doubled:
            raise ConfigFileError(f"{path}: key {doubled[0]!r} is given twice in one object; delete one")
        return dict(pairs)

    return hook


def read_strictly(path: str | os.PathLike) -> Any:
    """A config file's content, or ConfigFileError naming the file, line and column of a
    syntax error, or a key given twice and both its lines."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return json.loads(text, object_pairs_hook=_json_pairs(path))
        except json.JSONDecodeError as err:
            raise ConfigFileError(f"{path}:{err.lineno}:{err.colno}: not valid JSON: {err.msg}") from None
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigFileError(f"{where}: not valid YAML: {err.problem or err.context}") from None
    finally:
        loader.dispose()


def check_config_files(paths) -> None:
    """Read every config file again, strictly (Snakemake has merged them already)."""
    for path in paths:
        read_strictly(path)


def key_below(path: list) -> str:
    """A path below a key, as it continues the key: ``.tasks[1].classes``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)


def dotted_key(path: list) -> str:
    """A config path as its key: ``experiments.x.tasks[1]``."""
    return key_below(path).removeprefix(".") or "(top level)"


def check_finite(config: Any, path: list | None = None) -> None:
    """Every number in the config is finite (NaN and infinities pass JSON Schema's bounds)."""
    path = path or []
    if isinstance(config, dict):
        for k, v in config.items():
            check_finite(v, path + [k])
    elif isinstance(config, list):
        for i, v in enumerate(config):
            check_finite(v, path + [i])
    elif isinstance(config, float) and not math.isfinite(config):
        raise ConfigError(
            dotted_key(path), f"{config} is not a finite number; every number in a config must be"
        )


def boolean_hint(instance: Any, nested: bool = False) -> str:
    """What to say when a boolean setting got a string (Snakemake's --config reads
    ``false`` as text and ``False`` as a boolean, but every value inside a mapping given
    there, e.g. ``logging={'tensorboard': True}``, as text)."""
    if isinstance(instance, str) and instance.lower() in ("true", "false", "yes", "no", "on", "off"):
        word = "True" if instance.lower() in ("true", "yes", "on") else "False"
        if nested:
            return (
                f" (a value inside a mapping given with --config stays text, {instance!r} "
                f"included: set this key in a config file, as {word.lower()} without quotes)"
            )
        return (
            f" (on the command line Snakemake reads {instance!r} as text: write "
            f"--config key={word}; in a YAML file write {word.lower()} without quotes)"
        )
    return ""


def schema_error(validator, instance: Any, nested: bool = False) -> tuple[list, str] | None:
    """The most telling error of ``instance`` under a JSON-schema ``validator``, or None:
    (the path of the offending key, the message). The path names a missing or
    unexpected key itself, not the mapping that holds it."""
    import jsonschema

    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return None
    path = list(error.absolute_path)
    named = re.match(r"'([^']+)' is a required property", error.message) or re.search(
        r"\('([^']+)' (?:was|were) unexpected\)", error.message
    )
    if named and error.validator in ("required", "additionalProperties"):
        path.append(named.group(1))
    hint = (
        boolean_hint(error.instance, nested=nested or len(path) > 1)
        if error.validator == "type" and "boolean" in str(error.validator_value)
        else ""
    )
    if error.validator == "type" and "integer" in str(error.validator_value):
        value = error.instance
        if isinstance(value, float) and value.is_integer():
            hint = f" (a count or an index: write it as {int(value)}, without a decimal point)"
    return path, error.message + hint


@functools.cache
def strict_validator():
    """JSON Schema (draft 2020-12) as the config reads it: an integer is written as one.
    The standard takes 64.0 for an integer, and a setting written so would reach a job
    as a float (a layer of 64.0 units, a folder seed0.0/): the one rule, for every key
    of the config and every schema a method, model or dataset declares."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return jsonschema.validators.extend(base, type_checker=checker)


def validator_with_defaults(schema: dict[str, Any]):
    """A JSON-schema validator (:func:`strict_validator`) that fills in missing
    properties' defaults as it goes."""
    import jsonschema

    base = strict_validator()
    check_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if isinstance(prop, dict) and "default" in prop and name not in instance:
                    instance[name] = copy.deepcopy(prop["default"])
        yield from check_properties(validator, properties, instance, subschema)

    cls = jsonschema.validators.extend(base, {"properties": properties_with_defaults})
    return cls(schema)


def check_settings(values: dict[str, Any], settings: dict[str, Any], key: str) -> None:
    """A user's own settings (a model block's keys, a loader's entry) against the JSON
    schemas its code declares (``SETTINGS``): no other key, each value valid; the
    declared defaults are filled into ``values``. Errors name ``key.<setting>``."""
    schema = {"type": "object", "additionalProperties": False, "properties": settings}
    found = schema_error(validator_with_defaults(schema), values, nested=True)
    if found is not None:
        path, message = found
        raise ConfigError(key + key_below(path), message)


def schema_problem(value: Any, schema: dict[str, Any]) -> tuple[str, str] | None:
    """Whether ``value`` fits ``schema`` (a setting a method declares): None, or (where
    below the value's own key, e.g. ``.threshold`` or ``[2]``; the message)."""

    found = schema_error(strict_validator()(schema), value, nested=True)
    if found is None:
        return None
    path, message = found
    return key_below(path), message


def check_names(config: dict[str, Any]) -> None:
    """Experiment, arm and method names: whole words (no trailing newline) that do not
    collide with what the results layout writes."""
    experiments = config.get("experiments") or {}
    for name, exp in experiments.items():
        key = f"experiments.{name}"
        _whole_word(key, name)
        if name in RESERVED_EXPERIMENT_NAMES:
            raise ConfigError(key, f"{name!r} is {RESERVED_EXPERIMENT_NAMES[name]}; name it otherwise")
        if not isinstance(exp, dict):
            continue
        for kind in ("arms", "methods"):
            for sub in exp.get(kind) or {}:
                _whole_word(f"{key}.{kind}.{sub}", sub)
                if kind == "methods" and sub in NODE_FILES:
                    raise ConfigError(
                        f"{key}.methods.{sub}",
                        f"{sub!r} is a file every model's folder holds (its method's files go to a folder "
                        "of that name); name it otherwise",
                    )
    for i, name in enumerate(config.get("run") or []):
        if isinstance(name, str):
            _whole_word(f"run[{i}]", name)


def _whole_word(key: str, name: Any) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            key,
            f"{name!r} is not a name: a letter, then letters, digits, '_', '.' or '-' (nothing else, "
            "no spaces or line breaks)",
        )


def normalized_path(value: str, cwd: str | os.PathLike | None = None) -> str:
    """One spelling per folder: resolved (symlinks, '..', './', trailing '/'), and relative
    to the working directory when it is inside it (so that 'results', './results/' and
    its absolute path are all 'results')."""
    cwd = Path(cwd or os.getcwd()).resolve()
    resolved = (cwd / Path(os.path.expanduser(value))).resolve()
    try:
        return str(resolved.relative_to(cwd)) or "."
    except ValueError:
        return str(resolved)


def check_data_dir(data_dir: str) -> None:
    """The data folder is a folder (it may not exist yet: the data step downloads into it)."""
    path = Path(data_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(
            "data_dir", f"{data_dir!r} is a file; give the folder that holds MNIST/, FashionMNIST/, ..."
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m clpipe.config_input FILE...``: read config files strictly, as the
    workflow does. Snakemake reads a --configfile itself before the workflow starts, and
    on a syntax error says only that the file is not valid JSON or YAML; this names the
    file, line and column."""
    import sys

    failed = 0
    for path in argv if argv is not None else sys.argv[1:]:
        try:
            read_strictly(path)
            print(f"{path}: ok")
        except (ConfigFileError, OSError) as err:
            print(err, file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
