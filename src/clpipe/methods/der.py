"""Dark experience replay, DER++ (Buzzega et al. 2020; docs/methods.md, section 6).

A buffer of ``buffer_size`` training samples is kept by reservoir sampling over every
sample the arm has trained on, each with its label and the model's outputs (its
"logits") when it was trained on: the n-th sample seen joins an unfilled buffer, or
replaces a random entry with probability ``buffer_size / n`` (Vitter's algorithm R,
Algorithm 1 of the paper). Every step adds, beside the batch's loss (eq. 6):

    alpha * mean || model(x') - z' ||^2  +  beta * CE(model(x''), y'')

over two minibatches drawn from the buffer, (x', z') and (x'', y''): the stored outputs
replayed (DER) and the stored labels (the ++). ``alpha`` and ``beta`` are per-task
settings of the arm. The buffer fills during the first task too, so DER++'s arms train
task 1 themselves (``trains_first_task``); it is handed on to the next task as the
training job's record (kept by the progress step, carried as importance). Its files
hold no images: each entry's task and row in that task's training split, its target
and its outputs; the images are fetched from the data file.
"""

from __future__ import annotations

from clpipe.methods.traits import MethodTraits

# The method as the workflow reads it, without importing what follows (clpipe.methods)
METHOD = MethodTraits(
    name="der",
    implementation=f"{__name__}:DarkExperienceReplay",
    description=(
        "dark experience replay (DER++): a reservoir buffer of samples with their labels and the "
        "model's outputs, replayed as a logit-matching and a classification loss every step"
    ),
    settings={
        "buffer_size": {
            "type": "integer",
            "minimum": 1,
            "default": 200,
            "description": "samples the reservoir keeps, over every task the arm trains",
        },
        "replay_batch_size": {
            "type": ["integer", "null"],
            "minimum": 1,
            "default": None,
            "description": "samples per replayed minibatch (null = the training batch size)",
        },
    },
    per_task_settings={
        "alpha": {
            "type": "number",
            "minimum": 0,
            "default": 0.2,
            "description": "weight of the replayed outputs' squared error (DER)",
        },
        "beta": {
            "type": "number",
            "minimum": 0,
            "default": 1.0,
            "description": "weight of the replayed labels' cross-entropy (the ++)",
        },
    },
    importance=True,
    importance_settings=("buffer_size",),
    progress=True,
    trains_first_task=True,
    mixes_tasks=True,
    palette="YlGn",
)

# --- the implementation ------------------------------------------------------------

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clpipe.methods.base import Batch, ContinualMethod, TaskContext
from clpipe.scenarios import apply_mask

ENTRY_KEYS = ("task", "position", "target", "outputs")


def reservoir(seen: int, size: int, capacity: int, generator: torch.Generator) -> list[int]:
    """Where each of ``size`` new samples goes in a buffer of ``capacity`` that has seen
    ``seen`` samples (-1: not kept): algorithm R. The n-th sample (n from 0) fills place n
    while the buffer is not full; after that it draws j uniformly from 0..n and takes
    place j if j < capacity (one uniform number per sample, floor(u * (n + 1)))."""
    n = torch.arange(seen, seen + size, dtype=torch.float64)
    drawn = torch.floor(torch.rand(size, generator=generator, dtype=torch.float64) * (n + 1)).long()
    places = torch.where(n < capacity, n.long(), torch.where(drawn < capacity, drawn, -1))
    return places.tolist()


class DarkExperienceReplay(ContinualMethod):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.capacity = int(self.settings["buffer_size"])
        self.alpha = self.beta = 0.0
        self.seen = 0
        self.entries: dict[str, torch.Tensor] = {}
        self.images: torch.Tensor | None = None
        self.ctx: TaskContext | None = None
        self._last: tuple | None = None

    # -- after a task ------------------------------------------------------------------
    def update_progress(self, previous: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
        return record  # the buffer after the task

    def compute_importance(
        self,
        model: nn.Module,
        ctx: TaskContext,
        previous: dict[str, Any] | None,
        progress: dict[str, Any] | None,
    ) -> dict[str, Any]:
        if progress is None:
            raise ValueError("der needs the buffer its training job left")
        return progress  # carried to the next task as it is

    # -- training a task ---------------------------------------------------------------
    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        self.alpha, self.beta = float(task_settings["alpha"]), float(task_settings["beta"])
        self.ctx = ctx
        if importance is None:  # its first task: an empty buffer
            self.seen = 0
            self.entries = {k: torch.zeros(0, dtype=torch.int64) for k in ENTRY_KEYS[:3]}
            self.entries["outputs"] = torch.zeros(0, ctx.scenario.n_outputs)
            self.images = None
        else:
            self.seen = int(importance["seen"])
            self.entries = {k: importance[k] for k in ENTRY_KEYS}
            self.images = self._fetch(self.entries["task"], self.entries["position"])
        self.entries = {k: v.to(ctx.device) for k, v in self.entries.items()}

    def _fetch(self, tasks: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
        """The uint8 images of buffer entries, from each one's task's training split."""
        if len(tasks) == 0:
            return None
        images = []
        for t, p in zip(tasks.tolist(), positions.tolist(), strict=True):
            split = self.ctx.task.train if t == self.ctx.task.index else self.ctx.all_tasks[t - 1].train
            images.append(split.x[p : p + 1].to(self.ctx.device))
        return torch.cat(images)

    def _draw(self) -> torch.Tensor:
        size = self.settings["replay_batch_size"] or self.ctx.train_batch_size
        n = len(self.entries["task"])
        return torch.randint(n, (min(size, n),), generator=self.ctx.generator).to(self.ctx.device)

    def batch_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        self._last = (batch.images, batch.targets, batch.outputs.detach(), batch.index, batch.task)
        if self.images is None or len(self.entries["task"]) == 0:
            return None
        masks = self.ctx.scenario.mask_table(self.ctx.device)
        pipeline = self.ctx.pipeline
        loss = None
        if self.alpha:  # DER: the stored outputs
            idx = self._draw()
            out = model(pipeline.train_batch(self.images[idx], self.ctx.generator)).float()
            loss = self.alpha * F.mse_loss(out, self.entries["outputs"][idx])
        if self.beta:  # ++: the stored labels
            idx = self._draw()
            out = model(pipeline.train_batch(self.images[idx], self.ctx.generator)).float()
            if masks is not None:  # each sample as its own task
                out = apply_mask(out, masks[self.entries["task"][idx] - 1])
            term = self.beta * F.cross_entropy(out, self.entries["target"][idx])
            loss = term if loss is None else loss + term
        return loss

    def after_step(self, model: nn.Module) -> None:
        """The batch just trained on joins the reservoir, with the outputs it was trained at."""
        images, targets, outputs, index, task = self._last
        places = reservoir(self.seen, len(targets), self.capacity, self.ctx.generator)
        self.seen += len(targets)
        for i, place in enumerate(places):
            if place < 0:
                continue
            entry = {
                "task": torch.tensor([task], device=self.ctx.device),
                "position": index[i : i + 1].to(self.ctx.device),
                "target": targets[i : i + 1],
                "outputs": outputs[i : i + 1].float(),
            }
            if place == len(self.entries["task"]):  # filling: append
                self.entries = {k: torch.cat([self.entries[k], entry[k]]) for k in ENTRY_KEYS}
                self.images = (
                    images[i : i + 1] if self.images is None else torch.cat([self.images, images[i : i + 1]])
                )
            else:
                for k in ENTRY_KEYS:
                    self.entries[k][place] = entry[k][0]
                self.images[place] = images[i]

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, **{k: v.cpu() for k, v in self.entries.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = int(state["seen"])
        self.entries = {k: state[k].to(self.ctx.device) for k in ENTRY_KEYS}
        self.images = self._fetch(self.entries["task"], self.entries["position"])

    def end_task(self, model: nn.Module) -> dict[str, Any]:
        return {"seen": self.seen, **{k: v.cpu() for k, v in self.entries.items()}}
