"""Continual-learning methods: the registry the workflow reads (torch-free).

A method is one file: it declares its :class:`MethodTraits` as ``METHOD`` (name,
description, settings as JSON schemas with their defaults, per-task settings, which
steps follow a task, its rewrite of an arm's settings, its role in the reports, its
colours and figures) before its implementation's imports, then implements
:class:`clpipe.methods.base.ContinualMethod`. The registry reads every file's
declaration without running the rest of it (:func:`read_declaration`): the workflow
never imports torch or a method's implementation to build the DAG, and the config's
validation of a method's settings is generated from its declaration
(:func:`method_schema`). Adding a method is adding its file.

The built-in methods are this package's files. A user's own method lives in their own
module, declared the same way, and a config names it by ``type: package.module:Class``
or by the name an installed distribution registers it under (entry point group
``clpipe.methods``, :mod:`clpipe.plugins`); :func:`traits` reads its declaration from
its file the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clpipe.errors import ConfigError
from clpipe.methods.traits import REQUIRED, ROLES, MethodTraits, SettingError
from clpipe.plugins import (
    DECLARATION_IMPORTS,
    METHOD_ENTRY_POINTS,
    module_file,
    resolve,
    run_declaration,
    schema_problems,
    split_reference,
)

__all__ = [
    "REGISTRY",
    "REQUIRED",
    "ROLES",
    "SettingError",
    "MethodTraits",
    "load_method",
    "method_schema",
    "traits",
]

NOT_METHODS = ("__init__", "base", "traits")


def read_declaration(path: str | Path, module: str) -> MethodTraits:
    """The ``METHOD`` a method file declares, read by running only its declaration part."""
    path = Path(path)
    method = run_declaration(path, module).get("METHOD")
    if not isinstance(method, MethodTraits):
        raise TypeError(
            f"{path}: declares no METHOD = MethodTraits(...) before its first import of torch or "
            f"of another module (a method file declares itself first; allowed before it: "
            f"{', '.join(DECLARATION_IMPORTS)})"
        )
    return method


def _builtin_methods() -> dict[str, MethodTraits]:
    found = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.stem in NOT_METHODS:
            continue
        method = read_declaration(path, f"{__name__}.{path.stem}")
        if method.name in found:
            raise ValueError(f"{path}: method {method.name!r} is declared twice")
        found[method.name] = method
    return found


REGISTRY: dict[str, MethodTraits] = _builtin_methods()


_USER_METHODS: dict[str, MethodTraits] = {}  # a user's methods by their config type, once read
# names the config keeps: a method entry's type; an arm's own keys (per-task, rewritten)
RESERVED = {"settings": ("type",), "per_task_settings": ("method", "start_from", "n_tasks", "train")}


def declaration_problems(method: MethodTraits) -> list[str]:
    """What is wrong with a method's declared settings: a schema that is no valid JSON
    schema (draft 2020-12), a default its own schema refuses, a name the config keeps
    for itself (a method entry's type, an arm's method, start_from, n_tasks)."""
    problems = []
    kinds = {"settings": method.settings, "per_task_settings": method.per_task_settings}
    kinds["rewritten_settings"] = method.rewritten_settings
    for kind, declared in kinds.items():
        reserved = RESERVED.get(kind, RESERVED["per_task_settings"])
        problems += [f"{kind}[{k!r}]: the name {k!r} is the config's own" for k in declared if k in reserved]
        problems += schema_problems({k: v for k, v in declared.items() if k not in reserved}, kind)
    return problems


def _user_method(method_type: str, key: str) -> MethodTraits | None:
    """The declaration of a method named by ``module:Class`` or an entry point, or None."""
    reference = resolve(method_type, METHOD_ENTRY_POINTS)
    if reference is None:
        return None
    module, _ = split_reference(reference, key)
    path = module_file(module, key)
    try:
        method = read_declaration(path, module)
    except Exception as err:  # the user's declaration part failed to run: say where
        raise ConfigError(
            key, f"{method_type!r}: reading its declaration in {path}: {type(err).__name__}: {err}"
        ) from None
    problems = declaration_problems(method)
    if problems:
        raise ConfigError(key, f"{method_type!r} ({path}): " + "; ".join(problems))
    if method.implementation != reference:
        raise ConfigError(
            key,
            f"{method_type!r}: module {module!r} declares method {method.name!r} implemented by "
            f"{method.implementation!r}, not {reference!r}",
        )
    if method.name in REGISTRY:
        raise ConfigError(
            key, f"{method_type!r} declares the name {method.name!r} of a built-in method; rename it"
        )
    return method


def forget_user_methods() -> None:
    """Read a user's declarations afresh next time (a config validated again in the same
    process, after an edit of the user's file)."""
    _USER_METHODS.clear()


def traits(method_type: str, key: str = "method.type") -> MethodTraits:
    """What the workflow knows of a method: a built-in one by its name, a user's by
    ``module:Class`` or an entry point's name (its declaration read, not imported).
    ``key``: the config key that names it, for the error an unknown one gets."""
    if method_type in REGISTRY:
        return REGISTRY[method_type]
    if method_type not in _USER_METHODS:
        method = _user_method(method_type, key)
        if method is None:
            known = ", ".join(sorted(REGISTRY))
            raise ConfigError(
                key,
                f"unknown method {method_type!r}: built-in methods are {known}; a method of your "
                f"own is named by module:Class (its module on PYTHONPATH) or by an entry point "
                f"of group {METHOD_ENTRY_POINTS!r}",
            )
        _USER_METHODS[method_type] = method
    return _USER_METHODS[method_type]


def method_schema(method_types: Iterable[str]) -> dict[str, Any]:
    """The JSON schema of a ``methods:`` entry of the config, generated from the
    declarations of ``method_types`` (every type the config names; each must be known):
    its ``type`` and, for each type, its settings and nothing else."""
    return {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string"}},
        "allOf": [
            {
                "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                "then": {
                    "additionalProperties": False,
                    "properties": {"type": {}, **traits(kind).settings},
                },
            }
            for kind in sorted(set(method_types))
        ],
    }


def load_method(settings: dict[str, Any]):
    """Instantiate the method described by a normalised method config (has ``type``)."""
    module_name, class_name = traits(settings["type"]).implementation.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls({k: v for k, v in settings.items() if k != "type"})
