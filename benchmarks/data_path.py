"""Training throughput of the project's data path against a seed-style DataLoader.

    python benchmarks/data_path.py [--data-dir ../shared/data] [--turns 5] [--stat best|median] [--threads N]
                                   [--workers 0 1 2] [--models ...] [--device cpu|cuda]

One task's training (MNIST classes 0 and 1, batch 32, Adam 1e-4, a 2-way head) of
  - project: the pipeline's own path -- the task's uint8 images already in memory (on
    the device), batches indexed from a seeded permutation, and clpipe's InputPipeline
    scaling, resizing, repeating channels and normalising each batch on the device. It
    runs clpipe.training.train_task itself (on a clpipe.data.pipeline.Task built from the same
    MNIST files, with an empty validation split so no evaluation is timed);
  - DataLoader (w workers): the same model and optimizer trained the way the source
    projects load data -- a torch.utils.data.DataLoader (shuffle, batch 32) over
    torchvision.datasets.MNIST with per-sample PIL transforms: Resize(32),
    Grayscale(num_output_channels=3), ToTensor(), Normalize() for VGG16 at 32 px;
    ToTensor(), Normalize() for the MLP (28 px, 1 channel, as in its source).
Every variant trains the same number of batches per turn, with a new optimizer each
turn, and the variants take turns (rotating the order) so machine noise hits all of
them alike. A DataLoader turn starts a new epoch of its loader (workers are persistent,
started in the warm-up), so each turn pays the loader's pipeline fill once, as each epoch
does. The table gives each variant's images per second in its best turn (``--stat
best``, the default: the turn least disturbed by other work on the machine) or the
median over the turns (``--stat median``), and the ratio project / DataLoader with 0
workers and with the best worker count measured. Targets
(issue 9, CPU): at least 2x for the MLP, at least 1x for both VGG16 widths.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MODELS, add_data_dir_argument, load_note, machine_line, median, sync, table  # noqa: E402

from clpipe.data.pipeline import InputPipeline, Split, Task  # noqa: E402
from clpipe.methods.finetune import FineTune  # noqa: E402
from clpipe.networks import build_model, count_parameters  # noqa: E402
from clpipe.optim import build_optimizer  # noqa: E402
from clpipe.scenarios import Scenario  # noqa: E402
from clpipe.training import train_task  # noqa: E402

CLASSES = [0, 1]
BATCH = 32
OPTIMIZER = {"name": "adam", "lr": 1e-4}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

# per model of common.MODELS: (batches per turn, target ratio project / DataLoader)
TURNS_AND_TARGETS = {
    "vgg16 1/8 width, 32 px": (8, 1.0),
    "vgg16 full width, 32 px": (2, 1.0),
    "mlp 784-256-256-256-10": (32, 2.0),
}


def mnist_files(data_dir: Path) -> Path:
    raw = data_dir / "MNIST" / "raw"
    needed = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    missing = [n for n in needed if not (raw / n).is_file()]
    if missing:
        sys.exit(
            f"error: MNIST not found: {', '.join(str(raw / n) for n in missing)} missing.\n"
            f"Pass --data-dir pointing at a folder with MNIST/raw/*-ubyte (torchvision's layout)."
        )
    return raw


def input_cfg_of(input_cfg: dict) -> dict:
    c = input_cfg["channels"]
    return {**input_cfg, "normalize": {"mean": [MNIST_MEAN] * c, "std": [MNIST_STD] * c}}


def source_transform(input_cfg: dict):
    from torchvision import transforms

    c = input_cfg["channels"]
    steps = []
    if input_cfg["size"] != 28:
        steps.append(transforms.Resize(input_cfg["size"]))
    if c != 1:
        steps.append(transforms.Grayscale(num_output_channels=c))
    steps += [transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,) * c, (MNIST_STD,) * c)]
    return transforms.Compose(steps)


class Project:
    """clpipe's path: train_task on a Task of uint8 tensors already on the device."""

    def __init__(self, model, task: Task, input_cfg: dict, device: torch.device):
        self.model, self.task = model, task
        self.pipeline = InputPipeline(input_cfg_of(input_cfg), device)
        self.scenario = Scenario("domain", [CLASSES])
        self.generator = torch.Generator().manual_seed(0)

    def run(self, batches: int) -> int:
        train_task(
            self.model,
            self.task,
            scenario=self.scenario,
            pipeline=self.pipeline,
            train_cfg={"batch_size": BATCH, "iterations": batches, "optimizer": OPTIMIZER},
            method=FineTune({}),
            generator=self.generator,
            eval_batch_size=1000,
        )
        return batches * BATCH


class Loader:
    """The sources' path: a DataLoader over a torchvision dataset, per-sample PIL transforms."""

    def __init__(self, model, dataset, workers: int, device: torch.device):
        self.model, self.device = model, device
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=BATCH,
            shuffle=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(0),
        )

    def run(self, batches: int) -> int:
        model = self.model
        model.train()
        optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], OPTIMIZER)
        seen, running_loss = 0, 0.0
        for b, (x, y) in enumerate(self.loader):  # a new epoch every turn
            x, y = x.to(self.device), y.to(self.device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()  # the sources log the running loss
            seen += len(y)
            if b + 1 == batches:
                break
        return seen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir_argument(parser)
    parser.add_argument("--turns", type=int, default=5, help="timed turns per variant (after a warm-up)")
    parser.add_argument(
        "--batches",
        type=int,
        default=None,
        help="batches per turn (default: per model, a few hundred images)",
    )
    parser.add_argument(
        "--stat", choices=["best", "median"], default="best", help="per variant, over the turns"
    )
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 1, 2], help="DataLoader num_workers")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    return parser


def import_torchvision():
    try:
        import torchvision
    except ImportError as err:
        sys.exit(
            f"error: torchvision does not import ({err}); see /work/shared/env/install-torchvision-compat.sh"
        )
    return torchvision


def mnist_task(torchvision, data_dir: Path, device: torch.device) -> tuple[Task, torch.Tensor]:
    """(the CLASSES of MNIST's training set as a Task on the device, with empty validation
    and test splits; their rows in the training set)."""
    dataset = torchvision.datasets.MNIST(root=str(data_dir), train=True, download=False)
    labels = torch.as_tensor(dataset.targets)
    keep = torch.nonzero(torch.isin(labels, torch.tensor(CLASSES))).flatten()
    images = torch.as_tensor(dataset.data)[keep].unsqueeze(1).contiguous()  # uint8 N x 1 x 28 x 28
    empty = torch.zeros(0, dtype=torch.int64)
    task = Task(
        1,
        "mnist",
        tuple(CLASSES),
        Split(images, labels[keep], keep),
        Split(images[:0], labels[:0], empty),
        Split(images[:0], labels[:0], empty),
    ).to(device)
    return task, keep


def build_variants(
    torchvision, label: str, task: Task, keep: torch.Tensor, data_dir: Path, workers: list[int], device
) -> dict[str, Project | Loader]:
    """The project's path and a DataLoader per worker count, each with its own copy of one
    initial model of ``label``."""
    model_spec, input_cfg = MODELS[label]
    torch.manual_seed(0)
    spec = {**model_spec, "input": input_cfg_of(input_cfg), "n_outputs": len(CLASSES)}
    init = build_model(spec).state_dict()
    transformed = torchvision.datasets.MNIST(
        root=str(data_dir),
        train=True,
        download=False,
        transform=source_transform(input_cfg),
    )
    subset = torch.utils.data.Subset(transformed, keep.tolist())
    variants = {}
    for name in ["project"] + [f"w={w}" for w in workers]:
        model = build_model(spec).to(device)
        model.load_state_dict(init)
        if name == "project":
            variants[name] = Project(model, task, input_cfg, device)
        else:
            variants[name] = Loader(model, subset, int(name[2:]), device)
    return variants


def take_turns(
    variants: dict[str, Project | Loader], turns: int, batches: int, device: torch.device
) -> dict[str, list[float]]:
    """Images per second of each variant in each timed turn, the variants taking turns."""
    rates: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for turn in range(turns + 1):  # turn 0: warm-up (and the workers' start)
        for name in order:
            sync(device)
            t0 = time.perf_counter()
            seen = variants[name].run(batches if turn else 2)
            sync(device)
            if turn:
                rates[name].append(seen / (time.perf_counter() - t0))
        order = order[1:] + order[:1]
    return rates


def result_row(
    label: str, model: torch.nn.Module, rates: dict[str, list[float]], args, batches: int, target: float
) -> str:
    """One model's row: each variant's rate (best or median turn) and the ratios."""
    med = {k: (max(v) if args.stat == "best" else median(v)) for k, v in rates.items()}
    best = max((k for k in med if k != "project"), key=med.get)
    row = [label, f"{count_parameters(model) / 1e6:.2f}M", str(batches * BATCH)]
    row += [f"{med['project']:.0f}"] + [f"{med[f'w={w}']:.0f}" for w in args.workers]
    row += [f"{med['project'] / med['w=0']:.3f}", best, f"{med['project'] / med[best]:.3f}"]
    row += [f">= {target:.2f}"]
    return "| " + " | ".join(row) + " |"


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    if 0 not in args.workers:
        parser.error("--workers must include 0 (the ratio column is against num_workers=0)")
    data_dir = args.data_dir.resolve()
    mnist_files(data_dir)
    torchvision = import_torchvision()
    logging.getLogger("clpipe").setLevel(logging.WARNING)  # train_task's per-epoch lines
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task, keep = mnist_task(torchvision, data_dir, device)

    print(machine_line(device, f"torchvision {torchvision.__version__}"))
    print(
        f"MNIST classes {CLASSES} ({len(keep)} training images) from {data_dir}; "
        f"batch {BATCH}, Adam lr {OPTIMIZER['lr']}; {args.turns} turns ({args.stat} turn per variant); "
        f"DataLoader workers {args.workers}\n"
    )
    columns = ["model", "parameters", "images/turn", "project (img/s)"]
    columns += [f"DataLoader w={w} (img/s)" for w in args.workers]
    columns += ["project / w=0", "best DataLoader", "project / best", "target"]
    print(table(columns))
    for label in args.models:
        batches, target = TURNS_AND_TARGETS[label]
        batches = args.batches or batches
        variants = build_variants(torchvision, label, task, keep, data_dir, args.workers, device)
        rates = take_turns(variants, args.turns, batches, device)
        print(result_row(label, variants["project"].model, rates, args, batches, target), flush=True)
        for v in variants.values():  # stop the persistent workers before the next model
            if isinstance(v, Loader):
                del v.loader
    print(f"\nat the end{load_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
