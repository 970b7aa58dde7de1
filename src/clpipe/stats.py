"""Paired comparisons over seeds: the statistics a reviewer asks for (no SciPy).

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (Lentz's method)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection on :func:`t_cdf`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


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
    half = t_quantile(0.5 + level / 2.0, n - 1) * sem
    t = mean / sem
    p = 2.0 * (1.0 - t_cdf(abs(t), n - 1))
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
    return (t_quantile(1.0 - alpha / 2.0, df) + t_quantile(power, df)) * sd / math.sqrt(n)
