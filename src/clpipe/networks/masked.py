"""A network whose weights belong to tasks (PackNet's, docs/methods.md section 6).

Every managed weight (the kernels of the conv and linear layers) has an owner: the task
whose training kept it (1, 2, ...), or 0 while it is free. The output layer's rows of a
task's outputs are that task's head. Called as ``model(x, task)``
it computes its base network with the weights of later tasks masked out (free weights
count: they are either being trained or were pruned to 0) and returns the outputs of the
task's classes: each task answers with exactly the weights it had when it was trained.
Stored in a model file as the base's weights and the owners (buffers), and a spec that
names the base's spec, so the evaluation step rebuilds it from the file alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

NAME = "packnet"


def _buffer_name(weight: str) -> str:
    return "owner__" + weight.replace(".", "__")


class TaskMaskedNetwork(nn.Module):
    takes_task_id = True  # called as model(x, task), as a network with a head per task

    def __init__(self, base: nn.Module, base_spec: dict[str, Any], columns: list[tuple[int, int]]):
        super().__init__()
        self.base = base
        self.base_spec = base_spec
        self.columns = [tuple(c) for c in columns]  # task t's outputs: columns[t - 1]
        self.n_tasks = len(self.columns)
        self.managed = [name for name, p in base.named_parameters() if p.ndim >= 2]
        # the output layer: a row per output, so each task's rows are its head (the last
        # kernel with as many rows as the network has outputs), and its bias if it has one
        n_outputs = base_spec["n_outputs"]
        self.head = next(n for n in reversed(self.managed) if base.get_parameter(n).shape[0] == n_outputs)
        bias = self.head.rsplit(".", 1)[0] + ".bias" if "." in self.head else "bias"
        self.head_bias = bias if bias in dict(base.named_parameters()) else None
        for name in self.managed:
            p = base.get_parameter(name)
            self.register_buffer(_buffer_name(name), torch.zeros(p.shape, dtype=torch.int16, device=p.device))

    def owner(self, weight: str) -> torch.Tensor:
        """The task that owns each element of a managed weight (0: free)."""
        return getattr(self, _buffer_name(weight))

    def set_owner(self, weight: str, owner: torch.Tensor) -> None:
        getattr(self, _buffer_name(weight)).copy_(owner)

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        masked = {}
        for name in self.managed:
            owner = self.owner(name)
            keep = (owner == 0) | (owner <= task)
            masked[name] = self.base.get_parameter(name) * keep
        start, stop = self.columns[task - 1]
        return functional_call(self.base, masked, (x,), strict=False)[:, start:stop]

    def spec(self) -> dict[str, Any]:
        """What build_model needs to make it again (clpipe.networks.spec_of)."""
        return {
            "name": NAME,
            "base": self.base_spec,
            "columns": [list(c) for c in self.columns],
            "input": self.base_spec["input"],
            "n_outputs": self.base_spec["n_outputs"],
        }
