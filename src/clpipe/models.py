"""Networks, built from a spec dict that every checkpoint stores (see plan.model_spec).

- ``vgg16``: the headline source's hand-built VGG16 without batch norm: conv blocks
  64x2, 128x2, 256x3, 512x3, 512x3 (3x3, same padding, ReLU, 2x2 max-pool after each),
  then flatten -> 4096 -> 4096 -> outputs with ReLU and dropout. At 224 px with two
  outputs it has 134,268,738 parameters. Smaller inputs shrink the classifier input
  (512 * (size // 32) ** 2); ``width`` scales every channel count and hidden size.
- ``mlp``: flatten -> hidden layers with ReLU -> outputs (optionally a ReLU on the
  output, a flaw of one source kept as an option).
- ``cnn``: convolutions (each with its channels, kernel and stride; padding kernel // 2)
  with ReLU, flatten, hidden layers with ReLU, outputs. The EWC source's network is
  ``conv: [{channels: 32, kernel: 3, stride: 2}, {channels: 64, kernel: 3, stride: 2}]``,
  ``hidden: [768]`` (28 -> 14 -> 7: 3136 -> 768 -> 10).
- ``resnet18``: torchvision's ResNet18 (ImageNet stem, batch norm), trained from scratch
  (no pretrained weights) with ``n_outputs`` classes: the replay source's network on
  CLEAR-10 (11 classes, 224 px: 11,182,155 parameters). ``init: torch`` keeps
  torchvision's initialisation.
- ``growing``: the task-masked growing network of METHODS.md section 4
  (:class:`clpipe.growing.GrowingTaskNet`), called as ``model(x, task)``: a head per
  task, the task scenario only. The config gives the first task's column (``conv``:
  channels of each conv layer, ``hidden``, ``pool_after``, ``pooled_size``, ``kernel``,
  ``dropout``, ``mode``, ``init``: ``source`` = randn * 0.01 or ``standard``); its head
  has the first task's classes (``n_outputs``). The growing method adds a column per
  later task, and every checkpoint stores the grown network's own spec
  (:func:`spec_of`), which this function builds again (per-task widths, ``outputs``).
- ``growing_fixed``: the same architecture at a fixed width, never grown: one column
  and one output layer of ``n_outputs`` (the scenario's shared head), called as
  ``model(x)`` like every other network: the baseline (fine-tuning, EWC, ...) of the
  growing method on the same network.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from clpipe.growing import GrowingTaskNet
from clpipe.model_settings import completed

VGG16_LAYERS: list[int | str] = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
]


def _scaled(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


class VGG16(nn.Module):
    def __init__(
        self,
        in_channels: int,
        input_size: int,
        n_outputs: int,
        width: float = 1.0,
        dropout: float = 0.5,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, input_size
        for item in VGG16_LAYERS:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                size //= 2
            else:
                out = _scaled(int(item), width)
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(inplace=True)]
                channels = out
        if size < 1:
            raise ValueError(f"vgg16 needs inputs of at least 32 px, got {input_size}")
        hidden = _scaled(4096, width)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * size * size, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: list[int], n_outputs: int, output_relu: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        previous = in_features
        for h in hidden:
            layers += [nn.Linear(previous, h), nn.ReLU(inplace=True)]
            previous = h
        layers.append(nn.Linear(previous, n_outputs))
        if output_relu:
            layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    def __init__(
        self,
        in_channels: int,
        input_size: int,
        conv: list[dict[str, int]],
        hidden: list[int],
        n_outputs: int,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, input_size
        for c in conv:
            k, stride = int(c["kernel"]), int(c.get("stride", 1))
            layers += [
                nn.Conv2d(channels, int(c["channels"]), k, stride=stride, padding=k // 2),
                nn.ReLU(inplace=True),
            ]
            channels = int(c["channels"])
            size = (size + 2 * (k // 2) - k) // stride + 1
        layers.append(nn.Flatten())
        previous = channels * size * size
        for h in hidden:
            layers += [nn.Linear(previous, h), nn.ReLU(inplace=True)]
            previous = h
        layers.append(nn.Linear(previous, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FixedGrowingNet(nn.Module):
    """:class:`GrowingTaskNet`'s architecture with one task's units only and a single
    output layer over every output of the scenario, never grown: a plain network."""

    def __init__(self, **settings: Any):
        super().__init__()
        self.net = GrowingTaskNet(mode="isolated", **settings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, 1)


GROWING_KEYS = ("conv", "hidden", "pool_after", "pooled_size", "kernel", "dropout", "init")


def _growing_settings(spec: dict[str, Any]) -> dict[str, Any]:
    inp = spec["input"]
    settings = {k: spec[k] for k in GROWING_KEYS if k in spec}
    return {"in_channels": inp["channels"], "input_size": inp["size"], **settings}


def _glorot_init(model: nn.Module) -> None:
    """Keras's defaults: Glorot-uniform kernels, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(spec: dict[str, Any], device: torch.device | str | None = None) -> nn.Module:
    """The network a spec describes, randomly initialised from torch's global RNG."""
    spec = completed(spec)
    inp = spec["input"]
    name = spec["name"]
    with torch.device(device or "cpu"):
        if name == "vgg16":
            model: nn.Module = VGG16(
                in_channels=inp["channels"],
                input_size=inp["size"],
                n_outputs=spec["n_outputs"],
                width=spec["width"],
                dropout=spec["dropout"],
            )
        elif name == "mlp":
            model = MLP(
                in_features=inp["channels"] * inp["size"] ** 2,
                hidden=list(spec["hidden"]),
                n_outputs=spec["n_outputs"],
                output_relu=spec["output_relu"],
            )
        elif name == "cnn":
            model = CNN(
                in_channels=inp["channels"],
                input_size=inp["size"],
                conv=list(spec["conv"]),
                hidden=list(spec["hidden"]),
                n_outputs=spec["n_outputs"],
            )
        elif name == "resnet18":
            import torchvision

            if inp["channels"] != 3:
                raise ValueError(f"resnet18 takes 3-channel inputs, got {inp['channels']}")
            model = torchvision.models.resnet18(weights=None, num_classes=spec["n_outputs"])
        elif name == "growing":
            # a pipeline spec gives the first task's head as n_outputs; a grown network's
            # own spec (spec_of) its per-task "outputs"
            outputs = spec.get("outputs", spec.get("n_outputs"))
            model = GrowingTaskNet.from_spec({**spec, "outputs": outputs}, device=device)
        elif name == "growing_fixed":
            model = FixedGrowingNet(outputs=spec["n_outputs"], **_growing_settings(spec))
        else:
            raise ValueError(
                f"config key 'model.name': unknown model {name!r} "
                "(known: vgg16, mlp, cnn, resnet18, growing, growing_fixed)"
            )
    own_init = name in ("growing", "growing_fixed")  # source or standard, at construction
    if not own_init and spec["init"] == "glorot" and str(device) != "meta":
        _glorot_init(model)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def spec_of(model: nn.Module, built_from: dict[str, Any]) -> dict[str, Any]:
    """The spec to store with ``model``'s weights, from which :func:`build_model` builds
    it again: a network that changes its own architecture (a growing network after
    growth) describes itself, keeping the pipeline's keys (the input settings); any other
    keeps the spec it was built from."""
    describe = getattr(model, "spec", None)
    if not callable(describe):
        return built_from
    own = describe()
    kept = {k: v for k, v in built_from.items() if k not in ("n_outputs", "outputs")}
    return {**kept, **own, "input": {**built_from.get("input", {}), **own["input"]}}


def evaluation_parameters(model: nn.Module, trained_task: int) -> dict[str, float]:
    """eval.csv's parameter columns of a model after ``trained_task`` (0: the random
    init): ``parameters_total`` for every model; ``parameters_added`` and
    ``parameters_in_use`` (of :func:`parameter_report`) for a growing network after a
    task, NaN otherwise (a fixed network, or nothing trained yet)."""
    total = count_parameters(model)
    if not isinstance(model, GrowingTaskNet) or trained_task < 1:
        return {"parameters_total": total, "parameters_added": math.nan, "parameters_in_use": math.nan}
    report = parameter_report(model, trained_task)
    return {k: report[k] for k in ("parameters_total", "parameters_added", "parameters_in_use")}


def parameter_report(model: nn.Module, task: int) -> dict[str, int]:
    """Parameter counts of ``model`` after training ``task`` (history.csv's columns).

    Every network: ``parameters_total``. A growing network also: ``parameters_added``
    (what the network gained for the task: the whole first column for task 1, then what
    growing for the task added), ``parameters_in_use`` (the entries that can change the
    task's outputs) and ``parameters_trainable`` (those its training could move); see
    :meth:`clpipe.growing.GrowingTaskNet.parameter_counts`.
    """
    if not isinstance(model, GrowingTaskNet):
        return {"parameters_total": count_parameters(model)}
    counts = model.parameter_counts(task)
    first_column = counts.total - sum(int(g["parameters_added"]) for g in model.growth)
    return {
        "parameters_total": counts.total,
        "parameters_added": model.growth_of(task).get("parameters_added", 0)
        + (first_column if task == 1 else 0),
        "parameters_in_use": counts.in_use,
        "parameters_trainable": counts.trainable,
    }
