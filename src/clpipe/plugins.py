"""Code a config names from outside the package: ``module:Name`` (torch-free).

A method, a model or a dataset loader may be a user's own, kept in their own importable
module (on ``PYTHONPATH`` or installed): the config names it by reference,
``mypackage.mymethod:MyMethod``, and the pipeline runs it like a built-in one. An
installed distribution may also register it under a short name, as an entry point of
the group :data:`METHOD_ENTRY_POINTS`, :data:`MODEL_ENTRY_POINTS` or
:data:`DATASET_ENTRY_POINTS` (``[project.entry-points."clpipe.methods"]``
``mymethod = "mypackage.mymethod:MyMethod"``).

The workflow never imports such a module to build the DAG (it may import torch): it
finds its source file without running it or its parent packages (:func:`find_spec`)
and runs only its declaration part (:func:`run_declaration`: the statements before its
first import of anything but a few torch-free modules), where a method declares its
``METHOD`` and a model or loader may declare its ``SETTINGS``. Only the job that runs
the code imports it.

A user's module is part of the code of the jobs that run it:
:func:`clpipe.fingerprint.job_code` hashes its code as it does the package's."""

from __future__ import annotations

import ast
import functools
import importlib
import re
import sys
from importlib.machinery import ModuleSpec
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from clpipe.errors import ConfigError

REFERENCE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)$")
# entry point groups: an installed distribution registers its code under a short name
METHOD_ENTRY_POINTS = "clpipe.methods"
MODEL_ENTRY_POINTS = "clpipe.models"
DATASET_ENTRY_POINTS = "clpipe.datasets"  # a dataset's loader

# what a declaration part may import: torch-free modules only (the rest is the code's)
DECLARATION_IMPORTS = (
    "__future__",
    "typing",
    "collections.abc",
    "dataclasses",
    "math",
    "clpipe.methods.traits",
)


def is_reference(value: Any) -> bool:
    """Whether ``value`` names code by ``module:Name``."""
    return isinstance(value, str) and REFERENCE.match(value) is not None


def split_reference(value: str, key: str) -> tuple[str, str]:
    """(module, name) of a ``module:Name`` reference; refused naming ``key`` otherwise."""
    match = REFERENCE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(
            key, f"{value!r} is not a reference to code (module:Name, e.g. mypackage.mymethod:MyMethod)"
        )
    return match.group(1), match.group(2)


def find_spec(module: str) -> ModuleSpec | None:
    """Where ``module`` is, found the way ``import`` finds it (the finders of
    ``sys.meta_path``: sys.path, editable installs) but without running it or its parent
    packages (``importlib.util.find_spec`` runs the parents' ``__init__``, which may
    import the implementation and torch). None: not found."""
    spec: ModuleSpec | None = None
    parts = module.split(".")
    for i in range(len(parts)):
        name, search = ".".join(parts[: i + 1]), spec.submodule_search_locations if spec else None
        if i and search is None:
            return None  # the parent is a module, not a package
        loaded = sys.modules.get(name)
        spec = getattr(loaded, "__spec__", None) if loaded is not None else None
        for finder in sys.meta_path if spec is None else ():
            try:
                spec = finder.find_spec(name, search) if hasattr(finder, "find_spec") else None
            except (ImportError, ValueError, AttributeError):
                spec = None
            if spec is not None:
                break
        if spec is None:
            return None
    return spec


def is_namespace_package(module: str) -> bool:
    """Whether ``module`` is a folder without ``__init__.py`` (a namespace package:
    Python imports modules from it, and it holds no code of its own)."""
    spec = find_spec(module)
    return spec is not None and spec.origin is None and spec.submodule_search_locations is not None


def module_file(module: str, key: str) -> Path:
    """The source file of ``module``, found without running it or its parent packages;
    refused naming ``key`` when it cannot be found or has no Python source."""
    spec = find_spec(module)
    if spec is None:
        raise ConfigError(
            key,
            f"module {module!r} not found: put the folder holding it on PYTHONPATH (for "
            "the workflow and its jobs alike) or install it",
        )
    origin = Path(spec.origin) if spec.origin else None
    if origin is None and spec.submodule_search_locations is not None:
        folders = ", ".join(str(p) for p in dict.fromkeys(spec.submodule_search_locations))
        raise ConfigError(
            key,
            f"{module!r} is a folder ({folders}), not a module: name the module in it, "
            f"e.g. {module}.<file without .py>:<name>",
        )
    if origin is None or origin.suffix != ".py" or not origin.is_file():
        raise ConfigError(
            key,
            f"module {module!r} has no Python source file ({spec.origin}): nothing to read or fingerprint",
        )
    return origin


def load(value: str, key: str) -> Any:
    """The object a ``module:Name`` reference names, imported (a job's side only)."""
    module, name = split_reference(value, key)
    try:
        found = getattr(importlib.import_module(module), name)
    except AttributeError:
        raise ConfigError(key, f"module {module!r} has no {name!r}") from None
    except ModuleNotFoundError as err:
        raise ConfigError(key, f"{value!r}: {err}; is its folder on PYTHONPATH?") from None
    return found


def resolve(value: str, group: str) -> str | None:
    """The ``module:Name`` that ``value`` names: itself if it is one, else what an
    installed distribution registers as ``value`` in entry point ``group``; None: neither."""
    return value if is_reference(value) else entry_point(group, value)


def declaration_part(tree: ast.Module) -> list[ast.stmt]:
    """A module's statements up to its first import of anything but a torch-free module
    of DECLARATION_IMPORTS: the part that declares what the workflow reads of it."""
    part = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            modules = []
        if any(m not in DECLARATION_IMPORTS for m in modules):
            break
        part.append(node)
    return part


def run_declaration(path: str | Path, module: str) -> dict[str, Any]:
    """The names a module's declaration part defines, run alone (never its imports of
    torch or of its implementation)."""
    path = Path(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    namespace: dict[str, Any] = {"__name__": module, "__file__": str(path)}
    exec(compile(ast.Module(body=declaration_part(tree), type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def schema_problems(settings: dict[str, Any], where: str = "") -> list[str]:
    """What is wrong with settings declared as JSON schemas (name -> schema, with its
    default): a schema that is not valid (draft 2020-12), a default it refuses."""
    import jsonschema

    from clpipe.config_input import strict_validator

    problems = []
    if not isinstance(settings, dict):
        return [f"{where or 'settings'} is a mapping of names to JSON schemas, not {type(settings).__name__}"]
    for key, schema in settings.items():
        at = f"{where}[{key!r}]"
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.exceptions.SchemaError as err:
            problems.append(f"{at} is no valid JSON schema: {err.message}")
            continue
        if "default" in schema and not strict_validator()(schema).is_valid(schema["default"]):
            problems.append(f"{at}: its default {schema['default']!r} does not fit its own schema")
    return problems


def declared_settings(reference: str, key: str) -> dict[str, Any] | None:
    """The ``SETTINGS`` the module of a ``module:Name`` reference declares (a user's
    model or dataset loader: name -> JSON schema with its default), read from its
    declaration part without importing it; None: it declares none (its settings are
    passed as given). A mistake in it is refused naming ``key``."""
    module, _ = split_reference(reference, key)
    path = module_file(module, key)
    try:
        settings = run_declaration(path, module).get("SETTINGS")
    except Exception as err:  # the user's declaration part failed to run: say where
        why = f"{type(err).__name__}: {err}"
        raise ConfigError(key, f"{reference!r}: reading its SETTINGS in {path}: {why}") from None
    if settings is None:
        return None
    problems = schema_problems(settings, "SETTINGS")
    if problems:
        raise ConfigError(key, f"{reference!r} ({path}): " + "; ".join(problems))
    return settings


def entry_point(group: str, name: str) -> str | None:
    """The ``module:Name`` an installed distribution registers as ``name`` in ``group``
    (looked up once per sys.path: the DAG asks for every job of a user's model)."""
    return _entry_point(group, name, tuple(sys.path))


@functools.cache
def _entry_point(group: str, name: str, path: tuple[str, ...]) -> str | None:
    for point in entry_points(group=group, name=name):
        return point.value
    return None
