"""Helpers shared by the benchmark scripts: the machine line every table starts with."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def machine_line(device: torch.device, extra: str = "") -> str:
    """``device: cpu (AMD EPYC, 2 cores), 2 threads, torch 2.x`` -- what the numbers ran on."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    line = f"device: {device.type} ({name}), {torch.get_num_threads()} threads, torch {torch.__version__}"
    return line + (f", {extra}" if extra else "") + load_note()


def load_note() -> str:
    """The machine's 1-minute load average: other work running beside the benchmark shows here."""
    try:
        return f" (load average {os.getloadavg()[0]:.2f})"
    except OSError:
        return ""


# The networks the per-step benchmarks time (label -> model spec, input settings): the
# headline's VGG16 at 32 px, at the quick config's width and at full width, and the EWC
# source's MLP at 28 px.
MODELS: dict[str, tuple[dict, dict]] = {
    "vgg16 1/8 width, 32 px": (
        {"name": "vgg16", "width": 0.125, "dropout": 0.5, "init": "glorot"},
        {"size": 32, "channels": 3},
    ),
    "vgg16 full width, 32 px": (
        {"name": "vgg16", "width": 1.0, "dropout": 0.5, "init": "glorot"},
        {"size": 32, "channels": 3},
    ),
    "mlp 784-256-256-256-10": (
        {"name": "mlp", "hidden": [256, 256, 256], "output_relu": False, "init": "torch"},
        {"size": 28, "channels": 1},
    ),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values) -> float:
    return statistics.median(values)


def table(columns: list[str]) -> str:
    return "| " + " | ".join(columns) + " |\n" + "|" + "---|" * len(columns)


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: the datasets in torchvision's layout, by default ../shared/data."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT.parent / "shared" / "data",
        help="datasets in torchvision's layout (MNIST/raw/*-ubyte, ...); default: ../shared/data",
    )
