"""Continual-learning metrics over an accuracy matrix (METHODS.md section 5), defined once.

``R`` is an array of shape (T + 1, n_tasks): ``R[i, j - 1]`` is the test accuracy on task
j after training tasks 1..i, and row 0 is the randomly initialised model. T (the last
trained task) is ``R.shape[0] - 1``; columns past T (tasks not trained yet) only enter
FWT. With one trained task BWT, FWT and forgetting are undefined (NaN).

- ACC = mean_{j<=T} R[T][j]
- BWT = mean_{j<T} (R[T][j] - R[j][j])
- FWT = mean_{1<j<=T} (R[j-1][j] - R[0][j])
- forgetting = mean_{j<T} (max_{1<=l<T} R[l][j] - R[T][j])   (l starts at 1: the random
  init is not a state the task could have been forgotten from)
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("acc", "bwt", "fwt", "forgetting")


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
    return float(np.mean([R[1:T, j - 1].max() - R[T, j - 1] for j in range(1, T)]))


def all_metrics(R) -> dict[str, float]:
    return {
        "acc": average_accuracy(R),
        "bwt": backward_transfer(R),
        "fwt": forward_transfer(R),
        "forgetting": forgetting(R),
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
