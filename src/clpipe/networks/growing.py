"""A task-masked network that grows a column of units per task (docs/methods.md, section 4, "SynapticNet").

The network only: its stack of layers, its growth by given counts (:meth:`GrowingTaskNet.grow`),
what each task uses and trains, its spec. The task-masked layers themselves (a layer's
units by task, its masked forward, its growth) are :mod:`clpipe.networks.task_units`.
When and by how much it grows is the growing method's (:mod:`clpipe.methods.growing`,
with its automatic-growth rule ``decide_growth``). :class:`FixedGrowingNet` is the same
architecture, never grown.

Every conv filter and hidden neuron belongs to the task that created it (the ``unit_task``
buffer of each layer). Running the network for task ``t`` activates a subset of the units
and zeroes the rest, in one of two modes:

- ``isolated`` (the source): only task ``t``'s units are active, and each reads only task
  ``t``'s units of the layer below (the first layer reads the image). Every task is a
  separate column; zero forgetting by construction.
- ``read`` (forward transfer): the units of tasks ``<= t`` are active. A unit of task
  ``s`` reads the units of tasks ``<= s`` below it and never a newer task's: the weight
  matrix is used block-lower-triangularly, as in progressive networks. So an earlier
  task's units compute exactly the features they computed for that task, and task ``t``
  reads them as frozen features. (Masking only the outputs, as the source does, would let
  old units read the new task's units through the new, never-trained columns of their rows.)

Design choices that make the guarantees exact, not approximate:

- Each layer computes only the active blocks -- for each active task ``s``, the rows of
  ``s`` times the input columns ``s`` reads -- and puts exact zeros in the inactive units.
  A task's computation therefore has the same shapes before and after any growth, so its
  outputs stay bit-identical when the network grows (a dense product with zero columns
  would add the same terms, but a different reduction size may sum them in another order).
- Weights of other tasks' units enter the forward pass detached: they never get a
  gradient. That alone does not protect them from weight decay (which moves a weight
  with a zero gradient) or momentum, so training also freezes them with
  :class:`clpipe.optim.StepScaler` (:meth:`GrowingTaskNet.protect`), which puts frozen
  elements back bit for bit after every step, whatever the optimizer did.
- Units are stored sorted by task (growth appends, and only the newest task may grow),
  so each task's units are one contiguous range and the per-unit task ids are the
  run-length form ``widths[k]`` = units of task ``k + 1``; that is what :meth:`spec` stores.

Weights are dense, as in the source: growing a layer adds rows (the new task's units)
and columns (the new units of the layer below) to one matrix, so the parameter count
includes blocks no task ever uses; :meth:`GrowingTaskNet.parameter_counts` reports both.
The source's schedule (64 channels / 512 hidden / 10 outputs, grown twice by the same and
once by 128 / 1024 / 100 for CIFAR-100) ends at 16,217,410 parameters
(:func:`dense_parameter_count`; tests/helpers/growing_schedule.py writes the schedule out).

The forward pass returns task ``t``'s own head only (N x outputs of ``t``), so a
prediction is the argmax over the task's own classes; a source-style dense output would
hold zeros for the other heads, which win the argmax when all of ``t``'s logits are
negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clpipe.networks.task_units import (
    INITS,
    MODES,
    TaskMaskedConv2d,
    TaskMaskedLayer,
    TaskMaskedLinear,
    check_choice,
)
from clpipe.optim import StepScaler

# --- the network -----------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterCounts:
    total: int  # dense weights and biases, as the source counts them
    added_by_last_grow: int  # 0 before the first grow
    in_use: int  # entries that can change the task's outputs
    trainable: int  # entries the task's training moves (its own units' rows)


def _per_task(values: int | Sequence[int]) -> list[int]:
    """An int is one task's width; a list gives one per task."""
    return [int(values)] if isinstance(values, int) else [int(v) for v in values]


class GrowingTaskNet(nn.Module):
    """The source's network, every layer task-masked and growable.

    ``conv[i][k]``: channels of conv layer ``i`` that belong to task ``k + 1`` (an int: the
    first task's only); ``hidden[k]``, ``outputs[k]``: task ``k + 1``'s hidden units and head
    outputs. Each conv is ``kernel`` x ``kernel`` with ReLU, followed by a 2x2 max-pool
    where ``pool_after`` says; then an adaptive average pool to ``pooled_size`` squared,
    the hidden layer (ReLU, dropout) and the heads. ``input_size`` is recorded in the spec
    (the adaptive pool accepts any size that survives the max-pools).
    """

    # called as model(x, task), returning that task's own head (clpipe.scenarios)
    takes_task_id = True

    def __init__(
        self,
        in_channels: int = 3,
        input_size: int = 32,
        conv: Sequence[int | Sequence[int]] = (64, 64, 64, 64),
        hidden: int | Sequence[int] = 512,
        outputs: int | Sequence[int] = 10,
        pool_after: Sequence[bool] = (True, True, True, False),
        pooled_size: int = 4,
        kernel: int = 3,
        dropout: float = 0.2,
        mode: str = "isolated",
        init: str = "source",
        growth: Sequence[dict[str, Any]] = (),
    ):
        super().__init__()
        self.mode = check_choice(mode, MODES, "mode")
        self.init = check_choice(init, INITS, "init")
        conv_widths = [_per_task(c) for c in conv]
        hidden_widths, output_widths = _per_task(hidden), _per_task(outputs)
        n_tasks = len(output_widths)
        if not conv_widths or len(pool_after) != len(conv_widths):
            raise ValueError(f"{len(conv_widths)} conv layer(s) but {len(pool_after)} pool_after entries")
        lengths = {len(w) for w in [*conv_widths, hidden_widths]}
        if n_tasks < 1 or lengths != {n_tasks}:
            raise ValueError(f"every layer needs one width per task ({n_tasks} tasks by the head)")
        if min(output_widths) < 1:
            raise ValueError(f"every task needs head outputs, got {output_widths}")
        if input_size // 2 ** sum(map(bool, pool_after)) < 1:
            raise ValueError(f"{input_size} px inputs do not survive {sum(map(bool, pool_after))} max-pools")
        self.in_channels, self.input_size = int(in_channels), int(input_size)
        self.pool_after = [bool(p) for p in pool_after]
        self.pooled_size, self.kernel = int(pooled_size), int(kernel)
        self.growth: list[dict[str, Any]] = [dict(g) for g in growth]
        self.convs = nn.ModuleList()
        previous = [self.in_channels]  # input widths by task; task 0: the image
        for widths in conv_widths:
            self.convs.append(TaskMaskedConv2d(widths, previous, self.kernel, mode, init))
            previous = [0, *widths]
        area = self.pooled_size**2  # the flatten turns each channel into this many fc inputs
        self.fc = TaskMaskedLinear(hidden_widths, [w * area for w in previous], mode, init)
        self.dropout = nn.Dropout(dropout)
        self.head = TaskMaskedLinear(output_widths, [0, *hidden_widths], mode, init)

    # -- shape -----------------------------------------------------------------------------
    @property
    def n_tasks(self) -> int:
        return len(self.head.unit_widths)

    @property
    def outputs_per_task(self) -> list[int]:
        return list(self.head.unit_widths)

    def _layers(self) -> list[tuple[str, TaskMaskedLayer]]:
        return [(f"convs.{i}", c) for i, c in enumerate(self.convs)] + [("fc", self.fc), ("head", self.head)]

    def _check_task(self, task: int) -> None:
        if not 1 <= task <= self.n_tasks:
            raise ValueError(f"task {task} is not one of the network's tasks 1..{self.n_tasks}")

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Logits of task ``task``'s own head: N x ``outputs_per_task[task - 1]``."""
        self._check_task(task)
        h = x
        for layer, pool in zip(self.convs, self.pool_after, strict=True):
            h = F.relu(layer(h, task, self.mode))
            if pool:
                h = F.max_pool2d(h, 2)
        h = F.adaptive_avg_pool2d(h, self.pooled_size).flatten(1)
        h = self.dropout(F.relu(self.fc(h, task, self.mode)))
        return self.head.own_outputs(h, task, self.mode)

    def predict(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Class within task ``task`` (0 .. its outputs - 1): the argmax over its own head."""
        return self(x, task).argmax(dim=1)

    # -- growth ----------------------------------------------------------------------------
    def grow(
        self,
        new_task: int,
        conv: int | Sequence[int] = 64,
        hidden: int = 512,
        outputs: int = 10,
        init: str = "source",
    ) -> int:
        """Add units of ``new_task`` to every layer; returns the parameters added.

        ``new_task`` is the next task (``n_tasks + 1``, which needs head outputs) or the
        newest one again (widening its column, e.g. after an automatic-growth decision).
        Existing entries are copied bit for bit and every earlier task's outputs stay
        bit-identical. New entries: ``randn * 0.01`` (``init="source"``) or, with
        ``"standard"``, torch's default bound ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for
        the new units' weights and biases, fan_in counting the inputs the unit reads in
        this network's mode, and 0 for every other new entry (so widening a task keeps
        its function, up to rounding). Parameters are replaced: build the optimizer after
        growing.
        """
        if new_task not in (self.n_tasks, self.n_tasks + 1):
            raise ValueError(
                f"can grow only the newest task {self.n_tasks} or the next one {self.n_tasks + 1}, "
                f"not {new_task}"
            )
        if new_task > self.n_tasks and outputs < 1:
            raise ValueError(f"a new task needs head outputs, got {outputs}")
        conv_units = self._conv_units(conv)
        if len(conv_units) != len(self.convs) or min([hidden, outputs, *conv_units]) < 0:
            raise ValueError(f"conv {conv}, hidden {hidden}, outputs {outputs}: one count >= 0 per layer")
        before = self.total_parameters()
        below = 0  # the image gains no channels
        for layer, units in zip(self.convs, conv_units, strict=True):
            layer.grow(new_task, units, below, init, self.mode)
            below = units
        self.fc.grow(new_task, int(hidden), below * self.pooled_size**2, init, self.mode)
        self.head.grow(new_task, int(outputs), int(hidden), init, self.mode)
        added = self.total_parameters() - before
        self.growth.append(
            {
                "task": new_task,
                "conv": conv_units,
                "hidden": int(hidden),
                "outputs": int(outputs),
                "init": check_choice(init, INITS, "init"),
                "parameters_added": added,
            }
        )
        return added

    def growth_of(self, task: int) -> dict[str, Any]:
        """Everything the network grew for ``task``, summed over its :meth:`grow` calls
        (one, or two after an automatic-growth decision: the head, then the widening):
        a :attr:`growth` entry's keys, ``{}`` when it never grew for ``task`` (task 1)."""
        steps = [g for g in self.growth if g["task"] == task]
        if not steps:
            return {}
        return {
            "task": task,
            "conv": [sum(units) for units in zip(*(g["conv"] for g in steps), strict=True)],
            "hidden": sum(int(g["hidden"]) for g in steps),
            "outputs": sum(int(g["outputs"]) for g in steps),
            "init": steps[-1]["init"],
            "parameters_added": sum(int(g["parameters_added"]) for g in steps),
        }

    def _conv_units(self, conv: int | Sequence[int]) -> list[int]:
        """Units per conv layer from one count for every layer or one count per layer."""
        return [int(conv)] * len(self.convs) if isinstance(conv, int) else [int(c) for c in conv]

    def parameters_after_grow(
        self, conv: int | Sequence[int] = 64, hidden: int = 512, outputs: int = 10
    ) -> int:
        """The total a :meth:`grow` with these counts would give (nothing changes)."""
        conv_units = self._conv_units(conv)
        return dense_parameter_count(
            self.in_channels,
            [layer.n_units + c for layer, c in zip(self.convs, conv_units, strict=True)],
            self.fc.n_units + hidden,
            self.head.n_units + outputs,
            self.kernel,
            self.pooled_size,
        )

    # -- which weights a task uses and trains ----------------------------------------------
    def _active(self, task: int) -> list[int]:
        return [task] if self.mode == "isolated" else list(range(1, task + 1))

    def _masks(self, task: int, rows: str) -> dict[str, torch.Tensor]:
        self._check_task(task)
        masks = {}
        for name, layer in self._layers():
            # only the task's own head counts: other heads never reach its logits
            tasks = [task] if rows == "own" or layer is self.head else self._active(task)
            masks[f"{name}.weight"], masks[f"{name}.bias"] = layer.connection_masks(tasks, self.mode)
        return masks

    def in_use_masks(self, task: int) -> dict[str, torch.Tensor]:
        """Parameter name -> bool mask of the entries that can change ``task``'s outputs."""
        return self._masks(task, "active")

    def trainable_masks(self, task: int) -> dict[str, torch.Tensor]:
        """Parameter name -> bool mask of the entries training ``task`` may change: its
        own units' rows, the columns they read."""
        return self._masks(task, "own")

    def frozen_masks(self, task: int) -> dict[nn.Parameter, torch.Tensor]:
        """Parameter -> bool mask of everything else (other tasks' units, and connections
        no task-``task`` unit reads), for :class:`clpipe.optim.StepScaler`'s ``frozen``."""
        trainable = self.trainable_masks(task)
        return {p: ~trainable[name] for name, p in self.named_parameters()}

    def protect(self, optimizer: torch.optim.Optimizer, task: int) -> StepScaler | None:
        """Keep every entry outside ``task``'s own units bit-identical through ``optimizer``'s
        steps (weight decay and momentum included); ``.remove()`` it when the task ends.
        None when nothing needs protecting (a network of one task)."""
        frozen = {p: m for p, m in self.frozen_masks(task).items() if bool(m.any())}
        if not frozen:
            return None
        return StepScaler(optimizer, {p: torch.ones_like(p) for p in frozen}, frozen)

    def total_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def parameter_counts(self, task: int) -> ParameterCounts:
        """Dense total, what the last grow added, and what ``task`` uses and trains."""
        self._check_task(task)
        in_use = sum(
            layer.connection_count([task] if layer is self.head else self._active(task), self.mode)
            for _, layer in self._layers()
        )
        trainable = sum(layer.connection_count([task], self.mode) for _, layer in self._layers())
        return ParameterCounts(
            total=self.total_parameters(),
            added_by_last_grow=int(self.growth[-1]["parameters_added"]) if self.growth else 0,
            in_use=in_use,
            trainable=trainable,
        )

    # -- checkpoints -----------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """JSON-able: everything :meth:`from_spec` needs to build this architecture. Widths
        are per task (units are sorted by task, so they are the per-unit task ids in
        run-length form); the weights and ``unit_task`` buffers are in the state dict."""
        return {
            "name": "growing",
            "input": {"channels": self.in_channels, "size": self.input_size},
            "conv": [list(layer.unit_widths) for layer in self.convs],
            "hidden": list(self.fc.unit_widths),
            "outputs": list(self.head.unit_widths),
            "pool_after": list(self.pool_after),
            "pooled_size": self.pooled_size,
            "kernel": self.kernel,
            "dropout": float(self.dropout.p),
            "mode": self.mode,
            "init": self.init,
            "growth": [dict(g) for g in self.growth],
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], device: torch.device | str | None = None) -> GrowingTaskNet:
        """The architecture ``spec`` describes, freshly initialised (load a state dict into
        it; ``device="meta"`` with ``load_state_dict(..., assign=True)`` allocates nothing
        twice). Keys a pipeline spec adds (``n_outputs``, input settings) are ignored."""
        if spec.get("name", "growing") != "growing":
            raise ValueError(f"not a growing network's spec: name {spec.get('name')!r}")
        with torch.device(device or "cpu"):
            return cls(
                in_channels=int(spec["input"]["channels"]),
                input_size=int(spec["input"]["size"]),
                conv=spec["conv"],
                hidden=spec["hidden"],
                outputs=spec["outputs"],
                pool_after=spec.get("pool_after", (True, True, True, False)),
                pooled_size=spec.get("pooled_size", 4),
                kernel=spec.get("kernel", 3),
                dropout=spec.get("dropout", 0.2),
                mode=spec.get("mode", "isolated"),
                init=spec.get("init", "source"),
                growth=spec.get("growth", ()),
            )


# --- the source's sizes in closed form -------------------------------------------------


def dense_parameter_count(
    in_channels: int,
    conv_channels: Sequence[int],
    hidden: int,
    outputs: int,
    kernel: int = 3,
    pooled_size: int = 4,
) -> int:
    """Weights and biases of the dense network with these total widths."""
    total, previous = 0, in_channels
    for channels in conv_channels:
        total += channels * previous * kernel * kernel + channels
        previous = channels
    total += previous * pooled_size**2 * hidden + hidden
    return total + hidden * outputs + outputs


# --- the same architecture, never grown ------------------------------------------------


class FixedGrowingNet(nn.Module):
    """:class:`GrowingTaskNet`'s architecture with one task's units only and a single
    output layer over every output of the scenario, never grown: a plain network."""

    def __init__(self, **settings: Any):
        super().__init__()
        self.net = GrowingTaskNet(mode="isolated", **settings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, 1)
