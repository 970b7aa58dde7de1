"""What each job asks the scheduler for (torch-free; the workflow's rules call these).

Resources come from the config by *kind* of step (``train``, ``importance``: the
compute_importance and update_progress jobs, ``evaluate``, ``data``, ``aggregate``), the
experiment's own values over the top-level ones. A retried job gets a longer time
limit: ``runtime`` times the attempt, so a training job killed at its limit comes back
with twice the time and resumes from its last epoch checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("train", "importance", "evaluate", "data", "aggregate")
# The kinds whose ``threads`` a rule uses (data, aggregation and figures run on 1 thread).
THREADED_KINDS = ("train", "importance", "evaluate")


def resource(
    experiments: dict[str, Any], top: dict[str, Any], kind: str, key: str, name: str | None, attempt: int = 1
) -> int:
    """A resource of a kind of step for experiment ``name`` (the top level's for steps of
    no experiment); ``runtime`` grows with the attempt."""
    table = experiments[name].resources if name in experiments else top
    value = table[kind][key]
    if key == "runtime":
        return int(value) * max(1, int(attempt))
    return value


@dataclass(frozen=True)
class LoweredThreads:
    experiment: str
    kind: str
    asked: int
    given: int

    def describe(self) -> str:
        return (
            f"experiments.{self.experiment}.resources.{self.kind}.threads: {self.asked} "
            f"asked, {self.given} given"
        )


def lowered_threads(
    experiments: dict[str, Any], names: list[str], cores: int | None, max_threads: int | None
) -> list[LoweredThreads]:
    """The kinds of step whose threads Snakemake would lower below the config's value
    (it caps a job's threads at ``--cores`` and ``--max-threads``). Matrix products split
    their sums by thread, so the thread count is part of a CPU result."""
    limits = [c for c in (cores, max_threads) if c is not None]
    if not limits:
        return []
    limit = min(limits)
    found = []
    for name in names:
        for kind in THREADED_KINDS:
            asked = experiments[name].resources.get(kind, {}).get("threads")
            if asked is not None and asked > limit:
                found.append(LoweredThreads(name, kind, int(asked), limit))
    return found


def lowered_threads_message(found: list[LoweredThreads], allowed: bool) -> str:
    listed = "; ".join(f.describe() for f in found)
    if allowed:
        return (
            f"threads lowered below the config's (allow_fewer_threads: true): {listed}. "
            "A CPU result depends on its threads; the threads used are in each result's provenance."
        )
    return (
        f"these steps would run with fewer threads than the config asks: {listed}. "
        "A CPU result depends on its threads (matrix products split their sums by thread), so "
        "this is refused: give --cores (and --max-threads) at least that many, lower the "
        "config's threads, or set allow_fewer_threads: true to accept it"
    )
