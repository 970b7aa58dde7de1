"""Reference results committed to the repository (small files only).

    python -m clpipe.reference RESULTS_DIR EXPERIMENT [EXPERIMENT ...]

copies, for each experiment, the tables (metrics.csv, summary.csv,
accuracy_matrix.csv, summary.md) and the key figures (PNG) from RESULTS_DIR into
results/reference/<experiment>/. tests/test_reference.py checks that the committed
tables are exactly what the aggregate step makes from the committed metrics.csv.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

TABLES = ("metrics.csv", "summary.csv", "accuracy_matrix.csv", "summary.md")
FIGURES = ("freeze.png", "methods.png", "forgetting.png")
REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference"


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
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the workflow's results folder")
    parser.add_argument("experiments", nargs="+")
    args = parser.parse_args(argv)
    for exp in args.experiments:
        for path in copy_reference(args.results, exp):
            print(path.relative_to(REFERENCE.parents[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
