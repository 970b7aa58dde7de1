"""Continual-learning metrics over an accuracy matrix (docs/methods.md, section 5), defined once.

``R`` is an array of shape (T + 1, n_tasks): ``R[i, j - 1]`` is the test accuracy on task
j after training tasks 1..i, and row 0 is the randomly initialised model. T (the last
trained task) is ``R.shape[0] - 1``; columns past T (tasks not trained yet) only enter
FWT. With one trained task BWT, FWT and forgetting are undefined (NaN).

- ACC = mean_{j<=T} R[T][j]
- BWT = mean_{j<T} (R[T][j] - R[j][j])
- FWT = mean_{1<j<=T} (R[j-1][j] - R[0][j])
- forgetting = mean_{j<T} (max_{1<=l<T} R[l][j] - R[T][j])   (l starts at 1: the random
  init is not a state the task could have been forgotten from)

The CLEAR benchmark's metrics (docs/methods.md, section 2) are plain means of cells of the
trained rows 1..T, not differences:

- in_domain = mean_{i<=T} R[i][i]; next_domain = mean_{i<=T, i<n} R[i][i+1]
- clear_acc = mean_{j<=i<=T} R[i][j]; clear_bwt = mean_{j<i<=T} R[i][j];
  clear_fwt = mean_{i<j, i<=T} R[i][j]   (n = number of tasks)

A cell of a model the arm never had (joint training's rows 1..T-1) is NaN and makes the
metrics that need it NaN. So is a cell of a task the model could not answer for yet (a
growing network has no head for task j before it grows for j: R[l][j] for l < j, so
FWT is NaN). The max in forgetting leaves NaN cells out, so a growing network's
forgetting is taken over the rows that answered for the task; with none left it is NaN.
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("acc", "bwt", "fwt", "forgetting")
CLEAR_METRICS = ("in_domain", "next_domain", "clear_acc", "clear_bwt", "clear_fwt")
ALL_METRICS = METRICS + CLEAR_METRICS
LABELS = {
    "acc": "ACC",
    "bwt": "BWT",
    "fwt": "FWT",
    "forgetting": "forgetting",
    "in_domain": "in-domain",
    "next_domain": "next-domain",
    "clear_acc": "CLEAR Acc",
    "clear_bwt": "CLEAR BwT",
    "clear_fwt": "CLEAR FwT",
}


def _check(R: np.ndarray) -> int:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] < 2:
        raise ValueError(
            f"need an accuracy matrix with the init row and >= 1 trained row, got shape {R.shape}"
        )
    T = R.shape[0] - 1
    if R.shape[1] < T:
        raise ValueError(f"matrix has {T} trained rows but only {R.shape[1]} task columns")
    return T


def average_accuracy(R) -> float:
    R = np.asarray(R, dtype=float)
    T = _check(R)
    return float(np.mean(R[T, :T]))


def backward_transfer(R) -> float:
    R = np.asarray(R, dtype=float)
    T = _check(R)
    if T < 2:
        return math.nan
    return float(np.mean([R[T, j - 1] - R[j, j - 1] for j in range(1, T)]))


def forward_transfer(R) -> float:
    R = np.asarray(R, dtype=float)
    T = _check(R)
    if T < 2:
        return math.nan
    return float(np.mean([R[j - 1, j - 1] - R[0, j - 1] for j in range(2, T + 1)]))


def forgetting(R) -> float:
    R = np.asarray(R, dtype=float)
    T = _check(R)
    if T < 2:
        return math.nan
    return float(np.mean([_max_answered(R[1:T, j - 1]) - R[T, j - 1] for j in range(1, T)]))


def _max_answered(column: np.ndarray) -> float:
    """The largest non-NaN value (NaN: the model could not answer); NaN when none is left."""
    answered = column[~np.isnan(column)]
    return float(answered.max()) if len(answered) else math.nan


def _mean_of_cells(R: np.ndarray, cells: list[tuple[int, int]]) -> float:
    """Mean of R[i][j] (j 1-based) over cells; NaN when there are none."""
    if not cells:
        return math.nan
    return float(np.mean([R[i, j - 1] for i, j in cells]))


def clear_metrics(R) -> dict[str, float]:
    R = np.asarray(R, dtype=float)
    T = _check(R)
    n = R.shape[1]
    rows = range(1, T + 1)
    return {
        "in_domain": _mean_of_cells(R, [(i, i) for i in rows]),
        "next_domain": _mean_of_cells(R, [(i, i + 1) for i in rows if i < n]),
        "clear_acc": _mean_of_cells(R, [(i, j) for i in rows for j in range(1, i + 1)]),
        "clear_bwt": _mean_of_cells(R, [(i, j) for i in rows for j in range(1, i)]),
        "clear_fwt": _mean_of_cells(R, [(i, j) for i in rows for j in range(i + 1, n + 1)]),
    }


def all_metrics(R) -> dict[str, float]:
    return {
        "acc": average_accuracy(R),
        "bwt": backward_transfer(R),
        "fwt": forward_transfer(R),
        "forgetting": forgetting(R),
        **clear_metrics(R),
    }


def mean_sd_sem(values) -> dict[str, float]:
    """Mean, sample sd (ddof 1), standard error and n of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "sd": math.nan, "sem": math.nan, "n": 0}
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else math.nan
    sem = sd / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "sd": sd, "sem": sem, "n": n}
