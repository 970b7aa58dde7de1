"""Code a config names from outside the package: ``module:Name`` (torch-free).

A method, a model or a dataset may be a user's own, kept in their own importable
module (on ``PYTHONPATH`` or installed): the config names it by reference,
``mypackage.mymethod:MyMethod``, and the pipeline runs it like a built-in one. A
method may also be registered under a short name through a Python entry point of the
group :data:`METHOD_ENTRY_POINTS` (``[project.entry-points."clpipe.methods"]``
``mymethod = "mypackage.mymethod:MyMethod"``).

The workflow never imports such a module to build the DAG (it may import torch): it
finds its source file (``importlib.util.find_spec``, which imports the parent packages
of a dotted name, not the module itself) and reads what it needs from the file. Only
the job that runs the code imports it.

A user's module is part of the code of the jobs that run it:
:func:`clpipe.fingerprint.user_code` hashes its code as it does the package's.
"""

from __future__ import annotations

import importlib
import re
import sys
from importlib.machinery import ModuleSpec
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from clpipe.errors import ConfigError

REFERENCE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)$")
METHOD_ENTRY_POINTS = "clpipe.methods"


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


def entry_point(group: str, name: str) -> str | None:
    """The ``module:Name`` an installed distribution registers as ``name`` in ``group``."""
    for point in entry_points(group=group, name=name):
        return point.value
    return None
