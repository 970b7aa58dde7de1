"""A method is one file: the registry reads each file's declaration without importing it."""

import subprocess
import sys

import pytest

from clpipe.methods import REGISTRY, read_declaration
from clpipe.methods.traits import MethodTraits
from conftest import ROOT

METHODS = ROOT / "src" / "clpipe" / "methods"


def test_the_registry_is_every_method_file_and_reading_it_imports_no_torch():
    code = (
        "import sys; from clpipe.methods import REGISTRY; "
        "print(sorted(REGISTRY)); print('torch' in sys.modules, 'clpipe.methods.mag' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT / "src"
    ).stdout.splitlines()
    files = sorted(p.stem for p in METHODS.glob("*.py") if p.stem not in ("__init__", "base", "traits"))
    assert out[0] == str(sorted(REGISTRY)) == str(files)
    assert out[1] == "False False"  # neither torch nor a method's implementation


def test_each_method_names_its_own_file_s_class():
    for name, t in REGISTRY.items():
        module, cls = t.implementation.split(":")
        assert module == f"clpipe.methods.{name}", name
        assert f"class {cls}(" in (METHODS / f"{name}.py").read_text(), name


def test_a_new_method_file_is_read_as_it_declares_itself(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        '"""My method."""\n\nfrom __future__ import annotations\n\n'
        "from clpipe.methods.traits import MethodTraits\n\n"
        'METHOD = MethodTraits(name="mine", implementation=f"{__name__}:Mine", description="d",\n'
        '                      defaults={"alpha": 0.5}, importance=True, palette="Reds")\n\n'
        "import torch  # the implementation: never run to read the declaration\n\n"
        "raise RuntimeError('the implementation was run')\n"
    )
    method = read_declaration(path, "mypackage.mine")
    assert isinstance(method, MethodTraits)
    assert (method.name, method.implementation, method.defaults) == (
        "mine",
        "mypackage.mine:Mine",
        {"alpha": 0.5},
    )


def test_a_method_file_that_imports_torch_before_declaring_itself_is_named(tmp_path):
    path = tmp_path / "late.py"
    path.write_text(
        "import torch\n\nfrom clpipe.methods.traits import MethodTraits\n\n"
        'METHOD = MethodTraits(name="late", implementation="x:Y", description="d")\n'
    )
    with pytest.raises(
        TypeError, match=r"late.py: declares no METHOD = MethodTraits\(...\) before its first import"
    ):
        read_declaration(path, "late")


def test_a_method_s_defaults_are_its_declaration_s_only():
    """Built with no settings, each method holds its declared defaults; no method file
    writes a declared setting's default a second time (``.get(key, default)``)."""
    import re

    from clpipe.methods import load_method

    for name, t in REGISTRY.items():
        method = load_method({"type": name})
        assert method.settings == t.defaults, name
        assert method.per_task({}) == t.per_task, name
        source = (METHODS / f"{name}.py").read_text()
        again = [k for k in re.findall(r"\.get\(\"(\w+)\", ", source) if k in t.defaults or k in t.per_task]
        assert not again, f"{name}.py repeats the default of {again}"
