"""A user's own code named by ``module:Name``: found without being run, fingerprinted
as the jobs that run it see it (clpipe.plugins, clpipe.plan.user_code)."""

import sys

import pytest

from clpipe import fingerprint, plugins
from clpipe.errors import ConfigError


@pytest.fixture
def userpkg(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("def scale(x):\n    return 2 * x\n")
    (pkg / "model.py").write_text(
        '"""A model."""\n\nimport math\n\nfrom userpkg.helpers import scale\n\n\n'
        "def build(spec):\n    # a comment\n    return scale(spec)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] == "userpkg"]:
        monkeypatch.delitem(sys.modules, name)  # another test's userpkg
    yield pkg
    for name in [m for m in sys.modules if m.split(".")[0] == "userpkg"]:
        del sys.modules[name]


@pytest.mark.parametrize("value", ["pkg.mod:Name", "mod:build_tiny", "a.b.c:_X1"])
def test_a_reference_is_module_colon_name(value):
    assert plugins.is_reference(value)
    assert plugins.split_reference(value, "k") == tuple(value.split(":"))


@pytest.mark.parametrize("value", ["mag", "pkg.mod", "pkg.mod:", ":Name", "pkg mod:Name", "pkg.mod:a.b", 3])
def test_anything_else_is_not_and_is_refused_naming_the_key(value):
    assert not plugins.is_reference(value)
    with pytest.raises(ConfigError, match="not a reference to code") as err:
        plugins.split_reference(value, "experiments.e.model.name")
    assert err.value.key == "experiments.e.model.name"


def test_a_module_s_file_is_found_without_running_it(userpkg):
    assert plugins.module_file("userpkg.model", "k") == userpkg / "model.py"
    assert "userpkg.model" not in sys.modules


def test_a_missing_module_is_refused_naming_the_key_and_what_to_do(userpkg):
    with pytest.raises(ConfigError, match="module 'userpkg.nothing' not found.*PYTHONPATH") as err:
        plugins.module_file("userpkg.nothing", "experiments.e.methods.m.type")
    assert err.value.key == "experiments.e.methods.m.type"
    with pytest.raises(ConfigError, match="module 'nopkg.mod' not found"):
        plugins.module_file("nopkg.mod", "k")
    with pytest.raises(ConfigError, match="has no Python source"):
        plugins.module_file("math", "k")  # built in: nothing to fingerprint


def test_load_imports_the_named_object_or_names_what_is_missing(userpkg):
    assert plugins.load("userpkg.model:build", "k")(3) == 6
    with pytest.raises(ConfigError, match="module 'userpkg.model' has no 'nope'"):
        plugins.load("userpkg.model:nope", "k")


def test_the_fingerprint_follows_the_user_s_own_imports_and_their_code_only(userpkg):
    first = fingerprint.user_code(["userpkg.model"], "k")
    assert set(fingerprint.user_files(["userpkg.model"], "k")) == {
        "userpkg",
        "userpkg.model",
        "userpkg.helpers",
    }
    model = userpkg / "model.py"
    model.write_text(
        model.read_text().replace("# a comment", "# another comment").replace('"""A model."""', '"""Doc."""')
    )
    fingerprint._parsed.cache_clear()
    assert fingerprint.user_code(["userpkg.model"], "k") == first  # comments and docstrings
    (userpkg / "helpers.py").write_text("def scale(x):\n    return 3 * x\n")
    fingerprint._parsed.cache_clear()
    assert fingerprint.user_code(["userpkg.model"], "k") != first  # an imported helper's code
    assert fingerprint.user_code([], "k") == ""


def test_finding_a_module_runs_neither_it_nor_its_parent_packages(tmp_path, monkeypatch):
    pkg = tmp_path / "eagerpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('the package was run')\n")
    (pkg / "mine.py").write_text("raise RuntimeError('the module was run')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugins.module_file("eagerpkg.mine", "k") == pkg / "mine.py"
    assert "eagerpkg" not in sys.modules
    assert plugins.find_spec("eagerpkg.nothing") is None
    assert plugins.find_spec("eagerpkg.mine.deeper") is None  # a module is no package


def test_the_fingerprint_follows_relative_imports_and_the_users_flat_modules_only(tmp_path, monkeypatch):
    (tmp_path / "relpkg").mkdir()
    (tmp_path / "relpkg" / "__init__.py").write_text("from .method import Method\n")
    (tmp_path / "relpkg" / "method.py").write_text(
        "from .helpers import scale\nfrom . import other\nimport yaml\n"
    )
    (tmp_path / "relpkg" / "helpers.py").write_text("def scale(x):\n    return 2 * x\n")
    (tmp_path / "relpkg" / "other.py").write_text("import flat_helpers\n")
    (tmp_path / "flat_helpers.py").write_text("K = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    files = fingerprint.user_files(["relpkg.method"], "k")
    # its package (its __init__ runs on import), the package's helpers (relative imports)
    # and a module of the user's beside it; not yaml, an installed package
    assert set(files) == {"relpkg", "relpkg.method", "relpkg.helpers", "relpkg.other", "flat_helpers"}
    first = fingerprint.user_code(["relpkg.method"], "k")
    (tmp_path / "flat_helpers.py").write_text("K = 2\n")
    fingerprint._parsed.cache_clear()
    assert fingerprint.user_code(["relpkg.method"], "k") != first
    assert "relpkg" not in sys.modules


def test_a_users_method_built_on_a_built_in_one_runs_that_ones_module(tmp_path, monkeypatch):
    (tmp_path / "onewc.py").write_text(
        "from clpipe.methods.traits import MethodTraits\n\n"
        'METHOD = MethodTraits(name="onewc", implementation=f"{__name__}:Mine", description="d")\n\n'
        "from clpipe.methods.ewc import ElasticWeightConsolidation\n\n\n"
        "class Mine(ElasticWeightConsolidation):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    script = fingerprint.package_root().parent / "train_next_task.py"
    methods = fingerprint.method_modules()
    mine = fingerprint.job_code(str(script), None, methods, None, (("onewc", "k"),))
    without = fingerprint.code_modules(script, None, methods)
    with_ewc = fingerprint.code_modules(script, None, methods, also=["clpipe.methods.ewc"])
    assert "clpipe.methods.ewc" not in without and "clpipe.methods.ewc" in with_ewc
    assert mine.split("+")[0] == fingerprint.fingerprint(with_ewc)


def test_a_folder_without_init_holds_a_users_module_and_is_no_module_itself(tmp_path, monkeypatch):
    """The worked example as printed (docs/your_code.md): mymethods/anchor.py, no __init__.py (a namespace
    package: Python imports from it). Its module is found and fingerprinted; the folder
    named as if it were a module is refused naming the key and what to write."""
    (tmp_path / "nsmethods").mkdir()
    (tmp_path / "nsmethods" / "anchor.py").write_text("from nsmethods import helper\n\nX = 1\n")
    (tmp_path / "nsmethods" / "helper.py").write_text("Y = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugins.is_namespace_package("nsmethods") and not plugins.is_namespace_package("nsmethods.anchor")
    files = fingerprint.user_files(["nsmethods.anchor"], "k")
    assert files == {
        "nsmethods.anchor": tmp_path / "nsmethods" / "anchor.py",
        "nsmethods.helper": tmp_path / "nsmethods" / "helper.py",
    }
    with pytest.raises(ConfigError, match=r"'nsmethods' is a folder \(.*nsmethods\), not a module") as err:
        plugins.module_file("nsmethods", "experiments.e.methods.m.type")
    assert err.value.key == "experiments.e.methods.m.type"
