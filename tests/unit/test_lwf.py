"""Learning without forgetting (Li & Hoiem 2017) on hand-computed cases: the
distillation at temperature T, which outputs each scenario distills, the frozen
teacher (clpipe.methods.lwf)."""

import math

import torch
from test_training import SPEC, TRAIN, toy_task
from torch import nn

from clpipe.data.pipeline import InputPipeline
from clpipe.methods.base import Batch
from clpipe.methods.lwf import LearningWithoutForgetting, distillation
from clpipe.networks import build_model
from clpipe.runtime import make_runtime, seed_everything
from clpipe.scenarios import Scenario
from clpipe.training import train_task


def test_the_distillation_is_the_cross_entropy_of_softened_outputs_times_t_squared():
    student, teacher = torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 0.0]])
    # teacher / 2 = (1, 0): p = (e / (e + 1), 1 / (e + 1)); student / 2 = (0.5, 1)
    p = [math.e / (math.e + 1), 1 / (math.e + 1)]
    log_q = [0.5 - math.log(math.exp(0.5) + math.exp(1.0)), 1.0 - math.log(math.exp(0.5) + math.exp(1.0))]
    expected = -(p[0] * log_q[0] + p[1] * log_q[1]) * 4
    assert math.isclose(distillation(student, teacher, 2.0).item(), expected, rel_tol=1e-6)
    # a student with more outputs: the teacher's target is 0 on the new ones
    padded = distillation(torch.tensor([[1.0, 2.0, 5.0]]), teacher, 2.0)
    log_q3 = torch.log_softmax(torch.tensor([0.5, 1.0, 2.5]), dim=0)
    assert math.isclose(padded.item(), -(p[0] * log_q3[0] + p[1] * log_q3[1]).item() * 4, rel_tol=1e-6)


class Ctx:
    def __init__(self, scenario):
        self.scenario = scenario
        self.device = torch.device("cpu")


class Fixed(nn.Module):
    """A 'network' whose outputs are given, for a teacher with known outputs."""

    def __init__(self, out):
        super().__init__()
        self.out = nn.Parameter(out)

    def forward(self, x):
        return self.out.expand(len(x), -1)


def lwf_loss(kind, tasks, task, student, teacher, alpha=1.0):
    method = LearningWithoutForgetting({})
    method.begin_task(Fixed(teacher), None, {"alpha": alpha}, Ctx(Scenario(kind, tasks)))
    x = torch.zeros(1, 1)
    return method.batch_loss(None, Batch(x, None, student, student, task, x)).item()


def test_each_scenario_distills_its_earlier_tasks_outputs():
    student = torch.tensor([[1.0, 2.0, 3.0, 0.0, -1.0, 4.0]])
    teacher = torch.tensor([[0.5, 0.0, 2.0, 1.0, 0.0, 0.0]])
    tasks = [[0, 1], [2, 3], [4, 5]]
    T = 2.0
    # task-incremental, task 3: the heads of tasks 1 (outputs 0-1) and 2 (2-3), averaged
    heads = [distillation(student[:, a:b], teacher[:, a:b], T) for a, b in ((0, 2), (2, 4))]
    assert math.isclose(
        lwf_loss("task", tasks, 3, student, teacher), torch.stack(heads).mean().item(), rel_tol=1e-6
    )
    # class-incremental, task 2: outputs 0-3 against the teacher's 0-1 (2-3 targets 0)
    expected = distillation(student[:, :4], teacher[:, :2], T)
    assert math.isclose(lwf_loss("class", tasks, 2, student, teacher), expected.item(), rel_tol=1e-6)
    # domain-incremental: the shared head
    assert math.isclose(
        lwf_loss("domain", tasks, 2, student[:, :2], teacher[:, :2], alpha=3.0),
        3.0 * distillation(student[:, :2], teacher[:, :2], T).item(),
        rel_tol=1e-6,
    )


def test_the_teacher_is_the_model_before_the_task_and_stays_so():
    make_runtime("cpu", deterministic=True, threads=1)
    torch.manual_seed(0)
    model = build_model(SPEC)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method = LearningWithoutForgetting({})
    method.begin_task(model, None, {"alpha": 1.0}, Ctx(Scenario("domain", [[0, 1], [0, 1]])))
    task = toy_task()
    task.index = 2
    train_task(
        model, task, scenario=Scenario("domain", [[0, 1], [0, 1]]),
        pipeline=InputPipeline(SPEC["input"], torch.device("cpu")), train_cfg=TRAIN, method=method,
        generator=seed_everything(7), eval_batch_size=64,
    )  # fmt: skip
    assert all(torch.equal(method.teacher.state_dict()[k], v) for k, v in before.items())
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in before.items())
