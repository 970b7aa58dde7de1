"""The training loop: one task, any method (methods only act through their hooks)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clpipe.data.pipeline import InputPipeline, Split, Task
from clpipe.epochs import EarlyStopping, EpochCheckpoint, build_schedule
from clpipe.errors import InputError
from clpipe.evaluation import evaluate_split
from clpipe.methods.base import Batch, ContinualMethod
from clpipe.optim import CarriedOptimizerState, build_optimizer
from clpipe.scenarios import Scenario

log = logging.getLogger("clpipe")

PRECISIONS = ("fp32", "bf16")


def autocast(train_cfg: dict[str, Any], device: torch.device):
    """``train.precision``: ``bf16`` runs a training step's forward pass and penalty under
    bfloat16 autocast (weights, optimizer state and the loss stay fp32); ``fp32`` (or
    absent): plain fp32. Evaluation, scoring and Fisher are always fp32, so reported
    accuracies do not depend on it."""
    precision = train_cfg.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision: {precision!r} (known: {', '.join(PRECISIONS)})")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def memory_format(train_cfg: dict[str, Any]) -> torch.memory_format:
    """``train.channels_last``: conv weights and training batches in NHWC layout (faster
    convolutions on recent GPUs); same function, other kernels."""
    return torch.channels_last if train_cfg.get("channels_last", False) else torch.contiguous_format


class NonFiniteLossError(InputError, FloatingPointError):
    """The loss became NaN or infinite; nothing downstream may use this job's output."""


def _format_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def total_steps(n_samples: int, train_cfg: dict[str, Any]) -> tuple[int, int]:
    """(steps per epoch, total steps) for a train config with epochs or iterations."""
    per_epoch = max(1, math.ceil(n_samples / train_cfg["batch_size"]))
    if "iterations" in train_cfg:
        return per_epoch, int(train_cfg["iterations"])
    return per_epoch, per_epoch * int(train_cfg["epochs"])


def validate(
    model: nn.Module,
    splits: list[tuple[int, Split]],
    scenario: Scenario,
    pipeline: InputPipeline,
    batch_size: int,
) -> tuple[float, float]:
    """(accuracy, loss) over validation splits of one or more tasks, weighted by size."""
    results = [(evaluate_split(model, s, t, scenario, pipeline, batch_size), len(s)) for t, s in splits]
    n = sum(size for _, size in results)
    if n == 0:
        return math.nan, math.nan
    acc = sum(a * size for (a, _), size in results if size) / n
    loss = sum(lo * size for (_, lo), size in results if size) / n
    return acc, loss


@dataclass
class TrainingSamples:
    """What a task trains on: its own samples and any the method mixes in (a replay
    buffer, every task for joint training), each masked as its own task."""

    x: torch.Tensor
    y: torch.Tensor
    masks: torch.Tensor | None  # per task, when samples of several tasks are mixed
    sample_task: torch.Tensor | None
    extra: int | None  # samples from other tasks (None: the method mixes in none)

    def __len__(self) -> int:
        return len(self.y)


def training_samples(task: Task, scenario: Scenario, method: ContinualMethod) -> TrainingSamples:
    device = task.train.x.device
    x, y = task.train.x, scenario.targets(task.index, task.train.y)
    mixed = method.extra_training_samples()
    if mixed is None:
        samples = TrainingSamples(x, y, None, None, None)
    else:  # e.g. a replay buffer: shuffled in with the task's samples
        if scenario.task_heads:
            raise ValueError(
                f"task {task.index}: a model with a head per task is called with one task id per "
                "batch; it cannot train on batches that mix tasks (replay, joint training)"
            )
        x_extra, y_extra, task_extra = mixed
        own_task = torch.full((len(y),), task.index, dtype=torch.int64, device=device)
        samples = TrainingSamples(
            torch.cat([x, x_extra]),
            torch.cat([y, y_extra]),
            scenario.mask_table(device),
            torch.cat([own_task, task_extra]),
            len(y_extra),
        )
    if len(samples) == 0:
        raise ValueError(f"task {task.index} has no training samples")
    return samples


@dataclass
class TrainingState:
    """A task's optimizer, schedule and early stopping, and how far training has got."""

    optimizer: torch.optim.Optimizer
    schedule: Any
    stopping: EarlyStopping
    done_epochs: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def start_training(model, train_cfg, method, carried) -> TrainingState:
    """Set up: the optimizer over the trainable parameters (a carried state restored
    before any step), its schedule, early stopping, and the method attached to them."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, train_cfg["optimizer"])
    if carried is not None:
        carried.restore(optimizer, model)  # a resumed epoch state overrides it
    schedule = build_schedule(optimizer, train_cfg.get("schedule"))
    state = TrainingState(optimizer, schedule, EarlyStopping(train_cfg.get("early_stopping")))
    method.attach(optimizer, model)
    return state


def resume(state: TrainingState, model, checkpoint, generator, device, n_epochs: int, method) -> None:
    """What a killed job's epoch checkpoint restores: weights, optimizer, generator,
    epochs done, history, schedule, early stopping and the method's own state (nothing
    without a checkpoint)."""
    state.done_epochs, state.step, state.history, resumed = checkpoint.restore(
        model, state.optimizer, generator
    )
    if state.schedule is not None and "schedule" in resumed:
        state.schedule.load_state_dict(resumed["schedule"])
    state.stopping.load(resumed.get("early_stopping"), device)
    if "method" in resumed:
        method.load_state_dict(resumed["method"])
    if resumed.get("stopped"):
        state.done_epochs = n_epochs  # it had stopped early: nothing left to train


@dataclass
class EpochPlan:
    """How one task's training steps run: its samples, cut into ``per_epoch`` batches of
    ``batch_size`` an epoch, ``steps`` in all over ``n_epochs``; the scenario's logit mask,
    the batches' memory layout and the forward pass's precision (autocast context)."""

    samples: TrainingSamples
    batch_size: int
    per_epoch: int
    steps: int
    n_epochs: int
    mask: torch.Tensor | None
    layout: torch.memory_format
    mixed_precision: Any


def plan_epochs(model, task: Task, scenario: Scenario, method, train_cfg: dict[str, Any]) -> EpochPlan:
    """The task's :class:`EpochPlan`; an unknown ``train.precision`` is named before any
    work. With ``channels_last`` the model is put in that layout, in place (the
    parameters stay the same objects)."""
    device = task.train.x.device
    mixed_precision = autocast(train_cfg, device)
    layout = memory_format(train_cfg)
    if layout == torch.channels_last:
        model.to(memory_format=layout)
    samples = training_samples(task, scenario, method)
    per_epoch, steps = total_steps(len(samples), train_cfg)
    mask = scenario.logit_mask(task.index, device)
    batch_size = int(train_cfg["batch_size"])
    n_epochs = math.ceil(steps / per_epoch)
    return EpochPlan(samples, batch_size, per_epoch, steps, n_epochs, mask, layout, mixed_precision)


def train_epoch(
    model, task, plan: EpochPlan, state: TrainingState, *, scenario, pipeline, method, generator, prefix: str
) -> tuple[float, float, int]:
    """One epoch of steps over a seeded permutation; (mean loss, accuracy, samples seen).
    Raises NonFiniteLossError naming the epoch and batch of the first non-finite loss
    (checked once per epoch: one device sync)."""
    samples, batch_size, per_epoch, steps = plan.samples, plan.batch_size, plan.per_epoch, plan.steps
    mask, layout = plan.mask, plan.layout
    device = samples.y.device
    model.train()
    order = torch.randperm(len(samples), generator=generator).to(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    seen = 0
    for b in range(per_epoch):
        if state.step >= steps:
            break
        idx = order[b * batch_size : (b + 1) * batch_size]
        images = samples.x[idx]
        inputs, targets = pipeline.train_batch(images, generator), samples.y[idx]
        if layout == torch.channels_last and inputs.ndim == 4:
            inputs = inputs.contiguous(memory_format=layout)
        sample_task = None
        if samples.masks is not None:  # each sample masked as its own task
            sample_task = samples.sample_task[idx]
            mask = samples.masks[sample_task - 1]
        with plan.mixed_precision:
            outputs, logits = scenario.outputs_and_logits(model, inputs, task.index, mask)
            logits = logits.float()
            penalty = method.penalty(model)
            batch = Batch(inputs, targets, logits, outputs.float(), task.index, images, sample_task, idx)
            extra = method.batch_loss(model, batch)
        loss = F.cross_entropy(logits, targets)
        total = loss
        for term in (penalty, extra):
            if term is not None:
                total = total + term.float()
        first_bad = torch.where(~torch.isfinite(total.detach()) & (first_bad < 0), state.step, first_bad)
        state.optimizer.zero_grad(set_to_none=True)
        total.backward()
        method.after_backward(model)
        state.optimizer.step()
        method.after_step(model)
        loss_sum += loss.detach().double() * len(idx)
        correct += (logits.detach().argmax(dim=1) == targets).sum()
        seen += len(idx)
        state.step += 1
    bad_step = int(first_bad.item())
    if bad_step >= 0:
        raise NonFiniteLossError(
            f"{prefix}non-finite loss at epoch {bad_step // per_epoch + 1}, batch {bad_step % per_epoch} "
            f"(step {bad_step}) of task {task.index}; no output was written"
        )
    return loss_sum.item() / seen, correct.item() / seen, seen


def end_epoch(
    state: TrainingState, device: torch.device, epoch: int, t_epoch: float,
    train_loss: float, train_acc: float, seen: int, val_loss: float, val_acc: float,
) -> dict[str, Any]:  # fmt: skip
    """After an epoch and its validation: the schedule's step and the epoch's history
    row (its learning rate the one it trained with; timed to the device's end of work)."""
    lr = state.optimizer.param_groups[0]["lr"]
    if state.schedule is not None:
        state.schedule.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t_epoch
    row = {
        "epoch": epoch, "step": state.step, "train_loss": train_loss, "train_accuracy": train_acc,
        "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr,
        "images_per_second": seen / seconds if seconds > 0 else math.nan, "seconds": seconds,
    }  # fmt: skip
    state.history.append(row)
    return row


def end_training(model, state: TrainingState, carried, prefix: str) -> None:
    """Keep the last step's optimizer state for the next task (also with early
    stopping's restore_best), put back the best epoch's weights if so configured, and
    mark in the history which epoch's weights the model holds."""
    last_epoch = state.history[-1]["epoch"] if state.history else 0
    if carried is not None:
        carried.keep(state.optimizer, model)
    state.stopping.finish(model, last_epoch, prefix)
    if state.stopping.cfg is not None:
        kept = state.stopping.best_epoch if state.stopping.best_state is not None else last_epoch
        for row in state.history:
            row["kept"] = row["epoch"] == kept


def train_task(
    model: nn.Module,
    task: Task,
    *,
    scenario: Scenario,
    pipeline: InputPipeline,
    train_cfg: dict[str, Any],
    method: ContinualMethod,
    generator: torch.Generator,
    eval_batch_size: int,
    label: str = "",
    checkpoint: EpochCheckpoint | None = None,
    validation: list[tuple[int, Split]] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    carried: CarriedOptimizerState | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` on ``task`` in place; returns one history row per epoch.

    The phases: the samples and steps (:func:`plan_epochs`), the set-up and resume
    (:func:`start_training`, :func:`resume`), then per epoch :func:`train_epoch`,
    validation, the history row (:func:`end_epoch`), a checkpoint and early stopping,
    and at the end :func:`end_training`.

    Batches are drawn from the task's tensors (already on the device) with a seeded
    permutation per epoch; the optimizer (and its learning-rate schedule) is new for
    every task, its state reset as in the sources, unless ``carried`` brings the state
    the previous task left (train.optimizer_state: carry); it then holds this task's
    final state. ``validation`` lists the (task, split) pairs validated after each epoch
    (default: the task's own validation split); early stopping, when configured,
    watches their accuracy. With a ``checkpoint``, the state after each epoch is saved
    and a killed job resumes after its last finished epoch. ``on_epoch`` is called with
    every epoch's history row as it ends (a resumed job's restored epochs first), e.g.
    for a live view (clpipe.live). Raises :class:`NonFiniteLossError` naming the epoch
    and batch of the first non-finite loss.
    """
    on_epoch = on_epoch or (lambda row: None)
    checkpoint = checkpoint or EpochCheckpoint(None, "")
    prefix = f"{label}: " if label else ""  # of this job's log lines and errors
    validation = validation if validation is not None else [(task.index, task.val)]
    device = task.train.x.device
    plan = plan_epochs(model, task, scenario, method, train_cfg)
    state = start_training(model, train_cfg, method, carried)
    resume(state, model, checkpoint, generator, device, plan.n_epochs, method)
    for row in state.history:
        on_epoch(row)
    first_step, t_start = state.step, time.perf_counter()
    mixed = "" if plan.samples.extra is None else f" ({plan.samples.extra} of them from earlier tasks)"
    log.info(
        "%straining task %d: %d samples%s, batch %d, %d step(s) in %d epoch(s)",
        prefix, task.index, len(plan.samples), mixed, plan.batch_size, plan.steps, plan.n_epochs,
    )  # fmt: skip
    for epoch in range(state.done_epochs + 1, plan.n_epochs + 1):
        t_epoch = time.perf_counter()
        train_loss, train_acc, seen = train_epoch(
            model, task, plan, state, scenario=scenario, pipeline=pipeline, method=method,
            generator=generator, prefix=prefix,
        )  # fmt: skip
        val_acc, val_loss = validate(model, validation, scenario, pipeline, eval_batch_size)
        row = end_epoch(state, device, epoch, t_epoch, train_loss, train_acc, seen, val_loss, val_acc)
        on_epoch(row)
        eta = (time.perf_counter() - t_start) / (state.step - first_step) * (plan.steps - state.step)
        log.info(
            "epoch %d/%d loss %.4f acc %.4f val_loss %.4f val_acc %.4f | %.0f img/s, %.1f s, time left %s",
            epoch, plan.n_epochs, train_loss, train_acc, val_loss, val_acc, row["images_per_second"],
            row["seconds"], _format_seconds(eta),
        )  # fmt: skip
        if _checkpoint_and_stop(model, state, checkpoint, generator, epoch, prefix, method):
            break
    end_training(model, state, carried, prefix)
    return state.history


def _checkpoint_and_stop(
    model, state: TrainingState, checkpoint, generator, epoch: int, prefix: str, method
) -> bool:
    """After an epoch: early stopping's verdict, the epoch checkpoint (with the method's
    own state, when it keeps any), and whether to stop."""
    stop = state.stopping.update(model, epoch, state.history[-1]["val_accuracy"])
    loop_state = {"early_stopping": state.stopping.state(), "stopped": stop}
    own = method.state_dict()
    if own:
        loop_state["method"] = own
    if state.schedule is not None:
        loop_state["schedule"] = state.schedule.state_dict()
    checkpoint.save(model, state.optimizer, generator, epoch, state.step, state.history, loop_state)
    if stop:
        log.info(
            "%sstopping early after epoch %d: no val_acc above epoch %d's %.4f for %d epoch(s)",
            prefix, epoch, state.stopping.best_epoch, state.stopping.best_accuracy,
            epoch - state.stopping.best_epoch,
        )  # fmt: skip
    return stop
