"""Config validation (schema + semantic checks) and the arm/lineage model."""

import copy
from pathlib import Path

import pytest
import yaml

from clpipe.config import ConfigError, validate_config
from conftest import ROOT, SCHEMA
from helpers.bad_configs import BAD_CONFIGS, E, X, _set, base_config, mutate


def load(cfg):
    return validate_config(cfg, str(SCHEMA))


@pytest.mark.parametrize(
    "path", sorted((ROOT / "config").glob("*.yaml")) + sorted((ROOT / "tests/configs").glob("*.yaml"))
)
def test_shipped_configs_are_valid(path: Path):
    experiments = load(yaml.safe_load(path.read_text()))
    assert experiments


def test_defaults_are_filled():
    cfg = base_config()
    del cfg["experiments"]["tiny"]["scenario"]
    exps = load(cfg)
    assert exps["tiny"].scenario == "domain"
    assert cfg["experiments"]["tiny"]["eval"]["batch_size"] == 1000
    assert cfg["device"] == "cpu"


def test_headline_arms_share_their_history():
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    exp = load(cfg)["split_mnist"]
    assert exp.lineage("finetune") == [("scratch", 0), ("scratch", 1), ("finetune", 2), ("finetune", 3)]
    assert exp.lineage("mag_b20") == [("scratch", 0), ("scratch", 1), ("mag_b20", 2)]
    for q in (10, 20, 50, 80):
        arm = exp.arms[f"mag_b20_c{q}"]
        assert (arm.first_task, arm.last_task) == (3, 3)
        assert exp.lineage(arm.name) == [("scratch", 0), ("scratch", 1), ("mag_b20", 2), (arm.name, 3)]
        assert arm.per_task == {3: {"freeze": q}}
    assert exp.arms["mag_0"].per_task == {2: {"freeze": 0}, 3: {"freeze": 0}}
    assert exp.head_size() == 2


def test_any_number_of_tasks_with_a_schedule_per_arm():
    cfg = base_config()
    e = cfg["experiments"]["tiny"]
    e["tasks"] = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    e["arms"] = {
        "mag_sched": {"method": "mag", "freeze": [10, 20, 30, 40]},
        "mag_const": {"method": "mag", "freeze": 5},
        "mag_two": {"method": "mag", "freeze": [50, 50]},
        "mag_more": {"start_from": "mag_two", "freeze": [10, 10]},
    }
    exp = load(cfg)["tiny"]
    assert exp.arms["mag_sched"].per_task[5] == {"freeze": 40}
    assert exp.arms["mag_const"].last_task == 5 and exp.arms["mag_const"].per_task[4] == {"freeze": 5}
    assert (exp.arms["mag_more"].first_task, exp.arms["mag_more"].last_task) == (4, 5)
    assert exp.owner("mag_more", 3) == "mag_two"


def test_an_arm_changes_the_train_settings_of_the_tasks_it_trains_and_passes_them_on():
    cfg = base_config()
    e = cfg["experiments"]["tiny"]
    e["train"]["optimizer"] = {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.99]}
    e["arms"] = {
        "finetune": {"method": "finetune"},
        "fast": {"method": "finetune", "n_tasks": 1, "train": {"optimizer": {"lr": 1e-2}, "iterations": 7}},
        "fast_then": {"start_from": "fast"},
        "sgd": {"method": "finetune", "train": {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}}},
    }
    exp = load(cfg)["tiny"]
    assert exp.arms["finetune"].train is None and exp.train_of("finetune") == e["train"]
    fast = exp.train_of("fast")
    assert fast["optimizer"] == {"name": "adam", "lr": 1e-2, "betas": [0.9, 0.99]}  # same name: lr only
    assert fast["iterations"] == 7 and "epochs" not in fast  # one replaces the other
    assert exp.train_of("fast_then") == fast  # an arm that starts from it inherits them
    assert exp.train_of("sgd")["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9}  # another: whole
    assert e["train"]["epochs"] == 2 and "iterations" not in e["train"]  # the shared models keep theirs


def test_cumulative_freeze_total_becomes_per_task_shares():
    cfg = base_config()
    cfg["experiments"]["tiny"]["arms"] = {
        "b20_c60": {"method": "mag", "freeze_total": [20, 60]},
        "b20": {"method": "mag", "freeze": [20]},
        "c84": {"start_from": "b20", "freeze_total": [84]},
        "same": {"start_from": "b20", "freeze_total": 20},
    }
    exp = load(cfg)["tiny"]
    assert exp.arms["b20_c60"].per_task == {2: {"freeze": 20.0}, 3: {"freeze": 50.0}}
    assert exp.arms["c84"].per_task[3]["freeze"] == pytest.approx(80.0)  # 1 - 0.8 * 0.2 = 84%
    assert exp.arms["same"].per_task[3]["freeze"] == pytest.approx(0.0)


@pytest.mark.parametrize("change,key", BAD_CONFIGS, ids=[f"{i}:{k}" for i, (_, k) in enumerate(BAD_CONFIGS)])
def test_bad_configs_are_refused_with_the_key(change, key):
    cfg = mutate(change)
    if key.endswith("arms.a.start_from"):  # a cycle needs two arms
        cfg["experiments"]["tiny"]["arms"]["b"] = {"start_from": "a"}
    with pytest.raises(ConfigError) as info:
        load(copy.deepcopy(cfg))
    assert info.value.key == key, str(info.value)
    assert f"config key '{key}'" in str(info.value)


@pytest.mark.parametrize("where", ["resources", f"{X}.resources"])
def test_the_resources_of_the_steps_after_a_task_under_their_old_name_are_refused_with_the_new(where):
    cfg = mutate(_set(where.split("."), {"consolidate": {"mem_mb": 100}}))
    with pytest.raises(ConfigError, match=rf"renamed 'importance'.*: write {where}\.importance") as info:
        load(cfg)
    assert info.value.key == f"{where}.consolidate"


def clear_config():
    return yaml.safe_load((ROOT / "tests" / "configs" / "clear_tiny.yaml").read_text())


C = ["experiments", "clear_tiny"]
Y = "experiments.clear_tiny"
BAD_CLEAR_CONFIGS = [
    (_set(C + ["tasks"], [{"bucket": 1}, {}]), f"{Y}.tasks[1].bucket"),
    (_set(C + ["tasks"], [{"bucket": 1}, {"bucket": 11}]), f"{Y}.tasks[1].bucket"),
    (_set(C + ["tasks"], [{"bucket": 1}, {"bucket": 1}]), f"{Y}.tasks[1]"),
    (_set(C + ["input", "crop", "size"], 41), f"{Y}.input.crop.size"),
    (_set(C + ["data", "test_fraction"], 1.0), f"{Y}.data.test_fraction"),
    (_set(C + ["data", "validation_fraction"], 0), f"{Y}.train.early_stopping"),
    (_set(C + ["train"], {"iterations": 10, "batch_size": 4, "optimizer": {"name": "sgd", "lr": 0.1},
                          "early_stopping": {"patience": 1}}), f"{Y}.train.early_stopping"),
]  # fmt: skip


@pytest.mark.parametrize("change,key", BAD_CLEAR_CONFIGS, ids=[k for _, k in BAD_CLEAR_CONFIGS])
def test_bad_clear_configs_are_refused_with_the_key(change, key):
    cfg = clear_config()
    change(cfg)
    with pytest.raises(ConfigError) as info:
        load(cfg)
    assert info.value.key == key, str(info.value)


def test_clear_defaults_only_where_an_image_folder_is_used():
    cfg = clear_config()
    data = cfg["experiments"]["clear_tiny"]["data"]
    del data["image_size"], data["test_fraction"]
    exp = load(cfg)["clear_tiny"]
    assert (exp.raw["data"]["image_size"], exp.raw["data"]["test_fraction"]) == (256, 0.3)
    assert [t.bucket for t in exp.tasks] == [1, 2] and exp.tasks[0].classes == tuple(range(11))
    assert exp.raw["model"]["init"] == "torch"  # resnet18 keeps torchvision's init
    tiny = load(base_config())["tiny"]
    assert "image_size" not in tiny.raw["data"] and tiny.raw["model"]["init"] == "glorot"


# --- the growing network (docs/methods.md, section 4) ----------------------------------------


def growing_config():
    return yaml.safe_load((ROOT / "tests" / "configs" / "growing_tiny.yaml").read_text())


def test_growing_defaults_are_the_sources_network_and_its_first_head():
    cfg = growing_config()
    e = cfg["experiments"]["growing_tiny"]
    e["model"] = {"name": "growing"}
    e["arms"] = {"g": {"method": "growing"}, "big": {"method": "growing", "grow_conv": [64, 128]}}
    exp = load(cfg)["growing_tiny"]
    assert exp.raw["model"] == {
        "name": "growing", "conv": [64, 64, 64, 64], "hidden": 512, "pool_after": [True, True, True, False],
        "pooled_size": 4, "kernel": 3, "dropout": 0.2, "mode": "isolated", "init": "source",
    }  # fmt: skip
    assert exp.head_size() == 2  # the first task's head; the others grow with their tasks
    assert exp.arms["g"].per_task == {
        2: {"grow_conv": 64, "grow_hidden": 512},
        3: {"grow_conv": 64, "grow_hidden": 512},
    }
    assert exp.arms["big"].per_task[3] == {"grow_conv": 128, "grow_hidden": 512}
    assert exp.methods["growing"] == {"type": "growing", "mode": None}
    tiny = load(growing_config())["growing_tiny"]
    assert tiny.arms["isolated"].per_task[3] == {"grow_conv": [4, 4, 8, 8], "grow_hidden": 16}
    assert tiny.lineage("read")[:2] == tiny.lineage("isolated")[:2] == [("scratch", 0), ("scratch", 1)]


G = ["experiments", "growing_tiny"]
Z = "experiments.growing_tiny"
BAD_GROWING_CONFIGS = [
    (_set(G + ["scenario"], "domain"), f"{Z}.scenario"),
    (_set(G + ["scenario"], "class"), f"{Z}.scenario"),
    (_set(G + ["arms", "x"], {"method": "finetune"}), f"{Z}.arms.x.method"),
    (_set(G + ["arms", "x"], {"method": "replay"}), f"{Z}.arms.x.method"),
    (_set(G + ["arms", "x"], {"method": "joint"}), f"{Z}.arms.x.method"),
    (_set(G + ["arms", "x"], {"method": "ewc", "lambda": 1}), f"{Z}.arms.x.method"),
    (_set(G + ["arms", "x"], {"method": "growing", "grow_conv": [[4, 4], 4]}), f"{Z}.arms.x.grow_conv"),
    (_set(G + ["arms", "x"], {"method": "growing", "grow_conv": [4, 4, 4]}), f"{Z}.arms.x.grow_conv"),
    (_set(G + ["arms", "x"], {"method": "growing", "grow_hidden": -1}), f"{Z}.arms.x.grow_hidden"),
    (_set(G + ["arms", "x"], {"method": "growing", "freeze": [10]}), f"{Z}.arms.x.freeze"),
    (_set(G + ["methods", "g"], {"type": "growing", "mode": "sideways"}), f"{Z}.methods.g.mode"),
    (
        _set(G + ["methods", "g"], {"type": "growing", "mode": "isolated", "auto_grow": {"threshold": 0.9}}),
        f"{Z}.methods.g.auto_grow",
    ),  # a head-only task of an isolated network reads nothing
    (
        _set(G + ["methods", "g"], {"type": "growing", "auto_grow": {"threshold": 0.9}}),
        f"{Z}.methods.g.auto_grow",
    ),  # the model's mode: isolated
    (
        _set(G + ["methods", "g"], {"type": "growing", "mode": "read", "auto_grow": {"threshold": 1.5}}),
        f"{Z}.methods.g.auto_grow.threshold",
    ),
    (
        _set(G + ["methods", "g"], {"type": "growing", "mode": "read", "auto_grow": {"probe_epochs": 2}}),
        f"{Z}.methods.g.auto_grow.threshold",
    ),
    (
        _set(
            G + ["methods", "g"],
            {"type": "growing", "mode": "read", "auto_grow": {"threshold": 0.5, "probe_epochs": 0}},
        ),
        f"{Z}.methods.g.auto_grow.probe_epochs",
    ),
    (
        _set(
            G + ["methods", "g"],
            {"type": "growing", "mode": "read", "auto_grow": {"threshold": 0.5, "patience": 1}},
        ),
        f"{Z}.methods.g.auto_grow.patience",
    ),
    (
        _set(G + ["methods", "g"], {"type": "growing", "mode": "read", "auto_grow": 0.9}),
        f"{Z}.methods.g.auto_grow",
    ),
    (_set(G + ["data", "validation_fraction"], 0), f"{Z}.methods.growing_auto.auto_grow"),
    (_set(G + ["model", "pool_after"], [True]), f"{Z}.model.pool_after"),
    (_set(G + ["model", "kernel"], 2), f"{Z}.model.kernel"),
    (_set(G + ["model", "init"], "glorot"), f"{Z}.model.init"),
    (_set(G + ["model", "conv"], [{"channels": 4, "kernel": 3}]), f"{Z}.model.conv[0]"),
    (_set(G + ["model", "hidden"], [16]), f"{Z}.model.hidden"),
    (_set(G + ["model", "width"], 0.5), f"{Z}.model.width"),
    (_set(G + ["input", "size"], 4), f"{Z}.input.size"),
    (_set(E + ["arms", "x"], {"method": "growing"}), f"{X}.arms.x.method"),  # vgg16: nothing to grow
    (_set(E + ["model", "init"], "source"), f"{X}.model.init"),
    (_set(E + ["model"], {"name": "cnn", "conv": [8], "hidden": [16]}), f"{X}.model.conv[0]"),
    (_set(E + ["model"], {"name": "mlp", "hidden": 16}), f"{X}.model.hidden"),
]


@pytest.mark.parametrize(
    "change,key", BAD_GROWING_CONFIGS, ids=[f"{i}:{k}" for i, (_, k) in enumerate(BAD_GROWING_CONFIGS)]
)
def test_bad_growing_configs_are_refused_with_the_key(change, key):
    cfg = growing_config() if key.startswith(Z) else base_config()
    change(cfg)
    with pytest.raises(ConfigError) as info:
        load(cfg)
    assert info.value.key == key, str(info.value)
    if key.endswith("arms.x.method") and key.startswith(Z):
        assert "arm 'x'" in str(info.value)


def test_mixing_methods_are_refused_on_a_growing_network_for_their_mixed_batches():
    for method in ("replay", "joint"):
        cfg = growing_config()
        cfg["experiments"]["growing_tiny"]["arms"]["x"] = {"method": method}
        with pytest.raises(ConfigError, match="mix tasks"):
            load(cfg)


def test_auto_grow_is_a_setting_of_the_growing_method_in_read_mode():
    cfg = growing_config()
    methods = cfg["experiments"]["growing_tiny"]["methods"]
    methods["once"] = {"type": "growing", "mode": "read", "auto_grow": {"threshold": 0.75}}
    methods["never"] = {"type": "growing", "mode": "read", "auto_grow": None}
    cfg["experiments"]["growing_tiny"]["model"]["mode"] = "read"
    methods["by_model"] = {"type": "growing", "auto_grow": {"threshold": 0.5, "probe_epochs": 3}}
    exp = load(cfg)["growing_tiny"]
    assert exp.methods["once"]["auto_grow"] == {"threshold": 0.75, "probe_epochs": 1}  # default filled
    assert exp.methods["by_model"]["auto_grow"] == {"threshold": 0.5, "probe_epochs": 3}
    assert exp.methods["never"]["auto_grow"] is None
    # absent: always grow, and no key (the specs of arms without it are what they were)
    assert exp.methods["growing_read"] == {"type": "growing", "mode": "read"}


def test_carrying_the_optimizer_state_through_a_growing_model_is_refused():
    """Its parameters change from task to task, so there is no state to carry on with."""
    cfg = yaml.safe_load((ROOT / "config" / "quick.yaml").read_text())
    cfg["run"] = ["split_mnist_growing_quick"]
    cfg["experiments"]["split_mnist_growing_quick"]["train"]["optimizer_state"] = "carry"
    key = "experiments.split_mnist_growing_quick.train.optimizer_state"
    with pytest.raises(ConfigError, match=r"carry needs the same parameters in every task") as info:
        load(cfg)
    assert info.value.key == key
    cfg["experiments"]["split_mnist_growing_quick"]["train"]["optimizer_state"] = "reset"
    assert load(cfg)


# settings that change how a result is computed (memory per batch), not what it means
SIZED_FOR_THE_MACHINE = {"fisher_batch_size", "batch_size"}  # memory, not the result


@pytest.mark.parametrize(
    "quick_name",
    [
        n
        for n in yaml.safe_load((ROOT / "config/quick.yaml").read_text())["experiments"]
        if n.endswith("_quick")
    ]
    + ["fashion_to_mnist"],
)
def test_a_quick_experiment_runs_its_faithful_counterpart_s_arms_and_methods(quick_name):
    """quick.yaml shrinks config.yaml's experiments (model width, image size, epochs,
    data); what is compared must stay the same: tasks, scenario, arms, methods (up to
    batch sizes for the machine), report and seeds."""
    full = yaml.safe_load((ROOT / "config/config.yaml").read_text())["experiments"]
    quick = yaml.safe_load((ROOT / "config/quick.yaml").read_text())["experiments"][quick_name]
    name = quick_name.removesuffix("_quick")
    if name not in full:
        pytest.skip(f"{quick_name} is a CPU-sized experiment of its own (no {name} in config.yaml)")
    faithful = full[name]
    for key in ("tasks", "scenario", "arms", "report", "seeds", "dataset"):
        assert quick.get(key) == faithful.get(key), f"{quick_name}.{key} differs from {name}.{key}"

    def meaning(methods):
        return {m: {k: v for k, v in s.items() if k not in SIZED_FOR_THE_MACHINE} for m, s in methods.items()}

    assert meaning(quick["methods"]) == meaning(faithful["methods"]), (
        f"{quick_name}.methods differs from {name}"
    )


def test_the_registry_s_methods_have_known_roles_colours_and_figures():
    import matplotlib.colors
    import seaborn as sns

    from clpipe.layout import EXPERIMENT_FIGURES
    from clpipe.methods import REGISTRY, ROLES
    from clpipe.methods.traits import SettingFigure

    for name, t in REGISTRY.items():
        assert t.name == name
        assert t.role in (*ROLES, None), name
        assert sns.color_palette(t.palette, 3), name
        assert t.colour is None or matplotlib.colors.is_color_like(t.colour), name
        for figure in t.figures:
            assert isinstance(figure, SettingFigure) and figure.name not in EXPERIMENT_FIGURES, name


def test_the_schema_names_exactly_the_models_with_settings():
    from clpipe.model_settings import MODEL_SETTINGS, completed

    schema = yaml.safe_load(SCHEMA.read_text())
    assert sorted(MODEL_SETTINGS) in [sorted(map(str, e)) for e in _enums(schema)]
    spec = completed({"name": "resnet18", "input": {}})
    assert spec["init"] == "torch"  # the one default, where the config fills it too
    assert completed({"name": "mlp", "hidden": [8], "init": "torch"})["init"] == "torch"
    assert "hidden" not in completed({"name": "mlp"})  # required: no default to fall back on


def test_the_schema_names_exactly_the_built_in_datasets_and_the_metrics():
    from clpipe.catalog import DATASETS
    from clpipe.metrics import ALL_METRICS

    schema = yaml.safe_load(SCHEMA.read_text())
    enums = [sorted(map(str, e)) for e in _enums(schema)]
    assert sorted(DATASETS) in enums
    assert sorted(ALL_METRICS) in enums  # report.metrics


def _enums(node):
    if isinstance(node, dict):
        if "enum" in node:
            yield node["enum"]
        for v in node.values():
            yield from _enums(v)
    elif isinstance(node, list):
        for v in node:
            yield from _enums(v)


def test_an_arm_of_a_one_task_experiment_is_refused_with_its_key():
    cfg = base_config()
    cfg["experiments"]["tiny"]["tasks"] = [[0, 1]]
    cfg["experiments"]["tiny"]["arms"] = {"ft": {"method": "finetune"}}
    with pytest.raises(ConfigError, match="the experiment has one task") as info:
        load(cfg)
    assert info.value.key == "experiments.tiny.arms.ft.method"
