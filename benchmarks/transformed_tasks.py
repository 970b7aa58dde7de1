"""What tasks defined by a transform cost: Permuted MNIST's ten 60,000-image tasks.

    python benchmarks/transformed_tasks.py [--data-dir ../shared/data] [--tasks 10]
                                           [--workdir DIR]

Builds the data file of ``--tasks`` permuted MNIST tasks (every class, the whole
training split, 10% of it held out for validation) as the data step does: the images
stored once, each task's permutation applied when a step loads it
(clpipe.transforms). For comparison it also writes the file as ten transformed copies
(what a loader dataset per task, or a transform applied by the data step, would store).
It prints each file's size, and the time and peak memory of loading the shared one as a
training job does (clpipe.data.pipeline.load_tasks, in a fresh process: its maximum resident set
from the kernel's accounting), beside the time and memory of loading the copies.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LOAD = """
import sys, time, resource
sys.path.insert(0, {src!r})
from clpipe.data.pipeline import load_tasks
t0 = time.perf_counter()
tasks = load_tasks({path!r})
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, len(tasks))
"""


def build(data_dir: str, n_tasks: int, copies: bool, path: Path) -> None:
    from clpipe import io, transforms
    from clpipe.data.tasks import build_tasks

    spec = {
        "tasks": [{"dataset": "mnist", "classes": list(range(10))}]
        + [
            {"dataset": "mnist", "classes": list(range(10)), "transform": {"permute": i}}
            for i in range(2, n_tasks + 1)
        ],
        "data": {
            "validation_fraction": 0.1,
            "split_seed": 0,
            "max_train_per_task": None,
            "max_test_per_task": None,
        },
    }
    tasks = build_tasks(data_dir, spec)
    if copies:  # each task's images transformed and stored as its own tensor

        def transformed(task):
            splits = {s: {**task[s], "x": transforms.apply(task.get("transform"), task[s]["x"]).clone()}
                      for s in ("train", "val", "test")}  # fmt: skip
            return {k: v for k, v in task.items() if k != "transform"} | splits

        tasks = [transformed(t) for t in tasks]
    io.save(path, "tasks", {"step": "benchmark"}, tasks=tasks, spec=spec)


def load(path: Path) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", LOAD.format(src=str(ROOT / "src"), path=str(path))],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="clpipe-transformed-"))
    print("| stored as | file (MB) | build (s) | load (s) | peak memory of a load (MB) |")
    print("|---|---|---|---|---|")
    for copies in (False, True):
        path = work / f"tasks_{'copies' if copies else 'shared'}.pt"
        t0 = time.perf_counter()
        build(args.data_dir, args.tasks, copies, path)
        built = time.perf_counter() - t0
        seconds, peak = load(path)
        what = f"{args.tasks} transformed copies" if copies else "the images once (transformed on loading)"
        print(
            f"| {what} | {os.path.getsize(path) / 1e6:.0f} | {built:.1f} | {seconds:.2f} | {peak / 1e6:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
