"""Paired comparisons over seeds: the statistics a reviewer asks for (SciPy's t).

Every arm of a seed starts from the same task-1 model, data order and seed, so the arms
are *paired* by seed: the per-seed difference of a metric between an arm and a
reference arm is far less noisy than either arm's spread. For each arm against a
reference this gives the mean difference over the seeds they share, its standard error,
a 95% confidence interval from Student's t with n - 1 degrees of freedom (the paired t
interval: it assumes the per-seed differences are independent draws from a normal
distribution; with 3 to 5 seeds nothing weaker can be checked), and the two-sided
p-value of "no difference", corrected for the several arms compared with one
reference by Holm's step-down method (which controls the family-wise error rate
without assuming the tests independent). With every difference equal the interval is
that value exactly (p = 0 unless it is 0, then p = 1).

The smallest difference the seeds could detect (:func:`detectable_difference`): the
true mean difference a two-sided paired t test at level alpha finds with the given
power, for the per-seed spread of the differences observed (the usual normal
approximation of the noncentral t, with t quantiles).

Student's t is SciPy's (``scipy.stats.t``, the distribution behind ``ttest_rel``); Holm's
correction is written here, since SciPy has none (``false_discovery_control`` is
Benjamini-Hochberg's, which controls another error rate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats


def paired_difference(values: Sequence[float], reference: Sequence[float], level: float = 0.95) -> dict:
    """Mean of ``values[i] - reference[i]`` over the pairs where both are finite, with its
    SEM, n, the paired-t interval at ``level`` and the two-sided p-value (uncorrected)."""
    diffs = [v - r for v, r in zip(values, reference, strict=True) if math.isfinite(v) and math.isfinite(r)]
    n = len(diffs)
    nan = math.nan
    if n == 0:
        return {"mean": nan, "sd": nan, "sem": nan, "n": 0, "low": nan, "high": nan, "p": nan}
    mean = sum(diffs) / n
    if n == 1:
        return {"mean": mean, "sd": nan, "sem": nan, "n": 1, "low": nan, "high": nan, "p": nan}
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    sem = sd / math.sqrt(n)
    if sem == 0.0:
        p = 1.0 if mean == 0 else 0.0  # every difference the same: that value, exactly
        return {"mean": mean, "sd": 0.0, "sem": 0.0, "n": n, "low": mean, "high": mean, "p": p}
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * sem
    p = float(2.0 * stats.t.sf(abs(mean / sem), n - 1))
    return {"mean": mean, "sd": sd, "sem": sem, "n": n, "low": mean - half, "high": mean + half, "p": p}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted)."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    m = len(indexed)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired t test of ``n`` pairs at
    ``alpha`` detects with probability ``power``, for per-pair differences of spread ``sd``."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    df = n - 1
    return float(stats.t.ppf(1.0 - alpha / 2.0, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n)
