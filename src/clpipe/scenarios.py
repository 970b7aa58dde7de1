"""Continual-learning scenarios: which target a label becomes and which logits count.

- ``domain``: one shared head over within-task labels (class k of a task -> k). The
  headline protocol: even digit -> 0, odd -> 1 for tasks [0,1], [2,3], [4,5].
- ``task``: the task id is known; one output per class of every task, and the logits
  outside the current task's classes are masked out in training and evaluation.
- ``class``: one head over every class of the sequence, nothing masked.

A model with a head of its own per task (:class:`clpipe.networks.growing.GrowingTaskNet`, which
says so with ``takes_task_id = True``) is called as ``model(x, task)`` and returns only
that task's logits. In the ``task`` scenario it is the same protocol without a mask: the
targets are within-task (class k of a task -> k) and the prediction is the argmax over
the task's own head. :meth:`Scenario.for_model` builds the scenario for a model, and
:meth:`Scenario.logits` is the one place that calls a model on a task's samples, so the
training loop and the evaluation never ask which kind of model they hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

SCENARIOS = ("domain", "task", "class")


def takes_task_id(model: nn.Module) -> bool:
    """Whether ``model`` has one head per task and is called as ``model(x, task)``."""
    return bool(getattr(model, "takes_task_id", False))


class Scenario:
    def __init__(self, kind: str, tasks: Sequence[Sequence[int]], task_heads: bool = False):
        if kind not in SCENARIOS:
            raise ValueError(f"unknown scenario {kind!r}; known: {', '.join(SCENARIOS)}")
        if task_heads and kind != "task":
            raise ValueError(
                f"a model with a head per task needs the task id at test time: scenario 'task', not {kind!r}"
            )
        self.kind = kind
        self.task_heads = task_heads
        self.tasks = [list(t) for t in tasks]
        sizes = [len(t) for t in self.tasks]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.n_outputs = max(sizes) if kind == "domain" else sum(sizes)
        self._lookup = []
        for i, classes in enumerate(self.tasks):
            lut = torch.full((max(classes) + 1,), -1, dtype=torch.int64)
            for k, c in enumerate(classes):
                lut[c] = k if kind == "domain" or task_heads else self.offsets[i] + k
            self._lookup.append(lut)

    @classmethod
    def for_model(cls, kind: str, tasks: Sequence[Sequence[int]], model: nn.Module) -> Scenario:
        """The scenario as ``model`` sees it (a head per task, or one shared output layer)."""
        return cls(kind, tasks, task_heads=takes_task_id(model))

    def targets(self, task: int, labels: torch.Tensor) -> torch.Tensor:
        """Training targets of labels from the task with 1-based index ``task``."""
        lut = self._lookup[task - 1].to(labels.device)
        targets = lut[labels]
        return targets

    def logit_mask(self, task: int, device: torch.device | None = None) -> torch.Tensor | None:
        """Bool mask of the outputs that count for ``task`` (None: all of them)."""
        if self.kind != "task" or self.task_heads:
            return None
        mask = torch.zeros(self.n_outputs, dtype=torch.bool, device=device)
        start = self.offsets[task - 1]
        mask[start : start + len(self.tasks[task - 1])] = True
        return mask

    def mask_table(self, device: torch.device | None = None) -> torch.Tensor | None:
        """Row t-1: the logit mask of task t (None when nothing is masked), to mask a
        batch that mixes tasks (replay) sample by sample."""
        if self.kind != "task" or self.task_heads:
            return None
        return torch.stack([self.logit_mask(t, device) for t in range(1, len(self.tasks) + 1)])

    def has_head(self, model: nn.Module, task: int) -> bool:
        """Whether ``model`` can answer for ``task``: a model with a head per task only
        for the tasks it has reached (a growing network gets task t's head when it grows
        for t); a shared output layer always."""
        return not self.task_heads or 1 <= task <= int(model.n_tasks)

    def logits(
        self, model: nn.Module, x: torch.Tensor, task: int, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The logits that count for samples ``x`` of task ``task``: a task-headed model's
        own head for the task, or the model's outputs with ``mask`` applied (the task's
        :meth:`logit_mask`, or one row per sample when a batch mixes tasks)."""
        return self.outputs_and_logits(model, x, task, mask)[1]

    def outputs_and_logits(
        self, model: nn.Module, x: torch.Tensor, task: int, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the model's outputs, unmasked: every head's; the logits that count, as
        :meth:`logits`), from one forward pass."""
        if self.task_heads:
            if mask is not None:
                raise ValueError("a model with a head per task takes no logit mask")
            out = model(x, task)
            return out, out
        out = model(x)
        return out, apply_mask(out, mask)

    def columns(self, task: int) -> slice:
        """The outputs of ``task``'s classes on a shared output layer (domain: all)."""
        if self.kind == "domain":
            return slice(0, self.n_outputs)
        return slice(self.offsets[task - 1], self.offsets[task - 1] + len(self.tasks[task - 1]))


def apply_mask(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return logits
    return logits.masked_fill(~mask, float("-inf"))
