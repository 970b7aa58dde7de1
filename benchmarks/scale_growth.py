"""benchmarks/scale.py's growth rules: the formulas, and ``--check-growth``, which adds
one seed or one arm of each kind to a copy of the config and compares the change in jobs
by the rules, by the plan and by a Snakemake dry run."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table  # noqa: E402
from scale_cost import estimate, human_bytes  # noqa: E402
from scale_jobs import diff, dry_run, experiments_of, kinds_of, one_seed, planned_jobs, signed_jobs  # noqa: E402

from clpipe.experiment import Experiment  # noqa: E402

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

Variant = tuple[str, Callable[[dict], None], dict[str, int]]

# --- the variants -----------------------------------------------------------------------


def mag_variants(exp: Experiment) -> list[Variant]:
    """A task-C freeze % arm under a MAG parent that has a child arm, and one that has none."""
    T = exp.n_tasks
    mag = [n for n in exp.arms if exp.method_of(n)["type"] == "mag" and exp.arms[n].last_task < T]
    children = {a.start_from for a in exp.arms.values()}
    # a MAG parent that already has a child arm, and one that has none (its last node is
    # then read for the first time: one more importance and one more progress job)
    parents = [
        next((n for n in mag if n in children), None),
        next((n for n in mag if n not in children), None),
    ]
    out = []
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
    return out


def ewc_variants(exp: Experiment) -> list[Variant]:
    """An EWC arm with another lambda, of the first EWC arm's method."""
    T = exp.n_tasks
    ewc = [n for n in exp.arms if exp.method_of(n)["type"] == "ewc"]
    if not ewc:
        return []
    method = exp.arms[ewc[0]].method
    return [
        (
            f"+1 EWC lambda arm (method {method})",
            lambda e, m=method: e["arms"].update(scale_extra_ewc={"method": m, "lambda": 1.0}),
            {"train": T - 1, "evaluate": T - 1, "importance": T - 2, "progress": 0},
        )
    ]


def replay_variants(exp: Experiment) -> list[Variant]:
    """A new replay method (a copy of the first replay arm's) and its arm."""
    T = exp.n_tasks
    replay = [n for n in exp.arms if exp.method_of(n)["type"] == "replay"]
    if not replay:
        return []
    method = exp.arms[replay[0]].method

    def add_replay(e, m=method):
        e["methods"]["scale_extra_replay"] = copy.deepcopy(e["methods"][m])
        e["arms"]["scale_extra_replay"] = {"method": "scale_extra_replay"}

    return [
        (
            f"+1 replay method and its arm (a copy of {method})",
            add_replay,
            {"train": T - 1, "evaluate": T - 1, "importance": T - 1, "progress": 0},
        )
    ]


def variants(exp: Experiment) -> list[Variant]:
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
    out += mag_variants(exp) + ewc_variants(exp) + replay_variants(exp)
    for _, _, delta in out:
        delta["init"] = 0
        delta["total"] = sum(delta.values())
    return out


# --- the checks -------------------------------------------------------------------------


def dry_kinds(
    raw: dict, name: str, data_dir: Path, workdir: Path | None, seeds: list[int] | None = None
) -> dict[str, int] | None:
    """Per-seed kinds of a dry run of one experiment of ``raw`` (None: no dry run)."""
    return kinds_of(dry_run(raw, name, data_dir, workdir, seeds=seeds))[0] if workdir else None


def growth_rows(raw: dict, name: str, data_dir: Path, workdir: Path | None) -> tuple[list[tuple], bool]:
    """One experiment's rows (change, rule, plan Δ, dry run Δ, Δ images, Δ disk), and
    whether the rules and the plan agree on every modified config."""
    base_exp = one_seed(experiments_of(raw)[name])
    base = estimate(base_exp, data_dir)
    base_dry = dry_kinds(raw, name, data_dir, workdir)
    # one seed more: the plan walked over two seeds at once, less one seed
    seed = base_exp.seeds[0]
    two = planned_jobs(one_seed(base_exp, [seed, seed + 1])).counts()
    dry = dry_kinds(raw, name, data_dir, workdir, seeds=[0, 1])
    rows = [
        (
            "+1 seed",
            base["formula"],
            diff(two, base["jobs"]),
            diff(dry, base_dry) if workdir else None,
            base["train_images"],
            base["disk"]["total"],
        )
    ]
    ok = True
    for change, edit, rule in variants(base_exp):
        mod = copy.deepcopy(raw)
        edit(mod["experiments"][name])
        est = estimate(experiments_of(mod)[name], data_dir)
        if est["formula"] != est["jobs"]:
            print(f"note: {name} {change}: the rules give {est['formula']}, the plan {est['jobs']}")
            ok = False
        dry = dry_kinds(mod, name, data_dir, workdir)
        rows.append(
            (
                change,
                rule,
                diff(est["jobs"], base["jobs"]),
                diff(dry, base_dry) if workdir else None,
                est["train_images"] - base["train_images"],
                est["disk"]["total"] - base["disk"]["total"],
            )
        )
    return rows, ok


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
        rows, ok_all_variants = growth_rows(raw, name, data_dir, workdir)
        ok_all &= ok_all_variants
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
