"""Paired comparisons over seeds (clpipe.stats), on tables whose answer is known."""

import io
import math
import random

import pytest

from clpipe import stats


def test_the_intervals_and_p_values_are_the_committed_tables_to_1e_10():
    """SciPy's t gives the intervals and p-values the hand-written incomplete beta gave
    for every committed reference table (recomputed from its metrics.csv)."""
    import pandas as pd

    from clpipe.aggregate import report_settings, tables_from_metrics
    from clpipe.reference import configured_spec
    from conftest import ROOT

    compared = 0
    for folder in sorted((ROOT / "results" / "reference").glob("*/summary.csv")):
        committed = pd.read_csv(folder)
        metrics = pd.read_csv(folder.parent / "metrics.csv")
        made = pd.read_csv(
            io.StringIO(
                tables_from_metrics(metrics, *report_settings(configured_spec(folder.parent.name)))[
                    "summary.csv"
                ]
            )
        )
        columns = [c for c in committed.columns if c.endswith(("_low", "_high", "_p", "_p_holm"))]
        for c in columns:
            assert ((committed[c] - made[c]).abs().fillna(0) <= 1e-10).all(), (folder.parent.name, c)
        compared += len(columns) * len(committed)
    assert compared > 1000


def test_equal_arms_give_an_interval_that_covers_zero():
    same = [0.71, 0.75, 0.69, 0.80, 0.77]
    d = stats.paired_difference(same, same)
    assert (d["mean"], d["low"], d["high"], d["p"], d["n"]) == (0.0, 0.0, 0.0, 1.0, 5)
    # noisy but unrelated to the arm: the interval covers 0 in about 95% of draws
    rng = random.Random(0)
    covered = 0
    for _ in range(2000):
        a = [rng.gauss(0.7, 0.05) for _ in range(5)]
        b = [rng.gauss(0.7, 0.05) for _ in range(5)]
        d = stats.paired_difference(a, b)
        covered += d["low"] <= 0.0 <= d["high"]
    assert 0.93 < covered / 2000 < 0.97


def test_a_constant_shift_is_exactly_that_shift():
    base = [0.61, 0.72, 0.58]
    d = stats.paired_difference([b + 0.125 for b in base], base)
    assert d["mean"] == pytest.approx(0.125) and d["low"] == d["high"] == pytest.approx(0.125)
    assert d["sem"] == pytest.approx(0.0, abs=1e-12) and d["p"] == 0.0


def test_a_known_paired_t_test():
    # differences 0.10, 0.18, -0.01, 0.16: mean 0.1075, sd 0.0854, t = 2.518 on 3 df
    d = stats.paired_difference([0.80, 0.90, 0.70, 0.85], [0.70, 0.72, 0.71, 0.69])
    assert d["mean"] == pytest.approx(0.1075)
    assert d["sd"] == pytest.approx(0.085391, abs=1e-6)
    assert d["p"] == pytest.approx(0.08634, abs=1e-4)
    assert (d["low"], d["high"]) == (pytest.approx(-0.02838, abs=1e-4), pytest.approx(0.24338, abs=1e-4))


def test_pairs_with_a_missing_value_are_left_out():
    d = stats.paired_difference([0.5, math.nan, 0.7], [0.4, 0.5, 0.6])
    assert d["n"] == 2 and d["mean"] == pytest.approx(0.1)


def test_holm_adjusts_in_step_down_order():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, math.nan]) == [0.5, pytest.approx(math.nan, nan_ok=True)]


def test_the_smallest_detectable_difference():
    # (t_{0.975,4} + t_{0.8,4}) * sd / sqrt(5) = (2.7764 + 0.9410) * 0.05 / 2.2361
    assert stats.detectable_difference(0.05, 5) == pytest.approx(0.08312, abs=1e-4)
    assert math.isnan(stats.detectable_difference(0.05, 1))
