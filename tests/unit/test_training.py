"""The training loop: seeded and deterministic, refuses non-finite losses."""

import math
import os
import subprocess
import sys

import pytest
import torch

from clpipe import io
from clpipe.data.pipeline import InputPipeline, Split, Task
from clpipe.epochs import EarlyStopping, EpochCheckpoint
from clpipe.methods.base import ContinualMethod
from clpipe.methods.finetune import FineTune
from clpipe.networks import build_model
from clpipe.runtime import make_runtime, seed_everything
from clpipe.scenarios import Scenario
from clpipe.training import NonFiniteLossError, train_task
from conftest import ROOT
from helpers.killed import dies_at

SPEC = {"name": "mlp", "hidden": [32], "input": {"size": 8, "channels": 1}, "n_outputs": 2}
TRAIN = {"epochs": 2, "batch_size": 16, "optimizer": {"name": "adam", "lr": 1e-2}}


def toy_task():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (100,), generator=g)
    x = (torch.rand(100, 1, 8, 8, generator=g) * 60 + y.view(-1, 1, 1, 1) * 190).to(torch.uint8)
    split = Split(x, y, torch.arange(100))
    return Task(1, "toy", (0, 1), split, Split(x[:20], y[:20], torch.arange(20)), split)


def run(method=None, cfg=TRAIN, spec=SPEC):
    make_runtime("cpu", deterministic=True, threads=1)
    g = seed_everything(7)
    model = build_model(spec)
    history = train_task(
        model,
        toy_task(),
        scenario=Scenario("domain", [[0, 1]]),
        pipeline=InputPipeline(spec["input"], torch.device("cpu")),
        train_cfg=cfg,
        method=method or FineTune({}),
        generator=g,
        eval_batch_size=64,
    )
    return model, history


def test_same_seed_same_weights_bit_for_bit():
    a, ha = run()
    b, hb = run()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert ha[-1]["train_loss"] == hb[-1]["train_loss"]
    assert len(ha) == 2 and ha[-1]["val_accuracy"] > 0.9


def test_iterations_instead_of_epochs():
    _, history = run(cfg={"iterations": 9, "batch_size": 16, "optimizer": TRAIN["optimizer"]})
    assert [h["step"] for h in history] == [7, 9]  # 7 batches per epoch, then 2 more


class NaNAtStep(ContinualMethod):
    def __init__(self, at):
        super().__init__({})
        self.at, self.calls = at, 0

    def penalty(self, model):
        self.calls += 1
        return torch.tensor(float("nan")) if self.calls == self.at + 1 else None


def test_non_finite_loss_names_epoch_and_batch():
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 3 \(step 10\)"):
        run(method=NaNAtStep(10))


def killed_at_step(step):
    """A job that dies in the middle of an epoch, after ``step`` backward passes."""
    return dies_at(ContinualMethod({}), step, hook="after_backward")


# with dropout: the global RNG state must come back too
VGG = {"name": "vgg16", "width": 0.0625, "dropout": 0.5, "input": {"size": 32, "channels": 1}, "n_outputs": 2}


def run_with_checkpoint(path, key="job", method=None, epochs=3, cfg=None):
    make_runtime("cpu", deterministic=True, threads=1)
    g = seed_everything(7)
    model = build_model(VGG)
    history = train_task(
        model, toy_task(), scenario=Scenario("domain", [[0, 1]]),
        pipeline=InputPipeline(VGG["input"], torch.device("cpu")),
        train_cfg={**TRAIN, "epochs": epochs, **(cfg or {})}, method=method or FineTune({}), generator=g,
        eval_batch_size=64,
        checkpoint=EpochCheckpoint(str(path), key),
    )  # fmt: skip
    return model, history


def test_a_killed_job_resumes_after_its_last_epoch_bit_for_bit(tmp_path):
    reference, ref_history = run_with_checkpoint(tmp_path / "ref.pt")
    state = tmp_path / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        run_with_checkpoint(state, method=killed_at_step(7 + 3))  # 7 steps per epoch: dies in epoch 2
    saved = io.load(state, "resume")
    assert saved["epoch"] == 1 and saved["step"] == 7
    resumed, history = run_with_checkpoint(state)
    for p, q in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] == ref_history[-1]["train_loss"]


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    state = tmp_path / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        run_with_checkpoint(state, key="old settings", method=killed_at_step(10))
    fresh, _ = run_with_checkpoint(tmp_path / "fresh.pt")
    other, history = run_with_checkpoint(state, key="new settings")
    assert [h["epoch"] for h in history] == [1, 2, 3]  # started over
    for p, q in zip(fresh.parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_checkpoint_of_another_architecture_is_not_half_loaded(tmp_path):
    """Same job and key, but the model came out another shape this time (a growing
    network that decides its own growth before training): start over, change nothing."""
    make_runtime("cpu", deterministic=True, threads=1)
    g = seed_everything(7)
    saved = build_model(SPEC)
    optimizer = torch.optim.Adam(saved.parameters())
    EpochCheckpoint(str(tmp_path / "resume.pt"), "job").save(saved, optimizer, g, 1, 7, [{"epoch": 1}])
    other = build_model({**SPEC, "hidden": [16]})
    before = {k: v.clone() for k, v in other.state_dict().items()}
    restored = EpochCheckpoint(str(tmp_path / "resume.pt"), "job").restore(
        other, torch.optim.Adam(other.parameters()), torch.Generator()
    )
    assert restored == (0, 0, [], {})
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())


# --- learning-rate schedule and early stopping -----------------------------------------

SGD = {"name": "sgd", "lr": 0.1, "momentum": 0.9}


def test_cosine_schedule_restarts_per_task_and_is_logged():
    cfg = {"epochs": 4, "batch_size": 16, "optimizer": SGD, "schedule": {"name": "cosine", "t_max": 4}}
    _, first = run(cfg=cfg)
    _, second = run(cfg=cfg)  # a new task: a new optimizer, the schedule from the top
    expected = [0.05 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert [h["lr"] for h in first] == pytest.approx(expected)
    assert [h["lr"] for h in second] == pytest.approx(expected)


def test_early_stopping_watches_validation_and_keeps_the_best_epoch():
    stop = EarlyStopping({"patience": 2, "min_epochs": 1, "restore_best": True})
    model = torch.nn.Linear(2, 1)
    decisions = []
    for epoch, acc in enumerate([0.5, 0.7, 0.6, 0.65, 0.9], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        decisions.append(stop.update(model, epoch, acc))
        if decisions[-1]:
            break
    assert decisions == [False, False, False, True]  # 2 epochs without beating 0.7
    stop.finish(model, 4, "")
    assert (model.weight == 2).all()  # epoch 2's weights are back
    late = EarlyStopping({"patience": 1, "min_epochs": 4, "restore_best": False})
    assert [late.update(model, e, 0.5) for e in range(1, 6)] == [False, False, False, True, True]


def test_a_task_that_stops_improving_stops_early():
    # lr 0: the weights never move, so validation never beats epoch 1
    cfg = {"epochs": 10, "batch_size": 16, "optimizer": {"name": "sgd", "lr": 1e-30},
           "early_stopping": {"patience": 3, "min_epochs": 2, "restore_best": True}}  # fmt: skip
    _, history = run(cfg=cfg)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert [h["kept"] for h in history] == [True, False, False, False]


def test_a_killed_job_with_schedule_and_early_stopping_resumes_bit_for_bit(tmp_path):
    cfg = {"schedule": {"name": "cosine", "t_max": 3},
           "early_stopping": {"patience": 1, "min_epochs": 1, "restore_best": True}}  # fmt: skip
    reference, ref_history = run_with_checkpoint(tmp_path / "ref.pt", cfg=cfg)
    state = tmp_path / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        run_with_checkpoint(state, method=killed_at_step(7 + 3), cfg=cfg)
    resumed, history = run_with_checkpoint(state, cfg=cfg)
    for p, q in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    assert [(h["lr"], h["kept"], h["val_loss"]) for h in history] == [
        (h["lr"], h["kept"], h["val_loss"]) for h in ref_history
    ]


# --- a network with a head per task (the growing network) ------------------------------


def two_class_task(index, classes, seed):
    """Toy task whose class k images are bright in row block k (8 x 8, one channel)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, 2, (120,), generator=g)
    x = (torch.rand(120, 1, 8, 8, generator=g) * 60).to(torch.uint8)
    for i in range(120):
        x[i, 0, 4 * int(k[i]) : 4 * int(k[i]) + 4] += 180
    y = torch.tensor(classes)[k]
    split = Split(x, y, torch.arange(120))
    return Task(index, "toy", tuple(classes), split, Split(x[:40], y[:40], torch.arange(40)), split)


def test_a_growing_network_trains_and_is_evaluated_with_its_task_id():
    from clpipe.evaluation import evaluate_split
    from clpipe.networks.growing import GrowingTaskNet

    make_runtime("cpu", deterministic=True, threads=1)
    g = seed_everything(3)
    model = GrowingTaskNet(in_channels=1, input_size=8, conv=[4, 4], hidden=8, outputs=2,
                           pool_after=[True, False], pooled_size=2, init="standard")  # fmt: skip
    tasks = [two_class_task(1, [0, 1], 0), two_class_task(2, [2, 3], 1)]
    scenario = Scenario.for_model("task", [[0, 1], [2, 3]], model)
    pipeline = InputPipeline({"size": 8, "channels": 1}, torch.device("cpu"))
    cfg = {"epochs": 6, "batch_size": 16, "optimizer": {"name": "adam", "lr": 1e-2}}

    def train(task):
        return train_task(model, task, scenario=scenario, pipeline=pipeline, train_cfg=cfg,
                          method=FineTune({}), generator=g, eval_batch_size=64)  # fmt: skip

    history = train(tasks[0])
    assert history[-1]["val_accuracy"] > 0.9  # targets 0 / 1 of task 1's own 2-way head
    assert math.isnan(evaluate_split(model, tasks[1].test, 2, scenario, pipeline, 64)[0])  # no head yet
    model.grow(2, conv=4, hidden=8, outputs=2, init="standard")
    assert train(tasks[1])[-1]["val_accuracy"] > 0.9  # labels 2 / 3 -> targets 0 / 1
    acc, loss = evaluate_split(model, tasks[1].test, 2, scenario, pipeline, 64)
    assert acc > 0.9 and math.isfinite(loss)


class MixesTasks(ContinualMethod):
    def extra_training_samples(self):
        return torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), torch.ones(2)


def test_a_head_per_task_cannot_train_on_batches_that_mix_tasks():
    from clpipe.networks.growing import GrowingTaskNet

    model = GrowingTaskNet(in_channels=1, input_size=8, conv=[2], hidden=4, outputs=2, pool_after=[False])
    with pytest.raises(ValueError, match="mix tasks"):
        train_task(
            model, two_class_task(2, [2, 3], 0), scenario=Scenario.for_model("task", [[0, 1], [2, 3]], model),
            pipeline=InputPipeline({"size": 8, "channels": 1}, torch.device("cpu")), train_cfg=TRAIN,
            method=MixesTasks({}), generator=torch.Generator(), eval_batch_size=64,
        )  # fmt: skip


def test_deterministic_runtime_turns_torch_deterministic_without_importing_the_compiler():
    # torch.use_deterministic_algorithms imports torch._inductor (TorchDynamo): ~1 s per
    # job that builds no optimizer (torch.optim imports it too)
    code = (
        "import sys, torch\n"
        "from clpipe.runtime import make_runtime\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
        "make_runtime('cpu', deterministic=True, threads=1)\n"
        "print(torch.are_deterministic_algorithms_enabled(), 'torch._dynamo' in sys.modules)\n"
        "import torch._inductor.config as c\n"
        "make_runtime('cpu', deterministic=True, threads=1)\n"
        "print(c.deterministic)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert out == ["True", "False", "True"]


VGG = {
    "name": "vgg16",
    "width": 0.0625,
    "dropout": 0.0,
    "init": "glorot",
    "input": {"size": 32, "channels": 3},
    "n_outputs": 2,
}


def train_vgg(**train_options):
    return run(cfg={**TRAIN, "epochs": 1, **train_options}, spec=VGG)


def test_bf16_autocast_trains_in_bf16_and_keeps_fp32_weights():
    plain, plain_history = train_vgg()
    mixed, history = train_vgg(precision="bf16")
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    assert math.isfinite(history[-1]["train_loss"])
    # the same steps, rounded differently: close to fp32 but not equal
    diffs = [(p - q).abs().max().item() for p, q in zip(plain.parameters(), mixed.parameters(), strict=True)]
    assert max(diffs) > 0
    assert abs(history[-1]["train_loss"] - plain_history[-1]["train_loss"]) < 0.05


def test_channels_last_trains_the_same_function_in_nhwc_layout():
    plain, plain_history = train_vgg()
    nhwc, history = train_vgg(channels_last=True)
    convs = [p for p in nhwc.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    for p, q in zip(plain.parameters(), nhwc.parameters(), strict=True):
        # Adam normalises each step: a rounding difference can move an entry by ~1e-4
        torch.testing.assert_close(p, q, rtol=1e-2, atol=1e-3)
    assert history[-1]["train_loss"] == pytest.approx(plain_history[-1]["train_loss"], rel=1e-3)


def test_an_unknown_precision_is_named():
    with pytest.raises(ValueError, match="train.precision: 'fp16'"):
        train_vgg(precision="fp16")


# --- the optimizer's state carried across tasks (train.optimizer_state: carry) ----------


def one_optimizer_over_tasks(tasks, scenario, seeds, lr=1e-2, epochs=2, batch_size=16):
    """The protocol written out by hand: one Adam, built once, over every task's batches
    (each task's shuffling from its own seed, as the training steps draw it)."""
    make_runtime("cpu", deterministic=True, threads=1)
    torch.manual_seed(7)
    model = build_model(SPEC)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    pipeline = InputPipeline(SPEC["input"], torch.device("cpu"))
    for task, seed in zip(tasks, seeds, strict=True):
        g = torch.Generator().manual_seed(seed)
        x, y = task.train.x, scenario.targets(task.index, task.train.y)
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(y), generator=g)
            for b in range(math.ceil(len(y) / batch_size)):
                idx = order[b * batch_size : (b + 1) * batch_size]
                logits = scenario.logits(model, pipeline.train_batch(x[idx], g), task.index)
                loss = torch.nn.functional.cross_entropy(logits, y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return model


def train_in_steps(tmp_path, tasks, scenario, seeds, carry):
    """The tasks as the pipeline trains them: one train_task per task, the model (and,
    with ``carry``, the optimizer's state) passed on through a model file."""
    from clpipe.checkpoints import carried_optimizer_state, load_model, save_model
    from clpipe.optim import CarriedOptimizerState

    make_runtime("cpu", deterministic=True, threads=1)
    torch.manual_seed(7)
    model = build_model(SPEC)
    path = tmp_path / "init.pt"
    save_model(str(path), model, SPEC, {"step": "init_model"})
    for task, seed in zip(tasks, seeds, strict=True):
        model, loaded = load_model(str(path), torch.device("cpu"))
        carried = (
            CarriedOptimizerState(carried_optimizer_state(str(path), loaded), str(path)) if carry else None
        )
        train_task(
            model, task, scenario=scenario, pipeline=InputPipeline(SPEC["input"], torch.device("cpu")),
            train_cfg=TRAIN, method=FineTune({}), generator=torch.Generator().manual_seed(seed),
            eval_batch_size=64, carried=carried,
        )  # fmt: skip
        path = tmp_path / f"task{task.index}.pt"
        save_model(str(path), model, SPEC, {"step": "train_next_task"}, carried and carried.by_name)
    return model


def test_two_tasks_with_a_carried_optimizer_are_one_optimizer_bit_for_bit(tmp_path):
    tasks = [two_class_task(1, [0, 1], seed=1), two_class_task(2, [2, 3], seed=2)]
    scenario = Scenario("domain", [[0, 1], [2, 3]])
    one = one_optimizer_over_tasks(tasks, scenario, seeds=[11, 12])
    carried = train_in_steps(tmp_path / "carry", tasks, scenario, [11, 12], carry=True)
    reset = train_in_steps(tmp_path / "reset", tasks, scenario, [11, 12], carry=False)
    for name, p in one.named_parameters():
        assert torch.equal(p, dict(carried.named_parameters())[name]), name
    assert not all(torch.equal(p, q) for p, q in zip(one.parameters(), reset.parameters(), strict=True))
    # the first task alone: carry and reset are the same (a fresh optimizer from the init)
    first_carried = train_in_steps(tmp_path / "c1", tasks[:1], scenario, [11], carry=True)
    first_reset = train_in_steps(tmp_path / "r1", tasks[:1], scenario, [11], carry=False)
    assert all(
        torch.equal(p, q) for p, q in zip(first_carried.parameters(), first_reset.parameters(), strict=True)
    )


def test_carrying_from_a_model_without_optimizer_state_is_refused(tmp_path):
    from clpipe.checkpoints import carried_optimizer_state, load_model, save_model

    path = str(tmp_path / "task1.pt")
    save_model(path, build_model(SPEC), SPEC, {"step": "train_first_task"})
    _, loaded = load_model(path, torch.device("cpu"))
    with pytest.raises(io.FileFormatError, match=r"task1.pt: train.optimizer_state is carry, but"):
        carried_optimizer_state(path, loaded)


def test_optimizer_state_for_other_parameters_is_refused():
    from clpipe.optim import CarriedOptimizerState

    model = build_model(SPEC)
    optimizer = torch.optim.Adam(model.parameters())
    wrong_shape = {name: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(5)} for name, _ in
                   list(model.named_parameters())[:1]}  # fmt: skip
    with pytest.raises(ValueError, match=r"model.pt: its optimizer state 'exp_avg' of parameter"):
        CarriedOptimizerState(wrong_shape, "model.pt").restore(optimizer, model)
    with pytest.raises(ValueError, match=r"parameter 'column2.weight', which this task's optimizer"):
        CarriedOptimizerState({"column2.weight": {}}, "model.pt").restore(optimizer, model)
