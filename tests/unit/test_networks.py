"""A user's own model, named in the config by ``module:function`` (clpipe.networks.build_model)."""

import copy
import sys
import textwrap

import pytest
import torch
import yaml
from torch import nn

from clpipe.checkpoints import load_model, save_model
from clpipe.config import validate_config
from clpipe.errors import ConfigError
from clpipe.model_settings import completed
from clpipe.networks import build_model, count_parameters, parameter_report, spec_of
from clpipe.plan import model_spec
from conftest import ROOT, SCHEMA

USER_MODULE = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, in_features, hidden, n_outputs):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, n_outputs)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        nn.init.constant_(self.out.bias, 0.25)  # its own init: kept

    def forward(self, x):
        return self.out(self.body(x))

    def spec(self):  # a method of its own that happens to share the growing network's name
        return "not a spec"


SEEN = []


def build_tiny(spec):
    SEEN.append((spec, torch.empty(0).device.type))
    inp = spec["input"]
    return Tiny(inp["channels"] * inp["size"] ** 2, spec["hidden"], spec["n_outputs"])


def not_a_model(spec):
    return {"layers": spec["hidden"]}


def task_headed(spec):
    model = build_tiny(spec)
    model.takes_task_id = True
    return model


def three_more(spec):
    inp = spec["input"]
    return Tiny(inp["channels"] * inp["size"] ** 2, spec["hidden"], spec["n_outputs"] + 3)


def wrong_input(spec):
    return Tiny(99, spec["hidden"], spec["n_outputs"])


NOT_CALLABLE = 3
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's package in a temporary folder on sys.path: ``mymodels_clpipe_test.tiny``."""
    package = tmp_path / "mymodels_clpipe_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tiny.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "mymodels_clpipe_test.tiny"
    import sys

    for name in [m for m in sys.modules if m.startswith("mymodels_clpipe_test")]:
        del sys.modules[name]


def user_spec(module, function="build_tiny", **kw):
    return {
        "name": f"{module}:{function}",
        "hidden": 8,
        "anything": {"the": "user's"},
        "input": {"size": 6, "channels": 2, "normalize": None},
        "n_outputs": 3,
        **kw,
    }


def test_a_user_model_is_built_from_its_spec_and_initialises_itself(user_module):
    import importlib

    spec = user_spec(user_module)
    before = copy.deepcopy(spec)
    torch.manual_seed(0)
    model = build_model(spec)
    assert isinstance(model, nn.Module) and type(model).__name__ == "Tiny"
    assert model(torch.randn(5, 2, 6, 6)).shape == (5, 3)
    assert count_parameters(model) == 2 * 36 * 8 + 8 + 8 * 3 + 3
    (seen, device), *_ = importlib.import_module(user_module).SEEN
    assert seen == before and device == "cpu"  # the whole spec, as written, on the job's device
    assert spec == before  # a copy: the caller's spec is never changed
    assert torch.equal(model.out.bias, torch.full((3,), 0.25))  # no glorot over its own init
    assert model.out.weight.abs().max() <= 1 / 8**0.5  # torch's default bound, not glorot's
    torch.manual_seed(0)
    again = build_model(spec)
    for p, q in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)  # seeded: the same model
    meta = build_model(spec, device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())
    assert spec_of(model, spec) is spec  # it never describes itself
    assert parameter_report(model, 1) == {"parameters_total": count_parameters(model)}


def test_a_user_model_file_rebuilds_it_from_the_stored_spec(user_module, tmp_path):
    spec = user_spec(user_module)
    model = build_model(spec)
    model.steps += 7
    save_model(str(tmp_path / "model.pt"), model, spec, {"step": "test"})
    again, _ = load_model(str(tmp_path / "model.pt"), torch.device("cpu"))
    x = torch.randn(2, 2, 6, 6)
    assert torch.equal(model(x), again(x)) and int(again.steps) == 7


def test_a_user_builder_that_returns_no_module_is_refused_naming_the_key(user_module):
    with pytest.raises(ConfigError, match="returned a dict, not a torch.nn.Module") as info:
        build_model(user_spec(user_module, "not_a_model"))
    assert info.value.key == "model.name" and "config key 'model.name'" in str(info.value)
    with pytest.raises(ConfigError, match="names an object of type 'int', not a function or class") as info:
        build_model(user_spec(user_module, "NOT_CALLABLE"))
    assert info.value.key == "model.name"
    with pytest.raises(ConfigError, match="takes_task_id") as info:
        build_model(user_spec(user_module, "task_headed"))
    assert info.value.key == "model.name"


def test_a_user_model_must_give_one_logit_per_output_of_the_head(user_module):
    """Checked on a first forward pass when it is built: a model with 3 logits too many
    trained and scored below chance before (a 2-way task at 0.41)."""
    with pytest.raises(ConfigError, match=r"gives \(1, 6\) for one input, not \(1, 3\)") as info:
        build_model(user_spec(user_module, "three_more"))
    assert info.value.key == "model.name"
    with pytest.raises(ConfigError, match=r"fails on one input of the experiment's shape \(1, 2, 6, 6\)"):
        build_model(user_spec(user_module, "wrong_input"))
    model = build_model(user_spec(user_module))
    assert model.training and int(model.steps) == 0  # the check changed nothing


def test_an_unknown_user_module_or_function_is_refused_naming_the_key(user_module):
    with pytest.raises(ConfigError, match="no_such_module_clpipe") as info:
        build_model(user_spec("no_such_module_clpipe.mine"))
    assert info.value.key == "model.name"
    with pytest.raises(ConfigError, match="has no 'build_huge'") as info:
        build_model(user_spec(user_module, "build_huge"))
    assert info.value.key == "model.name"


def test_completed_leaves_a_user_spec_as_it_is():
    spec = {"name": "pkg.mod:fn", "hidden": [4], "init": "mine", "input": {"size": 8}}
    assert completed(spec) == spec


def tiny_config(model):
    cfg = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    cfg["experiments"]["tiny"]["model"] = model
    return cfg


def test_the_config_takes_a_user_model_with_keys_of_its_own(user_module):
    model = {"name": f"{user_module}:build_tiny", "hidden": 8, "init": "mine", "layers": [{"any": "thing"}]}
    exp = validate_config(tiny_config(copy.deepcopy(model)), str(SCHEMA))["tiny"]
    assert exp.raw["model"] == model  # passed as written: no defaults, no built-in's checks
    spec = model_spec(exp)
    assert spec["n_outputs"] == 2 and spec["input"]["size"] == 32 and spec["layers"] == [{"any": "thing"}]
    assert build_model(spec)(torch.zeros(4, 3, 32, 32)).shape == (4, 2)
    named = {"name": f"{user_module}:build_tiny"}
    assert validate_config(tiny_config(dict(named)), str(SCHEMA))["tiny"].raw["model"] == named


def test_a_user_model_whose_module_is_missing_is_refused_before_any_job(user_module):
    with pytest.raises(ConfigError, match="module 'nopkg.mod' not found") as info:
        validate_config(tiny_config({"name": "nopkg.mod:fn"}), str(SCHEMA))
    assert info.value.key == "experiments.tiny.model.name"


@pytest.mark.parametrize(
    "model,key",
    [
        ({"name": "vgg16", "width": 0.0625, "layers": 3}, "experiments.tiny.model.layers"),
        ({"name": "mlp", "hidden": [8], "colour": "red"}, "experiments.tiny.model.colour"),
        ({"name": "pkg.mod"}, "experiments.tiny.model.name"),
        ({"name": "pkg.mod:fn:g"}, "experiments.tiny.model.name"),
        ({"name": "pkg..mod:fn"}, "experiments.tiny.model.name"),
        ({"name": "1pkg:fn", "hidden": 3}, "experiments.tiny.model.name"),
    ],
)
def test_the_config_still_refuses_unknown_keys_of_a_built_in_model_and_bad_names(model, key):
    with pytest.raises(ConfigError) as info:
        validate_config(tiny_config(model), str(SCHEMA))
    assert info.value.key == key, str(info.value)
    if not key.endswith(".name"):  # the schema's refusal, before the checks a schema cannot make
        assert "was unexpected" in str(info.value), str(info.value)


def test_a_user_model_is_a_plain_network_not_for_the_growing_method(user_module):
    cfg = tiny_config({"name": f"{user_module}:build_tiny"})
    exp = cfg["experiments"]["tiny"]
    exp["scenario"] = "task"
    exp["arms"] = {"grow": {"method": "growing"}}
    exp["methods"] = {}
    with pytest.raises(ConfigError, match="needs model 'growing'") as info:
        validate_config(cfg, str(SCHEMA))
    assert info.value.key == "experiments.tiny.arms.grow.method"


@pytest.mark.parametrize("k", ["n_outputs", "outputs", "input"])
def test_a_user_model_cannot_set_what_the_pipeline_gives_its_builder(user_module, k):
    with pytest.raises(ConfigError, match="set by the pipeline for the builder") as info:
        validate_config(tiny_config({"name": f"{user_module}:build_tiny", k: 99}), str(SCHEMA))
    assert info.value.key == f"experiments.tiny.model.{k}"


DECLARED = '''"""A user's model that declares its settings before its imports."""

SETTINGS = {
    "hidden": {"type": "integer", "minimum": 1, "default": 8},
    "act": {"enum": ["relu", "tanh"], "default": "relu"},
}

from torch import nn  # the implementation: never run to read SETTINGS


def build(spec):
    act = nn.ReLU() if spec["act"] == "relu" else nn.Tanh()
    inputs = spec["input"]["channels"] * spec["input"]["size"] ** 2
    hidden = spec["hidden"]
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, hidden), act, nn.Linear(hidden, spec["n_outputs"]))
'''


@pytest.fixture
def declared_module(tmp_path, monkeypatch):
    (tmp_path / "declaredmodel.py").write_text(DECLARED)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "declaredmodel", raising=False)
    return tmp_path


def test_a_user_model_s_declared_settings_are_checked_and_their_defaults_filled(declared_module):
    exp = validate_config(tiny_config({"name": "declaredmodel:build", "act": "tanh"}), str(SCHEMA))["tiny"]
    assert exp.raw["model"] == {"name": "declaredmodel:build", "act": "tanh", "hidden": 8}
    assert "declaredmodel" not in sys.modules  # read, not imported
    for model, key, message in (
        (
            {"name": "declaredmodel:build", "hidden": 0},
            "experiments.tiny.model.hidden",
            "less than the minimum",
        ),
        ({"name": "declaredmodel:build", "width": 2}, "experiments.tiny.model.width", "unexpected"),
        ({"name": "declaredmodel:build", "act": "gelu"}, "experiments.tiny.model.act", "is not one of"),
    ):
        with pytest.raises(ConfigError, match=message) as info:
            validate_config(tiny_config(model), str(SCHEMA))
        assert info.value.key == key


def test_a_user_model_an_installed_package_registers_is_found_by_its_entry_point(declared_module):
    dist = declared_module / "declaredmodel-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: declaredmodel\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[clpipe.models]\ndeclared_net = declaredmodel:build\n")
    exp = validate_config(tiny_config({"name": "declared_net"}), str(SCHEMA))["tiny"]
    assert exp.raw["model"] == {"name": "declared_net", "hidden": 8, "act": "relu"}
    model = build_model(model_spec(exp))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    with pytest.raises(ConfigError, match="unknown model 'no_such_net'") as info:
        validate_config(tiny_config({"name": "no_such_net"}), str(SCHEMA))
    assert info.value.key == "experiments.tiny.model.name"
