"""VGG16 at 224 px: training images per second by precision and memory layout, the data
path's share of a step, and what that means for the faithful config's wall time per seed.

    python benchmarks/throughput_224.py [--device cuda] [--steps 20] [--batch 32] [--size 224]
                                        [--width 1.0] [--config config/config.yaml] [--data-dir DIR]

Meant for a GPU (issue 9, item 5; every figure is printed with the device's name). It
trains the headline's network (VGG16, 2-way head, Adam 1e-5, batch 32) on MNIST-shaped
uint8 batches through clpipe's own training step pieces, in four variants taken in turns:
fp32; ``train.precision: bf16`` (autocast); ``train.channels_last: true``; both. For
each: median images per second over ``--steps`` steps (after 3 warm-up steps), and the
data path's share of the step (clpipe.data.InputPipeline.train_batch: 28 px uint8 ->
224 px float, 3 channels, on the device; target on a GPU: under 5%). Then the faithful
config's estimated training time per seed: the training images x passes per seed of
every experiment that uses this network (benchmarks/scale.py's count) divided by each
variant's throughput (evaluation, scoring and Fisher passes not included).

On a CPU it runs too (``--size 32 --width 0.125`` is a smoke test), but bf16 autocast
on a CPU without bf16 matrix units is slower than fp32, and the numbers say nothing
about a GPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, add_data_dir_argument, machine_line, sync, table  # noqa: E402

from clpipe.data.pipeline import InputPipeline  # noqa: E402
from clpipe.networks import build_model  # noqa: E402
from clpipe.training import autocast, memory_format  # noqa: E402

VARIANTS = {
    "fp32": {},
    "bf16 autocast": {"precision": "bf16"},
    "channels_last": {"channels_last": True},
    "bf16 + channels_last": {"precision": "bf16", "channels_last": True},
}


def make(variant: dict, args, device: torch.device):
    torch.manual_seed(0)
    spec = {
        "name": "vgg16",
        "width": args.width,
        "dropout": 0.5,
        "init": "glorot",
        "input": {"size": args.size, "channels": 3, "normalize": None},
        "n_outputs": 2,
    }
    model = build_model(spec).to(device)
    layout = memory_format(variant)
    if layout == torch.channels_last:
        model.to(memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, eps=1e-7)
    return model, opt, layout, autocast(variant, device)


def step(model, opt, layout, amp, pipeline, x, y, generator, device) -> tuple[float, float]:
    """Seconds of (the data path, the whole step)."""
    sync(device)
    t0 = time.perf_counter()
    inputs = pipeline.train_batch(x, generator)
    if layout == torch.channels_last:
        inputs = inputs.contiguous(memory_format=layout)
    sync(device)
    t1 = time.perf_counter()
    with amp:
        logits = model(inputs).float()
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sync(device)
    return t1 - t0, time.perf_counter() - t0


def images_times_passes(config: Path, data_dir: Path, size: int, width: float) -> dict[str, int]:
    """Training images x passes per seed of each experiment of ``config`` that trains this
    network (VGG16 of this width at this size), from benchmarks/scale.py's cost model."""
    import scale_cost  # noqa: PLC0415 -- only for the estimate
    import scale_jobs  # noqa: PLC0415

    raw = scale_jobs.load_config(config)
    out = {}
    for name, exp in scale_jobs.experiments_of(raw).items():
        model, inp = exp.raw["model"], exp.raw["input"]
        if model["name"] != "vgg16" or float(model.get("width", 1.0)) != width or inp["size"] != size:
            continue
        if scale_cost.missing_data(data_dir, exp):
            continue
        out[name] = scale_cost.estimate(scale_jobs.one_seed(exp), data_dir)["train_images"]
    return out


def measure(
    device: torch.device,
    variants: list[str],
    steps: int = 20,
    batch: int = 32,
    size: int = 224,
    width: float = 1.0,
) -> dict[str, dict[str, float]]:
    """Per variant: median images per second, step and data-path milliseconds, and the
    data path's share of the step (the variants taken in turns, after 3 warm-up steps)."""
    args = argparse.Namespace(size=size, width=width)
    pipeline = InputPipeline({"size": size, "channels": 3, "normalize": None}, device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 2, (batch,), generator=g).to(device)
    runs = {name: make(VARIANTS[name], args, device) for name in variants}
    data_s: dict[str, list[float]] = {k: [] for k in runs}
    step_s: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(3 + steps):
        for name, (model, opt, layout, amp) in runs.items():
            d, s = step(model, opt, layout, amp, pipeline, x, y, g, device)
            if i >= 3:
                data_s[name].append(d)
                step_s[name].append(s)
    out = {}
    for name in runs:
        step_ms, data_ms = statistics.median(step_s[name]) * 1e3, statistics.median(data_s[name]) * 1e3
        out[name] = {
            "images_per_second": batch / (step_ms / 1e3),
            "step_ms": step_ms,
            "data_path_ms": data_ms,
            "data_path_share": data_ms / step_ms,
        }
    return out


def hours_per_seed(
    config: Path, data_dir: Path, size: int, width: float, measured: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """Training hours per seed of each experiment of ``config`` that trains this network,
    per variant (training steps only)."""
    counts = images_times_passes(config, data_dir, size, width)
    return {
        name: {"train_images": n, **{k: n / v["images_per_second"] / 3600 for k, v in measured.items()}}
        for name, n in counts.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (after 3 warm-up)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    add_data_dir_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(machine_line(device))
    print(
        f"VGG16 width {args.width:g} at {args.size} px, batch {args.batch}, Adam; "
        f"median of {args.steps} steps\n"
    )
    measured = measure(device, args.variants, args.steps, args.batch, args.size, args.width)
    print(table(["variant", "images/s", "vs fp32", "step (ms)", "data path (ms)", "data path share"]))
    base = measured.get("fp32", {}).get("images_per_second")
    for name, m in measured.items():
        rel = f"{m['images_per_second'] / base:.2f}" if base else "-"
        print(
            f"| {name} | {m['images_per_second']:,.1f} | {rel} | {m['step_ms']:.1f} "
            f"| {m['data_path_ms']:.2f} | {m['data_path_share']:.1%} |"
        )

    config = args.config
    hours = hours_per_seed(config, args.data_dir.resolve(), args.size, args.width, measured)
    if not hours:
        print(
            f"\n(no estimate: no experiment of {config} trains this network with its data in {args.data_dir})"
        )
        return 0
    print(f"\nestimated training time per seed ({config.name}; training steps only):\n")
    print(table(["experiment", "training images x passes", *(f"{k} (h)" for k in measured)]))
    for name, row in hours.items():
        cells = " | ".join(f"{row[k]:.1f}" for k in measured)
        print(f"| {name} | {row['train_images'] / 1e6:.2f}M | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
