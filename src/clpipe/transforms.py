"""Tasks defined by an input transform: Permuted and Rotated MNIST (docs/methods.md,
section 6), over any built-in or user dataset.

A task may be its dataset's images under a transform of its own: ``{permute: s}``, a
fixed permutation of the pixel positions (the same for every channel) drawn from seed
``s`` (Permuted MNIST: Goodfellow et al. 2013; Kirkpatrick et al. 2017), or
``{rotate: a}``, a rotation by ``a`` degrees about the image's centre (bilinear, the
corners filled with 0; Rotated MNIST). The data step stores the images every such task
shares once (torch.save writes a tensor shared by several tasks once), and the
transform is applied when a step loads the data file (:func:`apply`): ten 60,000-image
tasks cost one copy on disk, and in memory the tasks a job loads (docs/benchmarks.md).
Torch-free at import: the planner expands a benchmark's tasks (:func:`expand`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

KINDS = ("permute", "rotate")


def permutation(seed: int, pixels: int) -> torch.Tensor:
    """The pixel order of a permuted task: a fixed permutation of ``pixels`` positions."""
    import torch

    return torch.randperm(pixels, generator=torch.Generator().manual_seed(int(seed)))


def apply(transform: dict[str, Any] | None, images: torch.Tensor) -> torch.Tensor:
    """A task's uint8 images (N x C x H x W) under its transform (None: as they are)."""
    if not transform:
        return images
    (kind, value), *rest = transform.items()
    if rest or kind not in KINDS:
        raise ValueError(f"a task's transform is {{permute: seed}} or {{rotate: degrees}}, not {transform}")
    n, c, h, w = images.shape
    if kind == "permute":
        order = permutation(value, h * w)
        return images.reshape(n, c, h * w)[:, :, order].reshape(n, c, h, w)
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    return F.rotate(images, float(value), interpolation=InterpolationMode.BILINEAR, fill=0)


def expand(tasks: dict[str, Any]) -> list[dict[str, Any]]:
    """An experiment's ``tasks`` given as a benchmark, as the list of its tasks:
    ``{permuted: n, seed: s, first_unpermuted: true}`` (task i permuted by seed
    ``1000 s + i``; the first as it is, the literature's habit, unless told otherwise) or
    ``{rotated: [a1, a2, ...]}`` (task i rotated by a_i; 0: as it is); each task every
    class of the dataset, or the ``classes`` given."""
    base = {k: tasks[k] for k in ("dataset", "classes") if k in tasks}
    if "permuted" in tasks:
        seed, plain_first = int(tasks.get("seed", 0)), bool(tasks.get("first_unpermuted", True))
        return [
            base if i == 1 and plain_first else {**base, "transform": {"permute": 1000 * seed + i}}
            for i in range(1, int(tasks["permuted"]) + 1)
        ]
    return [base if float(a) == 0 else {**base, "transform": {"rotate": a}} for a in tasks["rotated"]]
