"""Memory aware synapses (Aljundi et al. 2018) on hand-computed cases: the importance
from the outputs' squared norm, summed over tasks, and the penalty's gradient
(clpipe.methods.mas)."""

import torch
from torch import nn

from clpipe.data.pipeline import InputPipeline, Split, Task
from clpipe.methods.mas import MemoryAwareSynapses, importance, output_sensitivity
from clpipe.networks import build_model
from clpipe.scenarios import Scenario


def linear(weight):
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor(weight))
    return model


def test_the_importance_is_the_mean_absolute_gradient_of_the_outputs_squared_norm():
    """F(x) = W x: d ||W x||^2 / d W_ij = 2 (w_i . x) x_j, per sample, by hand."""
    model = linear([[1.0, 2.0], [0.0, -1.0]])
    x = torch.tensor([[1.0, 1.0], [2.0, -1.0]])
    # sample 1: W x = (3, -1): grads (2*3*1, 2*3*1; 2*-1*1, 2*-1*1) = (6, 6; -2, -2)
    # sample 2: W x = (0, 1):  grads (0, 0; 2*1*2, 2*1*-1) = (0, 0; 4, -2)
    found = output_sensitivity(model, x, None)["weight"]
    assert torch.allclose(found, torch.tensor([[6.0, 6.0], [6.0, 4.0]]))  # sum of |.|: (6,6; 2+4, 2+2)
    only_first = output_sensitivity(model, x, torch.tensor([0]))["weight"]  # F reads output 0 only
    assert torch.allclose(only_first, torch.tensor([[6.0, 6.0], [0.0, 0.0]]))


class Ctx:
    def __init__(self, x, kind="domain", tasks=((0, 1),)):
        labels = torch.zeros(len(x), dtype=torch.long)
        self.task = Task(1, "toy", (0, 1), Split(x, labels, torch.arange(len(x))), None, None)
        self.scenario = Scenario(kind, [list(t) for t in tasks])
        self.pipeline = lambda images: images.float()
        self.generator = torch.Generator().manual_seed(0)
        self.device = torch.device("cpu")


def test_the_importance_averages_over_the_task_in_batches_and_sums_over_tasks():
    model = linear([[1.0, 2.0], [0.0, -1.0]])
    x = torch.tensor([[1.0, 1.0], [2.0, -1.0]])
    omega, n = importance(model, Ctx(x), batch_size=1)
    assert n == 2 and torch.allclose(omega["weight"], torch.tensor([[3.0, 3.0], [3.0, 2.0]]))  # the mean
    method = MemoryAwareSynapses({})
    first = method.compute_importance(model, Ctx(x), None, None)
    second = method.compute_importance(model, Ctx(x), first, None)
    assert torch.allclose(second["importance"]["weight"], 2 * first["importance"]["weight"])
    assert torch.equal(second["anchor"]["weight"], model.weight.detach())
    # task-incremental: F is the task's own outputs (task 2 of two two-way tasks: outputs 2, 3)
    wide = nn.Linear(2, 4, bias=False)
    task2 = Ctx(x, "task", ((0, 1), (2, 3)))
    task2.task = Task(2, "toy", (2, 3), task2.task.train, None, None)
    omega, _ = importance(wide, task2)
    assert omega["weight"][:2].abs().sum() == 0 and omega["weight"][2:].abs().sum() > 0


def test_the_penalty_adds_twice_lambda_omega_times_the_distance_to_the_anchor():
    model = linear([[1.0, 1.0], [1.0, 1.0]])
    method = MemoryAwareSynapses({})
    saved = {
        "importance": {"weight": torch.tensor([[1.0, 0.0], [2.0, 0.5]])},
        "anchor": {"weight": torch.zeros(2, 2)},
    }
    method.begin_task(model, saved, {"lambda": 3.0}, Ctx(torch.zeros(1, 2)))
    model.weight.grad = torch.ones(2, 2)
    method.after_backward(model)
    assert torch.equal(model.weight.grad, torch.tensor([[7.0, 1.0], [13.0, 4.0]]))  # 1 + 2 * 3 * omega * 1


def test_a_convolutional_network_s_importance_is_per_sample():
    """Per-sample gradients through a VGG (its in-place ReLUs included) equal one sample
    at a time by autograd."""
    torch.manual_seed(0)
    spec = {
        "name": "vgg16",
        "width": 0.0625,
        "dropout": 0.5,
        "input": {"size": 32, "channels": 1},
        "n_outputs": 2,
    }
    model = build_model(spec).eval()
    x = InputPipeline(spec["input"], torch.device("cpu"))(
        torch.randint(0, 255, (3, 1, 32, 32), dtype=torch.uint8)
    )
    batched = output_sensitivity(model, x, None)
    by_hand = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for i in range(3):
        model.zero_grad()
        model(x[i : i + 1]).pow(2).sum().backward()
        for k, p in model.named_parameters():
            by_hand[k] += p.grad.abs()
    for k in by_hand:
        assert torch.allclose(batched[k], by_hand[k], rtol=1e-4, atol=1e-6), k
