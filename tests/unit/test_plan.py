"""Paths and job inputs: what each job reads, and job specs that do not drift."""

import copy

import pytest
import yaml

from clpipe import plan
from clpipe.config import validate_config
from conftest import ROOT, SCHEMA


@pytest.fixture(scope="module")
def exp():
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    return validate_config(cfg, str(SCHEMA))["split_mnist"]


L = plan.Layout("results")


def test_task_c_arm_reads_the_shared_task_b_model_and_its_freezing_values(exp):
    inputs = plan.next_task_inputs(L, exp, 0, "mag_b20_c50", 3)
    assert inputs == {
        "model": "results/split_mnist/seed0/mag_b20/task2/model.pt",
        "data": "results/split_mnist/data/tasks.pt",
        "importance": "results/split_mnist/seed0/mag_b20/task2/mag/importance.pt",
    }
    # task B of every MAG arm reads the one FV file computed after the shared task A
    for arm in ("mag_0", "mag_b10", "mag_b80"):
        assert plan.next_task_inputs(L, exp, 1, arm, 2)["importance"] == (
            "results/split_mnist/seed1/scratch/task1/mag/importance.pt"
        )
    assert "importance" not in plan.next_task_inputs(L, exp, 0, "finetune", 2)
    with pytest.raises(ValueError, match="does not train task 2"):
        plan.next_task_inputs(L, exp, 0, "mag_b20_c50", 2)


def test_progress_and_importance_inputs(exp):
    assert plan.progress_inputs(L, exp, 0, "mag_b20", 2) == {
        "record": "results/split_mnist/seed0/mag_b20/task2/record.pt"
    }
    assert plan.progress_inputs(L, exp, 0, "mag_b20_c10", 3) == {
        "record": "results/split_mnist/seed0/mag_b20_c10/task3/record.pt",
        "previous": "results/split_mnist/seed0/mag_b20/task2/progress.pt",
    }
    assert plan.importance_inputs(L, exp, 0, "scratch", 1, "mag") == {
        "model": "results/split_mnist/seed0/scratch/task1/model.pt",
        "data": "results/split_mnist/data/tasks.pt",
    }
    assert plan.importance_inputs(L, exp, 0, "mag_b20", 2, "mag")["progress"] == (
        "results/split_mnist/seed0/mag_b20/task2/progress.pt"
    )


def test_specs_are_canonical_and_hold_only_what_defines_the_job(exp):
    def sorted_everywhere(obj):
        if isinstance(obj, dict):
            return list(obj) == sorted(obj) and all(sorted_everywhere(v) for v in obj.values())
        if isinstance(obj, list):
            return all(sorted_everywhere(v) for v in obj)
        return True

    spec = plan.next_task_spec(exp, 0, "mag_b20_c50", 3)
    assert sorted_everywhere(spec)
    assert spec["task_settings"] == {"freeze": 50}
    assert spec["method"] == {"type": "mag", "gamma": 1.0, "scale_biases": False}
    # the importance step does not depend on training-only settings
    imp = plan.importance_spec(exp, 0, 2, "mag")
    assert "train" not in imp and imp["method"] == {"type": "mag", "gamma": 1.0, "scale_biases": False}
    # and the first task's job knows nothing about any arm
    first = plan.training_spec(exp, 0, 1)
    assert "arm" not in first and "method" not in first
    agg = plan.aggregate_spec(exp)
    assert [a["name"] for a in agg["arms"]] == list(exp.arms)  # config order, for the tables


def test_writing_out_a_train_setting_s_default_plans_the_same_jobs():
    """Settings whose absence means a value (added after results existed): saying that
    value leaves every job's spec as it was; another value changes it."""
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    before = plan.training_spec(validate_config(cfg, str(SCHEMA))["split_mnist"], 0, 1)
    cfg["experiments"]["split_mnist"]["train"].update(
        optimizer_state="reset", precision="fp32", channels_last=False
    )
    said = validate_config(cfg, str(SCHEMA))["split_mnist"]
    assert plan.training_spec(said, 0, 1) == before
    assert plan.next_task_spec(said, 0, "mag_b20", 2)["train"] == before["train"]
    for key, other in (("optimizer_state", "carry"), ("precision", "bf16"), ("channels_last", True)):
        changed = copy.deepcopy(cfg)
        changed["experiments"]["split_mnist"]["train"][key] = other
        spec = plan.training_spec(validate_config(changed, str(SCHEMA))["split_mnist"], 0, 1)
        assert spec["train"][key] == other and spec != before, key


def test_a_method_s_own_figure_gets_each_arm_s_value_after_each_task_it_trains(exp):
    """MAG's freeze figure: the share of each kernel frozen in all after each task an arm
    trains itself (its ancestors' freezing included), from its declaration's value."""
    figures = plan.setting_figures(exp)
    assert list(figures) == ["freeze"]
    points = figures["freeze"]["points"]
    assert set(points) == {a for a in exp.arms if a.startswith("mag_")}  # the MAG arms only
    assert points["mag_b20"] == {"2": pytest.approx(20.0)}
    assert points["mag_b20_c50"] == {"3": pytest.approx(60.0)}  # 20%, then 50% of the rest
    assert points["mag_0"] == {"2": 0.0, "3": 0.0}
    assert figures["freeze"]["axis"] == "weights frozen in all (% of each kernel)"
    assert plan.setting_figure_pattern([exp]) == "freeze"
    assert plan.figure_files(plan.Layout("r"), exp)[-1] == "r/split_mnist/figures/freeze.png"


def test_a_method_s_figure_under_an_experiment_figure_s_name_is_refused(tmp_path, monkeypatch):
    from clpipe.errors import ConfigError

    (tmp_path / "figmethod.py").write_text(
        "from clpipe.methods.traits import MethodTraits, SettingFigure\n\n"
        'F = SettingFigure(name="methods", axis="x", value=len, title="t", caption="c")\n'
        'METHOD = MethodTraits(name="figs", implementation=f"{__name__}:Figs", description="d",\n'
        "                      figures=(F,))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    cfg["experiments"]["tiny"]["methods"]["figs"] = {"type": "figmethod:Figs"}
    cfg["experiments"]["tiny"]["arms"]["figs"] = {"method": "figs"}
    with pytest.raises(
        ConfigError, match="declares a figure 'methods', the name of one every experiment draws"
    ) as err:
        validate_config(cfg, str(SCHEMA))
    assert err.value.key == "experiments.tiny.arms.figs.method"


def test_an_arms_own_train_settings_change_its_jobs_specs_only():
    """A learning rate of one arm reruns that arm's training (its spec) and no other job:
    not the shared task 1, not another arm, not its importance steps."""
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    before = validate_config(copy.deepcopy(cfg), str(SCHEMA))["split_mnist"]
    cfg["experiments"]["split_mnist"]["arms"]["ewc_l1e4"]["train"] = {"optimizer": {"lr": 1e-4}}
    after = validate_config(cfg, str(SCHEMA))["split_mnist"]
    for arm in before.arms:
        for task in range(before.arms[arm].first_task, before.arms[arm].last_task + 1):
            same = plan.next_task_spec(before, 0, arm, task) == plan.next_task_spec(after, 0, arm, task)
            assert same == (arm != "ewc_l1e4"), (arm, task)
    assert plan.next_task_spec(after, 0, "ewc_l1e4", 2)["train"]["optimizer"]["lr"] == 1e-4
    assert plan.training_spec(before, 0, 1) == plan.training_spec(after, 0, 1)
    for task in (1, 2):
        assert plan.importance_spec(before, 0, task, "ewc") == plan.importance_spec(after, 0, task, "ewc")
