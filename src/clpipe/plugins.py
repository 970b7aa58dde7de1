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
import importlib.util
import re
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


def module_file(module: str, key: str) -> Path:
    """The source file of ``module``, found without running it (its parent packages are
    imported); refused naming ``key`` when it cannot be found or has no Python source."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as err:  # a parent package missing or broken
        spec, why = None, f" ({type(err).__name__}: {err})"
    else:
        why = ""
    if spec is None:
        raise ConfigError(
            key,
            f"module {module!r} not found{why}: put the folder holding it on PYTHONPATH (for "
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
