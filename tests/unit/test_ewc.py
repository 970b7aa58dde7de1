"""Elastic weight consolidation: penalty, Fisher (batched vs loop), lambda extremes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clpipe import io
from clpipe.data.pipeline import InputPipeline, Split, Task
from clpipe.methods.base import TaskContext
from clpipe.methods.ewc import (
    ElasticWeightConsolidation,
    fisher_information,
    squared_grads_batched,
    squared_grads_layers,
    squared_grads_loop,
)
from clpipe.networks import build_model
from clpipe.runtime import make_runtime
from clpipe.scenarios import Scenario
from clpipe.steps.importance import compute_importance
from clpipe.steps.init import init_model
from clpipe.steps.train import train_first_task, train_next_task

INPUT = {"size": 8, "channels": 1, "normalize": None}


def toy_task(index=1, n=40, classes=(0, 1, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(classes)[torch.randint(0, len(classes), (n,), generator=g)]
    x = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    split = Split(x, y, torch.arange(n))
    return Task(index, "toy", tuple(classes), split, split, split)


def context(task, scenario, seed=5):
    return TaskContext(
        task=task,
        scenario=scenario,
        pipeline=InputPipeline(INPUT, torch.device("cpu")),
        device=torch.device("cpu"),
        eval_batch_size=16,
        generator=torch.Generator().manual_seed(seed),
    )


def small_mlp(seed=0, outputs=3):
    torch.manual_seed(seed)
    return build_model(
        {"name": "mlp", "hidden": [16, 16], "input": INPUT, "n_outputs": outputs, "init": "torch"}
    )


@pytest.mark.parametrize("labels", ["empirical", "predicted", "sampled"])
@pytest.mark.parametrize("scenario_kind", ["domain", "task"])
def test_batched_fisher_equals_a_loop_over_single_samples(labels, scenario_kind):
    model = small_mlp(outputs=6 if scenario_kind == "task" else 3)
    task = toy_task(index=2, classes=(3, 4, 5))
    scenario = Scenario(scenario_kind, [[0, 1, 2], [3, 4, 5]])
    batched, n = fisher_information(model, context(task, scenario), labels, samples=30, batch_size=7)
    looped, m = fisher_information(
        model, context(task, scenario), labels, samples=30, batch_size=7, batched=False
    )
    assert n == m == 30
    for k in batched:
        assert batched[k].abs().max() > 0
        torch.testing.assert_close(batched[k], looped[k], rtol=1e-5, atol=1e-6 * looped[k].abs().max().item())


def test_fisher_label_modes_differ_and_samples_are_seeded():
    model = small_mlp()
    task, scenario = toy_task(), Scenario("domain", [[0, 1, 2]])
    f = {
        m: fisher_information(model, context(task, scenario), m, samples=20)[0]
        for m in ("empirical", "predicted", "sampled")
    }
    assert not torch.equal(f["empirical"]["net.1.weight"], f["predicted"]["net.1.weight"])
    again = fisher_information(model, context(task, scenario), "sampled", samples=20)[0]
    assert torch.equal(f["sampled"]["net.1.weight"], again["net.1.weight"])
    other_seed = fisher_information(model, context(task, scenario, seed=6), "sampled", samples=20)[0]
    assert not torch.equal(f["sampled"]["net.1.weight"], other_seed["net.1.weight"])


def fake_importance(model, tasks):
    """EWC terms with known Fisher values and anchors."""
    terms = []
    for t in range(1, tasks + 1):
        g = torch.Generator().manual_seed(t)
        fisher = {k: torch.rand(p.shape, generator=g) for k, p in model.named_parameters()}
        anchor = {k: p.detach() + torch.randn(p.shape, generator=g) for k, p in model.named_parameters()}
        terms.append({"task": t, "samples": 10, "fisher": fisher, "anchor": anchor})
    return {"terms": terms, "online": False, "labels": "empirical"}


@pytest.mark.parametrize("tasks", [1, 3])
def test_penalty_gradient_is_lambda_f_times_distance(tasks):
    model = small_mlp()
    imp = fake_importance(model, tasks)
    ewc = ElasticWeightConsolidation({})
    ewc.begin_task(model, imp, {"lambda": 7.0}, None)
    model.zero_grad(set_to_none=True)
    ewc.after_backward(model)  # adds the penalty's gradient
    expected_value = 0.0
    for k, p in model.named_parameters():
        expected = sum(7.0 * t["fisher"][k] * (p.detach() - t["anchor"][k]) for t in imp["terms"])
        torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-5)
        expected_value += sum(
            3.5 * (t["fisher"][k] * (p.detach() - t["anchor"][k]) ** 2).sum() for t in imp["terms"]
        )
    assert ewc.penalty_value() == pytest.approx(float(expected_value), rel=1e-4)


def test_online_ewc_keeps_one_decayed_fisher_and_the_latest_anchor():
    model = small_mlp()
    task, scenario = toy_task(), Scenario("domain", [[0, 1, 2]])
    ewc = ElasticWeightConsolidation({"online": True, "decay": 0.5})
    first = ewc.compute_importance(model, context(task, scenario), None, None)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    second = ewc.compute_importance(
        model, context(toy_task(2, seed=1), Scenario("domain", [[0, 1, 2]] * 2)), first, None
    )
    assert len(second["terms"]) == 1
    new_only = fisher_information(model, context(toy_task(2, seed=1), Scenario("domain", [[0, 1, 2]] * 2)))[0]
    k = "net.1.weight"
    torch.testing.assert_close(
        second["terms"][0]["fisher"][k], 0.5 * first["terms"][0]["fisher"][k] + new_only[k]
    )
    assert torch.equal(second["terms"][0]["anchor"][k], dict(model.named_parameters())[k].detach())
    standard = ElasticWeightConsolidation({}).compute_importance(model, context(task, scenario), first, None)
    assert len(standard["terms"]) == 2


def test_a_large_lambda_keeps_the_weights_near_the_anchor():
    task, scenario = toy_task(), Scenario("domain", [[0, 1, 2]])
    moved = {}
    for strength in (0.0, 1e4):
        model = small_mlp()
        imp = ElasticWeightConsolidation({}).compute_importance(model, context(task, scenario), None, None)
        anchor = [p.detach().clone() for p in model.parameters()]
        ewc = ElasticWeightConsolidation({})
        ewc.begin_task(model, imp, {"lambda": strength}, None)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        new_task = toy_task(seed=3)
        x = InputPipeline(INPUT, torch.device("cpu"))(new_task.train.x)
        for _ in range(50):
            opt.zero_grad()
            F.cross_entropy(model(x), new_task.train.y).backward()
            ewc.after_backward(model)
            opt.step()
        # distance weighted by the Fisher: what EWC protects
        fisher = imp["terms"][0]["fisher"]
        moved[strength] = sum(
            float((fisher[k] * (p.detach() - a) ** 2).sum())
            for (k, p), a in zip(model.named_parameters(), anchor, strict=True)
        )
    assert moved[0.0] > 1e-4
    assert moved[1e4] < 1e-2 * moved[0.0]


def test_mismatched_fisher_is_refused():
    imp = fake_importance(small_mlp(), 1)
    other = build_model({"name": "mlp", "hidden": [16, 8], "input": INPUT, "n_outputs": 3})
    with pytest.raises(
        ValueError, match=r"Fisher information of task 1 does not match the model: net.3.weight: shape"
    ):
        ElasticWeightConsolidation({}).begin_task(other, imp, {"lambda": 1.0}, None)


def test_lambda_zero_trains_exactly_like_fine_tuning(tmp_path):
    """Through the real steps: same seed, same inputs -> bit-identical models."""
    runtime = make_runtime("cpu", deterministic=True, threads=1)
    g = torch.Generator().manual_seed(0)
    tasks = []
    for classes in ([0, 1], [2, 3]):
        y = torch.tensor(classes)[torch.randint(0, 2, (64,), generator=g)]
        x = torch.randint(0, 256, (64, 1, 8, 8), generator=g, dtype=torch.uint8)
        split = {"x": x, "y": y, "index": torch.arange(64)}
        tasks.append({"dataset": "toy", "classes": classes, "train": split, "val": split, "test": split})
    data = str(tmp_path / "tasks.pt")
    io.save(data, "tasks", {"step": "test"}, tasks=tasks)
    model_spec = {
        "name": "mlp",
        "hidden": [16],
        "output_relu": False,
        "init": "glorot",
        "input": INPUT,
        "n_outputs": 2,
    }
    base = {
        "experiment": "toy",
        "seed": 0,
        "scenario": "domain",
        "tasks": [[0, 1], [2, 3]],
        "input": INPUT,
        "eval": {"batch_size": 64},
        "train": {"epochs": 2, "batch_size": 16, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
    }
    p = lambda name: str(tmp_path / name)  # noqa: E731
    init_model({"experiment": "toy", "seed": 0, "model": model_spec}, p("init.pt"), runtime)
    train_first_task(p("init.pt"), data, {**base, "task": 1}, p("a.pt"), p("a.csv"), runtime)
    ewc = {
        "type": "ewc",
        "fisher_labels": "empirical",
        "fisher_samples": None,
        "fisher_batch_size": 16,
        "online": False,
        "decay": 1.0,
    }
    compute_importance(
        p("a.pt"), data, None, None, {**base, "task": 1, "method": ewc}, p("fisher.pt"), runtime
    )
    for name, method, imp, settings in (
        ("finetune", {"type": "finetune"}, None, {}),
        ("ewc0", ewc, p("fisher.pt"), {"lambda": 0.0}),
        ("ewc1", ewc, p("fisher.pt"), {"lambda": 100.0}),
    ):
        spec = {**base, "task": 2, "arm": name, "method": method, "task_settings": settings}
        train_next_task(
            p("a.pt"), data, imp, spec, p(f"{name}.pt"), p(f"{name}.csv"), p(f"{name}.rec"), runtime
        )
    weights = {n: io.load(p(f"{n}.pt"), "model")["state_dict"] for n in ("finetune", "ewc0", "ewc1")}
    for k in weights["finetune"]:
        assert torch.equal(weights["finetune"][k], weights["ewc0"][k]), k
    assert any(not torch.equal(weights["finetune"][k], weights["ewc1"][k]) for k in weights["finetune"])


def test_nothing_is_added_before_a_task_begins():
    layer = nn.Linear(2, 2)
    ElasticWeightConsolidation({}).after_backward(layer)
    assert layer.weight.grad is None


@pytest.mark.parametrize(
    "spec",
    [
        {
            "name": "cnn",
            "conv": [{"channels": 4, "kernel": 3, "stride": 2}, {"channels": 6, "kernel": 3, "stride": 2}],
            "hidden": [12],
        },
        {"name": "vgg16", "width": 0.0625, "dropout": 0.5},
        {"name": "mlp", "hidden": [16, 16], "output_relu": True},
    ],
    ids=["cnn", "vgg16", "mlp"],
)
def test_layerwise_fisher_is_exact_for_linear_and_conv_layers(spec):
    size = 32 if spec["name"] == "vgg16" else 8
    inp = {"size": size, "channels": 3 if spec["name"] == "vgg16" else 1, "normalize": None}
    torch.manual_seed(0)
    # float64: the comparison checks the algebra, not float32 rounding of tiny values
    model = build_model({**spec, "input": inp, "n_outputs": 3, "init": "torch"}).eval().double()
    x = torch.randn(9, inp["channels"], size, size, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    fast = squared_grads_layers(model, x, y, None)
    assert fast is not None
    for reference in (squared_grads_loop(model, x, y, None), squared_grads_batched(model, x, y, None)):
        assert set(fast) == set(reference)
        for k in fast:
            assert reference[k].abs().max() > 0, k
            tol = 1e-12 * reference[k].abs().max().item()
            torch.testing.assert_close(fast[k], reference[k], rtol=1e-9, atol=tol)


def test_other_layers_fall_back_to_torch_func():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    assert squared_grads_layers(model, torch.randn(5, 4), torch.randint(0, 2, (5,)), None) is None
