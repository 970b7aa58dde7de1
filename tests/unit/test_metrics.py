"""Metric definitions on hand-computed matrices (docs/methods.md, section 5)."""

import math

import numpy as np
import pytest

from clpipe.metrics import all_metrics, clear_metrics, mean_sd_sem

# rows: init, after task 1, 2, 3; columns: tasks 1..3
R = np.array(
    [
        [0.50, 0.40, 0.30],
        [0.90, 0.60, 0.20],
        [0.70, 0.80, 0.35],
        [0.60, 0.75, 0.95],
    ]
)


def test_metrics_by_hand():
    m = all_metrics(R)
    assert m["acc"] == pytest.approx((0.60 + 0.75 + 0.95) / 3)
    assert m["bwt"] == pytest.approx(((0.60 - 0.90) + (0.75 - 0.80)) / 2)
    assert m["fwt"] == pytest.approx(((0.60 - 0.40) + (0.35 - 0.30)) / 2)
    # task 1: best of rows 1..2 = .90; task 2: best of rows 1..2 = .80 (row 0 excluded)
    assert m["forgetting"] == pytest.approx(((0.90 - 0.60) + (0.80 - 0.75)) / 2)


def test_forgetting_ignores_the_random_init_row():
    R2 = R.copy()
    R2[0, 0] = 0.99  # the untrained model happens to score high on task 1
    assert all_metrics(R2)["forgetting"] == pytest.approx(all_metrics(R)["forgetting"])


def test_cells_a_growing_network_could_not_answer_yet():
    """A growing network has no head for task j before it grows for j: R[l][j] is NaN
    for l < j. FWT is then undefined; forgetting takes the max over the rows that answered."""
    G = R.copy()
    G[0, 1:] = G[1, 1:] = G[2, 2] = np.nan
    m = all_metrics(G)
    for same in ("acc", "bwt"):
        assert m[same] == pytest.approx(all_metrics(R)[same])
    assert math.isnan(m["fwt"])
    assert m["forgetting"] == pytest.approx(((0.90 - 0.60) + (0.80 - 0.75)) / 2)
    joint = R.copy()
    joint[1:3] = np.nan  # no model after tasks 1 and 2: still undefined
    assert math.isnan(all_metrics(joint)["forgetting"])


def test_one_task_and_a_partial_sequence():
    one = all_metrics(R[:2])
    assert one["acc"] == pytest.approx(0.90)
    assert math.isnan(one["bwt"]) and math.isnan(one["fwt"]) and math.isnan(one["forgetting"])
    two = all_metrics(R[:3])  # an arm that stops after task 2 of 3
    assert two["acc"] == pytest.approx((0.70 + 0.80) / 2)
    assert two["bwt"] == pytest.approx(0.70 - 0.90)
    assert two["fwt"] == pytest.approx(0.60 - 0.40)
    assert two["forgetting"] == pytest.approx(0.90 - 0.70)


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError):
        all_metrics(R[:1])
    with pytest.raises(ValueError):
        all_metrics(np.zeros((4, 2)))


def test_mean_sd_sem():
    s = mean_sd_sem([1.0, 2.0, 3.0, float("nan")])
    assert s["n"] == 3 and s["mean"] == 2.0 and s["sd"] == pytest.approx(1.0)
    assert s["sem"] == pytest.approx(1 / math.sqrt(3))
    single = mean_sd_sem([0.5])
    assert single["n"] == 1 and single["mean"] == 0.5 and math.isnan(single["sd"])


def test_clear_metrics_by_hand():
    m = clear_metrics(R)
    assert m["in_domain"] == pytest.approx((0.90 + 0.80 + 0.95) / 3)
    assert m["next_domain"] == pytest.approx((0.60 + 0.35) / 2)
    assert m["clear_acc"] == pytest.approx((0.90 + 0.70 + 0.80 + 0.60 + 0.75 + 0.95) / 6)
    assert m["clear_bwt"] == pytest.approx((0.70 + 0.60 + 0.75) / 3)
    assert m["clear_fwt"] == pytest.approx((0.60 + 0.20 + 0.35) / 3)
    two = clear_metrics(R[:3])  # stops after task 2 of 3: FwT still sees task 3
    assert two["clear_fwt"] == pytest.approx((0.60 + 0.20 + 0.35) / 3)
    assert two["in_domain"] == pytest.approx((0.90 + 0.80) / 2)
    joint = R.copy()
    joint[1:3] = np.nan  # joint training: only the init and the final model
    j = clear_metrics(joint)
    assert math.isnan(j["in_domain"]) and math.isnan(j["clear_acc"]) and math.isnan(j["next_domain"])
    assert all_metrics(joint)["acc"] == pytest.approx((0.60 + 0.75 + 0.95) / 3)
