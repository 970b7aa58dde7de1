"""Reference results committed to the repository (small files only).

    python -m clpipe.reference RESULTS_DIR EXPERIMENT [EXPERIMENT ...]

copies, for each experiment, the tables (metrics.csv, summary.csv,
accuracy_matrix.csv, summary.md) and the key figures (PNG) from RESULTS_DIR into
results/reference/<experiment>/. tests/unit/test_reference.py checks that the committed
tables are exactly what the aggregate step makes from the committed metrics.csv, with
the report settings (report.metrics, report.compare_to) the committed configs give.

    python -m clpipe.reference --retabulate EXPERIMENT [EXPERIMENT ...]

remakes a committed reference's tables from its committed metrics.csv with today's
aggregation: what Snakemake itself does in a results folder after a change to the
aggregation's code or report settings (only the aggregate job reruns; no model is
trained again, and metrics.csv, whose rows name the commit that made them, is kept).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
from pathlib import Path

from clpipe.layout import SCRATCH

TABLES = ("metrics.csv", "summary.csv", "accuracy_matrix.csv", "summary.md")
FIGURES = ("freeze.png", "methods.png", "comparisons.png", "forgetting.png")
# the weights of the first seed's first trained task (one cheap training job, every arm's
# start), by digest: tests/workflow/test_reference_training.py trains it again and compares
WEIGHTS = "weights.json"
FIRST_MODEL = f"seed{{seed}}/{SCRATCH}/task1/model.pt"
ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "results" / "reference"
CONFIGS = ("config.yaml", "quick.yaml")  # quick.yaml's CPU-sized experiments win


@functools.cache
def configured_experiments() -> dict:
    """Every experiment of the committed configs (read and validated once)."""
    import yaml

    from clpipe.config import validate_config

    found = {}
    for name in CONFIGS:
        cfg = yaml.safe_load((ROOT / "config" / name).read_text())
        found |= validate_config(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return found


def configured_spec(experiment: str) -> dict:
    """The experiment's aggregate spec (clpipe.plan) as the committed configs give it."""
    from clpipe import plan

    found = configured_experiments()
    if experiment not in found:
        raise KeyError(f"{experiment!r} is in no committed config ({', '.join(CONFIGS)})")
    return plan.aggregate_spec(found[experiment])


def retabulate(experiment: str, reference: Path = REFERENCE) -> list[Path]:
    """The tables of a committed reference, remade from its metrics.csv (kept as it is)."""
    import pandas as pd

    from clpipe.aggregate import report_settings, tables_from_metrics

    folder = reference / experiment
    metrics = pd.read_csv(folder / "metrics.csv")
    spec = configured_spec(experiment)
    seeds = sorted(int(s) for s in metrics["seed"].unique())
    if seeds != spec["seeds"]:
        raise ValueError(
            f"{folder}/metrics.csv has seeds {seeds}, its config {spec['seeds']}: the config "
            "changed what runs, so rerun the experiment and copy its results instead"
        )
    made = tables_from_metrics(metrics, *report_settings(spec))
    written = []
    for name in TABLES[1:]:
        (folder / name).write_text(made[name])
        written.append(folder / name)
    return written


def weights_digest(path: str | Path) -> str:
    """sha256 over a model file's weights: every tensor's name, dtype, shape and bytes,
    in name order (the file's other contents, e.g. its provenance, left out)."""
    import hashlib

    import torch

    from clpipe import io

    digest = hashlib.sha256()
    for name, tensor in sorted(io.load(path, "model")["state_dict"].items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def copy_reference(results: Path, experiment: str, reference: Path = REFERENCE) -> list[Path]:
    source = results / experiment
    target = reference / experiment
    missing = [t for t in TABLES if not (source / t).is_file()]
    if missing:
        raise FileNotFoundError(f"{source}: no {', '.join(missing)}; run the workflow first")
    (target / "figures").mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TABLES:
        copied.append(Path(shutil.copy2(source / name, target / name)))
    for name in FIGURES:
        if (source / "figures" / name).is_file():
            copied.append(Path(shutil.copy2(source / "figures" / name, target / "figures" / name)))
    first = FIRST_MODEL.format(seed=min(configured_spec(experiment)["seeds"]))
    if (source / first).is_file():
        (target / WEIGHTS).write_text(json.dumps({first: weights_digest(source / first)}, indent=1) + "\n")
        copied.append(target / WEIGHTS)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--retabulate",
        nargs="+",
        metavar="EXPERIMENT",
        help="remake committed tables from committed metrics.csv",
    )
    parser.add_argument("results", type=Path, nargs="?", help="the workflow's results folder")
    parser.add_argument("experiments", nargs="*")
    args = parser.parse_args(argv)
    if args.retabulate:
        for exp in args.retabulate:
            for path in retabulate(exp):
                print(path.relative_to(ROOT))
        return 0
    if args.results is None or not args.experiments:
        parser.error("give the results folder and the experiments to copy (or --retabulate EXPERIMENT ...)")
    for exp in args.experiments:
        for path in copy_reference(args.results, exp):
            print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
