"""The training loop: one task, any method (methods only act through their hooks)."""

from __future__ import annotations

import logging
import math
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
) -> list[dict[str, Any]]:
    """Train ``model`` on ``task`` in place; returns one history row per epoch.

    Batches are drawn from the task's tensors (already on the device) with a seeded
    permutation per epoch; the optimizer is new for every task (its state is reset,
    as in the sources). Raises :class:`NonFiniteLossError` naming the epoch and batch
    of the first non-finite loss.
    """
    device = task.train.x.device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, train_cfg["optimizer"])
    method.attach(optimizer, model)

    x_all = task.train.x
    y_all = scenario.targets(task.index, task.train.y)
    mask = scenario.logit_mask(task.index, device)
    n = len(y_all)
    if n == 0:
        raise ValueError(f"task {task.index} has no training samples")
    batch_size = int(train_cfg["batch_size"])
    per_epoch, steps = total_steps(n, train_cfg)
    n_epochs = math.ceil(steps / per_epoch)
    history: list[dict[str, Any]] = []
    step = 0
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    t_start = time.perf_counter()
    log.info(
        "%straining task %d: %d samples, batch %d, %d step(s) in %d epoch(s)",
        f"{label}: " if label else "",
        task.index,
        n,
        batch_size,
        steps,
        n_epochs,
    )
    for epoch in range(1, n_epochs + 1):
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
        eta = (now - t_start) / step * (steps - step)
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
    return history
