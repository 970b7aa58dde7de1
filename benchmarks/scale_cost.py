"""benchmarks/scale.py's cost model: the data an experiment reads, the training compute
of its jobs (images x passes) and their disk, for one seed."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_jobs import Jobs, formula_jobs, one_seed, planned_jobs  # noqa: E402

from clpipe import plan  # noqa: E402
from clpipe.catalog import DATASETS, layout_problems  # noqa: E402
from clpipe.data.tasks import build_tasks  # noqa: E402
from clpipe.experiment import Experiment  # noqa: E402
from clpipe.hashing import stable_hash  # noqa: E402
from clpipe.layout import SCRATCH  # noqa: E402
from clpipe.methods.replay import class_quotas, fraction_quota  # noqa: E402
from clpipe.networks import build_model, count_parameters  # noqa: E402
from clpipe.training import total_steps  # noqa: E402

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


# --- data -------------------------------------------------------------------------------


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


# --- compute ----------------------------------------------------------------------------


def buffer_size(method: dict, sizes: list[SplitSizes], upto: int) -> int:
    """Entries of a replay buffer after tasks 1..upto (clpipe.methods.replay.select)."""
    budget = method["budget"]
    if upto < 1:
        return 0
    if "fraction" in budget:
        return sum(fraction_quota(budget, s.train) for s in sizes[:upto])
    seen = Counter()
    for s in sizes[:upto]:
        seen.update(s.train_labels)
    quota = class_quotas(budget, sorted(seen))
    return sum(min(quota[c], n) for c, n in seen.items())


def training_set(exp: Experiment, sizes: list[SplitSizes], owner: str, task: int) -> tuple[int, int, int]:
    """(training samples, validation samples, replay batch size) of one training job."""
    n, val = sizes[task - 1].train, sizes[task - 1].val
    if owner == SCRATCH:
        return n, val, 0
    method = exp.method_of(owner)
    if exp.traits_of(owner).joint:
        return sum(s.train for s in sizes[:task]), sum(s.val for s in sizes[:task]), 0
    if method["type"] != "replay":
        return n, val, 0
    buffered = buffer_size(method, sizes, task - 1)
    if method["mode"] == "concat":
        return n + buffered, val, 0
    if buffered > 0:
        return n, val, int(method["replay_batch_size"] or exp.raw["train"]["batch_size"])
    return n, val, 0


def training_job(exp: Experiment, sizes: list[SplitSizes], owner: str, task: int) -> dict[str, int]:
    """Images one training job trains on (x passes), its replay-batch images, validation
    images (after every epoch) and steps."""
    cfg = exp.raw["train"]
    bs = int(cfg["batch_size"])
    n, val, replay_bs = training_set(exp, sizes, owner, task)
    per_epoch, steps = total_steps(n, cfg)
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


def importance_bytes(exp: Experiment, sizes: list[SplitSizes], params: int, task: int, method: str) -> float:
    """Bytes of one importance file of ``method`` at a node of task ``task``."""
    m = exp.methods[method]
    if m["type"] == "mag":
        return MAG_IMPORTANCE_BPP * params
    if m["type"] == "ewc":
        return (1 if m["online"] else task) * EWC_TERM_BPP * params
    if m["type"] == "replay":
        return REPLAY_FILE_BYTES + REPLAY_ENTRY_BYTES * buffer_size(m, sizes, task)
    return 0.0


def disk(
    exp: Experiment, jobs: Jobs, sizes: list[SplitSizes], params: int, state_bytes: int
) -> dict[str, float]:
    checkpoints = len(jobs.nodes) * (state_bytes + PT_FILE_BYTES)
    methods = 0.0
    for _, _, task, method in jobs.importance:
        methods += importance_bytes(exp, sizes, params, task, method)
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
