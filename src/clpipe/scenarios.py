"""Continual-learning scenarios: which target a label becomes and which logits count.

- ``domain``: one shared head over within-task labels (class k of a task -> k). The
  headline protocol: even digit -> 0, odd -> 1 for tasks [0,1], [2,3], [4,5].
- ``task``: the task id is known; one output per class of every task, and the logits
  outside the current task's classes are masked out in training and evaluation.
- ``class``: one head over every class of the sequence, nothing masked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

SCENARIOS = ("domain", "task", "class")


class Scenario:
    def __init__(self, kind: str, tasks: Sequence[Sequence[int]]):
        if kind not in SCENARIOS:
            raise ValueError(f"unknown scenario {kind!r}; known: {', '.join(SCENARIOS)}")
        self.kind = kind
        self.tasks = [list(t) for t in tasks]
        sizes = [len(t) for t in self.tasks]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.n_outputs = max(sizes) if kind == "domain" else sum(sizes)
        self._lookup = []
        for i, classes in enumerate(self.tasks):
            lut = torch.full((max(classes) + 1,), -1, dtype=torch.int64)
            for k, c in enumerate(classes):
                lut[c] = k if kind == "domain" else self.offsets[i] + k
            self._lookup.append(lut)

    def targets(self, task: int, labels: torch.Tensor) -> torch.Tensor:
        """Training targets of labels from the task with 1-based index ``task``."""
        lut = self._lookup[task - 1].to(labels.device)
        targets = lut[labels]
        return targets

    def logit_mask(self, task: int, device: torch.device | None = None) -> torch.Tensor | None:
        """Bool mask of the outputs that count for ``task`` (None: all of them)."""
        if self.kind != "task":
            return None
        mask = torch.zeros(self.n_outputs, dtype=torch.bool, device=device)
        start = self.offsets[task - 1]
        mask[start : start + len(self.tasks[task - 1])] = True
        return mask

    def mask_table(self, device: torch.device | None = None) -> torch.Tensor | None:
        """Row t-1: the logit mask of task t (None when nothing is masked), to mask a
        batch that mixes tasks (replay) sample by sample."""
        if self.kind != "task":
            return None
        return torch.stack([self.logit_mask(t, device) for t in range(1, len(self.tasks) + 1)])


def apply_mask(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return logits
    return logits.masked_fill(~mask, float("-inf"))
