"""PackNet (Mallya & Lazebnik 2018) on hand-computed cases and two real tasks: the
pruning of free weights, each task's masked network, no forgetting by construction, the
model file, the scenario it needs (clpipe.methods.packnet, clpipe.networks.masked)."""

import copy

import pytest
import torch
import yaml
from torch import nn

from clpipe.checkpoints import load_model, save_model
from clpipe.config import ConfigError, validate_config
from clpipe.data.pipeline import InputPipeline, Split, Task
from clpipe.methods.base import TaskContext
from clpipe.methods.packnet import PackNet, prune_free
from clpipe.networks import build_model, spec_of
from clpipe.networks.masked import TaskMaskedNetwork
from clpipe.runtime import make_runtime, seed_everything
from clpipe.scenarios import Scenario
from clpipe.training import train_task
from conftest import ROOT, SCHEMA

SPEC = {"name": "mlp", "hidden": [16], "input": {"size": 8, "channels": 1}, "n_outputs": 4, "init": "torch",
        "output_relu": False}  # fmt: skip
TRAIN = {"epochs": 6, "batch_size": 16, "optimizer": {"name": "adam", "lr": 1e-2}}
TASKS = [[0, 1], [2, 3]]


def test_the_smallest_free_weights_are_pruned_and_the_rest_kept_for_the_task():
    w = torch.tensor([[0.1, -0.5], [0.3, 0.05]])
    owner, pruned = prune_free(w, torch.zeros(2, 2, dtype=torch.int16), 0.5, task=1)
    assert pruned == 2 and owner.tolist() == [[0, 1], [1, 0]]  # 0.05 and 0.1 stay free
    # task 2: of the two free ones, half (one: the smaller, 0.05) pruned; task 1's untouched
    owner, pruned = prune_free(w, owner, 0.5, task=2)
    assert pruned == 1 and owner.tolist() == [[2, 1], [1, 0]]


def test_a_task_answers_with_the_weights_of_the_tasks_up_to_it_and_its_own_outputs():
    base = nn.Linear(2, 4, bias=False)
    with torch.no_grad():
        base.weight.copy_(torch.arange(8.0).view(4, 2))
    net = TaskMaskedNetwork(base, {"name": "x", "input": {}, "n_outputs": 4}, [(0, 2), (2, 4)])
    net.set_owner("weight", torch.tensor([[1, 2], [1, 1], [2, 0], [1, 2]], dtype=torch.int16))
    x = torch.tensor([[1.0, 1.0]])
    # task 1: weights of task 2 masked out, free ones kept: rows (0, _), (2, 3), (4, 5), (6, _)
    assert net(x, 1).tolist() == [[0.0, 5.0]]  # its outputs 0 and 1
    assert net(x, 2).tolist() == [[9.0, 13.0]]  # every weight; its outputs 2 and 3


class Ctx(TaskContext):
    pass


def task(index, classes, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(classes)[torch.randint(0, 2, (96,), generator=g)]
    bright = (y == classes[1]).view(-1, 1, 1, 1)
    x = (torch.rand(96, 1, 8, 8, generator=g) * 60 + bright * 190).to(torch.uint8)
    split = Split(x, y, torch.arange(96))
    return Task(index, "toy", tuple(classes), split, Split(x[:16], y[:16], torch.arange(16)), split)


def train(model, method, t, tasks):
    make_runtime("cpu", deterministic=True, threads=1)
    g = seed_everything(11 + t.index)
    scenario = Scenario.for_model("task", TASKS, model)
    pipeline = InputPipeline(SPEC["input"], torch.device("cpu"))
    ctx = TaskContext(t, scenario, pipeline, torch.device("cpu"), 64, g, 16, tasks, TRAIN)
    method.begin_task(model, None, {"prune": 0.5}, ctx)
    train_task(model, t, scenario=scenario, pipeline=pipeline, train_cfg=TRAIN, method=method, generator=g,
               eval_batch_size=64)  # fmt: skip
    method.end_task(model)
    return scenario


def accuracy(model, scenario, t):
    with torch.no_grad():
        x = InputPipeline(SPEC["input"], torch.device("cpu"))(t.test.x)
        return (
            (scenario.logits(model, x, t.index).argmax(1) == scenario.targets(t.index, t.test.y))
            .float()
            .mean()
        )


def test_two_tasks_the_first_never_forgotten_and_the_file_keeps_the_owners(tmp_path):
    torch.manual_seed(0)
    tasks = [task(1, TASKS[0], 0), task(2, TASKS[1], 1)]
    method = PackNet({"retrain_epochs": 1})
    model = method.prepare_model(build_model(SPEC), SPEC, TASKS)
    scenario = train(model, method, tasks[0], tasks)
    first = copy.deepcopy(model.state_dict())
    after_first = accuracy(model, scenario, tasks[0])
    owned = {n: model.owner(n).clone() for n in model.managed}
    assert all(((o == 0) | (o == 1)).all() for o in owned.values())
    assert sum(int((o == 1).sum()) for o in owned.values()) == sum(
        int((o == 0).sum()) for o in owned.values()
    )
    for n in model.managed:  # the pruned weights are 0 (the output rows of task 2: its head, free)
        if n != model.head:
            assert model.base.get_parameter(n)[owned[n] == 0].abs().sum() == 0
    assert owned[model.head][:2].eq(1).all() and owned[model.head][2:].eq(0).all()
    # the model file keeps the network and the owners; the next task starts from it
    save_model(str(tmp_path / "model.pt"), model, spec_of(model, SPEC), {"step": "test"})
    loaded, stored = load_model(str(tmp_path / "model.pt"), torch.device("cpu"))
    assert isinstance(loaded, TaskMaskedNetwork) and stored["model_spec"]["base"] == SPEC
    second = PackNet({"retrain_epochs": 1})
    model = second.prepare_model(loaded, stored["model_spec"], TASKS)
    assert model is loaded
    train(model, second, tasks[1], tasks)
    for n in model.managed:  # task 1's weights did not move, bit for bit
        kept = owned[n] == 1
        assert torch.equal(model.base.get_parameter(n)[kept], first[f"base.{n}"][kept])
        assert torch.equal(model.owner(n)[kept], owned[n][kept])
    for name, p in model.base.named_parameters():  # biases: trained with the first task only
        if name == model.head_bias:  # but the output layer's: each task's entries are its head's
            assert torch.equal(p[:2], first[f"base.{name}"][:2]) and not torch.equal(
                p[2:], first[f"base.{name}"][2:]
            )
        elif name not in model.managed:
            assert torch.equal(p, first[f"base.{name}"])
    assert accuracy(model, scenario, tasks[0]) == after_first  # no forgetting, by construction
    assert accuracy(model, scenario, tasks[1]) > 0.9


def test_only_the_task_incremental_scenario_is_taken():
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["experiments"]["tiny"]["arms"] = {"packnet": {"method": "packnet", "prune": 0.75}}
    with pytest.raises(
        ConfigError, match="task-incremental scenario only, but the experiment's scenario is 'domain'"
    ) as err:
        validate_config(copy.deepcopy(cfg), str(SCHEMA))
    assert err.value.key == "experiments.tiny.methods.packnet.type"
    cfg["experiments"]["tiny"]["scenario"] = "task"
    exp = validate_config(cfg, str(SCHEMA))["tiny"]
    assert exp.arms["packnet"].first_task == 1 and exp.arms["packnet"].per_task[2] == {"prune": 0.75}
