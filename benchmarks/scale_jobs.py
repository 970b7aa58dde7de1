"""benchmarks/scale.py's job counting: the config, the jobs of one seed walked through
clpipe.plan as the workflow asks, the growth rules' counts, and a Snakemake dry run's."""

from __future__ import annotations

import copy
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT  # noqa: E402

from clpipe import plan  # noqa: E402
from clpipe.config import validate_config  # noqa: E402
from clpipe.experiment import Experiment  # noqa: E402

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


# --- config -----------------------------------------------------------------------------


def load_config(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def experiments_of(raw: dict) -> dict[str, Experiment]:
    return validate_config(copy.deepcopy(raw), str(SCHEMA))


def one_seed(exp: Experiment, seeds: list[int] | None = None) -> Experiment:
    return dataclasses.replace(exp, seeds=seeds if seeds is not None else exp.seeds[:1])


# --- jobs -------------------------------------------------------------------------------


def node_of(path: str) -> tuple[int, str, int]:
    """(seed, owner, task) of a planned file's path."""
    parts = path.split("/")  # R/<exp>/seed<s>/<owner>/task<t>/...
    return int(parts[2].removeprefix("seed")), parts[3], int(parts[4].removeprefix("task"))


def planned_jobs(exp: Experiment) -> Jobs:
    """The jobs of the experiment's seeds, through clpipe.plan as the workflow asks."""
    layout = plan.Layout("R")
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
            inputs = plan.importance_inputs(layout, exp, *node_of(path), path.split("/")[5])
            todo += [inputs["previous"]] if "previous" in inputs else []
            progress_todo += [inputs["progress"]] if "progress" in inputs else []
    while progress_todo:  # and a progress step the previous progress
        path = progress_todo.pop()
        if path not in progress:
            progress.add(path)
            inputs = plan.progress_inputs(layout, exp, *node_of(path))
            progress_todo += [inputs["previous"]] if "previous" in inputs else []
    return Jobs(
        list(plan.nodes(exp)),
        {(*node_of(p), p.split("/")[5]) for p in importance},
        {node_of(p) for p in progress},
    )


def formula_jobs(exp: Experiment) -> dict[str, int]:
    """The same counts from the growth rules (arm structure only, no plan functions)."""
    return plan.jobs_per_seed(exp)


def fmt_jobs(c: dict[str, int]) -> str:
    return " / ".join(str(c[k]) for k in ("train", "evaluate", "importance", "progress", "total"))


def signed_jobs(c: dict[str, int]) -> str:
    return " / ".join(f"{c[k]:+d}" for k in ("train", "evaluate", "importance", "progress", "total"))


def diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a[k] - b[k] for k in a}


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
