"""Achieved FLOP/s of a VGG16 training step against the machine's own matmul FLOP/s.

    python benchmarks/compute_efficiency.py [--steps 5] [--device cpu|cuda] [--threads N]
                                            [--matmul 2048 3072] [--no-knobs]

One training step -- forward, backward, Adam step (clpipe's build_optimizer, lr 1e-4)
-- of clpipe's VGG16 at 32 px, batch 32, 2 outputs, on a random batch (no data path),
at full width and, for reference, at 1/8 width. Its FLOPs are counted analytically per
layer from the shapes a forward pass sees: a convolution or linear layer does 2 * MACs
forward and 2 * 2 * MACs backward (input gradient and weight gradient; the first layer
has no input gradient); ReLU, pooling, dropout, the loss and Adam's ~10 FLOPs per
parameter are left out (under 1% here). torch.utils.flop_counter.FlopCounterMode's
count of the same forward and backward is printed beside it as a check. The FLOP/s
this gives is divided by the best FLOP/s of a large fp32 matrix product
(``--matmul`` sizes, best of several) measured in the same run, at the same number of
threads. Configurations take turns (each is timed for one step per turn; the matmul
reference once per turn) so noise hits all of them alike; the table gives the best
step (as the matmul is a best, and the least disturbed by other work on the machine)
and, beside it, the median. Besides the default, the knobs: channels_last memory format, oneDNN (mkldnn)
disabled, and one thread. Target (issue 9, CPU): at least 50% for full width.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_note, machine_line, median, sync, table  # noqa: E402

from clpipe.networks import build_model, count_parameters  # noqa: E402
from clpipe.optim import build_optimizer  # noqa: E402

BATCH = 32
TARGET = 0.5
WIDTHS = {"full": 1.0, "1/8": 0.125}


def vgg(width: float) -> nn.Module:
    torch.manual_seed(0)
    spec = {"name": "vgg16", "width": width, "dropout": 0.5, "init": "glorot"}
    return build_model({**spec, "input": {"size": 32, "channels": 3, "normalize": None}, "n_outputs": 2})


def analytic_flops(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(forward, backward) FLOPs of the conv and linear layers for input ``x``."""
    fwd, bwd = [0], [0]

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            macs = output.numel() * module.in_features
        fwd[0] += 2 * macs
        bwd[0] += 2 * macs * (2 if inputs[0].requires_grad else 1)  # weight grad (+ input grad)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        model(x)  # with autograd on, so the layers after the first see inputs that require grad
    finally:
        for h in handles:
            h.remove()
    return fwd[0], bwd[0]


def counted_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """torch.utils.flop_counter's count of one forward and backward."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_flops(n: int, device: torch.device, repeats: int = 3) -> float:
    """Best FLOP/s of an n x n fp32 matrix product."""
    g = torch.Generator(device="cpu").manual_seed(n)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    out = torch.empty(n, n, device=device)
    torch.mm(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


class Config:
    def __init__(self, label: str, width: str, device, threads: int, channels_last=False, mkldnn=True):
        self.label, self.width, self.threads, self.mkldnn = label, width, threads, mkldnn
        self.device = device
        self.model = vgg(WIDTHS[width]).to(device)
        self.x = torch.randn(BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
        self.y = torch.randint(0, 2, (BATCH,), generator=torch.Generator().manual_seed(2)).to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model.parameters(), {"name": "adam", "lr": 1e-4})
        self.times: list[float] = []

    def step(self) -> float:
        torch.set_num_threads(self.threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "TF32 ... on top of oneDNN" noise
            with torch.backends.mkldnn.flags(enabled=self.mkldnn):
                sync(self.device)
                t0 = time.perf_counter()
                loss = F.cross_entropy(self.model(self.x), self.y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                sync(self.device)
                return time.perf_counter() - t0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", type=int, default=5, help="timed steps per configuration (after 2 warm-up)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--matmul", type=int, nargs="+", default=[2048, 3072], help="reference matmul sizes")
    parser.add_argument("--widths", nargs="+", default=list(WIDTHS), choices=list(WIDTHS))
    parser.add_argument("--no-knobs", action="store_true", help="only the default configuration per width")
    return parser


def configurations(widths: list[str], knobs: bool, device: torch.device, threads: int) -> list[Config]:
    """The default per width, then (at full width) the knobs."""
    T = threads
    configs = [Config(f"{w} width, default", w, device, T) for w in widths]
    if knobs and "full" in widths:
        configs += [
            Config("full width, channels_last", "full", device, T, channels_last=True),
            Config("full width, mkldnn off", "full", device, T, mkldnn=False),
        ]
        if T != 1 and device.type == "cpu":
            configs.append(Config("full width, 1 thread", "full", device, 1))
    return configs


def step_flops(widths: list[str], device: torch.device) -> dict[str, tuple[int, int, int, int]]:
    """Per width: (analytic forward FLOPs, analytic backward FLOPs, FlopCounterMode's count, parameters)."""
    flops = {}
    for w in widths:
        model = vgg(WIDTHS[w]).to(device)
        x = torch.randn(BATCH, 3, 32, 32, device=device)
        y = torch.randint(0, 2, (BATCH,), device=device)
        fwd, bwd = analytic_flops(model, x)
        flops[w] = (fwd, bwd, counted_flops(model, x, y), count_parameters(model))
    return flops


def take_turns(
    configs: list[Config], steps: int, matmul: list[int], device: torch.device
) -> dict[int, float]:
    """Time every configuration's steps in turns (into its ``times``); the best matmul
    FLOP/s per thread count, measured once per turn."""
    reference = {t: 0.0 for t in sorted({c.threads for c in configs})}
    for c in configs:  # warm-up
        c.step()
        c.step()
    for _ in range(steps):
        for t in reference:
            torch.set_num_threads(t)
            reference[t] = max(reference[t], *(matmul_flops(n, device) for n in matmul))
        for c in configs:
            c.times.append(c.step())
    return reference


def print_results(configs: list[Config], flops: dict, reference: dict[int, float]) -> None:
    columns = ["configuration", "threads", "ms/step (best)", "ms/step (median)", "achieved GFLOP/s"]
    columns += ["matmul GFLOP/s", "achieved / matmul", "target"]
    print(table(columns))
    for c in configs:
        fwd, bwd, _, _ = flops[c.width]
        seconds = min(c.times)
        achieved = (fwd + bwd) / seconds
        ratio = achieved / reference[c.threads]
        target = f">= {TARGET:.2f}" if c.width == "full" else "(reference)"
        print(
            f"| {c.label} | {c.threads} | {seconds * 1000:.1f} | {median(c.times) * 1000:.1f} "
            f"| {achieved / 1e9:.1f} | {reference[c.threads] / 1e9:.1f} | {ratio:.3f} | {target} |",
            flush=True,
        )


def main() -> int:
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    configs = configurations(args.widths, not args.no_knobs, device, args.threads)
    flops = step_flops(args.widths, device)

    print(machine_line(device))
    for w, (fwd, bwd, counted, n) in flops.items():
        print(
            f"VGG16 {w} width at 32 px, batch {BATCH}: {n / 1e6:.2f}M parameters; analytic FLOPs per step "
            f"{(fwd + bwd) / 1e9:.2f} G (forward {fwd / 1e9:.2f} G, backward {bwd / 1e9:.2f} G); "
            f"FlopCounterMode {counted / 1e9:.2f} G"
        )

    reference = take_turns(configs, args.steps, args.matmul, device)
    torch.set_num_threads(args.threads)
    sizes = " and ".join(f"{n}x{n}" for n in args.matmul)
    print(
        "fp32 matmul reference (best of "
        + ", ".join(f"{t} thread(s): {reference[t] / 1e9:.1f} GFLOP/s" for t in reference)
        + f"; sizes {sizes})\n"
    )
    print_results(configs, flops, reference)
    print(f"\nat the end{load_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
