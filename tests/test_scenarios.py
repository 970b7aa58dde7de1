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
