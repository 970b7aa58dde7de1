"""The training loop: one task, any method (methods only act through their hooks)."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clpipe.data import InputPipeline, Task
from clpipe.evaluation import evaluate_split
from clpipe.methods.base import ContinualMethod
from clpipe.optim import build_optimizer
from clpipe.scenarios import Scenario, apply_mask

log = logging.getLogger("clpipe")


class NonFiniteLossError(FloatingPointError):
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

    def __init__(self, path: str | None, key: str):
        self.path = path
        self.key = key

    def restore(self, model: nn.Module, optimizer, generator: torch.Generator):
        """(epochs done, steps done, history) -- (0, 0, []) when there is nothing to resume."""
        from clpipe import io

        if self.path is None or not os.path.exists(self.path):
            return 0, 0, []
        try:
            state = io.load(self.path, "resume")
        except io.FileFormatError as err:
            log.warning("ignoring an unreadable epoch checkpoint: %s", err)
            return 0, 0, []
        if state["key"] != self.key:
            log.info("ignoring %s: it belongs to other settings or inputs", self.path)
            return 0, 0, []
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        log.info("resuming after epoch %d (step %d) from %s", state["epoch"], state["step"], self.path)
        return int(state["epoch"]), int(state["step"]), list(state["history"])

    def save(self, model, optimizer, generator, epoch: int, step: int, history) -> None:
        from clpipe import io

        if self.path is None:
            return
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
) -> list[dict[str, Any]]:
    """Train ``model`` on ``task`` in place; returns one history row per epoch.

    Batches are drawn from the task's tensors (already on the device) with a seeded
    permutation per epoch; the optimizer is new for every task (its state is reset,
    as in the sources). With a ``checkpoint``, the state after each epoch is saved and
    a killed job resumes after its last finished epoch. Raises
    :class:`NonFiniteLossError` naming the epoch and batch of the first non-finite loss.
    """
    checkpoint = checkpoint or EpochCheckpoint(None, "")
    device = task.train.x.device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, train_cfg["optimizer"])
    method.attach(optimizer, model)

    x_all = task.train.x
    y_all = scenario.targets(task.index, task.train.y)
    mask = scenario.logit_mask(task.index, device)
    mixed = method.extra_training_samples()
    masks = None
    if mixed is not None:  # e.g. a replay buffer: shuffled in with the task's samples
        x_extra, y_extra, task_extra = mixed
        own_task = torch.full((len(y_all),), task.index, dtype=torch.int64, device=device)
        x_all, y_all = torch.cat([x_all, x_extra]), torch.cat([y_all, y_extra])
        masks = scenario.mask_table(device)
        sample_task = torch.cat([own_task, task_extra])
    n = len(y_all)
    if n == 0:
        raise ValueError(f"task {task.index} has no training samples")
    batch_size = int(train_cfg["batch_size"])
    per_epoch, steps = total_steps(n, train_cfg)
    n_epochs = math.ceil(steps / per_epoch)
    done_epochs, step, history = checkpoint.restore(model, optimizer, generator)
    first_step = step
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    t_start = time.perf_counter()
    log.info(
        "%straining task %d: %d samples%s, batch %d, %d step(s) in %d epoch(s)",
        f"{label}: " if label else "",
        task.index,
        n,
        "" if mixed is None else f" ({len(mixed[1])} of them from earlier tasks)",
        batch_size,
        steps,
        n_epochs,
    )
    for epoch in range(done_epochs + 1, n_epochs + 1):
        t_epoch = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        for b in range(per_epoch):
            if step >= steps:
                break
            idx = order[b * batch_size : (b + 1) * batch_size]
            inputs, targets = pipeline(x_all[idx]), y_all[idx]
            if masks is not None:  # each sample masked as its own task
                mask = masks[sample_task[idx] - 1]
            logits = apply_mask(model(inputs), mask)
            loss = F.cross_entropy(logits, targets)
            extra = method.penalty(model)
            total = loss if extra is None else loss + extra
            bad = ~torch.isfinite(total.detach())
            first_bad = torch.where(bad & (first_bad < 0), step, first_bad)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            method.after_backward(model)
            optimizer.step()
            loss_sum += loss.detach().double() * len(idx)
            correct += (logits.detach().argmax(dim=1) == targets).sum()
            seen += len(idx)
            step += 1
        bad_step = int(first_bad.item())  # one sync per epoch
        if bad_step >= 0:
            bad_epoch, bad_batch = bad_step // per_epoch + 1, bad_step % per_epoch
            raise NonFiniteLossError(
                f"{label + ': ' if label else ''}non-finite loss at epoch {bad_epoch}, batch {bad_batch} "
                f"(step {bad_step}) of task {task.index}; no output was written"
            )
        train_loss, train_acc = loss_sum.item() / seen, correct.item() / seen
        val_acc, val_loss = evaluate_split(model, task.val, task.index, scenario, pipeline, eval_batch_size)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        seconds = now - t_epoch
        eta = (now - t_start) / (step - first_step) * (steps - step)
        row = {
            "epoch": epoch,
            "step": step,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "images_per_second": seen / seconds if seconds > 0 else math.nan,
            "seconds": seconds,
        }
        history.append(row)
        log.info(
            "epoch %d/%d loss %.4f acc %.4f val_loss %.4f val_acc %.4f | %.0f img/s, %.1f s, time left %s",
            epoch,
            n_epochs,
            train_loss,
            train_acc,
            val_loss,
            val_acc,
            row["images_per_second"],
            seconds,
            _format_seconds(eta),
        )
        checkpoint.save(model, optimizer, generator, epoch, step, history)
    return history
