"""The growing network in the pipeline: model specs, the growing method, checkpoints, counts."""

import copy
import math

import pandas as pd
import pytest
import torch

from clpipe import io
from clpipe.checkpoints import load_model, save_model
from clpipe.data.pipeline import InputPipeline, Split, Task
from clpipe.methods import load_method
from clpipe.methods.base import TaskContext
from clpipe.methods.growing import GrowingNetwork
from clpipe.networks import build_model, count_parameters, evaluation_parameters, parameter_report, spec_of
from clpipe.networks.growing import GrowingTaskNet, dense_parameter_count
from clpipe.results_tables import PARAMETER_COLUMNS
from clpipe.runtime import make_runtime, seed_everything
from clpipe.scenarios import Scenario
from clpipe.steps.train import _train
from clpipe.training import train_task
from helpers.growing_schedule import schedule_totals
from helpers.killed import dies_at

INPUT = {"size": 8, "channels": 1, "normalize": {"mean": [0.5], "std": [0.5]}}
# a pipeline spec (plan.model_spec) of a small growing network: the first task's column
SMALL = {
    "name": "growing",
    "conv": [4, 4],
    "hidden": 8,
    "pool_after": [True, False],
    "pooled_size": 2,
    "kernel": 3,
    "dropout": 0.0,
    "mode": "isolated",
    "init": "standard",
    "input": INPUT,
    "n_outputs": 2,
}
TASKS = [[0, 1], [2, 3], [4, 5, 6]]
TRAIN = {"epochs": 2, "batch_size": 16, "optimizer": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.1}}


def toy_task(index, random_labels=False):
    """Rows 2k, 2k+1 of an image light up for class k of the task; with
    ``random_labels`` the labels have nothing to do with the images (nothing to learn)."""
    classes = TASKS[index - 1]
    g = torch.Generator().manual_seed(index)
    k = torch.randint(0, len(classes), (60,), generator=g)
    x = (torch.rand(60, 1, 8, 8, generator=g) * 60).to(torch.uint8)
    for i in range(60):
        x[i, 0, 2 * int(k[i]) : 2 * int(k[i]) + 2] += 180
    if random_labels:
        k = torch.randint(0, len(classes), (60,), generator=g)
    y = torch.tensor(classes)[k]
    split = Split(x, y, torch.arange(60))
    return Task(index, "toy", tuple(classes), split, Split(x[:20], y[:20], torch.arange(20)), split)


def context(model, index, task=None):
    return TaskContext(
        task=task or toy_task(index),
        scenario=Scenario.for_model("task", TASKS, model),
        pipeline=InputPipeline(INPUT, torch.device("cpu")),
        device=torch.device("cpu"),
        eval_batch_size=64,
        generator=torch.Generator().manual_seed(0),
        train_settings=TRAIN,
    )


def train(model, index, method, settings=None, task=None):
    """What steps._train does for one task: begin, train (the method attached), end."""
    ctx = context(model, index, task)
    method.begin_task(model, None, settings or {}, ctx)
    train_task(
        model, ctx.task, scenario=Scenario.for_model("task", TASKS, model), pipeline=ctx.pipeline,
        train_cfg=TRAIN, method=method, generator=ctx.generator, eval_batch_size=64,
    )  # fmt: skip
    return method.end_task(model)


@torch.no_grad()
def outputs(model, x):
    model.eval()
    return {t: model(x, t).clone() for t in range(1, model.n_tasks + 1)}


def first_task_model():
    make_runtime("cpu", deterministic=True, threads=1)
    seed_everything(0)
    model = build_model(SMALL)
    train(model, 1, load_method({"type": "finetune"}))  # the shared first-task step
    return model


def test_the_config_spec_builds_the_sources_first_column():
    spec = {
        "name": "growing", "conv": [64] * 4, "hidden": 512, "pool_after": [True, True, True, False],
        "pooled_size": 4, "kernel": 3, "dropout": 0.2, "mode": "isolated", "init": "source",
        "input": {"size": 32, "channels": 3, "normalize": None}, "n_outputs": 10,
    }  # fmt: skip
    model = build_model(spec, device="meta")
    assert isinstance(model, GrowingTaskNet) and model.n_tasks == 1 and model.outputs_per_task == [10]
    assert count_parameters(model) == schedule_totals()[0] == dense_parameter_count(3, [64] * 4, 512, 10)
    fixed = build_model({**spec, "name": "growing_fixed", "n_outputs": 20})
    del spec["mode"]
    assert count_parameters(fixed) == dense_parameter_count(3, [64] * 4, 512, 20)
    assert fixed(torch.zeros(2, 3, 32, 32)).shape == (2, 20)  # a plain network: one shared head
    assert not getattr(fixed, "takes_task_id", False)


def test_the_method_grows_a_column_and_moves_nothing_else():
    model = first_task_model()
    x = toy_task(1).test.x[:8].float()
    before = outputs(model, x)
    first = {n: p.detach().clone() for n, p in model.named_parameters()}
    method = load_method({"type": "growing", "mode": None})
    record = train(model, 2, method, {"grow_conv": [2, 3], "grow_hidden": 5})
    assert model.n_tasks == 2 and model.outputs_per_task == [2, 2]
    assert [layer.unit_widths for layer in model.convs] == [[4, 2], [4, 3]] and model.fc.unit_widths == [8, 5]
    assert torch.equal(outputs(model, x)[1], before[1])  # task 1 bit-identical (AdamW's decay too)
    for name, p in model.named_parameters():  # every entry of task 1's column as it was
        old = first[name]
        assert torch.equal(p[: old.shape[0], : old.shape[1]] if p.ndim > 1 else p[: old.shape[0]], old)
    counts = model.parameter_counts(2)
    assert record["parameters_total"] == counts.total == count_parameters(model)
    assert record["parameters_added"] == counts.added_by_last_grow == record["growth"]["parameters_added"]
    assert (record["parameters_in_use"], record["parameters_trainable"]) == (counts.in_use, counts.trainable)
    assert record["task"] == 2 and record["mode"] == "isolated" and record["growth"]["conv"] == [2, 3]
    assert method._scaler is None  # the protection hooks are gone with the task
    # task 1's report: the first column was what the network gained for it
    task1 = parameter_report(model, 1)
    assert task1["parameters_added"] == count_parameters(model) - record["parameters_added"]


def test_a_grown_network_is_rebuilt_from_its_checkpoint_alone(tmp_path):
    model = first_task_model()
    train(model, 2, load_method({"type": "growing", "mode": "read"}), {"grow_conv": 3, "grow_hidden": 4})
    path = tmp_path / "model.pt"
    save_model(str(path), model, spec_of(model, SMALL), {"step": "test"})
    again, checkpoint = load_model(str(path), torch.device("cpu"))
    stored = checkpoint["model_spec"]
    assert stored["outputs"] == [2, 2] and stored["mode"] == "read" and "n_outputs" not in stored
    assert stored["input"] == INPUT  # the pipeline's input settings are kept
    x = toy_task(2).test.x[:8].float()
    got, expected = outputs(again, x), outputs(model, x)
    assert got.keys() == expected.keys() and all(torch.equal(got[t], expected[t]) for t in got)
    # and it grows on from there: task 3, three classes
    train(again, 3, load_method({"type": "growing", "mode": "read"}), {"grow_conv": 3, "grow_hidden": 4})
    assert again.outputs_per_task == [2, 2, 3]
    pipeline_keys = {k: v for k, v in SMALL.items() if k != "n_outputs"}  # "outputs" replaces it
    assert spec_of(build_model(SMALL), SMALL) == {
        **pipeline_keys,
        **build_model(SMALL).spec(),
        "input": INPUT,
    }
    plain = {"name": "mlp", "hidden": [4], "input": INPUT, "n_outputs": 2}
    assert spec_of(build_model(plain), plain) is plain  # a fixed network keeps its spec


def test_the_mode_is_the_methods_and_is_fixed_once_two_tasks_run():
    model = first_task_model()
    read = load_method({"type": "growing", "mode": "read"})
    read.begin_task(model, None, {"grow_conv": 2, "grow_hidden": 2}, context(model, 2))
    assert model.mode == "read" and model.spec()["mode"] == "read"
    isolated = load_method({"type": "growing", "mode": "isolated"})
    with pytest.raises(ValueError, match="would change what the earlier tasks compute"):
        isolated.begin_task(copy.deepcopy(model), None, {"grow_conv": 2, "grow_hidden": 2}, context(model, 3))
    with pytest.raises(ValueError, match="grows for task 3 only after task 2"):
        read.begin_task(first_task_model(), None, {}, context(model, 3))
    with pytest.raises(ValueError, match="needs model 'growing'"):
        read.begin_task(torch.nn.Linear(2, 2), None, {}, context(model, 2))


# --- automatic growth (the source's future work) -----------------------------------------

GROW = {"grow_conv": [2, 3], "grow_hidden": 5}


def auto(threshold, probe_epochs=1):
    return load_method({"type": "growing", "mode": "read", "auto_grow": {"threshold": threshold,
                        "probe_epochs": probe_epochs}})  # fmt: skip


def test_auto_grow_above_the_threshold_gives_the_task_a_head_and_nothing_else():
    model = first_task_model()
    x = toy_task(1).test.x[:8].float()
    before, total = outputs(model, x), count_parameters(model)
    record = train(model, 2, auto(0.0), GROW)  # every accuracy is >= 0: never grows
    assert model.outputs_per_task == [2, 2] and model.mode == "read"
    assert [layer.unit_widths for layer in model.convs] == [[4, 0], [4, 0]] and model.fc.unit_widths == [8, 0]
    head = 2 * (8 + 1)  # two outputs reading task 1's 8 hidden units, and their biases
    assert record["parameters_added"] == head == count_parameters(model) - total
    assert record["parameters_trainable"] == head  # the head is all the task trains
    assert record["parameters_in_use"] == model.parameter_counts(2).in_use > head  # it reads task 1's
    assert record["growth"] == {"task": 2, "conv": [0, 0], "hidden": 0, "outputs": 2, "init": "standard",
                                "parameters_added": head}  # fmt: skip
    decision = record["auto_grow"]
    assert decision["grow"] is False and decision["threshold"] == 0.0 and decision["task"] == 2
    assert decision["parameters_before"] == decision["parameters_after"] == total + head
    assert decision["probe_epochs"] == 1 and len(decision["probe_history"]) == 1
    assert decision["accuracy"] == decision["probe_history"][-1]["val_accuracy"] >= 0.0
    assert torch.equal(outputs(model, x)[1], before[1])
    # a later task reads the earlier columns, the head-only one included (no units)
    record = train(model, 3, auto(1.0), {"grow_conv": 2, "grow_hidden": 3})
    assert model.outputs_per_task == [2, 2, 3] and torch.equal(outputs(model, x)[1], before[1])


def test_auto_grow_below_the_threshold_grows_the_task_by_its_settings():
    model = first_task_model()
    x = toy_task(1).test.x[:8].float()
    before, total = outputs(model, x), count_parameters(model)
    method = auto(0.9)
    ctx = context(model, 2, toy_task(2, random_labels=True))  # nothing to learn: below 0.9
    method.begin_task(model, None, GROW, ctx)  # probe and growth
    assert torch.equal(outputs(model, x)[1], before[1])  # bit-identical through probe and growth
    assert [layer.unit_widths for layer in model.convs] == [[4, 2], [4, 3]] and model.fc.unit_widths == [8, 5]
    assert method._scaler is None  # the probe's protection is gone with the probe
    grown = count_parameters(model)
    reference = first_task_model()  # the same network grown at once by the same counts
    reference.mode = "read"
    assert grown == reference.parameters_after_grow([2, 3], 5, 2)
    train_task(
        model, ctx.task, scenario=ctx.scenario, pipeline=ctx.pipeline, train_cfg=TRAIN, method=method,
        generator=ctx.generator, eval_batch_size=64,
    )  # fmt: skip
    record = method.end_task(model)
    assert torch.equal(outputs(model, x)[1], before[1])  # and through the task's training
    decision = record["auto_grow"]
    assert decision["grow"] is True and decision["accuracy"] < 0.9 == decision["threshold"]
    head = 2 * (8 + 1)
    assert (decision["parameters_before"], decision["parameters_after"]) == (total + head, grown)
    assert record["parameters_added"] == grown - total == record["growth"]["parameters_added"]
    assert record["growth"]["conv"] == [2, 3] and record["growth"]["hidden"] == 5
    assert record["growth"]["outputs"] == 2 and len(model.growth) == 2  # the head, then the widening
    assert record["parameters_total"] == grown
    assert record["parameters_trainable"] == model.parameter_counts(2).trainable


def test_auto_grow_needs_read_mode():
    model = first_task_model()
    method = load_method({"type": "growing", "mode": "isolated", "auto_grow": {"threshold": 0.5}})
    with pytest.raises(ValueError, match="mode 'read' only"):
        method.begin_task(model, None, GROW, context(model, 2))
    assert model.n_tasks == 1  # refused before growing anything


def write_job(folder):
    """A job's input files (the task-1 model, the tasks) and its spec, as the workflow has them."""
    folder.mkdir()
    model = first_task_model()
    save_model(str(folder / "in.pt"), model, spec_of(model, SMALL), {"step": "test"})
    tasks = [toy_task(1), toy_task(2, random_labels=True), toy_task(3)]
    splits = ("train", "val", "test")
    payload = [
        {"dataset": t.dataset, "classes": list(t.classes),
         **{s: {"x": getattr(t, s).x, "y": getattr(t, s).y, "index": getattr(t, s).index} for s in splits}}
        for t in tasks
    ]  # fmt: skip
    io.save(str(folder / "data.pt"), "tasks", {"step": "test"}, tasks=payload)
    method = {"type": "growing", "mode": "read", "auto_grow": {"threshold": 0.9, "probe_epochs": 2}}
    spec = {
        "experiment": "toy", "seed": 0, "task": 2, "scenario": "task", "tasks": TASKS, "input": INPUT,
        "eval": {"batch_size": 64}, "train": {**TRAIN, "epochs": 3}, "arm": "auto", "method": method,
        "task_settings": GROW,
    }  # fmt: skip
    return spec


def run_job(folder, spec, method):
    out = folder / "out"
    out.mkdir(exist_ok=True)
    record = _train(
        "train_next_task", model_in=str(folder / "in.pt"), data=str(folder / "data.pt"), spec=spec,
        method=method, importance=None, model_out=str(out / "model.pt"), history_out=str(out / "history.csv"),
        runtime=make_runtime("cpu", deterministic=True, threads=1),
    )  # fmt: skip
    return record, out


def test_a_killed_auto_growing_job_resumes_bit_for_bit(tmp_path):
    spec = write_job(tmp_path / "ref")
    record, out = run_job(tmp_path / "ref", spec, load_method(spec["method"]))
    assert record["auto_grow"]["grow"] and len(record["auto_grow"]["probe_history"]) == 2
    killed = tmp_path / "killed"
    write_job(killed)
    # 60 samples in batches of 16: 4 steps per epoch; the probe's 2 epochs, then 1 of the task's and 1 step
    with pytest.raises(KeyboardInterrupt):
        run_job(killed, spec, dies_at(GrowingNetwork(spec["method"]), 2 * 4 + 4 + 1, hook="after_backward"))
    state = io.load(killed / "out/train.resume.pt", "resume")
    assert (state["epoch"], state["step"]) == (1, 4)  # the task's own training, not the probe's
    resumed, again = run_job(killed, spec, load_method(spec["method"]))
    assert not (again / "train.resume.pt").exists()
    a = io.load(out / "model.pt", "model")["state_dict"]
    b = io.load(again / "model.pt", "model")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    timing = ("images_per_second", "seconds")
    for r in (record, resumed):  # the same decision, probe, growth and counts, but for the clock
        r["auto_grow"]["probe_history"] = [{k: v for k, v in row.items() if k not in timing}
                                           for row in r["auto_grow"]["probe_history"]]  # fmt: skip
    assert resumed == record
    history = [pd.read_csv(f / "history.csv").drop(columns=list(timing)) for f in (out, again)]
    pd.testing.assert_frame_equal(*history)


def test_every_evaluation_reports_the_models_parameters():
    model = first_task_model()
    init = evaluation_parameters(build_model(SMALL), 0)  # the random init: no task trained yet
    assert list(init) == PARAMETER_COLUMNS  # the columns the aggregate step carries
    assert init["parameters_total"] == count_parameters(model) and math.isnan(init["parameters_added"])
    assert math.isnan(init["parameters_in_use"])
    train(model, 2, load_method({"type": "growing", "mode": "read"}), GROW)
    for task in (1, 2):
        report = parameter_report(model, task)
        assert evaluation_parameters(model, task) == {k: report[k] for k in PARAMETER_COLUMNS}
    plain = build_model({"name": "mlp", "hidden": [4], "input": INPUT, "n_outputs": 2})
    fixed = evaluation_parameters(plain, 1)
    assert fixed["parameters_total"] == count_parameters(plain)
    assert math.isnan(fixed["parameters_added"]) and math.isnan(fixed["parameters_in_use"])
