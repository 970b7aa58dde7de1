"""Between a task's epochs: the epoch checkpoint a killed training job resumes from,
early stopping on the validation accuracy, and the learning-rate schedule. The training
loop (clpipe.training) calls them after each epoch.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import torch
from torch import nn

log = logging.getLogger("clpipe")


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
