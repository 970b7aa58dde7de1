"""Experience replay: scores, selection, the buffer file, training with the buffer."""

import math

import pytest
import torch

from clpipe import io
from clpipe.methods import REGISTRY
from clpipe.methods.replay import (
    BUFFER_KEYS,
    ExperienceReplay,
    class_quotas,
    empty_buffer,
    fraction_quota,
    hardness,
    preference,
    select,
)
from clpipe.runtime import make_runtime
from clpipe.steps.importance import compute_importance
from clpipe.steps.init import init_model
from clpipe.steps.train import train_first_task, train_next_task

INPUT = {"size": 8, "channels": 1, "normalize": None}

# Four samples, three classes, true class 0 for all; by hand:
#   a: confident and right       el2n small, entropy small, margin  0.8
#   b: uniform                   el2n mid,   entropy ln 3 (max), margin 0
#   c: confident and wrong       el2n large, entropy small, margin -0.8
#   d: a zero probability        entropy finite (0 ln 0 = 0)
PROBS = torch.tensor(
    [
        [0.9, 0.1, 0.0],
        [1 / 3, 1 / 3, 1 / 3],
        [0.05, 0.85, 0.10],
        [0.5, 0.5, 0.0],
    ],
    dtype=torch.float64,
)
TARGETS = torch.zeros(4, dtype=torch.int64)


def test_scores_on_a_hand_made_probability_table():
    g = torch.Generator().manual_seed(0)
    el2n = hardness(PROBS, TARGETS, "el2n", g)
    expected = [
        math.sqrt(0.1**2 + 0.1**2),
        math.sqrt((2 / 3) ** 2 + 2 / 9),
        math.sqrt(0.95**2 + 0.85**2 + 0.1**2),
    ]
    assert torch.allclose(el2n[:3], torch.tensor(expected, dtype=torch.float64))
    entropy = hardness(PROBS, TARGETS, "entropy", g)
    assert torch.isfinite(entropy).all()
    assert entropy[1] == pytest.approx(math.log(3))
    assert entropy[3] == pytest.approx(math.log(2))  # the 0 contributes nothing
    assert entropy[0] == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))
    margin = hardness(PROBS, TARGETS, "margin", g)
    assert torch.allclose(margin, torch.tensor([0.8, 0.0, 0.05 - 0.85, 0.0], dtype=torch.float64))
    # which sample is hardest
    assert preference(el2n, "el2n", "hardest")[0] == 2
    assert preference(entropy, "entropy", "hardest")[0] == 1
    assert preference(margin, "margin", "hardest")[0] == 2  # the lowest margin
    assert preference(margin, "margin", "easiest")[0] == 0
    rnd = hardness(PROBS, TARGETS, "random", torch.Generator().manual_seed(1))
    again = hardness(PROBS, TARGETS, "random", torch.Generator().manual_seed(1))
    assert torch.equal(rnd, again) and len(set(rnd.tolist())) == 4
    with pytest.raises(ValueError, match="unknown 'loss'"):
        hardness(PROBS, TARGETS, "loss", g)


@pytest.mark.parametrize("score", ["el2n", "entropy", "margin", "random"])
def test_hardest_and_easiest_are_mirror_images(score):
    scores = torch.tensor([0.3, 0.1, 0.9, 0.5, 0.7, 0.2])  # no ties
    hardest = preference(scores, score, "hardest")
    easiest = preference(scores, score, "easiest")
    assert torch.equal(hardest, easiest.flip(0))
    assert sorted(hardest.tolist()) == list(range(6))


def candidates(task, labels, scores):
    n = len(labels)
    return {
        "task": torch.full((n,), task),
        "position": torch.arange(n),
        "source_index": torch.arange(n) + 1000 * task,
        "label": torch.tensor(labels),
        "score": torch.tensor(scores, dtype=torch.float32),
    }


def test_fraction_budget_takes_int_f_n_of_each_task_and_only_grows():
    first = select(
        empty_buffer(), candidates(1, [0, 1] * 50, list(range(100))), {"fraction": 0.05}, "el2n", "hardest"
    )
    assert len(first["label"]) == 5 and first["score"].tolist() == [99, 98, 97, 96, 95]
    second = select(first, candidates(2, [2, 3] * 33, list(range(66))), {"fraction": 0.05}, "el2n", "hardest")
    assert len(second["label"]) == 5 + int(0.05 * 66)  # 5 + 3: nothing evicted
    assert torch.equal(second["source_index"][:5], first["source_index"])


def test_class_balanced_memory_evicts_to_keep_the_per_class_budget():
    budget = {"memory": 12}
    buf = select(empty_buffer(), candidates(1, [0, 1] * 20, list(range(40))), budget, "el2n", "hardest")
    assert torch.bincount(buf["label"]).tolist() == [6, 6]
    # the hardest of each class: class 0 sits at even scores, class 1 at odd ones
    assert sorted(buf["score"][buf["label"] == 0].tolist()) == [28, 30, 32, 34, 36, 38]
    buf = select(buf, candidates(2, [2, 3] * 20, list(range(40))), budget, "el2n", "hardest")
    assert torch.bincount(buf["label"]).tolist() == [3, 3, 3, 3]  # 12 shared by 4 classes
    # the old classes kept their hardest 3: eviction uses the same preference
    assert sorted(buf["score"][buf["label"] == 0].tolist()) == [34, 36, 38]
    buf = select(buf, candidates(3, [4, 5, 6] * 10, list(range(30))), budget, "el2n", "hardest")
    counts = torch.bincount(buf["label"]).tolist()
    assert sum(counts) == 12 and max(counts) - min(counts) <= 1  # 12 over 7 classes
    fixed = select(
        empty_buffer(), candidates(1, [0, 1] * 20, list(range(40))), {"per_class": 4}, "margin", "easiest"
    )
    assert torch.bincount(fixed["label"]).tolist() == [4, 4]
    assert sorted(fixed["score"][fixed["label"] == 1].tolist()) == [
        33,
        35,
        37,
        39,
    ]  # easiest = highest margin


def test_the_quotas_the_buffer_is_sized_by():
    """The per-task and per-class quotas select keeps to (benchmarks/scale.py sizes its
    buffers with the same functions)."""
    assert fraction_quota({"fraction": 0.05}, 66) == 3  # int(f * n), rounded down
    assert class_quotas({"per_class": 4}, [3, 1]) == {3: 4, 1: 4}
    # 12 over 7 classes: the remainder goes to the lowest labels, in whatever order given
    quotas = class_quotas({"memory": 12}, [6, 0, 5, 1, 4, 2, 3])
    assert quotas == {0: 2, 1: 2, 2: 2, 3: 2, 4: 2, 5: 1, 6: 1} and sum(quotas.values()) == 12
    assert class_quotas({"memory": 5}, []) == {}


def test_the_buffer_file_round_trips(tmp_path):
    buf = select(
        empty_buffer(), candidates(1, [0, 1] * 10, list(range(20))), {"fraction": 0.5}, "random", "hardest"
    )
    path = tmp_path / "importance.pt"
    io.save(str(path), "importance", {"step": "test"}, **buf, task_datasets=["mnist"])
    back = io.load(str(path), "importance")
    for k in BUFFER_KEYS:
        assert torch.equal(back[k], buf[k]) and back[k].dtype == buf[k].dtype, k
    assert back["task_datasets"] == ["mnist"]
    assert "x" not in back  # indices, not images


# --- through the real steps -----------------------------------------------------------


def toy_data(tmp_path):
    g = torch.Generator().manual_seed(0)
    tasks = []
    for classes in ([0, 1], [2, 3], [4, 5]):
        y = torch.tensor(classes)[torch.randint(0, 2, (64,), generator=g)]
        x = torch.randint(0, 256, (64, 1, 8, 8), generator=g, dtype=torch.uint8)
        split = {"x": x, "y": y, "index": torch.arange(64) + 100 * classes[0]}
        tasks.append({"dataset": "toy", "classes": classes, "train": split, "val": split, "test": split})
    data = str(tmp_path / "tasks.pt")
    io.save(data, "tasks", {"step": "test"}, tasks=tasks)
    return data


def run_arms(tmp_path, scenario, methods):
    """Task 1 shared, its buffer per method, task 2 per arm: the models' state dicts."""
    runtime = make_runtime("cpu", deterministic=True, threads=1)
    data = toy_data(tmp_path)
    outputs = 2 if scenario == "domain" else 6
    model = {"name": "mlp", "hidden": [16], "output_relu": False, "init": "glorot", "input": INPUT}
    base = {
        "experiment": "toy",
        "seed": 0,
        "scenario": scenario,
        "tasks": [[0, 1], [2, 3], [4, 5]],
        "input": INPUT,
        "eval": {"batch_size": 64},
        "train": {"epochs": 2, "batch_size": 16, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
    }
    p = lambda name: str(tmp_path / name)  # noqa: E731
    init_model({"experiment": "toy", "seed": 0, "model": {**model, "n_outputs": outputs}}, p("i.pt"), runtime)
    train_first_task(p("i.pt"), data, {**base, "task": 1}, p("a.pt"), p("a.csv"), runtime)
    out = {}
    for name, method in methods.items():
        imp = None
        if method["type"] == "replay":
            imp = p(f"{name}.buf")
            spec = {**base, "task": 1, "method": method}
            compute_importance(p("a.pt"), data, None, None, spec, imp, runtime)
        spec = {**base, "task": 2, "arm": name, "method": method, "task_settings": {}}
        train_next_task(
            p("a.pt"), data, imp, spec, p(f"{name}.pt"), p(f"{name}.csv"), p(f"{name}.r"), runtime
        )
        out[name] = io.load(p(f"{name}.pt"), "model")["state_dict"]
        if imp:
            out[name + ".buffer"] = io.load(imp, "importance")
    return out


def replay(**settings):
    return {**{"type": "replay"}, **REGISTRY["replay"].defaults, **settings}


@pytest.mark.parametrize("scenario", ["domain", "task"])
def test_an_empty_budget_trains_exactly_like_fine_tuning(tmp_path, scenario):
    out = run_arms(
        tmp_path,
        scenario,
        {
            "finetune": {"type": "finetune"},
            "empty": replay(budget={"fraction": 0.0}),
            "empty_batch": replay(budget={"per_class": 0}, mode="batch"),
            "some": replay(budget={"fraction": 0.25}, score="el2n"),
            "some_batch": replay(budget={"fraction": 0.25}, score="el2n", mode="batch", replay_batch_size=8),
        },
    )
    assert len(out["empty.buffer"]["label"]) == 0 and len(out["some.buffer"]["label"]) == 16
    for k in out["finetune"]:
        assert torch.equal(out["finetune"][k], out["empty"][k]), k
        assert torch.equal(out["finetune"][k], out["empty_batch"][k]), k
    for name in ("some", "some_batch"):  # a non-empty buffer changes the training
        assert any(not torch.equal(out["finetune"][k], out[name][k]) for k in out["finetune"]), name


def test_buffer_entries_point_at_the_tasks_training_samples(tmp_path):
    out = run_arms(tmp_path, "domain", {"r": replay(budget={"per_class": 5}, score="margin")})
    buf = out["r.buffer"]
    tasks = io.load(str(tmp_path / "tasks.pt"), "tasks")["tasks"]
    train = tasks[0]["train"]
    assert torch.equal(train["index"][buf["position"]], buf["source_index"])
    assert torch.equal(train["y"][buf["position"]], buf["label"])
    assert torch.bincount(buf["label"]).tolist() == [5, 5]


def test_a_buffer_from_other_data_is_refused(tmp_path):
    from clpipe.data.pipeline import load_tasks
    from clpipe.steps.context import task_context as _context

    data = toy_data(tmp_path)
    tasks = load_tasks(data)
    runtime = make_runtime("cpu", deterministic=True, threads=1)
    spec = {"scenario": "domain", "tasks": [[0, 1], [2, 3], [4, 5]], "input": INPUT, "task": 2}
    spec["eval"], spec["train"] = {"batch_size": 8}, {"batch_size": 8}
    _, _, ctx = _context(spec, tasks, runtime, torch.Generator())
    wrong = {**candidates(1, [0, 1], [0.5, 0.5]), "source_index": torch.tensor([7, 9])}
    with pytest.raises(ValueError, match="do not match that task's training split"):
        ExperienceReplay(replay()).begin_task(None, wrong, {}, ctx)


def test_scoring_costs_one_evaluation_pass(tmp_path):
    """compute_importance runs the model once per evaluation batch, in inference mode."""
    from clpipe.data.pipeline import load_tasks
    from clpipe.networks import build_model
    from clpipe.steps.context import task_context as _context

    tasks = load_tasks(toy_data(tmp_path))
    runtime = make_runtime("cpu", deterministic=True, threads=1)
    spec = {"scenario": "domain", "tasks": [[0, 1], [2, 3], [4, 5]], "input": INPUT, "task": 1}
    spec["eval"] = {"batch_size": 24}
    _, _, ctx = _context(spec, tasks, runtime, torch.Generator().manual_seed(0))
    model = build_model({"name": "mlp", "hidden": [8], "input": INPUT, "n_outputs": 2, "init": "torch"})
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(torch.is_inference_mode_enabled()))
    ExperienceReplay(replay(score="entropy")).compute_importance(model, ctx, None, None)
    assert calls == [True] * math.ceil(64 / 24)
