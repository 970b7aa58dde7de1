"""Layers whose units belong to tasks: the layers of the growing network
(:class:`clpipe.networks.growing.GrowingTaskNet`, docs/methods.md section 4).

A layer (:class:`TaskMaskedConv2d`, :class:`TaskMaskedLinear`) holds one dense weight
and bias. Each output unit (a row: a conv filter, a neuron) belongs to the task that
created it, each input (a column) to the task of the unit below it that feeds it, or to
no task (the image); the ``unit_task`` and ``input_task`` buffers hold those ids, kept
sorted by task, so each task's units are one contiguous range. Run for a task in a mode
(:data:`MODES`), a layer computes only the blocks that task's active units read and puts
exact zeros in the other units; grown (:meth:`TaskMaskedLayer.grow`), it appends rows and
columns of the newest task (only it may grow) and keeps every existing entry bit for bit.

Not :mod:`clpipe.networks.masked`, PackNet's ``TaskMaskedNetwork``: that wraps any fixed
base network and gives every single weight an owner task (a buffer of the weight's
shape), and a task runs the whole base with the weights of later tasks multiplied by 0.
Here ownership is per unit (whole rows, and the columns they feed the layer above), the
network grows a column of units per task, and a task's units are computed from the inputs
they read alone, never as a masked dense product.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("isolated", "read")
# "source": every new entry randn * 0.01 (the source); "standard": torch's default
# bound 1 / sqrt(fan_in) for the entries a new unit uses, zero for those it never uses
INITS = ("source", "standard")
SOURCE_INIT_STD = 0.01

Span = tuple[int, int]  # (first index, count)


def check_choice(value: str, known: Sequence[str], what: str) -> str:
    if value not in known:
        raise ValueError(f"unknown {what} {value!r} (known: {', '.join(known)})")
    return value


def _merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Non-empty spans in order, adjacent ones joined (one slice instead of a concatenation)."""
    merged: list[Span] = []
    for start, count in spans:
        if count == 0:
            continue
        if merged and merged[-1][0] + merged[-1][1] == start:
            merged[-1] = (merged[-1][0], merged[-1][1] + count)
        else:
            merged.append((start, count))
    return merged


def _gather(t: torch.Tensor, dim: int, spans: list[Span]) -> torch.Tensor:
    # contiguous, so the kernel sees the same memory layout whatever the tensor's full width
    parts = [t.narrow(dim, start, count) for start, count in spans]
    return (parts[0] if len(parts) == 1 else torch.cat(parts, dim)).contiguous()


# --- layers ----------------------------------------------------------------------------


class TaskMaskedLayer(nn.Module):
    """One dense weight and bias whose output units (rows) and inputs (columns) belong to tasks.

    ``unit_widths[k]``: output units of task ``k + 1``; ``input_widths[k]``: inputs that
    come from task ``k``'s units of the layer below, where "task 0" are inputs that belong
    to no task (the image) and are read by every unit. Both are sorted by task.
    """

    unit_task: torch.Tensor
    input_task: torch.Tensor

    def __init__(
        self,
        unit_widths: Sequence[int],
        input_widths: Sequence[int],
        kernel_size: tuple[int, ...],
        mode: str = "isolated",
        init: str = "source",
    ):
        super().__init__()
        check_choice(mode, MODES, "mode")
        check_choice(init, INITS, "init")
        if any(int(w) < 0 for w in [*unit_widths, *input_widths]):
            raise ValueError(f"widths must not be negative: {list(unit_widths)}, {list(input_widths)}")
        self.kernel_size = tuple(kernel_size)
        self.unit_widths: list[int] = []
        self.input_widths: list[int] = []
        self.weight = nn.Parameter(torch.empty(0, 0, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(0))
        self.register_buffer("unit_task", torch.empty(0, dtype=torch.int64))
        self.register_buffer("input_task", torch.empty(0, dtype=torch.int64))
        # building is growing from nothing: one code path initialises every unit
        self._extend(list(unit_widths), list(input_widths), init, mode)
        self.register_load_state_dict_post_hook(_check_loaded_task_ids)

    # -- where each task's units and inputs are -----------------------------------------
    @property
    def n_units(self) -> int:
        return sum(self.unit_widths)

    @property
    def n_inputs(self) -> int:
        return sum(self.input_widths)

    def unit_span(self, task: int) -> Span:
        """(first row, count) of ``task``'s units (count 0 when it has none here)."""
        if task < 1 or task > len(self.unit_widths):
            return (self.n_units, 0)
        return (sum(self.unit_widths[: task - 1]), self.unit_widths[task - 1])

    def input_spans(self, task: int, mode: str) -> list[Span]:
        """The input columns a unit of ``task`` reads: the task-free inputs and, isolated,
        its own task's inputs, or, read, those of every task up to its own."""
        offsets = [sum(self.input_widths[:k]) for k in range(len(self.input_widths) + 1)]
        if mode == "isolated":
            own = (offsets[task], self.input_widths[task]) if task < len(self.input_widths) else (0, 0)
            return _merge_spans([(0, self.input_widths[0] if self.input_widths else 0), own])
        return _merge_spans([(0, offsets[min(task + 1, len(self.input_widths))])])

    def _expected_task_ids(self) -> tuple[torch.Tensor, torch.Tensor]:
        def ids(widths: list[int], first: int) -> torch.Tensor:
            # on the CPU whatever the default device (the model may be built on "meta")
            tasks = torch.arange(first, first + len(widths), dtype=torch.int64, device="cpu")
            return torch.repeat_interleave(tasks, torch.tensor(widths, dtype=torch.int64, device="cpu"))

        return ids(self.unit_widths, 1), ids(self.input_widths, 0)

    # -- forward --------------------------------------------------------------------------
    def _compute(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _block(self, x: torch.Tensor, unit_task: int, running: int, mode: str) -> torch.Tensor:
        """Outputs of ``unit_task``'s units while the network runs task ``running``."""
        start, count = self.unit_span(unit_task)
        weight, bias = self.weight.narrow(0, start, count), self.bias.narrow(0, start, count)
        if unit_task != running:  # only the running task's units learn from its batches
            weight, bias = weight.detach(), bias.detach()
        spans = self.input_spans(unit_task, mode)
        if not spans:  # a unit with nothing to read outputs its bias
            shape = (x.shape[0], count, *x.shape[2:])
            return bias.view(1, count, *[1] * (x.dim() - 2)).expand(shape)
        return self._compute(_gather(x, 1, spans), _gather(weight, 1, spans), bias)

    def forward(self, x: torch.Tensor, task: int, mode: str = "isolated") -> torch.Tensor:
        """Every unit's output; units not active for ``task`` in ``mode`` are exactly 0."""
        if x.shape[1] != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} input channels or features, got {x.shape[1]}")
        active = {task} if check_choice(mode, MODES, "mode") == "isolated" else set(range(1, task + 1))
        parts = []
        for unit_task, count in enumerate(self.unit_widths, start=1):
            if count == 0:
                continue
            if unit_task in active:
                parts.append(self._block(x, unit_task, task, mode))
            else:  # same spatial size: stride 1, "same" padding
                parts.append(x.new_zeros(x.shape[0], count, *x.shape[2:]))
        if not parts:
            return x.new_zeros(x.shape[0], 0, *x.shape[2:])
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def own_outputs(self, x: torch.Tensor, task: int, mode: str = "isolated") -> torch.Tensor:
        """Only ``task``'s units (N x its units): a head's logits."""
        if x.shape[1] != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} input channels or features, got {x.shape[1]}")
        return self._block(x, task, task, check_choice(mode, MODES, "mode"))

    # -- which weights a task uses ---------------------------------------------------------
    def connection_masks(self, tasks: Iterable[int], mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Bool masks (weight, bias) of the entries the units of ``tasks`` use in ``mode``."""
        weight = torch.zeros(self.weight.shape, dtype=torch.bool, device=self.weight.device)
        bias = torch.zeros(self.bias.shape, dtype=torch.bool, device=self.bias.device)
        for task in tasks:
            start, count = self.unit_span(task)
            if count == 0:
                continue
            bias[start : start + count] = True
            for first, n in self.input_spans(task, mode):
                weight[start : start + count, first : first + n] = True
        return weight, bias

    def connection_count(self, tasks: Iterable[int], mode: str) -> int:
        """How many entries :meth:`connection_masks` marks (arithmetic: works on "meta")."""
        per_input = math.prod(self.kernel_size)
        total = 0
        for task in tasks:
            _, count = self.unit_span(task)
            inputs = sum(n for _, n in self.input_spans(task, mode))
            total += count * (inputs * per_input + 1)
        return total

    # -- growth ---------------------------------------------------------------------------
    def grow(self, task: int, units: int, inputs: int, init: str = "source", mode: str = "isolated") -> None:
        """Add ``units`` rows of ``task`` and ``inputs`` columns from ``task``'s new units
        below; every existing entry is kept bit for bit. Only the newest task may grow."""
        if task < max(len(self.unit_widths), len(self.input_widths) - 1, 1):
            raise ValueError(f"task {task} cannot grow: a later task already has units here")
        unit_widths = self.unit_widths + [0] * (task - len(self.unit_widths))
        input_widths = self.input_widths + [0] * (task + 1 - len(self.input_widths))
        unit_widths[task - 1] += units
        input_widths[task] += inputs
        self._extend(unit_widths, input_widths, init, mode)

    @torch.no_grad()
    def _extend(self, unit_widths: list[int], input_widths: list[int], init: str, mode: str) -> None:
        old_weight, old_bias = self.weight, self.bias
        old_units, old_inputs = old_weight.shape[0], old_weight.shape[1]
        self.unit_widths, self.input_widths = [int(w) for w in unit_widths], [int(w) for w in input_widths]
        shape = (self.n_units, self.n_inputs, *self.kernel_size)
        like = {"dtype": old_weight.dtype, "device": old_weight.device}
        if check_choice(init, INITS, "init") == "source":
            weight = torch.randn(shape, **like) * SOURCE_INIT_STD
            bias = torch.randn(shape[0], **like) * SOURCE_INIT_STD
        else:
            weight, bias = torch.zeros(shape, **like), torch.zeros(shape[0], **like)
            per_input = math.prod(self.kernel_size)
            for task in range(1, len(self.unit_widths) + 1):
                start, count = self.unit_span(task)
                first_new = max(start, old_units)  # only new rows are initialised here
                if start + count <= first_new:
                    continue
                rows = slice(first_new, start + count)
                spans = self.input_spans(task, mode)
                fan_in = sum(n for _, n in spans) * per_input
                bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
                for first, n in spans:
                    weight[rows, first : first + n].uniform_(-bound, bound)
                bias[rows].uniform_(-bound, bound)
        weight[:old_units, :old_inputs] = old_weight
        bias[:old_units] = old_bias
        self.weight = nn.Parameter(weight, requires_grad=old_weight.requires_grad)
        self.bias = nn.Parameter(bias, requires_grad=old_bias.requires_grad)
        unit_task, input_task = self._expected_task_ids()
        self.unit_task = unit_task.to(self.unit_task.device)
        self.input_task = input_task.to(self.input_task.device)

    def extra_repr(self) -> str:
        return f"units by task {self.unit_widths}, inputs by task (0: no task) {self.input_widths}"


def _check_loaded_task_ids(module: TaskMaskedLayer, incompatible_keys) -> None:
    """A state dict's task ids must be those the spec built: the same shapes with another
    split between tasks would silently run the wrong units."""
    for name, expected in zip(("unit_task", "input_task"), module._expected_task_ids(), strict=True):
        loaded = getattr(module, name)
        if loaded.device.type != "meta" and not torch.equal(loaded.cpu(), expected):
            raise ValueError(
                f"{name} of the loaded state does not match the layer's widths "
                f"(units {module.unit_widths}, inputs {module.input_widths})"
            )


class TaskMaskedConv2d(TaskMaskedLayer):
    """A conv layer (stride 1, "same" padding) whose filters belong to tasks.

    ``unit_widths[k]``: filters of task ``k + 1``; ``input_widths[k]``: input channels from
    task ``k``'s filters below (``input_widths[0]``: the image's channels, read by every
    filter). ``mode`` and ``init`` only matter for initialising (see :data:`INITS`);
    :meth:`forward` takes the mode to run in.
    """

    def __init__(
        self,
        unit_widths: Sequence[int],
        input_widths: Sequence[int],
        kernel_size: int = 3,
        mode: str = "isolated",
        init: str = "source",
    ):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        super().__init__(unit_widths, input_widths, (kernel_size, kernel_size), mode, init)

    def _compute(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, bias, padding=self.kernel_size[0] // 2)


class TaskMaskedLinear(TaskMaskedLayer):
    """A linear layer whose output units belong to tasks (see :class:`TaskMaskedConv2d`)."""

    def __init__(
        self,
        unit_widths: Sequence[int],
        input_widths: Sequence[int],
        mode: str = "isolated",
        init: str = "source",
    ):
        super().__init__(unit_widths, input_widths, (), mode, init)

    def _compute(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight, bias)
