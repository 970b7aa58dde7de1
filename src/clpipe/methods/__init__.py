"""Continual-learning methods: the registry the workflow reads (torch-free).

A method is one file in this package: it declares its :class:`MethodTraits` as
``METHOD`` (name, description, settings and their defaults, per-task settings, which
steps follow a task, its rewrite of an arm's settings, its role in the reports, its
colours and figures) before its implementation's imports, then implements
:class:`clpipe.methods.base.ContinualMethod`. The registry reads every file's
declaration without running the rest of it (:func:`read_declaration`): the workflow
never imports torch or a method's implementation to build the DAG. Adding a method is
adding its file (and its settings to the config schema).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

from clpipe.methods.traits import REQUIRED, ROLES, ArmSettingError, MethodTraits

__all__ = ["REGISTRY", "REQUIRED", "ROLES", "ArmSettingError", "MethodTraits", "load_method", "traits"]

# what a declaration may import: torch-free modules only (the rest is the implementation's)
DECLARATION_IMPORTS = (
    "__future__",
    "typing",
    "collections.abc",
    "dataclasses",
    "math",
    "clpipe.methods.traits",
)
NOT_METHODS = ("__init__", "base", "traits")


def _declaration_part(tree: ast.Module) -> list[ast.stmt]:
    """A method file's statements up to its first import of anything but a torch-free
    module of DECLARATION_IMPORTS: the part that declares the method."""
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


def read_declaration(path: str | Path, module: str) -> MethodTraits:
    """The ``METHOD`` a method file declares, read by running only its declaration part."""
    path = Path(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    namespace: dict[str, Any] = {"__name__": module, "__file__": str(path)}
    exec(compile(ast.Module(body=_declaration_part(tree), type_ignores=[]), str(path), "exec"), namespace)
    method = namespace.get("METHOD")
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
