"""What the methods cost per training step, against plain torch.optim.Adam.

    python benchmarks/method_overhead.py [--steps 30] [--repeats 5] [--device cpu|cuda] [--threads N]

One training step (forward, backward, optimizer step) of a model on a random batch, with
  - plain: torch.optim.Adam (foreach), no method;
  - mag: the same Adam through clpipe's StepScaler (per-element step scale, 20% of every
    kernel frozen), as the MAG method attaches it;
  - ewc: plain Adam plus the EWC penalty's gradient (two earlier tasks) added after
    backward, as the EWC method does.
Variants are timed in turns (plain, mag, ewc, plain, ...) so machine noise hits all of
them alike; the table gives the median step time and the ratio to plain. Targets
(issue 9): MAG at most 1.10x, EWC at most 1.15x.

A second table times replay's scoring (``ExperienceReplay.compute_importance``: one
inference pass over a task's training split, the score of every sample, the buffer
selection) for each score against one evaluation pass (``evaluate_split``) over the same
images with the same batch size, in turns, median of ``--repeats``. Target: at most one
evaluation pass (ratio <= 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MODELS, machine_line, sync, table  # noqa: E402

from clpipe.data.pipeline import InputPipeline, Split, Task  # noqa: E402
from clpipe.evaluation import evaluate_split  # noqa: E402
from clpipe.methods import load_method  # noqa: E402
from clpipe.methods.base import TaskContext  # noqa: E402
from clpipe.methods.ewc import ElasticWeightConsolidation  # noqa: E402
from clpipe.methods.mag import freezing_values, managed_parameters  # noqa: E402
from clpipe.networks import build_model, count_parameters  # noqa: E402
from clpipe.optim import StepScaler  # noqa: E402
from clpipe.scenarios import Scenario  # noqa: E402

# images scored per timing: a full-width VGG16 pass costs ~0.7 GFLOP per image
SCORING_SAMPLES = {
    "vgg16 1/8 width, 32 px": 2000,
    "vgg16 full width, 32 px": 250,
    "mlp 784-256-256-256-10": 10000,
}
SCORES = ("random", "el2n", "entropy", "margin")

BATCH = 32  # images per timed training step


def make_variant(kind: str, model, device):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4, foreach=True)
    after_backward = None
    if kind == "mag":
        params = managed_parameters(model, scale_biases=False)
        scales, frozen = {}, {}
        for _, p in params.items():
            fv = freezing_values(p.detach().cpu(), 1.0)
            k = int(0.2 * fv.numel())
            mask = torch.zeros(fv.numel(), dtype=torch.bool)
            mask[fv.flatten().argsort()[:k]] = True  # the lowest FV: the largest weights
            frozen[p] = mask.view_as(fv)
            scales[p] = torch.where(frozen[p], torch.zeros_like(fv), fv)
        StepScaler(opt, scales, frozen)
    elif kind == "ewc":
        g = torch.Generator().manual_seed(0)
        terms = []
        for t in (1, 2):
            named = list(model.named_parameters())
            terms.append(
                {
                    "task": t,
                    "samples": 100,
                    "fisher": {k: torch.rand(p.shape, generator=g) for k, p in named},
                    "anchor": {
                        k: p.detach().cpu() + 0.01 * torch.randn(p.shape, generator=g) for k, p in named
                    },
                }
            )
        ewc = ElasticWeightConsolidation({})
        ewc.begin_task(
            model, {"terms": terms, "online": False, "labels": "empirical"}, {"lambda": 100.0}, None
        )
        after_backward = ewc.after_backward
    return opt, after_backward


def timed_step(model, variant, pipeline, x, y, device) -> float:
    """Seconds for one forward, backward and optimizer step (synchronised on a GPU)."""
    opt, after_backward = variant
    sync(device)
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(pipeline(x)), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward is not None:
        after_backward(model)
    opt.step()
    sync(device)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant (after 3 warm-up)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each scoring variant")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(machine_line(device) + "\n")
    columns = ["model", "parameters", "batch", "plain Adam (ms/step)", "MAG (ms/step)", "MAG / plain"]
    columns += ["EWC (ms/step)", "EWC / plain"]
    print(table(columns))
    for label in args.models:
        model_spec, input_cfg = MODELS[label]
        torch.manual_seed(0)
        spec = {**model_spec, "input": {**input_cfg, "normalize": None}, "n_outputs": 2}
        models = {k: build_model(spec).to(device) for k in ("plain", "mag", "ewc")}
        for m in models.values():
            m.load_state_dict(models["plain"].state_dict())
        variants = {k: make_variant(k, m, device) for k, m in models.items()}
        pipeline = InputPipeline({**input_cfg, "normalize": None}, device)
        x = torch.randint(0, 256, (BATCH, 1, 28, 28), dtype=torch.uint8, device=device)
        y = torch.randint(0, 2, (BATCH,), device=device)
        times: dict[str, list[float]] = {k: [] for k in models}

        for _ in range(3):
            for kind in models:
                timed_step(models[kind], variants[kind], pipeline, x, y, device)
        for _ in range(args.steps):
            for kind in models:
                times[kind].append(timed_step(models[kind], variants[kind], pipeline, x, y, device))
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        mag, ewc = med["mag"] / med["plain"], med["ewc"] / med["plain"]
        print(
            f"| {label} | {count_parameters(models['plain']) / 1e6:.2f}M | {BATCH} | {med['plain']:.1f} "
            f"| {med['mag']:.1f} | {mag:.3f} | {med['ewc']:.1f} | {ewc:.3f} |",
            flush=True,
        )
    scoring_table(args, device)
    return 0


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def scoring_table(args, device: torch.device) -> None:
    """Replay scoring of a task's training split against one evaluation pass over it."""
    print("\nreplay scoring against one evaluation pass over the same images (batch 1000):\n")
    print(table(["model", "images", "evaluation (s)", *(f"{s} / evaluation" for s in SCORES)]))
    for label in args.models:
        model_spec, input_cfg = MODELS[label]
        torch.manual_seed(0)
        spec = {**model_spec, "input": {**input_cfg, "normalize": None}, "n_outputs": 2}
        model = build_model(spec).to(device)
        pipeline = InputPipeline({**input_cfg, "normalize": None}, device)
        n = SCORING_SAMPLES[label]
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g).to(device)
        split = Split(x, torch.randint(0, 2, (n,), generator=g).to(device), torch.arange(n))
        task = Task(1, "random", (0, 1), split, split, split)
        scenario = Scenario("domain", [[0, 1]])
        ctx = TaskContext(
            task, scenario, pipeline, device, eval_batch_size=1000, generator=g, all_tasks=[task]
        )
        methods = {
            score: load_method(
                {"type": "replay", "score": score, "keep": "hardest", "budget": {"fraction": 0.05}}
            )
            for score in SCORES
        }
        runs = {
            "evaluation": partial(evaluate_split, model, split, 1, scenario, pipeline, 1000),
            **{s: partial(m.compute_importance, model, ctx, None, None) for s, m in methods.items()},
        }
        for fn in runs.values():  # warm-up
            timed(fn, device)
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for k, fn in runs.items():
                times[k].append(timed(fn, device))
        med = {k: statistics.median(v) for k, v in times.items()}
        ratios = " | ".join(f"{med[s] / med['evaluation']:.3f}" for s in SCORES)
        print(f"| {label} | {n:,} | {med['evaluation']:.2f} | {ratios} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
