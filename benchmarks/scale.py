"""What a config costs per seed: jobs, training compute and disk, from the plan alone.

    python benchmarks/scale.py [--configfile config/config.yaml] [--data-dir ../shared/data]
                               [--experiments a b ...] [--no-dry-run] [--check-growth]
                               [--compare-du RESULTS_DIR]

Nothing is trained. For every experiment of the config (all of them, not only `run`)
whose datasets are in the data dir, for ONE seed:
  - jobs by kind, walked through clpipe.plan as the workflow does: the init, the
    trainings (task 1 from scratch once; every arm its own tasks; a joint arm one job),
    the evaluations (one per model), the importance jobs (compute_importance: the
    importance files the trainings read, and the earlier ones a chained importance step
    reads) and the update_progress jobs (the progress files those read, transitively).
    They are checked against the rule counts of a Snakemake dry run of the experiment
    with one seed (skip with --no-dry-run);
  - training compute in images x passes: each training job's training set (the task's
    train split as clpipe.data.build_tasks makes it; a replay buffer's samples; a joint
    arm every task's split) times its epochs, or the images of `iterations` batches;
    replay in `mode: batch` adds a replay batch per step (counted, and shown apart);
  - evaluation images: every model on every task's test split;
  - disk: the checkpoints ((trainings + 1) model files of the state dict's float32
    tensors) plus the method files (importance, progress, record) and the small files,
    at the bytes per parameter measured on a quick run (constants below); the data
    file (tasks.pt, once per experiment) from the split sizes.
A second table gives the passes outside training (per-epoch validation; the EWC Fisher's
per-sample gradients and the replay scoring in the importance steps). Below the tables,
the growth rules as formulas; --check-growth verifies them against the plan (and the
dry run) by adding one seed or one arm of each kind to a copy of the config.
--compare-du compares the disk estimate with `du -sb <results>/<experiment>/seed<s>` of
a finished run of the same config.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import math
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, add_data_dir_argument, table  # noqa: E402

from clpipe import plan  # noqa: E402
from clpipe.catalog import DATASETS, layout_problems  # noqa: E402
from clpipe.config import validate_config  # noqa: E402
from clpipe.data import build_tasks  # noqa: E402
from clpipe.experiment import Experiment  # noqa: E402
from clpipe.hashing import stable_hash  # noqa: E402
from clpipe.layout import SCRATCH  # noqa: E402
from clpipe.networks import build_model, count_parameters  # noqa: E402

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SNAKEFILE = ROOT / "workflow" / "Snakefile"
KINDS = ("init", "train", "evaluate", "importance", "progress")
RULE_KIND = {
    "init_model": "init",
    "train_first_task": "train",
    "train_next_task": "train",
    "evaluate": "evaluate",
    "compute_importance": "importance",
    "update_progress": "progress",
}

# --- file sizes, measured -------------------------------------------------------------
# On the quick run of config/quick.yaml (/work/fresh2/results/split_mnist_quick/seed0:
# VGG16 at 1/8 width, 32 px, 527,530 parameters, 525,976 of them in kernels, the tensors
# MAG manages; model.pt 2,120,515 B = 4.020 B per parameter). Bytes per parameter of the
# model, each file's size divided by 527,530:
# 5.004: scratch/task1/mag/importance.pt, freezing values (float32) + frozen mask (bool)
MAG_IMPORTANCE_BPP = 2_639_811 / 527_530
MAG_PROGRESS_BPP = 531_699 / 527_530  # 1.008: mag_b20/task2/progress.pt, the frozen mask (bool)
MAG_RECORD_BPP = 531_763 / 527_530  # 1.008: mag_b20/task2/record.pt, the task's newly frozen mask
# ewc/importance.pt holds a Fisher and an anchor (float32 each) per task it covers (the
# node's task t: t terms; online EWC: 1): scratch/task1 4,239,779 B, ewc_l1e2/task2
# 8,478,783 B, so 4,239,004 B = 8.036 B per parameter per term.
EWC_TERM_BPP = (8_478_783 - 4_239_779) / 527_530
# A replay importance.pt lists its buffer (task, position, source index, label: int64;
# score: float32): replay_*_1 at scratch/task1 (113 entries) 7,193 B, replay_*_5 (569
# entries) 23,577 B: 35.9 B per entry and 3.1 kB per file.
REPLAY_ENTRY_BYTES = (23_577 - 7_193) / (569 - 113)
REPLAY_FILE_BYTES = 7_193 - 113 * REPLAY_ENTRY_BYTES
RECORD_BYTES = 1_773  # record.pt of a method that records nothing (metadata only)
PT_FILE_BYTES = 4_000  # a .pt file beyond its tensors (pickle, zip records): 3.3-10.4 kB measured
# Everything but the .pt files (logs, eval.csv, history.csv, *.benchmark.tsv) and the
# folders, as `du -sb` counts them: 452,791 B for the 105 jobs of split_mnist_quick/seed0.
SMALL_BYTES_PER_JOB = 452_791 / 105
# tasks.pt: every split's uint8 images (N x C x H x W) and int64 labels and indices.


@dataclasses.dataclass
class SplitSizes:
    train: int
    val: int
    test: int
    data_bytes: int  # in tasks.pt
    train_labels: Counter  # source label -> count (replay's class-balanced budgets)


@dataclasses.dataclass
class Jobs:
    """The jobs of some seeds: the models (nodes), the importance and the progress files."""

    nodes: list[tuple[int, str, int]]  # (seed, owner, task); task 0 = the random init
    importance: set[tuple[int, str, int, str]]  # (seed, owner, task, method)
    progress: set[tuple[int, str, int]]  # (seed, owner, task)

    def counts(self) -> dict[str, int]:
        c = {
            "init": sum(t == 0 for _, _, t in self.nodes),
            "train": sum(t > 0 for _, _, t in self.nodes),
            "evaluate": len(self.nodes),
            "importance": len(self.importance),
            "progress": len(self.progress),
        }
        return c | {"total": sum(c.values())}


# --- config and data ------------------------------------------------------------------


def load_config(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def experiments_of(raw: dict) -> dict[str, Experiment]:
    return validate_config(copy.deepcopy(raw), str(SCHEMA))


def one_seed(exp: Experiment, seeds: list[int] | None = None) -> Experiment:
    return dataclasses.replace(exp, seeds=seeds if seeds is not None else exp.seeds[:1])


def missing_data(data_dir: Path, exp: Experiment) -> str | None:
    """Why the experiment's datasets cannot be read from data_dir (None: they can)."""
    problems = []
    for name in sorted({t.dataset for t in exp.tasks}):
        info = DATASETS[name]
        if info.kind == "image_folder":
            buckets = sorted({t.bucket for t in exp.tasks if t.dataset == name})
            found = layout_problems(data_dir, info, buckets)
            if found:
                more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
                problems.append(f"{name}: {found[0]}{more}")
        else:
            absent = [rel for rel in info.files if not (data_dir / rel).is_file()]
            if absent:
                problems.append(f"{name}: {data_dir / absent[0]} missing")
    return "; ".join(problems) or None


_SIZES: dict[str, list[SplitSizes]] = {}


def task_sizes(data_dir: Path, exp: Experiment) -> list[SplitSizes]:
    """Split sizes of every task, exactly as the data step makes them (cached by spec)."""
    spec = plan.data_spec(exp)
    key = stable_hash(spec)
    if key not in _SIZES:
        sizes = []
        for t in build_tasks(data_dir, spec):
            nbytes = sum(
                t[s][k].numel() * t[s][k].element_size() for s in ("train", "val", "test") for k in t[s]
            )
            sizes.append(
                SplitSizes(
                    len(t["train"]["y"]),
                    len(t["val"]["y"]),
                    len(t["test"]["y"]),
                    nbytes,
                    Counter(t["train"]["y"].tolist()),
                )
            )
        _SIZES[key] = sizes
    return _SIZES[key]


# --- jobs -------------------------------------------------------------------------------


def planned_jobs(exp: Experiment) -> Jobs:
    """The jobs of the experiment's seeds, through clpipe.plan as the workflow asks."""
    layout = plan.Layout("R")

    def node(path: str) -> tuple[int, str, int]:
        parts = path.split("/")  # R/<exp>/seed<s>/<owner>/task<t>/...
        return int(parts[2].removeprefix("seed")), parts[3], int(parts[4].removeprefix("task"))

    todo = []
    for seed in exp.seeds:
        for arm, a in exp.arms.items():
            for task in range(a.first_task, a.last_task + 1):
                inputs = plan.next_task_inputs(layout, exp, seed, arm, task)
                if "importance" in inputs:
                    todo.append(inputs["importance"])
    importance, progress, progress_todo = set(), set(), []
    while todo:  # a chained importance step reads the previous node's file
        path = todo.pop()
        if path not in importance:
            importance.add(path)
            inputs = plan.importance_inputs(layout, exp, *node(path), path.split("/")[5])
            todo += [inputs["previous"]] if "previous" in inputs else []
            progress_todo += [inputs["progress"]] if "progress" in inputs else []
    while progress_todo:  # and a progress step the previous progress
        path = progress_todo.pop()
        if path not in progress:
            progress.add(path)
            inputs = plan.progress_inputs(layout, exp, *node(path))
            progress_todo += [inputs["previous"]] if "previous" in inputs else []
    return Jobs(
        list(plan.nodes(exp)),
        {(*node(p), p.split("/")[5]) for p in importance},
        {node(p) for p in progress},
    )


def formula_jobs(exp: Experiment) -> dict[str, int]:
    """The same counts from the growth rules (arm structure only, no plan functions)."""
    return plan.jobs_per_seed(exp)


# --- compute ----------------------------------------------------------------------------


def buffer_size(method: dict, sizes: list[SplitSizes], upto: int) -> int:
    """Entries of a replay buffer after tasks 1..upto (clpipe.methods.replay.select)."""
    budget = method["budget"]
    if upto < 1:
        return 0
    if "fraction" in budget:
        return sum(int(float(budget["fraction"]) * s.train) for s in sizes[:upto])
    seen = Counter()
    for s in sizes[:upto]:
        seen.update(s.train_labels)
    if "per_class" in budget:
        return sum(min(int(budget["per_class"]), n) for n in seen.values())
    share, extra = divmod(int(budget["memory"]), max(1, len(seen)))
    return sum(min(share + (i < extra), seen[c]) for i, c in enumerate(sorted(seen)))


def training_job(exp: Experiment, sizes: list[SplitSizes], owner: str, task: int) -> dict[str, int]:
    """Images one training job trains on (x passes), its replay-batch images, validation
    images (after every epoch) and steps."""
    cfg = exp.raw["train"]
    bs = int(cfg["batch_size"])
    n, val, replay_bs = sizes[task - 1].train, sizes[task - 1].val, 0
    if owner != SCRATCH:
        method = exp.method_of(owner)
        if exp.traits_of(owner).joint:
            n, val = sum(s.train for s in sizes[:task]), sum(s.val for s in sizes[:task])
        elif method["type"] == "replay":
            buffered = buffer_size(method, sizes, task - 1)
            if method["mode"] == "concat":
                n += buffered
            elif buffered > 0:
                replay_bs = int(method["replay_batch_size"] or bs)
    per_epoch = max(1, math.ceil(n / bs))  # clpipe.training.total_steps
    steps = int(cfg["iterations"]) if "iterations" in cfg else per_epoch * int(cfg["epochs"])
    epochs, rest = divmod(steps, per_epoch)
    images = epochs * n + min(rest * bs, n)  # only an epoch's last batch is short
    return {
        "images": images + steps * replay_bs,
        "replay": steps * replay_bs,
        "validation": math.ceil(steps / per_epoch) * val,
        "steps": steps,
    }


def importance_images(exp: Experiment, sizes: list[SplitSizes], owner: str, task: int, method: str) -> int:
    """Images an importance step passes through the model (MAG: none, weights only)."""
    m = exp.methods[method]
    n = sizes[task - 1].train
    if m["type"] == "ewc":  # per-sample gradients
        return n if m["fisher_samples"] is None else min(n, int(m["fisher_samples"]))
    if m["type"] == "replay":  # one forward pass to score every sample
        return n
    return 0


# --- disk -------------------------------------------------------------------------------


def model_size(exp: Experiment) -> tuple[int, int]:
    """(parameters, bytes of the state dict) of the experiment's network (on 'meta')."""
    model = build_model(plan.model_spec(exp), device="meta")
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return count_parameters(model), state


def disk(
    exp: Experiment, jobs: Jobs, sizes: list[SplitSizes], params: int, state_bytes: int
) -> dict[str, float]:
    checkpoints = len(jobs.nodes) * (state_bytes + PT_FILE_BYTES)
    methods = 0.0
    for _, _, task, method in jobs.importance:
        m = exp.methods[method]
        if m["type"] == "mag":
            methods += MAG_IMPORTANCE_BPP * params
        elif m["type"] == "ewc":
            methods += (1 if m["online"] else task) * EWC_TERM_BPP * params
        elif m["type"] == "replay":
            methods += REPLAY_FILE_BYTES + REPLAY_ENTRY_BYTES * buffer_size(m, sizes, task)
    methods += len(jobs.progress) * MAG_PROGRESS_BPP * params
    for _, owner, _ in jobs.nodes:  # train_next_task writes the method's record
        if owner != SCRATCH:
            methods += MAG_RECORD_BPP * params if exp.method_of(owner)["type"] == "mag" else RECORD_BYTES
    small = SMALL_BYTES_PER_JOB * jobs.counts()["total"]
    return {"checkpoints": checkpoints, "methods": methods + small, "total": checkpoints + methods + small}


# --- one experiment ---------------------------------------------------------------------


def estimate(exp: Experiment, data_dir: Path) -> dict:
    exp = one_seed(exp)
    sizes = task_sizes(data_dir, exp)
    jobs = planned_jobs(exp)
    params, state_bytes = model_size(exp)
    trainings = [training_job(exp, sizes, o, t) for _, o, t in jobs.nodes if t > 0]
    return {
        "name": exp.name,
        "arms": len(exp.arms),
        "tasks": exp.n_tasks,
        "params": params,
        "jobs": jobs.counts(),
        "formula": formula_jobs(exp),
        "train_images": sum(j["images"] for j in trainings),
        "replay_images": sum(j["replay"] for j in trainings),
        "validation_images": sum(j["validation"] for j in trainings),
        "importance_images": sum(importance_images(exp, sizes, o, t, m) for _, o, t, m in jobs.importance),
        "eval_images": len(jobs.nodes) * sum(s.test for s in sizes),
        "disk": disk(exp, jobs, sizes, params, state_bytes),
        "data_file": sum(s.data_bytes for s in sizes),
        "sizes": sizes,
    }


# --- the dry run ------------------------------------------------------------------------


def dry_run(
    raw: dict, name: str, data_dir: Path, workdir: Path, seeds: list[int] | None = None
) -> dict[str, int]:
    """{rule: count} of `snakemake -n` for one experiment of ``raw`` with the given seeds."""
    cfg = copy.deepcopy(raw)
    cfg.update(data_dir=str(data_dir), results_dir="results", seeds=seeds or [0], run=[name])
    for exp in cfg["experiments"].values():
        exp.pop("seeds", None)
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir)]
    cmd += ["-n", "--quiet", "rules", "--configfile", str(configfile)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(
            f"snakemake dry run of {name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    counts = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def kinds_of(rules: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Rule counts -> (per-seed kinds with total, the per-experiment steps)."""
    kinds = dict.fromkeys(KINDS, 0)
    other = {}
    for rule, n in rules.items():
        if rule in RULE_KIND:
            kinds[RULE_KIND[rule]] += n
        elif rule != "all":
            other[rule] = n
    return kinds | {"total": sum(kinds.values())}, other


# --- growth checks ----------------------------------------------------------------------


def variants(exp: Experiment) -> list[tuple[str, callable, dict[str, int]]]:
    """(change, how it edits the experiment's raw config, the growth rules' Δ jobs)."""
    T = exp.n_tasks
    out = [
        (
            "+1 finetune arm",
            lambda e: e["arms"].update(scale_extra_finetune={"method": "finetune"}),
            {"train": T - 1, "evaluate": T - 1, "importance": 0, "progress": 0},
        ),
        (
            "+1 joint arm",
            lambda e: e["arms"].update(scale_extra_joint={"method": "joint"}),
            {"train": 1, "evaluate": 1, "importance": 0, "progress": 0},
        ),
    ]
    mag = [n for n in exp.arms if exp.method_of(n)["type"] == "mag" and exp.arms[n].last_task < T]
    children = {a.start_from for a in exp.arms.values()}
    # a MAG parent that already has a child arm, and one that has none (its last node is
    # then read for the first time: one more importance and one more progress job)
    parents = [
        next((n for n in mag if n in children), None),
        next((n for n in mag if n not in children), None),
    ]
    for parent in [p for p in parents if p is not None]:
        k = T - exp.arms[parent].last_task  # the tasks the new arm trains
        new_node = 0 if parent in children else 1
        label = "task-C freeze % arm" if exp.arms[parent].last_task == 2 else "freeze % arm"
        label += (
            f" (start_from {parent}, {'it already has a child arm' if new_node == 0 else 'no child arm yet'})"
        )
        out.append(
            (
                f"+1 {label}",
                lambda e, p=parent, k=k: e["arms"].update(
                    scale_extra_mag={"start_from": p, "freeze": [30] * k}
                ),
                {"train": k, "evaluate": k, "importance": k - 1 + new_node, "progress": k - 1 + new_node},
            )
        )
    ewc = [n for n in exp.arms if exp.method_of(n)["type"] == "ewc"]
    if ewc:
        method = exp.arms[ewc[0]].method
        out.append(
            (
                f"+1 EWC lambda arm (method {method})",
                lambda e, m=method: e["arms"].update(scale_extra_ewc={"method": m, "lambda": 1.0}),
                {"train": T - 1, "evaluate": T - 1, "importance": T - 2, "progress": 0},
            )
        )
    replay = [n for n in exp.arms if exp.method_of(n)["type"] == "replay"]
    if replay:
        method = exp.arms[replay[0]].method

        def add_replay(e, m=method):
            e["methods"]["scale_extra_replay"] = copy.deepcopy(e["methods"][m])
            e["arms"]["scale_extra_replay"] = {"method": "scale_extra_replay"}

        out.append(
            (
                f"+1 replay method and its arm (a copy of {method})",
                add_replay,
                {"train": T - 1, "evaluate": T - 1, "importance": T - 1, "progress": 0},
            )
        )
    for _, _, delta in out:
        delta["init"] = 0
        delta["total"] = sum(delta.values())
    return out


def fmt_jobs(c: dict[str, int]) -> str:
    return " / ".join(str(c[k]) for k in ("train", "evaluate", "importance", "progress", "total"))


def signed_jobs(c: dict[str, int]) -> str:
    return " / ".join(f"{c[k]:+d}" for k in ("train", "evaluate", "importance", "progress", "total"))


def diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a[k] - b[k] for k in a}


def check_growth(raw: dict, names: list[str], data_dir: Path, workdir: Path | None) -> bool:
    """Add one seed, or one arm of each kind, to a copy of the config: the change in jobs
    by the growth rules, by the plan, and by the dry run must agree."""
    columns = [
        "experiment",
        "change",
        "rule: Δ jobs per seed (train / eval / importance / progress / total)",
    ]
    columns += ["plan Δ", "dry run Δ", "Δ training images per seed", "Δ disk per seed", "check"]
    print("\n### Growth checks\n")
    print(table(columns))
    ok_all = True
    for name in names:
        base_exp = one_seed(experiments_of(raw)[name])
        base = estimate(base_exp, data_dir)
        base_dry = kinds_of(dry_run(raw, name, data_dir, workdir))[0] if workdir else None
        # one seed more: the plan walked over two seeds at once, less one seed
        seed = base_exp.seeds[0]
        two = planned_jobs(one_seed(base_exp, [seed, seed + 1])).counts()
        dry = (
            diff(kinds_of(dry_run(raw, name, data_dir, workdir, seeds=[0, 1]))[0], base_dry)
            if workdir
            else None
        )
        rows = [
            (
                "+1 seed",
                base["formula"],
                diff(two, base["jobs"]),
                dry,
                base["train_images"],
                base["disk"]["total"],
            )
        ]
        for change, edit, rule in variants(base_exp):
            mod = copy.deepcopy(raw)
            edit(mod["experiments"][name])
            est = estimate(experiments_of(mod)[name], data_dir)
            if est["formula"] != est["jobs"]:
                print(f"note: {name} {change}: the rules give {est['formula']}, the plan {est['jobs']}")
                ok_all = False
            dry = diff(kinds_of(dry_run(mod, name, data_dir, workdir))[0], base_dry) if workdir else None
            d_images = est["train_images"] - base["train_images"]
            rows.append(
                (
                    change,
                    rule,
                    diff(est["jobs"], base["jobs"]),
                    dry,
                    d_images,
                    est["disk"]["total"] - base["disk"]["total"],
                )
            )
        for change, rule, planned, dry, d_images, d_disk in rows:
            ok = planned == rule and (dry is None or dry == planned)
            ok_all &= ok
            print(
                f"| {name} | {change} | {signed_jobs(rule)} | {signed_jobs(planned)} "
                f"| {signed_jobs(dry) if dry else 'not run'} | {d_images:+,} "
                f"| {human_bytes(d_disk, sign=True)} | {'ok' if ok else 'MISMATCH'} |",
                flush=True,
            )
    return ok_all


# --- output -----------------------------------------------------------------------------


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def human_bytes(n: float, sign: bool = False) -> str:
    prefix = ("+" if n >= 0 else "-") if sign else ""
    n = abs(n)
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{prefix}{n / scale:.3g} {unit}"
    return f"{prefix}{n:.0f} B"


def du(path: Path) -> int:
    return int(
        subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    )


GROWTH_RULES = """
Growth rules, per experiment (T tasks; arm a trains n_a = last_a - first_a + 1 tasks itself, a joint arm 1):
- jobs, compute and disk grow linearly with the seeds: S seeds cost S times a row; only the data file and
  the per-experiment steps (download_data, prepare_data, aggregate, plot_*) are made once per experiment;
- trainings per seed = 1 (task 1 from scratch, shared by every arm) + sum over arms of n_a;
- evaluations per seed = trainings + 1 (every model, the random init included);
- importance jobs per seed = sum over importance methods m (MAG, EWC, replay) of the nodes an arm of m
  trains from: task 1 from scratch once per method, each arm's own tasks but its last, and its last too
  when another arm starts from it; update_progress jobs = the same nodes of MAG methods, task 1 excluded;
- total jobs per seed = 1 (init) + trainings + evaluations + importance + progress;
- so a new task-C freeze % arm (start_from an arm that already has one) adds 1 training + 1 evaluation
  per seed (and 1 importance + 1 progress if its parent had no child yet); a finetune arm T-1 + T-1;
  a joint arm 1 + 1; an EWC arm with another lambda (same method) T-1 + T-1 + T-2 importance; a new
  replay method with its arm T-1 + T-1 + T-1 importance;
- training images per seed = sum over training jobs of passes x n, n = n_train(t) (+ the replay buffer in
  mode concat; a joint job: sum_t n_train(t)), passes = epochs or iterations x batch / n; replay in mode
  batch adds steps x replay batch;
- evaluation images per seed = (trainings + 1) x sum_t n_test(t);
- disk per seed = (trainings + 1) x 4 B x parameters (checkpoints) + per MAG importance file 5.0 B per
  parameter, per MAG progress or record file 1.0 B, per EWC importance file 8.0 B x the tasks it holds
  (1 if online), per replay importance file 36 B per buffer entry (measured: the constants above).
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", type=Path, default=ROOT / "config" / "config.yaml")
    add_data_dir_argument(parser)
    parser.add_argument(
        "--experiments", nargs="*", default=None, help="default: every experiment of the config"
    )
    parser.add_argument("--no-dry-run", action="store_true", help="skip the Snakemake dry-run cross-check")
    parser.add_argument(
        "--check-growth", action="store_true", help="verify the growth rules on modified configs"
    )
    parser.add_argument(
        "--compare-du",
        type=Path,
        default=None,
        metavar="RESULTS_DIR",
        help="compare disk with du -sb of a run",
    )
    args = parser.parse_args()
    logging.getLogger("clpipe").setLevel(logging.WARNING)
    data_dir = args.data_dir.resolve()
    raw = load_config(args.configfile)
    experiments = experiments_of(raw)
    names = args.experiments or list(experiments)
    unknown = [n for n in names if n not in experiments]
    if unknown:
        parser.error(
            f"no experiment {', '.join(unknown)} in {args.configfile} (has: {', '.join(experiments)})"
        )

    skipped, results = {}, []
    for name in names:
        reason = missing_data(data_dir, experiments[name])
        if reason:
            skipped[name] = reason
        else:
            results.append(estimate(experiments[name], data_dir))

    print(f"config: {args.configfile}, data: {data_dir}; one seed of each experiment\n")
    columns = ["experiment", "arms", "tasks", "parameters"]
    columns += [
        "jobs per seed (train / eval / importance / progress / total)",
        "training images x passes per seed",
    ]
    columns += ["evaluation images per seed", "disk per seed (checkpoints + importance/progress)"]
    columns += ["data file (per experiment)"]
    print(table(columns))
    for r in results:
        d = r["disk"]
        train = human(r["train_images"])
        if r["replay_images"]:
            train += f" (incl. {human(r['replay_images'])} replay-batch images)"
        print(
            f"| {r['name']} | {r['arms']} | {r['tasks']} | {r['params']:,} | {fmt_jobs(r['jobs'])} | {train} "
            f"| {human(r['eval_images'])} | {human_bytes(d['total'])} ({human_bytes(d['checkpoints'])} + "
            f"{human_bytes(d['methods'])}) | {human_bytes(r['data_file'])} |"
        )
    run = [r for r in results if r["name"] in (raw.get("run") or list(experiments))]
    if run:
        seeds = {r["name"]: len(experiments[r["name"]].seeds) for r in run}
        jobs = sum(r["jobs"]["total"] * seeds[r["name"]] for r in run)
        images = sum(r["train_images"] * seeds[r["name"]] for r in run)
        space = sum(r["disk"]["total"] * seeds[r["name"]] + r["data_file"] for r in run)
        which = ", ".join(f"{n} x {k} seed{'s' if k > 1 else ''}" for n, k in seeds.items())
        print(
            f"\nThe config's run ({which}): {jobs:,} jobs of the kinds above, "
            f"{human(images)} training images x passes, {human_bytes(space)} on disk (data files included)."
        )
    print("\njobs total = 1 (init) + train + eval + importance + progress; every one of them is per seed.")
    if results:
        print("\nOutside training (per seed; not in the table above):\n")
        print(table(["experiment", "validation images (after every epoch)", "importance-step images"]))
        for r in results:
            print(f"| {r['name']} | {human(r['validation_images'])} | {human(r['importance_images'])} |")
        print(
            "\nimportance-step images: EWC's Fisher (per-sample gradients), replay's scoring (forward only)"
        )
    for name, reason in skipped.items():
        print(f"\nskipped {name}: its data is not in {data_dir} ({reason})")
    mismatch = [r for r in results if r["formula"] != r["jobs"]]
    for r in mismatch:
        print(
            f"\nnote: {r['name']}: the growth rules give {fmt_jobs(r['formula'])}, "
            f"the plan {fmt_jobs(r['jobs'])}"
        )
    print(GROWTH_RULES)

    ok = not mismatch
    with tempfile.TemporaryDirectory(prefix="clpipe-scale-") as tmp:
        workdir = None if args.no_dry_run else Path(tmp)
        if workdir is not None and results:
            print("### Snakemake dry run, one seed (`snakemake -n`, rules per kind)\n")
            print(
                table(
                    [
                        "experiment",
                        "dry run: train / eval / importance / progress / total",
                        "per-experiment steps",
                    ]
                )
            )
            notes = []
            for r in results:
                kinds, other = kinds_of(dry_run(raw, r["name"], data_dir, workdir))
                steps = ", ".join(f"{k} {v}" for k, v in sorted(other.items()))
                same = kinds == {"init": 1, **r["jobs"]} | {"total": r["jobs"]["total"]}
                print(f"| {r['name']} | {fmt_jobs(kinds)}{'' if same else ' (differs)'} | {steps} |")
                if not same:
                    ok = False
                    notes.append(f"note: {r['name']}: the dry run plans {kinds}, this script {r['jobs']}")
            print("\n" + ("\n".join(notes) if notes else "The dry run's per-seed jobs match the table."))
        if args.check_growth:
            ok &= check_growth(raw, [r["name"] for r in results], data_dir, workdir)
    if args.compare_du is not None:
        print(f"\n### Disk estimate against du -sb of {args.compare_du}\n")
        print(
            table(
                [
                    "experiment",
                    "estimate per seed",
                    "du -sb seed<s>",
                    "estimate / du",
                    "data file",
                    "tasks.pt",
                ]
            )
        )
        for r in results:
            seed = experiments[r["name"]].seeds[0]
            folder = args.compare_du / r["name"] / f"seed{seed}"
            tasks_pt = args.compare_du / r["name"] / "data" / "tasks.pt"
            if not folder.is_dir():
                print(f"| {r['name']} | {human_bytes(r['disk']['total'])} | missing | | | |")
                continue
            measured = du(folder)
            data = tasks_pt.stat().st_size if tasks_pt.is_file() else None
            estimated = r["disk"]["total"]
            print(
                f"| {r['name']} | {estimated:,.0f} | {measured:,} | {estimated / measured:.3f} "
                f"| {r['data_file']:,} | {f'{data:,}' if data else 'missing'} |"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
