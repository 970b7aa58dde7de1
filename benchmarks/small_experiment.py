"""A small experiment from scratch: what each step costs beyond its work, against one plain process.

    python benchmarks/small_experiment.py [--data-dir ../shared/data] [--cores 1 2]
                                          [--experiment split_mnist_mlp_quick] [--repeats 5]

The experiment is ``split_mnist_mlp_quick`` of config/quick.yaml (5-task Split MNIST,
task-incremental, MLP 784-400-400, Adam 1e-3, 2,000 iterations per task, batch 128, one
seed; fine-tuning and EWC: 31 steps). The script

1. times ``python -c "import torch"`` (``--repeats`` times, median) and the imports the
   figure steps need (pandas, matplotlib, seaborn), in fresh interpreters, in this run;
2. runs the experiment from scratch through Snakemake at each ``--cores``, each in its
   own folder, and reads back each step's wall time (its ``benchmark:`` file) and the
   time it spent in its work, measured inside the step: a training job's loops
   (``history.csv``), an evaluation's passes (``eval.csv``), an importance step's pass
   (its file's ``compute_seconds``);
3. runs the same protocol as one plain Python process calling the package's own step
   functions in the DAG's order (the same files, specs and threads), and times it whole.

It prints one table per run: each step kind's median wall time, against ``import
torch`` and, for training, the time outside its loop beyond that import; the run's wall
time and its *efficiency* (time in loops and passes / the run's total CPU time, every
process included); and the plain process's wall time against the pipeline's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SNAKEFILE = ROOT / "workflow" / "Snakefile"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

from common import add_data_dir_argument, load_note  # noqa: E402

STEP_OF_BENCHMARK = {
    "init_model.benchmark.tsv": "init_model",
    "train.benchmark.tsv": "train",
    "evaluate.benchmark.tsv": "evaluate",
    "compute_importance.benchmark.tsv": "compute_importance",
    "update_progress.benchmark.tsv": "update_progress",
    "prepare_data.benchmark.tsv": "prepare_data",
    "aggregate.benchmark.tsv": "aggregate",
    "plot_experiment.benchmark.tsv": "plot_experiment",
    "plot_freeze.benchmark.tsv": "plot_setting_figure",  # MAG's own figure, freeze
}


def fresh_seconds(code: str, repeats: int) -> float:
    """Median wall time of ``python -c code`` in a fresh interpreter."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


SHORTER: dict = {}  # --iterations / --tasks: a shorter protocol (the smoke test's)


def config_for(work: Path, data_dir: Path, experiment: str) -> Path:
    cfg = yaml.safe_load((ROOT / "config" / "quick.yaml").read_text())
    cfg["data_dir"] = str(data_dir)
    cfg["run"] = [experiment]
    exp = cfg["experiments"][experiment]
    if SHORTER.get("iterations"):
        exp["train"]["iterations"] = SHORTER["iterations"]
    if SHORTER.get("tasks"):
        exp["tasks"] = exp["tasks"][: SHORTER["tasks"]]
    cfg["experiments"] = {experiment: exp}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def timed_process(cmd: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and everything it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def step_times(results: Path) -> dict[str, list[float]]:
    """Each step kind's wall times, from the steps' benchmark files."""
    found: dict[str, list[float]] = defaultdict(list)
    for tsv in results.rglob("*.benchmark.tsv"):
        if tsv.parent.name == "accuracy_matrix":
            kind = "plot_accuracy_matrix"
        elif tsv.parent.name == "datasets":
            kind = "download_data"
        else:
            kind = STEP_OF_BENCHMARK.get(tsv.name, tsv.name)
        if kind == "train":
            kind = "train_first_task" if "/scratch/" in str(tsv) else "train_next_task"
        lines = tsv.read_text().splitlines()
        found[kind].append(float(lines[1].split("\t")[0]))
    return found


def work_inside(results: Path) -> dict[str, float]:
    """Seconds spent in the steps' work, measured inside them."""
    import pandas as pd
    import torch

    out = {"training loops": 0.0, "evaluation passes": 0.0, "importance passes": 0.0}
    loops = {}
    for history in results.rglob("history.csv"):
        seconds = float(pd.read_csv(history)["seconds"].sum())
        out["training loops"] += seconds
        loops[str(history.parent)] = seconds
    for evaluation in results.rglob("eval.csv"):
        frame = pd.read_csv(evaluation)
        if "seconds" in frame.columns:
            out["evaluation passes"] += float(frame["seconds"].sum())
    for importance in results.rglob("importance.pt"):
        meta = torch.load(importance, weights_only=True)["meta"]
        out["importance passes"] += float(meta.get("compute_seconds", 0.0))
    return out | {"_loops": loops}


def pipeline_run(work: Path, data_dir: Path, experiment: str, cores: int) -> dict:
    cfg = config_for(work, data_dir, experiment)
    wall, cpu = timed_process(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(SNAKEFILE),
            "--directory",
            str(work),
            "--cores",
            str(cores),
            "--configfile",
            str(cfg),
        ]  # fmt: skip
    )
    results = work / "results"
    steps = step_times(results)
    inside = work_inside(results)
    train_walls = {}
    for tsv in results.rglob("train.benchmark.tsv"):
        train_walls[str(tsv.parent)] = float(tsv.read_text().splitlines()[1].split("\t")[0])
    outside = [train_walls[k] - inside["_loops"].get(k, 0.0) for k in train_walls]
    work_s = sum(v for k, v in inside.items() if not k.startswith("_"))
    return {
        "cores": cores,
        "wall": wall,
        "cpu": cpu,
        "steps": {k: statistics.median(v) for k, v in steps.items()},
        "counts": {k: len(v) for k, v in steps.items()},
        "inside": {k: v for k, v in inside.items() if not k.startswith("_")},
        "train_outside_loop": statistics.median(outside) if outside else float("nan"),
        "efficiency": work_s / cpu if cpu else float("nan"),
    }


PLAIN = """
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {src!r})
import yaml
from clpipe import plan
from clpipe.aggregate import write_tables
from clpipe.config import validate_config
from clpipe.figures import draw_accuracy_matrix, draw_experiment
from clpipe.layout import SCRATCH
from clpipe.runtime import make_runtime
from clpipe.steps.importance import compute_importance
from clpipe.steps.evaluate import evaluate
from clpipe.steps.init import init_model
from clpipe.steps.prepare import prepare_data
from clpipe.steps.train import train_first_task, train_next_task

cfg = yaml.safe_load(open({config!r}))
exp = validate_config(cfg, {schema!r})[{experiment!r}]
L = plan.Layout({results!r})
rt = make_runtime("cpu", deterministic=True, threads=exp.resources["train"]["threads"])
data = L.data(exp.name)
prepare_data(cfg["data_dir"], plan.data_spec(exp), data)
for seed in exp.seeds:
    m = lambda owner, task: L.model(exp.name, seed, owner, task)
    init_model(plan.init_spec(exp, seed), m(SCRATCH, 0), rt)
    train_first_task(m(SCRATCH, 0), data, plan.training_spec(exp, seed, 1), m(SCRATCH, 1),
                     L.history(exp.name, seed, SCRATCH, 1), rt)
    done = set()
    def consolidate(owner, task, method):
        if (owner, task, method) in done:
            return
        done.add((owner, task, method))
        inp = plan.importance_inputs(L, exp, seed, owner, task, method)
        out = L.importance(exp.name, seed, owner, task, method)
        spec = plan.importance_spec(exp, seed, task, method)
        previous, progress = inp.get("previous"), inp.get("progress")
        compute_importance(inp["model"], data, progress, previous, spec, out, rt)
    for arm in exp.arms:
        a = exp.arms[arm]
        for task in range(a.first_task, a.last_task + 1):
            inp = plan.next_task_inputs(L, exp, seed, arm, task)
            if "importance" in inp:
                owner, prev = plan.parent_node(exp, arm, task)
                consolidate(owner, prev, a.method)
            spec = plan.next_task_spec(exp, seed, arm, task)
            history, record = L.history(exp.name, seed, arm, task), L.record(exp.name, seed, arm, task)
            imp = inp.get("importance")
            train_next_task(inp["model"], data, imp, spec, m(arm, task), history, record, rt)
    for s, owner, task in plan.nodes(exp):
        evaluate(L.model(exp.name, s, owner, task), data, plan.evaluation_spec(exp, s, owner, task),
                 L.evaluation(exp.name, s, owner, task), rt)
out = L.aggregate_outputs(exp.name)
write_tables(plan.evaluation_files(L, exp), plan.history_files(L, exp), plan.aggregate_spec(exp),
             out["metrics"], out["summary"], out["matrix"], out["training"], out["markdown"],
             out["summary_html"], out["matrix_html"])
figures = L.experiment_file(exp.name, "figures")
draw_experiment(plan.figures_spec(exp), out["metrics"], out["summary"], out["training"], figures)
for arm in exp.arms:
    draw_accuracy_matrix(out["matrix"], arm, f"{{figures}}/accuracy_matrix/{{arm}}")
print("plain process done in", time.perf_counter() - t0)
"""


def plain_run(work: Path, data_dir: Path, experiment: str) -> dict:
    cfg = config_for(work, data_dir, experiment)
    code = PLAIN.format(
        src=str(ROOT / "src"), config=str(cfg), schema=str(ROOT / "workflow/schemas/config.schema.yaml"),
        experiment=experiment, results=str(work / "results"),
    )  # fmt: skip
    wall, cpu = timed_process([sys.executable, "-c", code], cwd=work)
    return {"wall": wall, "cpu": cpu, "inside": work_inside(work / "results")}


def report(runs: list[dict], plain: dict, torch_s: float, figures_s: float) -> None:
    print(f'`python -c "import torch"`: {torch_s:.2f} s; pandas + matplotlib + seaborn: {figures_s:.2f} s\n')
    kinds = sorted({k for r in runs for k in r["steps"]})
    print("| step | jobs | " + " | ".join(f"--cores {r['cores']} (s)" for r in runs) + " | / import torch |")
    print("|---|---|" + "---|" * len(runs) + "---|")
    for kind in kinds:
        walls = [r["steps"].get(kind, float("nan")) for r in runs]
        base = figures_s if kind.startswith("plot_") else torch_s
        ratio = walls[0] / base
        what = "/ figure imports" if kind.startswith("plot_") else ""
        print(f"| {kind} | {runs[0]['counts'].get(kind, 0)} | " + " | ".join(f"{w:.2f}" for w in walls)
              + f" | {ratio:.2f} {what} |")  # fmt: skip
    print()
    for r in runs:
        inside = sum(r["inside"].values())
        print(
            f"--cores {r['cores']}: wall {r['wall']:.1f} s, CPU {r['cpu']:.1f} s, in loops and passes "
            f"{inside:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in r['inside'].items())}), efficiency "
            f"{r['efficiency']:.2f}; a training job outside its loop, beyond import torch: "
            f"{r['train_outside_loop'] - torch_s:.2f} s"
        )
    print(f"\none plain process, the same protocol: wall {plain['wall']:.1f} s (CPU {plain['cpu']:.1f} s)")
    for r in runs:
        print(f"pipeline at --cores {r['cores']} / plain process: {r['wall'] / plain['wall']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir_argument(parser)
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--experiment", default="split_mnist_mlp_quick")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--iterations", type=int, help="a shorter protocol: iterations per task")
    parser.add_argument("--tasks", type=int, help="a shorter protocol: the first N tasks")
    args = parser.parse_args()
    SHORTER.update(iterations=args.iterations, tasks=args.tasks)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")  # fmt: skip
    print(f"machine: {cpu}, {os.cpu_count()} cores{load_note()}; experiment {args.experiment}\n")
    torch_s = fresh_seconds("import torch", args.repeats)
    figures_s = fresh_seconds("import pandas, matplotlib.pyplot, seaborn", args.repeats)
    runs = []
    with tempfile.TemporaryDirectory(prefix="small_experiment_") as tmp:
        for cores in args.cores:
            work = Path(tmp) / f"cores{cores}"
            work.mkdir()
            runs.append(pipeline_run(work, args.data_dir.resolve(), args.experiment, cores))
        plain_dir = Path(tmp) / "plain"
        plain_dir.mkdir()
        plain = plain_run(plain_dir, args.data_dir.resolve(), args.experiment)
        shutil.rmtree(plain_dir, ignore_errors=True)
    report(runs, plain, torch_s, figures_s)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "plain": plain, "import_torch": torch_s,
                                         "figure_imports": figures_s}, indent=1, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
