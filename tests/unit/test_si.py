"""Synaptic intelligence (Zenke et al. 2017) on hand-computed cases: the path integral,
Omega, the surrogate loss's gradient, its own first task, a killed job (clpipe.methods.si)."""

import pytest
import torch
from test_training import SPEC, TRAIN, toy_task
from torch import nn

from clpipe import io
from clpipe.data.pipeline import InputPipeline, Split, Task
from clpipe.epochs import EpochCheckpoint
from clpipe.methods.finetune import FineTune
from clpipe.methods.si import SynapticIntelligence, consolidated
from clpipe.networks import build_model
from clpipe.runtime import make_runtime, seed_everything
from clpipe.scenarios import Scenario
from clpipe.training import train_task
from helpers.killed import dies_at


class Ctx:
    device = torch.device("cpu")


def sgd_steps(method, model, batches, lr):
    """Plain SGD by hand, with the method's hooks where the training loop calls them."""
    for x, y in batches:
        model.zero_grad()
        ((model(x).squeeze(1) - y) ** 2).sum().backward()
        method.after_backward(model)
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        method.after_step(model)


def test_the_path_integral_is_minus_gradient_times_update_summed_over_steps():
    """With plain SGD an update is -lr g, so omega = sum lr g^2 (eq. 3), by hand."""
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0]]))
    method = SynapticIntelligence({})
    method.begin_task(model, None, {"c": 5.0}, Ctx())
    x1, x2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    sgd_steps(method, model, [(x1, torch.tensor([0.0])), (x2, torch.tensor([0.0]))], lr=0.1)
    # step 1: w = (1, -2), loss (w.x1)^2 = 1, g = 2 (w.x1) x1 = (2, 0): w -> (0.8, -2)
    # step 2: loss (w.x2)^2 = 16, g = 2 (w.x2) x2 = (0, -16): w -> (0.8, -0.4)
    expected = torch.tensor([[0.1 * 2**2, 0.1 * 16**2]])
    assert torch.allclose(method.omega["weight"], expected)
    assert torch.allclose(model.weight, torch.tensor([[0.8, -0.4]]))
    assert torch.equal(method.end_task(model)["start"]["weight"], torch.tensor([[1.0, -2.0]]))


def test_omega_is_the_path_integral_over_the_squared_change_plus_xi_added_to_the_last():
    omega = {"w": torch.tensor([2.0, -1.0])}
    start, end = {"w": torch.tensor([0.0, 0.0])}, {"w": torch.tensor([1.0, 0.5])}
    first = consolidated(None, omega, start, end, xi=0.1)
    assert torch.allclose(first["w"], torch.tensor([2 / 1.1, -1 / 0.35]))  # eq. 5
    second = consolidated({"w": torch.tensor([1.0, 1.0])}, omega, start, end, xi=0.1)
    assert torch.allclose(second["w"], torch.tensor([1 + 2 / 1.1, 1 - 1 / 0.35]))  # summed over tasks


def test_the_surrogate_loss_adds_its_gradient_and_omega_sees_the_tasks_alone():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    importance = {
        "importance": {"weight": torch.tensor([[3.0, 0.0]])},
        "anchor": {"weight": torch.zeros(1, 2)},
    }
    method = SynapticIntelligence({})
    method.begin_task(model, importance, {"c": 0.5}, Ctx())
    model.zero_grad()
    (model(torch.tensor([[1.0, 1.0]])).sum()).backward()  # the task's loss: g = (1, 1)
    method.after_backward(model)
    # + 2 c Omega (theta - theta~) = 2 * 0.5 * (3, 0) * (1, 1) = (3, 0)
    assert torch.equal(model.weight.grad, torch.tensor([[4.0, 1.0]]))
    assert torch.equal(method._grad["weight"], torch.tensor([[1.0, 1.0]]))  # omega's gradient


def task_2():
    """A second toy task: the same classes, the other way round (fine-tuning forgets)."""
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (100,), generator=g)
    x = (torch.rand(100, 1, 8, 8, generator=g) * 60 + (1 - y).view(-1, 1, 1, 1) * 190).to(torch.uint8)
    split = Split(x, y, torch.arange(100))
    return Task(2, "toy", (0, 1), split, Split(x[:20], y[:20], torch.arange(20)), split)


def train(model, method, task, checkpoint=None, epochs=2):
    """One task's training job, seeded by the task (as the pipeline seeds it)."""
    make_runtime("cpu", deterministic=True, threads=1)
    return train_task(
        model, task, scenario=Scenario("domain", [[0, 1], [0, 1]]),
        pipeline=InputPipeline(SPEC["input"], torch.device("cpu")), train_cfg={**TRAIN, "epochs": epochs},
        method=method, generator=seed_everything(7 + task.index), eval_batch_size=64, checkpoint=checkpoint,
    )  # fmt: skip


def two_tasks(c):
    """An SI arm's tasks 1 (its own) and 2, and fine-tuning's task 2 from the shared task 1."""
    torch.manual_seed(0)
    init = build_model(SPEC)
    own, shared = build_model(SPEC), build_model(SPEC)
    own.load_state_dict(init.state_dict())
    shared.load_state_dict(init.state_dict())
    si = SynapticIntelligence({})
    si.begin_task(own, None, {"c": c}, Ctx())
    train(own, si, toy_task())
    train(shared, FineTune({}), toy_task())
    record = si.end_task(own)
    importance = si.compute_importance(own, None, None, si.update_progress(None, record))
    after = SynapticIntelligence({})
    after.begin_task(own, importance, {"c": c}, Ctx())
    train(own, after, task_2())
    train(shared, FineTune({}), task_2())
    return own, shared, record


def test_its_own_first_task_is_the_shared_one_and_a_strength_makes_task_2_differ():
    """The two-task case: SI trains its first task itself (its path integral needs it),
    which with c = 0 is fine-tuning bit for bit; with c > 0 its task 2 differs."""
    own, shared, record = two_tasks(c=0.0)
    assert all(v.abs().sum() > 0 for v in record["omega"].values())  # it learnt what mattered
    for p, q in zip(own.parameters(), shared.parameters(), strict=True):
        assert torch.equal(p, q)
    own, shared, _ = two_tasks(c=100.0)
    assert any(not torch.equal(p, q) for p, q in zip(own.parameters(), shared.parameters(), strict=True))


def test_a_killed_si_job_resumes_with_its_path_integral_bit_for_bit(tmp_path):
    def job(method, path):
        torch.manual_seed(0)
        model = build_model(SPEC)
        method.begin_task(model, None, {"c": 1.0}, Ctx())
        train(model, method, toy_task(), checkpoint=EpochCheckpoint(str(path), "job"), epochs=3)
        return model, method.end_task(model)

    whole, record = job(SynapticIntelligence({}), tmp_path / "ref.pt")
    with pytest.raises(KeyboardInterrupt):
        # 7 steps an epoch: dies in epoch 2
        job(dies_at(SynapticIntelligence({}), 7 + 3), tmp_path / "resume.pt")
    assert "omega" in io.load(tmp_path / "resume.pt", "resume")["extra"]["method"]
    model, resumed = job(SynapticIntelligence({}), tmp_path / "resume.pt")
    for k in record["omega"]:
        assert torch.equal(record["omega"][k], resumed["omega"][k]), k
    for p, q in zip(whole.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)
