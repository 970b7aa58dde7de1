"""Accuracy and loss of a model on task splits (batched, inference mode)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from clpipe.data.pipeline import InputPipeline, Split
from clpipe.scenarios import Scenario


@torch.inference_mode()
def evaluate_split(
    model: nn.Module,
    split: Split,
    task: int,
    scenario: Scenario,
    pipeline: InputPipeline,
    batch_size: int,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on a split of task ``task`` (1-based);
    NaN for an empty split and for a task the model has no head for yet (a growing
    network before it grew for the task)."""
    n = len(split)
    if n == 0 or not scenario.has_head(model, task):
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    targets = scenario.targets(task, split.y)
    mask = scenario.logit_mask(task, split.x.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=split.x.device)
    correct = torch.zeros((), dtype=torch.int64, device=split.x.device)
    for start in range(0, n, batch_size):
        logits = scenario.logits(model, pipeline(split.x[start : start + batch_size]), task, mask).float()
        t = targets[start : start + batch_size]
        loss_sum += F.cross_entropy(logits, t, reduction="sum").double()
        correct += (logits.argmax(dim=1) == t).sum()
    model.train(was_training)
    return correct.item() / n, loss_sum.item() / n
