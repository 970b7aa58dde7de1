"""The training loop: one task, any method (methods only act through their hooks)."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clpipe.data.pipeline import InputPipeline, Split, Task
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


class EpochCheckpoint:
    """Where a training job keeps its state after every epoch, to resume if it is killed.

    The file holds the model, the optimizer, the shuffling generator and torch's global
    RNG states (dropout), the epoch, the step and the history so far, written
    atomically. ``key`` identifies the job *and* its inputs: a state saved for other
    settings or an older parent model is ignored, never resumed from. A resumed job ends
    with the same weights, bit for bit on a CPU, as one that was never interrupted.
    """

    def __init__(self, path: str | None, key: str, every_s: float = 0.0):
        self.path = path
        self.key = key
        # Save after an epoch only once this many seconds passed since the last save (or
        # the start): a job of short epochs would otherwise spend more time writing
        # checkpoints than a kill could cost it. 0: after every epoch.
        self.every_s = every_s
        self._last = time.monotonic()

    def restore(self, model: nn.Module, optimizer, generator: torch.Generator):
        """(epochs done, steps done, history, extra) -- (0, 0, [], {}) when there is
        nothing to resume; ``extra`` is what :meth:`save` was given (schedule, early
        stopping)."""
        from clpipe import io

        if self.path is None or not os.path.exists(self.path):
            return 0, 0, [], {}
        try:
            state = io.load(self.path, "resume")
        except io.FileFormatError as err:
            log.warning("ignoring an unreadable epoch checkpoint: %s", err)
            return 0, 0, [], {}
        if state["key"] != self.key:
            log.info("ignoring %s: it belongs to other settings or inputs", self.path)
            return 0, 0, [], {}
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if {k: tuple(v.shape) for k, v in state["model"].items()} != shapes:
            # same job, another architecture: a network that decides its own growth before
            # training (growing, auto_grow) decided otherwise this time (only possible
            # where its probe is not deterministic); start over rather than half-load
            log.warning("ignoring %s: its model has another architecture than this run's", self.path)
            return 0, 0, [], {}
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        log.info("resuming after epoch %d (step %d) from %s", state["epoch"], state["step"], self.path)
        return int(state["epoch"]), int(state["step"]), list(state["history"]), dict(state.get("extra", {}))

    def save(self, model, optimizer, generator, epoch: int, step: int, history, extra=None) -> None:
        from clpipe import io

        if self.path is None or time.monotonic() - self._last < self.every_s:
            return
        self._last = time.monotonic()
        io.save(
            self.path,
            "resume",
            {"step": "epoch checkpoint", "epoch": epoch},
            key=self.key,
            epoch=epoch,
            step=step,
            history=history,
            model={k: v.detach().cpu() for k, v in model.state_dict().items()},
            optimizer=optimizer.state_dict(),
            generator=generator.get_state(),
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            extra=extra or {},
        )

    def discard(self) -> None:
        if self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)


def total_steps(n_samples: int, train_cfg: dict[str, Any]) -> tuple[int, int]:
    """(steps per epoch, total steps) for a train config with epochs or iterations."""
    per_epoch = max(1, math.ceil(n_samples / train_cfg["batch_size"]))
    if "iterations" in train_cfg:
        return per_epoch, int(train_cfg["iterations"])
    return per_epoch, per_epoch * int(train_cfg["epochs"])


class EarlyStopping:
    """Keeps the best epoch by validation accuracy and says when to stop: no better epoch
    for ``patience`` epochs, and at least ``min_epochs`` done. The best weights are kept
    (a copy on the model's device) to be put back at the end."""

    def __init__(self, cfg: dict[str, Any] | None):
        self.cfg = cfg
        self.best_accuracy = -math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def update(self, model: nn.Module, epoch: int, val_accuracy: float) -> bool:
        """Record an epoch; True when training should stop after it."""
        if self.cfg is None:
            return False
        if val_accuracy > self.best_accuracy:  # NaN never counts as better
            self.best_accuracy, self.best_epoch = val_accuracy, epoch
            if self.cfg["restore_best"]:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return epoch >= self.cfg["min_epochs"] and epoch - self.best_epoch >= self.cfg["patience"]

    def finish(self, model: nn.Module, last_epoch: int, label: str) -> None:
        if self.cfg is None or self.best_epoch == 0:
            return
        if self.best_state is not None and self.best_epoch != last_epoch:
            model.load_state_dict(self.best_state)
            log.info(
                "%skept the weights of epoch %d (best val_acc %.4f)",
                label,
                self.best_epoch,
                self.best_accuracy,
            )

    def state(self) -> dict[str, Any]:
        state = None if self.best_state is None else {k: v.cpu() for k, v in self.best_state.items()}
        return {"best_accuracy": self.best_accuracy, "best_epoch": self.best_epoch, "best_state": state}

    def load(self, state: dict[str, Any], device: torch.device) -> None:
        if not state:
            return
        self.best_accuracy, self.best_epoch = state["best_accuracy"], state["best_epoch"]
        if state["best_state"] is not None:
            self.best_state = {k: v.to(device) for k, v in state["best_state"].items()}


def build_schedule(optimizer: torch.optim.Optimizer, cfg: dict[str, Any] | None):
    """The learning-rate schedule of one task (stepped once per epoch), or None."""
    if cfg is None:
        return None
    if cfg["name"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=int(cfg["t_max"]), eta_min=float(cfg.get("eta_min", 0.0))
        )
    raise ValueError(f"config key 'train.schedule.name': unknown schedule {cfg['name']!r} (known: cosine)")


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


def train_epoch(
    model, task, samples: TrainingSamples, state: TrainingState, *, scenario, pipeline, method, generator,
    batch_size: int, per_epoch: int, steps: int, mask, layout, mixed_precision, prefix: str,
) -> tuple[float, float, int]:  # fmt: skip
    """One epoch of steps over a seeded permutation; (mean loss, accuracy, samples seen).
    Raises NonFiniteLossError naming the epoch and batch of the first non-finite loss
    (checked once per epoch: one device sync)."""
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
        with mixed_precision:
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

    The phases: the samples (:func:`training_samples`), the set-up and resume
    (:func:`start_training`), then per epoch :func:`train_epoch`, validation, the
    history row, a checkpoint and early stopping, and at the end :func:`end_training`.

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
    mixed_precision = autocast(train_cfg, device)  # an unknown train.precision is named before any work
    layout = memory_format(train_cfg)
    if layout == torch.channels_last:
        model.to(memory_format=layout)  # in place: the parameters stay the same objects
    state = start_training(model, train_cfg, method, carried)
    samples = training_samples(task, scenario, method)
    per_epoch, steps = total_steps(len(samples), train_cfg)
    n_epochs = math.ceil(steps / per_epoch)
    resume(state, model, checkpoint, generator, device, n_epochs, method)
    mask = scenario.logit_mask(task.index, device)
    for row in state.history:
        on_epoch(row)
    first_step, t_start = state.step, time.perf_counter()
    mixed = "" if samples.extra is None else f" ({samples.extra} of them from earlier tasks)"
    log.info(
        "%straining task %d: %d samples%s, batch %d, %d step(s) in %d epoch(s)",
        prefix, task.index, len(samples), mixed, int(train_cfg["batch_size"]), steps, n_epochs,
    )  # fmt: skip
    for epoch in range(state.done_epochs + 1, n_epochs + 1):
        t_epoch = time.perf_counter()
        train_loss, train_acc, seen = train_epoch(
            model, task, samples, state, scenario=scenario, pipeline=pipeline, method=method,
            generator=generator, batch_size=int(train_cfg["batch_size"]), per_epoch=per_epoch, steps=steps,
            mask=mask, layout=layout, mixed_precision=mixed_precision, prefix=prefix,
        )  # fmt: skip
        val_acc, val_loss = validate(model, validation, scenario, pipeline, eval_batch_size)
        lr = state.optimizer.param_groups[0]["lr"]
        if state.schedule is not None:
            state.schedule.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        seconds = now - t_epoch
        row = {
            "epoch": epoch, "step": state.step, "train_loss": train_loss, "train_accuracy": train_acc,
            "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr,
            "images_per_second": seen / seconds if seconds > 0 else math.nan, "seconds": seconds,
        }  # fmt: skip
        state.history.append(row)
        on_epoch(row)
        eta = (now - t_start) / (state.step - first_step) * (steps - state.step)
        log.info(
            "epoch %d/%d loss %.4f acc %.4f val_loss %.4f val_acc %.4f | %.0f img/s, %.1f s, time left %s",
            epoch, n_epochs, train_loss, train_acc, val_loss, val_acc, row["images_per_second"], seconds,
            _format_seconds(eta),
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
