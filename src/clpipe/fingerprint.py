"""Fingerprints of the package code each job runs: its rerun trigger (torch-free).

Snakemake reruns a job when its script changes, but almost all of the logic lives in
this package. So every rule also passes, as a param, the fingerprint of the package
modules its job can execute: the modules its script imports and everything they
import in turn (found by reading the source, not by importing it), and for a job of a
method, that method's own module. Editing one module reruns exactly the jobs whose
code includes it (and, through their outputs, what follows them):

- a method's file: the jobs of that method only (training, its importance and
  progress steps); every other method's module is left out of a job's code, though
  the registry names them all, since a job runs one method;
- the training loop, the models, the data path: every training job;
- the metrics or the aggregation: the aggregation and the figures; the figures: the
  figures.

What is hashed is each module's *code*, not its text: the source parsed, docstrings
removed, and printed back (``ast.unparse``). Comments, docstrings, blank lines and
formatting cannot change a result, so changing them reruns nothing. Two modules never
count: the package's ``__init__`` (it holds the version, which every result records
but which changes no result), ``clpipe.logs`` (log lines) and this module. The fingerprint names
modules, not paths: it is the same for any checkout of the same code, whatever its
folder, its files' times or the machine (for the same Python minor version: how a
parsed module prints back may change between versions).

Which clpipe: the one the workflow imports, which is the one its jobs import (each
rule's script puts its own folder, the workflow's ``src/``, first on ``sys.path``). A
clpipe installed elsewhere is fingerprinted the same way, from the ``.py`` files it
was installed with (a copy without its sources is refused: nothing to fingerprint).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from clpipe import plugins

PACKAGE = "clpipe"
# Modules that cannot change a result: the version string, the log format, and this
# module (it decides what reruns, and when a step may reuse an earlier one's work).
NOT_RESULTS = frozenset({PACKAGE, f"{PACKAGE}.logs", f"{PACKAGE}.fingerprint"})


@functools.cache
def package_root() -> Path:
    """The folder of the clpipe this process imports (a checkout's src/clpipe or an
    installed copy)."""
    import clpipe

    return Path(clpipe.__file__).resolve().parent


@functools.cache
def module_files(root: Path | None = None) -> dict[str, Path]:
    """Every module of the package: dotted name -> its source file."""
    root = root or package_root()
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([PACKAGE, *parts])] = path
    return found


class _Docstrings(ast.NodeTransformer):
    """Drops every statement that is only a string (docstrings and the like)."""

    def generic_visit(self, node):
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                kept = [
                    s
                    for s in block
                    if not (
                        isinstance(s, ast.Expr)
                        and isinstance(s.value, ast.Constant)
                        and isinstance(s.value.value, str)
                    )
                ]
                setattr(node, field, kept or [ast.Pass()])
        return node


# What a method file's METHOD declares for the reports only: its role in the comparisons,
# colours, extra figures, description. The jobs that use them get them through their specs
# (clpipe.plan: the aggregate's compare_to, the figures' arms and files), so a changed
# colour redraws a figure and retrains nothing.
REPORT_ONLY = ("description", "role", "palette", "colour", "figures")


class _ReportOnly(ast.NodeTransformer):
    """Drops the REPORT_ONLY keywords of ``METHOD = MethodTraits(...)``, the
    "description" of each setting it declares (its schemas' text, not their meaning),
    and the figures a method file declares (``X = SettingFigure(...)``)."""

    def visit_Assign(self, node):
        call = node.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "SettingFigure":
            return None
        if (
            any(isinstance(t, ast.Name) and t.id == "METHOD" for t in node.targets)
            and isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "MethodTraits"
        ):
            call.keywords = [k for k in call.keywords if k.arg not in REPORT_ONLY]
            for declared in ast.walk(call):
                if isinstance(declared, ast.Dict):
                    kept = [
                        (k, v)
                        for k, v in zip(declared.keys, declared.values, strict=True)
                        if not (isinstance(k, ast.Constant) and k.value == "description")
                    ]
                    declared.keys, declared.values = [k for k, _ in kept], [v for _, v in kept]
        return node


@functools.cache
def _parsed(path: Path) -> tuple[str, tuple[str, ...]]:
    """(the module's code without docstrings, comments or formatting; the clpipe
    modules it imports, anywhere in it)."""
    source = path.read_bytes()
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError:  # hashed as it is; the job itself will say what is wrong
        return hashlib.sha256(source).hexdigest(), ()
    imports = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imports.append(node.module)
            imports += [f"{node.module}.{alias.name}" for alias in node.names]
    code = ast.unparse(_ReportOnly().visit(_Docstrings().visit(tree)))
    return code, tuple(sorted({i for i in imports if i == PACKAGE or i.startswith(PACKAGE + ".")}))


def code_of_file(path: str | Path) -> str:
    """A Python file's code, without docstrings, comments or formatting."""
    return _parsed(Path(path))[0]


def method_modules(files: dict[str, Path] | None = None) -> tuple[str, ...]:
    """The modules of the methods: every module of clpipe.methods but its registry, the
    interface they share and the traits they declare (one method, one file)."""
    files = files or module_files()
    from clpipe.methods import NOT_METHODS  # torch-free, as this module

    shared = {f"{PACKAGE}.methods"} | {f"{PACKAGE}.methods.{m}" for m in NOT_METHODS if m != "__init__"}
    return tuple(sorted(m for m in files if m.startswith(f"{PACKAGE}.methods.") and m not in shared))


def imports_of(name: str, files: dict[str, Path]) -> set[str]:
    """The package's modules ``name`` imports (``from clpipe import io`` is clpipe.io;
    ``from clpipe.networks import X`` is clpipe.networks)."""
    return {m for m in _parsed(files[name])[1] if m in files}


def closure(
    roots: Iterable[str], files: dict[str, Path] | None = None, leave_out: Iterable[str] = ()
) -> list[str]:
    """The modules ``roots`` can run: themselves and what they import, recursively;
    ``leave_out`` (and what only they import) is not followed."""
    files = files or module_files()
    skip = set(leave_out)
    seen: set[str] = set()
    todo = [r for r in roots if r in files and r not in skip]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [m for m in imports_of(name, files) if m not in seen and m not in skip]
    return sorted(seen)


def script_imports(script: Path, files: dict[str, Path] | None = None) -> list[str]:
    """The package modules a rule's script imports."""
    files = files or module_files()
    return sorted(m for m in _parsed(Path(script))[1] if m in files)


def code_modules(
    script: Path,
    method_module: str | None,
    method_modules: Iterable[str],
    files: dict[str, Path] | None = None,
    also: Iterable[str] = (),
) -> list[str]:
    """The modules a job of ``script`` runs, for a job of the method implemented in
    ``method_module`` (None: no method or a user's). Every other method's module is left
    out, unless the job's own method imports it. ``also``: package modules the job runs
    besides (those a user's method or model imports: a user's method that builds on a
    built-in one runs its module)."""
    files = files or module_files()
    if not files:
        raise RuntimeError(f"{package_root()}: no .py sources of clpipe to fingerprint the jobs' code by")
    extra = [m for m in also if m in files]
    own = closure([method_module, *extra] if method_module else extra, files, leave_out=NOT_RESULTS)
    others = set(method_modules) - set(own)
    roots = script_imports(script, files) + ([method_module] if method_module else []) + extra
    # what only this module and the version and log modules import runs no result either
    return [m for m in closure(roots, files, leave_out=others | NOT_RESULTS) if m not in NOT_RESULTS]


def fingerprint(modules: Iterable[str], files: dict[str, Path] | None = None) -> str:
    """A short hash of the code of ``modules`` (by name, not path)."""
    files = files or module_files()
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(f"{name}\0{_parsed(files[name])[0]}\0".encode())
    return digest.hexdigest()[:16]


@functools.cache
def runs_module(script: str, module: str) -> bool:
    """Whether a job of ``script`` runs ``module`` (a job of no method)."""
    return module in code_modules(Path(script), None, ())


@functools.cache
def job_code(
    script: str,
    method_module: str | None = None,
    method_modules: tuple[str, ...] = (),
    besides: str | None = None,
    user_modules: tuple[tuple[str, str], ...] = (),
) -> str:
    """The rerun trigger of a job: the fingerprint of the package code it runs (less
    the modules a job of script ``besides`` runs too, if given), and of a user's own
    modules it runs (``user_modules``: a method's, a model's, each with the config key
    that names it; :func:`user_code`) with the package modules they import."""
    users: dict[str, Path] = {}
    for module, key in user_modules:
        users |= user_files([module], key)
    files = module_files()
    also = sorted({m for path in users.values() for m in _parsed(path)[1] if m in files})
    modules = code_modules(Path(script), method_module, method_modules, also=also)
    if besides is not None:
        shared = set(code_modules(Path(besides), None, method_modules))
        modules = [m for m in modules if m not in shared]
    package = fingerprint(modules)
    return f"{package}+{_digest(users)}" if users else package


# --- a user's own code (clpipe.plugins) ------------------------------------------------
# A method, model or dataset of the user's module is part of the jobs that run it: its
# code is hashed the same way, with that of every module of the user's own it imports
# (found in the folder the named module was found in, not an installed package, the
# standard library or clpipe), so editing it reruns those jobs and nothing else.


@functools.cache
def _not_users() -> tuple[Path, ...]:
    """Folders whose modules are never a user's own: the standard library, installed
    packages (a virtual environment inside the user's folder included), clpipe."""
    paths = sysconfig.get_paths()
    found = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return tuple(sorted(found | {package_root()}))


def _imported(name: str, path: Path) -> set[str]:
    """Every module the file of module ``name`` imports, anywhere in it, by absolute
    name (relative imports resolved against its package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    continue  # beyond the top-level package: Python refuses it too
                above = ".".join(parts[: len(parts) - (node.level - 1)])
                base = ".".join(p for p in (above, node.module) if p)
            if base:
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def user_files(modules: Iterable[str], key: str) -> dict[str, Path]:
    """``modules``, their parent packages and the user's own modules they import,
    recursively: name -> source file. Found without running any of them
    (clpipe.plugins.find_spec)."""
    files: dict[str, Path] = {}
    roots: dict[str, Path] = {}
    for name in modules:
        path = plugins.module_file(name, key)
        depth = len(name.split(".")) - (0 if path.name == "__init__.py" else 1)
        roots[name] = path.resolve().parents[depth]
    # importing a module runs its parent packages' __init__ too
    parents = {".".join(n.split(".")[:i]): roots[n] for n in roots for i in range(1, len(n.split(".")))}
    todo = [*parents.items(), *roots.items()]
    while todo:
        name, root = todo.pop()
        if name in files or plugins.is_namespace_package(name):
            continue  # a folder without __init__.py holds no code of its own
        files[name] = plugins.module_file(name, key)
        for imported in _imported(name, files[name]):
            if imported in files or imported.split(".")[0] == PACKAGE:
                continue
            spec = plugins.find_spec(imported)  # "from pkg.mod import function": None
            origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
            if (
                origin is not None
                and origin.suffix == ".py"
                and origin.is_relative_to(root)
                and not any(origin.is_relative_to(d) for d in _not_users())
            ):
                todo.append((imported, root))
    return files


def _digest(files: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{code_of_file(files[name])}\0".encode())
    return digest.hexdigest()[:16]


def user_code(modules: Iterable[str], key: str) -> str:
    """A short hash of the code of a user's ``modules`` and of the user's own modules
    they import, by module name; "" for none."""
    files = user_files(modules, key)
    return _digest(files) if files else ""
