"""DER++ (Buzzega et al. 2020) on hand-computed cases: the reservoir, the replayed
outputs and labels, the buffer through tasks and through a killed job
(clpipe.methods.der)."""

import pytest
import torch
import torch.nn.functional as F
from test_training import SPEC, TRAIN, toy_task
from torch import nn

from clpipe import io
from clpipe.data.pipeline import InputPipeline
from clpipe.epochs import EpochCheckpoint
from clpipe.methods.base import Batch
from clpipe.methods.der import DarkExperienceReplay, reservoir
from clpipe.networks import build_model
from clpipe.runtime import make_runtime, seed_everything
from clpipe.scenarios import Scenario
from clpipe.training import train_task
from helpers.killed import dies_at


def test_the_reservoir_fills_then_keeps_the_nth_sample_with_probability_capacity_over_n():
    g = torch.Generator().manual_seed(0)
    assert reservoir(0, 3, 5, g) == [0, 1, 2]  # filling
    g, h = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    places = reservoir(5, 4, 5, g)  # full: the samples seen before each are 5, 6, 7, 8
    u = torch.rand(4, generator=h, dtype=torch.float64)
    by_hand = [int(u[i] * (5 + i + 1)) for i in range(4)]
    assert places == [j if j < 5 else -1 for j in by_hand]
    # over many streams, sample 100 of 100 stays with probability 10 / 100
    g = torch.Generator().manual_seed(2)
    kept = sum(reservoir(99, 1, 10, g)[0] >= 0 for _ in range(4000))
    assert abs(kept / 4000 - 0.1) < 0.015


class Ctx:
    def __init__(self, task):
        self.task, self.all_tasks = task, [task]
        self.scenario = Scenario("domain", [[0, 1]])
        self.pipeline = InputPipeline(SPEC["input"], torch.device("cpu"))
        self.device = torch.device("cpu")
        self.generator = torch.Generator().manual_seed(3)
        self.train_batch_size = 4


def filled(method, model, task, n=6):
    """The buffer after one batch of n of the task's samples went through it."""
    x, y = task.train.x[:n], task.train.y[:n]
    with torch.no_grad():
        out = model(method.ctx.pipeline.train_batch(x, method.ctx.generator))
    method.batch_loss(model, Batch(None, y, out, out, 1, x, None, torch.arange(n)))
    method.after_step(model)
    return out


def test_the_replayed_terms_are_the_outputs_squared_error_and_the_labels_cross_entropy():
    torch.manual_seed(0)
    task, model = toy_task(), build_model(SPEC)
    method = DarkExperienceReplay({"buffer_size": 10, "replay_batch_size": 3})
    method.begin_task(model, None, {"alpha": 0.5, "beta": 2.0}, Ctx(task))
    stored = filled(method, model, task)
    assert method.seen == 6 and method.entries["position"].tolist() == list(range(6))
    assert torch.equal(method.entries["outputs"], stored)  # the outputs it was trained at
    assert torch.equal(method.images, task.train.x[:6])
    with torch.no_grad():
        for p in model.parameters():
            p += 0.1  # the model has moved on since
    replay = torch.Generator().manual_seed(5)
    method.ctx.generator.manual_seed(5)
    nothing = torch.zeros(1, 2)  # this step's own batch: not what is measured here
    loss = method.batch_loss(
        model, Batch(None, torch.zeros(1), nothing, nothing, 1, task.train.x[:1], None, torch.arange(1))
    )
    i1 = torch.randint(6, (3,), generator=replay)
    x1 = method.ctx.pipeline.train_batch(task.train.x[i1], replay)
    i2 = torch.randint(6, (3,), generator=replay)
    x2 = method.ctx.pipeline.train_batch(task.train.x[i2], replay)
    expected = 0.5 * F.mse_loss(model(x1), stored[i1]) + 2.0 * F.cross_entropy(model(x2), task.train.y[i2])
    assert torch.allclose(loss, expected)


def test_the_buffer_goes_to_the_next_task_as_indices_and_comes_back_as_images():
    torch.manual_seed(0)
    task, model = toy_task(), build_model(SPEC)
    first = DarkExperienceReplay({"buffer_size": 4})
    first.begin_task(model, None, {"alpha": 1.0, "beta": 1.0}, Ctx(task))
    filled(first, model, task)
    record = first.end_task(model)
    assert sorted(record) == ["outputs", "position", "seen", "target", "task"] and record["seen"] == 6
    carried = first.compute_importance(model, None, None, first.update_progress(None, record))
    second = DarkExperienceReplay({"buffer_size": 4})
    ctx = Ctx(task)
    ctx.task = type(task)(2, "toy", (0, 1), task.train, task.val, task.test)
    second.begin_task(model, carried, {"alpha": 1.0, "beta": 1.0}, ctx)
    assert torch.equal(second.images, task.train.x[record["position"]])  # task 1's rows, fetched


def test_a_killed_der_job_resumes_with_its_buffer_bit_for_bit(tmp_path):
    def job(method, path):
        make_runtime("cpu", deterministic=True, threads=1)
        torch.manual_seed(0)
        model, task = build_model(SPEC), toy_task()
        g = seed_everything(7)
        ctx = Ctx(task)
        ctx.generator = g
        method.begin_task(model, None, {"alpha": 0.5, "beta": 1.0}, ctx)
        train_task(
            model, task, scenario=ctx.scenario, pipeline=ctx.pipeline, train_cfg={**TRAIN, "epochs": 3},
            method=method, generator=g, eval_batch_size=64, checkpoint=EpochCheckpoint(str(path), "job"),
        )  # fmt: skip
        return model, method.end_task(model)

    whole, record = job(DarkExperienceReplay({"buffer_size": 30}), tmp_path / "ref.pt")
    with pytest.raises(KeyboardInterrupt):
        job(dies_at(DarkExperienceReplay({"buffer_size": 30}), 7 + 3), tmp_path / "resume.pt")
    assert io.load(tmp_path / "resume.pt", "resume")["extra"]["method"]["seen"] == 100  # one epoch
    model, resumed = job(DarkExperienceReplay({"buffer_size": 30}), tmp_path / "resume.pt")
    assert resumed["seen"] == record["seen"] == 300
    for k in ("task", "position", "target", "outputs"):
        assert torch.equal(resumed[k], record[k]), k
    for p, q in zip(whole.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert isinstance(model, nn.Module)
