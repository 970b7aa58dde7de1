"""The interface every continual-learning method implements.

A method answers two questions (as in Mammoth/FACIL):

- *what to carry to the next task* -- :meth:`compute_importance` (the workflow's
  "compute importance" step, written as importance.pt: MAG's freezing values, EWC's
  Fisher and anchors, replay's buffer) and :meth:`update_progress` (the "update
  progress" step, progress.pt: MAG's cumulative frozen set);
- *how to train a task* -- the hooks below, in the order the training loop
  (clpipe.training) calls them; it knows nothing about any method beyond them:

==========================  ============================================================
hook                        when
==========================  ============================================================
``prepare_model``           once, first: the network to train (PackNet's own kind)
``begin_task``              once, before the optimizer exists: the previous task's
                            importance, the task's settings and data (``ctx``)
``extra_training_samples``  once: samples trained on beside the task's own (replay)
``attach``                  once, on the task's optimizer (MAG's step scaling)
``load_state_dict``         once, on a resumed job: the state ``state_dict`` saved
*each training step:*
``penalty``                 a term of the loss from the weights alone (autograd)
``batch_loss``              a term of the loss from the batch: its inputs, targets,
                            the model's outputs, the task (distillation, logit replay)
``after_backward``          the gradients, before the optimizer step
``after_step``              after the optimizer step (path integrals, online buffers)
*each epoch:*
``state_dict``              what a resumed job needs to go on (saved with the epoch)
*at the end:*
``end_task``                the task's record, for the progress step
==========================  ============================================================

A method that must act during its first task (SI's path integral, DER++'s buffer)
declares ``trains_first_task``: its arms train task 1 themselves. What a method's own
files hand back to it (importance, record, progress) is exactly the dict it returned.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from clpipe.data.pipeline import InputPipeline, Split, Task
from clpipe.errors import InputError
from clpipe.scenarios import Scenario


@dataclass
class TaskContext:
    """A task's data and how to feed it to the model, for the methods' hooks."""

    task: Task
    scenario: Scenario
    pipeline: InputPipeline
    device: torch.device
    eval_batch_size: int  # for evaluation and scoring passes (eval.batch_size)
    generator: torch.Generator
    train_batch_size: int = 0
    # every task of the experiment, on the CPU (replay fetches earlier tasks' images)
    all_tasks: list[Task] | None = None
    # the job's train settings (optimizer, batch size, epochs): for a method that trains
    # on its own before the task's training (the growing network's growth probe)
    train_settings: dict[str, Any] | None = None


@dataclass
class Batch:
    """One training step's batch, as :meth:`ContinualMethod.batch_loss` sees it."""

    inputs: torch.Tensor  # preprocessed (augmented, normalised), on the device
    targets: torch.Tensor  # the scenario's targets
    logits: torch.Tensor  # the model's outputs on ``inputs``, masked as the scenario masks them
    outputs: torch.Tensor  # the same outputs unmasked: every task's (distillation reads old heads)
    task: int  # the task being trained (1-based)
    images: torch.Tensor  # the uint8 images ``inputs`` came from
    sample_task: torch.Tensor | None = None  # the 1-based task of each sample, when tasks are mixed
    # the rows of the training samples the batch drew: the task's training split, then the
    # samples a method mixes in (extra_training_samples)
    index: torch.Tensor | None = None


class ContinualMethod:
    def __init__(self, settings: dict[str, Any]):
        # the method's own declaration (its file's METHOD, clpipe.methods.traits; for a
        # subclass in a file that declares none, its base's) fills in what the settings
        # leave out: its defaults are written once, there
        declared = next(
            (
                getattr(sys.modules.get(cls.__module__), "METHOD", None)
                for cls in type(self).__mro__
                if getattr(sys.modules.get(cls.__module__), "METHOD", None) is not None
            ),
            None,
        )
        self.settings = {**(declared.defaults if declared else {}), **settings}
        self._per_task_defaults = dict(declared.per_task) if declared else {}

    def per_task(self, task_settings: dict[str, Any]) -> dict[str, Any]:
        """A task's settings with the declared per-task defaults filled in (what the
        training step hands to begin_task)."""
        return {**self._per_task_defaults, **task_settings}

    # -- after a task ------------------------------------------------------------------
    def compute_importance(
        self,
        model: nn.Module,
        ctx: TaskContext,
        previous: dict[str, Any] | None,
        progress: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Tensors the next task's training needs (saved as importance.pt)."""
        raise NotImplementedError(f"{type(self).__name__} has no importance step")

    def update_progress(self, previous: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
        """Merge a task's record into the running state (saved as progress.pt)."""
        raise NotImplementedError(f"{type(self).__name__} has no progress step")

    # -- training a task ---------------------------------------------------------------
    def prepare_model(
        self, model: nn.Module, model_spec: dict[str, Any], tasks: list[list[int]]
    ) -> nn.Module:
        """The network to train, from the one the task starts from (``model_spec``: the
        spec it was built from; ``tasks``: every task's classes): the same one, unless
        the method trains its own kind of network (PackNet: the weights' owners). Called
        first, before the task's data is set up."""
        return model

    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        """Prepare to train a task from the previous task's importance (None: the method
        has no importance step)."""

    def attach(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        """Hook into the task's optimizer (called once, before the first step)."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to every batch's loss from the weights alone, differentiated by
        autograd (None: nothing)."""
        return None

    def batch_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        """A term added to this batch's loss, computed from the batch: its inputs,
        targets and the model's outputs on them (distillation, logit replay); None:
        nothing. Called under the step's autocast, after the forward pass."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Change the gradients before the optimizer step (e.g. add a penalty's gradient
        directly, cheaper than differentiating the penalty)."""

    def after_step(self, model: nn.Module) -> None:
        """After every optimizer step (a path integral over the updates, an online
        buffer)."""

    def state_dict(self) -> dict[str, Any]:
        """What this method keeps during a task that a killed and resumed job needs to go
        on exactly (saved with every epoch checkpoint): tensors and plain values."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` gave, on a resumed job (after ``attach``)."""
        if state:
            raise NotImplementedError(f"{type(self).__name__} saved state it does not load back")

    def extra_training_samples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Samples trained on together with the task's own, shuffled with them:
        (uint8 images, targets, 1-based task of each), all on the device; None: none."""
        return None

    def validation_splits(self, ctx: TaskContext) -> list[tuple[int, Split]]:
        """(task, split) pairs validated after every epoch (early stopping watches them):
        the task's own validation split."""
        return [(ctx.task.index, ctx.task.val)]

    def end_task(self, model: nn.Module) -> dict[str, Any]:
        """What this task did, for the progress step (saved as record.pt)."""
        return {}


def training_samples(
    ctx: TaskContext, rows: dict[int, torch.Tensor | None], what: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples of other tasks to train on beside ``ctx.task`` (replay, joint training):
    (uint8 images, targets, 1-based task of each), on the device. ``rows`` maps a task
    to the rows of its training split to take (None: all of them)."""
    if ctx.all_tasks is None:
        raise ValueError(f"{what} needs every task's data")
    xs, ys, ids = [], [], []
    for t, positions in rows.items():
        split = ctx.all_tasks[t - 1].train
        x, y = (split.x, split.y) if positions is None else (split.x[positions], split.y[positions])
        xs.append(x)
        ys.append(ctx.scenario.targets(t, y))
        ids.append(torch.full((len(y),), t, dtype=torch.int64))
    shapes = {tuple(x.shape[1:]) for x in xs} | {tuple(ctx.task.train.x.shape[1:])}
    if len(shapes) > 1:
        raise ValueError(f"{what} cannot mix images of different shapes: {sorted(shapes)}")
    return torch.cat(xs).to(ctx.device), torch.cat(ys).to(ctx.device), torch.cat(ids).to(ctx.device)


def add_quadratic_gradient(
    terms: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]], strength: float
) -> None:
    """Add the gradient of ``strength * sum Omega (theta - theta*)^2``, that is
    ``2 strength Omega (theta - theta*)``, to each parameter's ``.grad`` for ``terms`` of
    (theta, Omega, theta*): straight into the gradients, no autograd graph (MAS's and SI's
    penalties)."""
    with torch.no_grad():
        for p, omega, anchor in terms:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad += 2.0 * strength * omega * (p.detach() - anchor)


class TensorMismatchError(InputError, ValueError):
    """Tensors from a file do not fit the model (another architecture or arm)."""


def check_matches(model: nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Refuse ``tensors`` (name -> tensor) unless each names a parameter of that shape."""
    params = dict(model.named_parameters())
    problems = []
    for name, t in tensors.items():
        if name not in params:
            problems.append(f"{name}: not a parameter of the model")
        elif tuple(t.shape) != tuple(params[name].shape):
            problems.append(f"{name}: shape {tuple(t.shape)} but the model has {tuple(params[name].shape)}")
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems)} in all)" if len(problems) > 8 else "")
        raise TensorMismatchError(f"{what} does not match the model: {shown}")
