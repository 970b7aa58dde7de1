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
        '                      settings={"alpha": {"type": "number", "default": 0.5}},\n'
        '                      importance=True, palette="Reds")\n\n'
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


def _config_with_method(method: dict, arm: dict | None = None) -> dict:
    return {
        "data_dir": "data",
        "experiments": {
            "e": {
                "dataset": "mnist",
                "tasks": [[0, 1], [2, 3]],
                "model": {"name": "mlp", "hidden": [8]},
                "train": {"epochs": 1, "batch_size": 8, "optimizer": {"name": "sgd", "lr": 0.1}},
                "methods": {"m": method},
                "arms": {"a": {"method": "m", **(arm or {})}},
            }
        },
    }


def _validate(config):
    from clpipe.config import validate_config

    return validate_config(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))


@pytest.mark.parametrize(
    "method, arm, key, message",
    [
        (
            {"type": "mag", "gamma": -1},
            None,
            "experiments.e.methods.m.gamma",
            "less than or equal to the minimum",
        ),
        ({"type": "mag", "gama": 2}, None, "experiments.e.methods.m.gama", "unexpected"),
        (
            {"type": "replay", "budget": {"fraction": 2}},
            None,
            "experiments.e.methods.m.budget.fraction",
            "maximum",
        ),
        ({"type": "mag"}, {"freeze": [20, 120]}, "experiments.e.arms.a.freeze[1]", "maximum"),
        ({"type": "mag"}, {"freeze_total": "x"}, "experiments.e.arms.a.freeze_total", "not of type"),
        ({"type": "mag"}, {"lambda": 1}, "experiments.e.arms.a.lambda", "not a setting of method 'mag'"),
        (
            {"type": "ewc", "online": "yes"},
            {"lambda": 1},
            "experiments.e.methods.m.online",
            "not of type 'boolean'",
        ),
        ({"type": "magg"}, None, "experiments.e.methods.m.type", "unknown method 'magg'"),
    ],
)
def test_a_method_s_settings_are_checked_against_its_declaration(method, arm, key, message):
    from clpipe.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as err:
        _validate(_config_with_method(method, arm))
    assert err.value.key == key


def test_a_declared_default_fills_a_setting_the_config_leaves_out():
    exp = _validate(_config_with_method({"type": "mag"}, {"freeze": 20}))["e"]
    assert exp.methods["m"] == {"type": "mag", "gamma": 1.0, "scale_biases": False}
    assert exp.arms["a"].per_task == {2: {"freeze": 20}}


USER_METHOD = '''"""A user's method, outside the package."""

from __future__ import annotations

from clpipe.methods.traits import MethodTraits

METHOD = MethodTraits(
    name="shrink",
    implementation=f"{__name__}:Shrink",
    description="fine-tuning whose weights shrink by a factor after each task",
    settings={"factor": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.5}},
    per_task_settings={"boost": {"type": "integer", "minimum": 0, "default": 1}},
)

import torch  # the implementation: never run to read the declaration

raise RuntimeError("the implementation was run")
'''


def test_a_user_s_method_by_reference_is_validated_from_its_own_declaration(tmp_path, monkeypatch):
    from clpipe.errors import ConfigError

    (tmp_path / "usermethods").mkdir()
    (tmp_path / "usermethods" / "__init__.py").write_text("")
    (tmp_path / "usermethods" / "shrink.py").write_text(USER_METHOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "usermethods", raising=False)
    exp = _validate(_config_with_method({"type": "usermethods.shrink:Shrink"}, {"boost": [3]}))["e"]
    assert exp.methods["m"] == {"type": "usermethods.shrink:Shrink", "factor": 0.5}
    assert exp.arms["a"].per_task == {2: {"boost": 3}}
    assert exp.traits_of("a").name == "shrink"
    assert "usermethods.shrink" not in sys.modules  # read, not imported
    with pytest.raises(ConfigError, match="maximum") as err:
        _validate(_config_with_method({"type": "usermethods.shrink:Shrink", "factor": 2}))
    assert err.value.key == "experiments.e.methods.m.factor"
    with pytest.raises(ConfigError, match="not a setting of method 'shrink'") as err:
        _validate(_config_with_method({"type": "usermethods.shrink:Shrink"}, {"freeze": 1}))
    assert err.value.key == "experiments.e.arms.a.freeze"
    with pytest.raises(
        ConfigError, match="implemented by 'usermethods.shrink:Shrink', not 'usermethods.shrink:Other'"
    ):
        _validate(_config_with_method({"type": "usermethods.shrink:Other"}))
    with pytest.raises(ConfigError, match="module 'usermethods.absent' not found") as err:
        _validate(_config_with_method({"type": "usermethods.absent:Shrink"}))
    assert err.value.key == "experiments.e.methods.m.type"


def test_a_method_an_installed_package_registers_is_found_by_its_entry_point(tmp_path, monkeypatch):
    (tmp_path / "usershrink.py").write_text(USER_METHOD)
    dist = tmp_path / "usershrink-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: usershrink\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[clpipe.methods]\nshrink_it = usershrink:Shrink\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    exp = _validate(_config_with_method({"type": "shrink_it", "factor": 0.25}))["e"]
    assert exp.methods["m"] == {"type": "shrink_it", "factor": 0.25}
    assert exp.traits_of("a").implementation == "usershrink:Shrink"


@pytest.mark.parametrize(
    "declared, message",
    [
        ('settings={"a": {"type": "numbr"}}', r"settings\['a'\] is no valid JSON schema"),
        (
            'settings={"a": {"type": "number", "default": "x"}}',
            r"its default 'x' does not fit its own schema",
        ),
        (
            'per_task_settings={"a": {"type": "number", "minimum": 0, "default": -5}}',
            "its default -5 does not fit",
        ),
        ('settings={"type": {"type": "string"}}', r"settings\['type'\]: the name 'type' is the config's own"),
        ('per_task_settings={"n_tasks": {"type": "integer"}}', "the name 'n_tasks' is the config's own"),
        ("settings=SETTINGS", "NameError: name 'SETTINGS' is not defined"),
    ],
)
def test_a_users_declaration_with_a_mistake_is_refused_naming_its_type(
    tmp_path, monkeypatch, declared, message
):
    from clpipe.errors import ConfigError

    (tmp_path / "badmethod.py").write_text(
        "from clpipe.methods.traits import MethodTraits\n\n"
        'METHOD = MethodTraits(name="bad", implementation=f"{__name__}:Bad", description="d",\n'
        f"                      {declared})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=message) as err:
        _validate(_config_with_method({"type": "badmethod:Bad"}))
    assert err.value.key == "experiments.e.methods.m.type"


def test_the_built_in_declarations_have_no_such_mistake():
    from clpipe.methods import declaration_problems

    assert {name: declaration_problems(t) for name, t in REGISTRY.items()} == {name: [] for name in REGISTRY}


def test_an_empty_per_task_list_is_refused_not_an_arm_that_trains_nothing():
    from clpipe.errors import ConfigError

    for method, arm in (({"type": "ewc"}, {"lambda": []}), ({"type": "mag"}, {"freeze_total": []})):
        with pytest.raises(ConfigError, match="an empty list") as err:
            _validate(_config_with_method(method, arm))
        assert err.value.key == f"experiments.e.arms.a.{next(iter(arm))}"


def test_a_users_declaration_is_read_afresh_by_the_next_validation(tmp_path, monkeypatch):
    path = tmp_path / "freshmethod.py"
    text = (
        "from clpipe.methods.traits import MethodTraits\n\n"
        'METHOD = MethodTraits(name="fresh", implementation=f"{__name__}:Fresh", description="d",\n'
        '                      settings={"a": {"type": "number", "default": DEFAULT}})\n'
    )
    path.write_text(text.replace("DEFAULT", "1.0"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _validate(_config_with_method({"type": "freshmethod:Fresh"}))["e"].methods["m"]["a"] == 1.0
    path.write_text(text.replace("DEFAULT", "3.0"))
    assert _validate(_config_with_method({"type": "freshmethod:Fresh"}))["e"].methods["m"]["a"] == 3.0
