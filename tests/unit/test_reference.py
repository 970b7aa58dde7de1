"""The reference results committed under results/reference/ are what the pipeline makes."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from clpipe.aggregate import report_settings, tables_from_metrics
from clpipe.reference import TABLES, configured_spec, retabulate
from conftest import ROOT

REFERENCE = ROOT / "results" / "reference"
EXPERIMENTS = sorted(p for p in REFERENCE.iterdir() if p.is_dir()) if REFERENCE.is_dir() else []


def test_there_are_reference_results():
    assert {p.name for p in EXPERIMENTS} >= {"split_mnist_quick", "fashion_to_mnist"}


@pytest.mark.parametrize("folder", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_committed_tables_are_exactly_what_the_aggregation_makes(folder: Path):
    metrics = pd.read_csv(folder / "metrics.csv")
    assert metrics["seed"].nunique() >= 3
    # the experiment's report settings as its config says them today (shown metrics,
    # reference arms), so a changed config without regenerated references fails here
    spec = configured_spec(folder.name)
    assert sorted(metrics["seed"].unique()) == spec["seeds"], "the config's seeds are not the reference's"
    made = tables_from_metrics(metrics, *report_settings(spec))
    for name in ("summary.csv", "accuracy_matrix.csv", "summary.md"):
        assert (folder / name).read_text() == made[name], f"{folder.name}/{name} differs from its metrics.csv"
    assert (folder / "figures" / "methods.png").stat().st_size > 10_000


def test_the_headline_page_shows_the_reference_tables_and_the_readme_links_it():
    page = (ROOT / "docs" / "headline.md").read_text()
    table = [
        line
        for line in (REFERENCE / "split_mnist_quick" / "summary.md").read_text().splitlines()
        if line.startswith("|")
    ]
    assert len(table) > 10
    for line in table:
        assert line in page, f"docs/headline.md lacks the reference row: {line}"
    assert "../results/reference/split_mnist_quick/figures/freeze.png" in page
    readme = (ROOT / "README.md").read_text()
    assert "(docs/headline.md)" in readme
    assert "results/reference/split_mnist_quick/figures/comparisons.png" in readme


def test_retabulating_a_reference_remakes_its_tables_and_keeps_its_metrics(tmp_path):
    """After a change to the aggregation: the tables from the same metrics.csv, as the
    aggregate rule would remake them; a config that runs other seeds is refused."""
    shutil.copytree(REFERENCE / "fashion_to_mnist", tmp_path / "fashion_to_mnist")
    before = {name: (tmp_path / "fashion_to_mnist" / name).read_text() for name in TABLES}
    (tmp_path / "fashion_to_mnist" / "summary.md").write_text("stale\n")
    (tmp_path / "fashion_to_mnist" / "summary.csv").write_text("stale\n")
    written = retabulate("fashion_to_mnist", tmp_path)
    assert sorted(p.name for p in written) == sorted(TABLES[1:])
    assert {name: (tmp_path / "fashion_to_mnist" / name).read_text() for name in TABLES} == before
    metrics = pd.read_csv(tmp_path / "fashion_to_mnist" / "metrics.csv")
    metrics[metrics["seed"] != 2].to_csv(tmp_path / "fashion_to_mnist" / "metrics.csv", index=False)
    with pytest.raises(ValueError, match=r"metrics.csv has seeds \[0, 1\], its config \[0, 1, 2\]"):
        retabulate("fashion_to_mnist", tmp_path)
