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
    train split as clpipe.data.tasks.build_tasks makes it; a replay buffer's samples; a joint
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

This file is the command line and its tables; the job counting (the plan walk, the dry
run) is in scale_jobs.py, the cost model (split sizes, compute, the measured file sizes,
disk) in scale_cost.py, the growth rules and --check-growth in scale_growth.py.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, add_data_dir_argument, table  # noqa: E402
from scale_cost import estimate, human, human_bytes, missing_data  # noqa: E402
from scale_growth import GROWTH_RULES, check_growth  # noqa: E402
from scale_jobs import dry_run, experiments_of, fmt_jobs, kinds_of, load_config  # noqa: E402

from clpipe.experiment import Experiment  # noqa: E402


def du(path: Path) -> int:
    return int(
        subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    )


# --- the command line -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
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
    return parser


def estimate_all(
    experiments: dict[str, Experiment], names: list[str], data_dir: Path
) -> tuple[list[dict], dict[str, str]]:
    """(the estimates of the experiments whose data is there, {skipped experiment: why})."""
    skipped, results = {}, []
    for name in names:
        reason = missing_data(data_dir, experiments[name])
        if reason:
            skipped[name] = reason
        else:
            results.append(estimate(experiments[name], data_dir))
    return results, skipped


# --- the tables -------------------------------------------------------------------------


def print_estimates(results: list[dict]) -> None:
    """The main table: one row per experiment, one seed."""
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


def print_run_totals(raw: dict, experiments: dict[str, Experiment], results: list[dict]) -> None:
    """The config's run, all its seeds: jobs, training images and disk."""
    run = [r for r in results if r["name"] in (raw.get("run") or list(experiments))]
    if not run:
        return
    seeds = {r["name"]: len(experiments[r["name"]].seeds) for r in run}
    jobs = sum(r["jobs"]["total"] * seeds[r["name"]] for r in run)
    images = sum(r["train_images"] * seeds[r["name"]] for r in run)
    space = sum(r["disk"]["total"] * seeds[r["name"]] + r["data_file"] for r in run)
    which = ", ".join(f"{n} x {k} seed{'s' if k > 1 else ''}" for n, k in seeds.items())
    print(
        f"\nThe config's run ({which}): {jobs:,} jobs of the kinds above, "
        f"{human(images)} training images x passes, {human_bytes(space)} on disk (data files included)."
    )


def print_outside_training(results: list[dict]) -> None:
    """The second table: validation and importance-step passes."""
    if not results:
        return
    print("\nOutside training (per seed; not in the table above):\n")
    print(table(["experiment", "validation images (after every epoch)", "importance-step images"]))
    for r in results:
        print(f"| {r['name']} | {human(r['validation_images'])} | {human(r['importance_images'])} |")
    print("\nimportance-step images: EWC's Fisher (per-sample gradients), replay's scoring (forward only)")


def print_notes(results: list[dict], skipped: dict[str, str], data_dir: Path) -> bool:
    """The skipped experiments and where the growth rules and the plan disagree (False: somewhere)."""
    for name, reason in skipped.items():
        print(f"\nskipped {name}: its data is not in {data_dir} ({reason})")
    mismatch = [r for r in results if r["formula"] != r["jobs"]]
    for r in mismatch:
        print(
            f"\nnote: {r['name']}: the growth rules give {fmt_jobs(r['formula'])}, "
            f"the plan {fmt_jobs(r['jobs'])}"
        )
    return not mismatch


def print_dry_run(raw: dict, results: list[dict], data_dir: Path, workdir: Path) -> bool:
    """Each experiment's jobs by a Snakemake dry run, one seed (False: one differs from the plan)."""
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
            notes.append(f"note: {r['name']}: the dry run plans {kinds}, this script {r['jobs']}")
    print("\n" + ("\n".join(notes) if notes else "The dry run's per-seed jobs match the table."))
    return not notes


def print_du_comparison(results_dir: Path, experiments: dict[str, Experiment], results: list[dict]) -> None:
    """The disk estimate against `du -sb` of a finished run's seed folders."""
    print(f"\n### Disk estimate against du -sb of {results_dir}\n")
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
        folder = results_dir / r["name"] / f"seed{seed}"
        tasks_pt = results_dir / r["name"] / "data" / "tasks.pt"
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


# --- main -------------------------------------------------------------------------------


def main() -> int:
    parser = build_parser()
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
    results, skipped = estimate_all(experiments, names, data_dir)

    print(f"config: {args.configfile}, data: {data_dir}; one seed of each experiment\n")
    print_estimates(results)
    print_run_totals(raw, experiments, results)
    print("\njobs total = 1 (init) + train + eval + importance + progress; every one of them is per seed.")
    print_outside_training(results)
    ok = print_notes(results, skipped, data_dir)
    print(GROWTH_RULES)

    with tempfile.TemporaryDirectory(prefix="clpipe-scale-") as tmp:
        workdir = None if args.no_dry_run else Path(tmp)
        if workdir is not None and results:
            ok &= print_dry_run(raw, results, data_dir, workdir)
        if args.check_growth:
            ok &= check_growth(raw, [r["name"] for r in results], data_dir, workdir)
    if args.compare_du is not None:
        print_du_comparison(args.compare_du, experiments, results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
