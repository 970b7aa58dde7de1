import torch

from clpipe.scenarios import Scenario, apply_mask

TASKS = [[0, 1], [2, 3], [4, 5]]


def test_domain_shares_one_head_over_within_task_labels():
    s = Scenario("domain", TASKS)
    assert s.n_outputs == 2
    assert s.targets(3, torch.tensor([4, 5, 5])).tolist() == [0, 1, 1]
    assert s.logit_mask(2) is None


def test_task_scenario_masks_the_other_tasks_logits():
    s = Scenario("task", TASKS)
    assert s.n_outputs == 6
    assert s.targets(2, torch.tensor([2, 3])).tolist() == [2, 3]
    mask = s.logit_mask(2)
    assert mask.tolist() == [False, False, True, True, False, False]
    logits = torch.tensor([[9.0, 9.0, 1.0, 2.0, 9.0, 9.0]])
    assert apply_mask(logits, mask).argmax(1).item() == 3


def test_class_scenario_is_one_head_over_every_class():
    s = Scenario("class", [[3, 7], [1, 2, 9]])
    assert s.n_outputs == 5
    assert s.targets(2, torch.tensor([9, 1])).tolist() == [4, 2]
    assert s.logit_mask(1) is None


class TwoHeads(torch.nn.Module):
    """A stand-in for a growing network: a head per task, called with the task id."""

    takes_task_id = True
    n_tasks = 2

    def forward(self, x, task):
        return torch.full((len(x), 2), float(task))


def test_a_model_with_a_head_per_task_gets_within_task_targets_and_no_mask():
    model = TwoHeads()
    s = Scenario.for_model("task", TASKS, model)
    assert s.task_heads and not Scenario.for_model("task", TASKS, torch.nn.Linear(2, 6)).task_heads
    assert s.targets(2, torch.tensor([2, 3, 2])).tolist() == [0, 1, 0]  # within the task
    assert s.targets(3, torch.tensor([5])).tolist() == [1]
    assert s.logit_mask(2) is None and s.mask_table() is None
    assert s.logits(model, torch.zeros(3, 1), 2).tolist() == [[2.0, 2.0]] * 3  # the task's own head
    assert s.has_head(model, 2) and not s.has_head(model, 3)  # not grown for task 3 yet
    plain = Scenario("task", TASKS)
    assert plain.has_head(torch.nn.Linear(2, 6), 3)
    shared = lambda x: torch.tensor([[9.0, 9.0, 1.0, 2.0, 9.0, 9.0]])  # noqa: E731
    logits = plain.logits(shared, None, 2, plain.logit_mask(2))
    assert logits.argmax(1).item() == 3


def test_a_head_per_task_needs_the_task_scenario():
    import pytest

    for kind in ("domain", "class"):
        with pytest.raises(ValueError, match="scenario 'task'"):
            Scenario.for_model(kind, TASKS, TwoHeads())
