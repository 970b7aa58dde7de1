"""How planning scales: a dry run's time and memory against the jobs it plans.

    python benchmarks/planning.py [--jobs 100 1000 10000] [--repeats 3] [--workdir DIR]

For each target it takes the tests' tiny config (tests/configs/tiny.yaml: 37 jobs a
seed, 14 besides) with as many seeds as make about that many jobs (counted as the
workflow counts them before planning: clpipe.plan.run_job_count), runs
``snakemake -n --quiet rules`` on it in an empty folder (no results: every job is
planned), and prints the wall seconds (median of ``--repeats``) and the peak memory of
the Snakemake process (its maximum resident set, from the kernel's accounting of the
child), per job too: linear planning has a constant cost per job. The workflow refuses
a run above ``max_jobs`` (default 20,000) before planning it, naming the count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from clpipe import plan  # noqa: E402
from clpipe.config import validate_config  # noqa: E402

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def config_with_jobs(target: int, data_dir: str) -> tuple[dict, int]:
    """The tiny config with the fewest seeds that make at least ``target`` jobs."""
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg.update(data_dir=data_dir, max_jobs=10 * target + 1000)
    seeds = 1
    while True:
        cfg["seeds"] = list(range(seeds))
        experiments = validate_config(yaml.safe_load(yaml.safe_dump(cfg)), str(SCHEMA))
        jobs = sum(plan.run_job_count(experiments, list(experiments)).values())
        if jobs >= target:
            return cfg, jobs
        per_seed = max(1, plan.jobs_per_seed(experiments["tiny"])["total"])
        seeds += max(1, (target - jobs) // per_seed)


def dry_run(workdir: Path, config: Path) -> tuple[float, int]:
    """(wall seconds, peak memory in bytes) of one ``snakemake -n`` of ``config``."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "workflow/Snakefile"),
        "--directory",
        str(workdir),
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cmd, "-n", "--quiet", "rules", "--configfile", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"the dry run failed:\n{out[-3000:]}")
    return seconds, usage.ru_maxrss * 1024  # Linux: kilobytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="clpipe-planning-"))
    print("| jobs | seeds | dry run (s, median) | per 1,000 jobs (s) | peak memory (MB) | per job (kB) |")
    print("|---|---|---|---|---|---|")
    for target in args.jobs:
        cfg, jobs = config_with_jobs(target, args.data_dir)
        work = base / f"jobs{target}"
        work.mkdir(parents=True, exist_ok=True)
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump(cfg))
        runs = [dry_run(work, config) for _ in range(args.repeats)]
        seconds = statistics.median(s for s, _ in runs)
        peak = max(m for _, m in runs)
        print(
            f"| {jobs:,} | {len(cfg['seeds'])} | {seconds:.2f} | {1000 * seconds / jobs:.2f} "
            f"| {peak / 1e6:.0f} | {peak / jobs / 1e3:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
