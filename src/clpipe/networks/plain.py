"""The fixed networks: built once, never grown, called as ``model(x)``.

- :class:`VGG16` (``vgg16``): the headline source's hand-built VGG16 without batch norm:
  conv blocks 64x2, 128x2, 256x3, 512x3, 512x3 (3x3, same padding, ReLU, 2x2 max-pool
  after each), then flatten -> 4096 -> 4096 -> outputs with ReLU and dropout. At 224 px
  with two outputs it has 134,268,738 parameters. Smaller inputs shrink the classifier
  input (512 * (size // 32) ** 2); ``width`` scales every channel count and hidden size.
- :class:`MLP` (``mlp``): flatten -> hidden layers with ReLU -> outputs (optionally a
  ReLU on the output, a flaw of one source kept as an option).
- :class:`CNN` (``cnn``): convolutions (each with its channels, kernel and stride;
  padding kernel // 2) with ReLU, flatten, hidden layers with ReLU, outputs. The EWC
  source's network is ``conv: [{channels: 32, kernel: 3, stride: 2}, {channels: 64,
  kernel: 3, stride: 2}]``, ``hidden: [768]`` (28 -> 14 -> 7: 3136 -> 768 -> 10).
- :func:`resnet18` (``resnet18``): torchvision's ResNet18 (ImageNet stem, batch norm),
  trained from scratch (no pretrained weights): the replay source's network on CLEAR-10
  (11 classes, 224 px: 11,182,155 parameters).

Each is built from plain arguments; :func:`clpipe.networks.build_model` reads them
from a spec and initialises the weights (the config's ``init``).
"""

from __future__ import annotations

import torch
from torch import nn

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


def resnet18(in_channels: int, n_outputs: int) -> nn.Module:
    """torchvision's ResNet18 with ``n_outputs`` classes, randomly initialised as
    torchvision does (no pretrained weights); 3-channel inputs only."""
    import torchvision

    if in_channels != 3:
        raise ValueError(f"resnet18 takes 3-channel inputs, got {in_channels}")
    return torchvision.models.resnet18(weights=None, num_classes=n_outputs)
