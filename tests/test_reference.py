"""The reference results committed under results/reference/ are what the pipeline makes."""

from pathlib import Path

import pandas as pd
import pytest

from clpipe.aggregate import tables_from_metrics
from conftest import ROOT

REFERENCE = ROOT / "results" / "reference"
EXPERIMENTS = sorted(p for p in REFERENCE.iterdir() if p.is_dir()) if REFERENCE.is_dir() else []


def test_there_are_reference_results():
    assert {p.name for p in EXPERIMENTS} >= {"split_mnist_quick", "fashion_to_mnist"}


@pytest.mark.parametrize("folder", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_committed_tables_are_exactly_what_the_aggregation_makes(folder: Path):
    metrics = pd.read_csv(folder / "metrics.csv")
    assert metrics["seed"].nunique() >= 3
    made = tables_from_metrics(metrics)
    for name in ("summary.csv", "accuracy_matrix.csv", "summary.md"):
        assert (folder / name).read_text() == made[name], f"{folder.name}/{name} differs from its metrics.csv"
    assert (folder / "figures" / "methods.png").stat().st_size > 10_000


def test_the_readme_shows_the_reference_table_of_the_headline():
    readme = (ROOT / "README.md").read_text()
    table = [
        line
        for line in (REFERENCE / "split_mnist_quick" / "summary.md").read_text().splitlines()
        if line.startswith("|")
    ]
    assert len(table) > 10
    for line in table:
        assert line in readme, f"README lacks the reference row: {line}"
    assert "results/reference/split_mnist_quick/figures/freeze.png" in readme
