"""The growing network's source schedule in closed form (docs/methods.md, section 4): what the
tests check the network's sizes against (not used by the pipeline itself)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from clpipe.networks.growing import GrowingTaskNet, dense_parameter_count


class GrowthStep(NamedTuple):
    conv: int  # channels added to every conv layer
    hidden: int
    outputs: int


# The first task's widths, then one grow per later task (MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100).
SOURCE_SCHEDULE: tuple[GrowthStep, ...] = (
    GrowthStep(64, 512, 10),
    GrowthStep(64, 512, 10),
    GrowthStep(64, 512, 10),
    GrowthStep(128, 1024, 100),
)


def schedule_totals(
    schedule: Sequence[GrowthStep] = SOURCE_SCHEDULE,
    in_channels: int = 3,
    n_conv: int = 4,
    kernel: int = 3,
    pooled_size: int = 4,
) -> list[int]:
    """The dense parameter count after each task of a growth schedule."""
    totals, conv, hidden, outputs = [], 0, 0, 0
    for step in schedule:
        conv, hidden, outputs = conv + step.conv, hidden + step.hidden, outputs + step.outputs
        totals.append(
            dense_parameter_count(in_channels, [conv] * n_conv, hidden, outputs, kernel, pooled_size)
        )
    return totals


def source_schedule_parameters() -> int:
    """The source's final size: 16,217,410 ("16.2M")."""
    return schedule_totals()[-1]


def source_network(
    mode: str = "isolated", init: str = "source", device: torch.device | str | None = None
) -> GrowingTaskNet:
    """The source's network before any growth (task 1: 64 channels, 512 hidden, 10 outputs)."""
    first = SOURCE_SCHEDULE[0]
    with torch.device(device or "cpu"):
        return GrowingTaskNet(
            conv=[first.conv] * 4, hidden=first.hidden, outputs=first.outputs, mode=mode, init=init
        )
