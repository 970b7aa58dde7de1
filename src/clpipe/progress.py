"""How long a run will take: its planned jobs priced by what this machine measured
before, and the time left while it runs (torch-free).

Snakemake counts steps ("12 of 31 steps done"), not their sizes, and no logger plugin
is given the planned jobs (Snakemake 9.27's log events carry per-rule counts; the rich
plugin's bar counts jobs too). What a job costs is known from Snakemake's own
measurements: every job writes its ``benchmark:`` file (wall seconds, ``s``). A planned
job is priced by the median of the measured jobs *of its kind*: the same experiment,
the same step and the same method (an EWC arm's training costs what the other EWC
trainings of that experiment cost, whatever its seed, task or lambda). Kinds not
measured yet are named, and priced as soon as their first job finishes.

Before the run the work is spread over the run's slots (cores, or cluster jobs at
once); while it runs, the time left is the work left at the pace the run has kept so
far (priced work done / elapsed), which takes in parallelism and load as they are.
The workflow feeds it Snakemake's log events (workflow/rules/common.smk).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from clpipe.layout import SCRATCH, identity_of

Key = tuple[str, ...]


def measurement_key(
    path: str | PurePath, results: str | PurePath, method_of: Callable[[str, str], str]
) -> Key:
    """What kind of job a benchmark file measures: its experiment, its file (the step)
    and, for a model's files, whose model by method (``method_of(experiment, owner)``:
    the owner arm's method type, or scratch); seeds, tasks and arms are left out."""
    path, results = PurePath(path), PurePath(results)
    node = identity_of(path)
    if node is not None and "owner" in node:
        owner = node["owner"]
        who = SCRATCH if owner == SCRATCH else method_of(node["experiment"], owner)
        return (node["experiment"], who, node.get("method", ""), f"task{min(node['task'], 1)}", path.name)
    try:
        parts = path.relative_to(results).parts
    except ValueError:
        parts = path.parts
    if len(parts) >= 2 and parts[-2] == "accuracy_matrix":  # one per arm: any arm's
        parts = (*parts[:-1], "*")
    return tuple(parts)


def read_seconds(path: str | Path) -> float | None:
    """The wall seconds a Snakemake benchmark file records (its first row's ``s``);
    None for a file that is not one."""
    try:
        header, row = Path(path).read_text().splitlines()[:2]
        value = float(row.split("\t")[header.split("\t").index("s")])
    except (OSError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def past_measurements(
    results: str | Path, experiments: Iterable[str], method_of: Callable[[str, str], str]
) -> dict[Key, list[float]]:
    """Every benchmark file of the experiments' folders (and the datasets' checks) by
    kind of job: what this machine measured before."""
    found: dict[Key, list[float]] = {}
    folders = [Path(results) / e for e in experiments] + [Path(results) / "datasets"]
    for folder in folders:
        for path in folder.rglob("*.benchmark.tsv") if folder.is_dir() else ():
            seconds = read_seconds(path)
            if seconds is not None:
                found.setdefault(measurement_key(path, results, method_of), []).append(seconds)
    return found


def clock(seconds: float) -> str:
    """h:mm:ss"""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass
class PlannedJob:
    rule: str
    key: Key | None  # None: a job without a benchmark file (the target)
    threads: int = 1
    after: tuple[int, ...] = ()  # the planned jobs it waits for (their ids)


@dataclass
class RunEstimate:
    """The planned jobs of a run (by Snakemake's job id), priced by ``measured``."""

    planned: dict[int, PlannedJob]
    measured: dict[Key, list[float]]
    slots: int  # jobs' threads that run at once: cores, or cluster jobs
    per_core: bool = True  # local: a job of n threads takes n of the slots
    done: set[int] = field(default_factory=set)
    done_work: float = 0.0  # priced seconds of the finished jobs, when they were planned

    def price(self, job: PlannedJob) -> float | None:
        """A job's expected wall seconds: the median of its kind's measurements."""
        if job.key is None:
            return 0.0
        values = self.measured.get(job.key)
        return statistics.median(values) if values else None

    def _work(self, job: PlannedJob) -> float | None:
        price = self.price(job)
        return None if price is None else price * (max(job.threads, 1) if self.per_core else 1)

    def left(self) -> tuple[float, Counter]:
        """(priced work of the jobs not done, in slot-seconds; unpriced jobs by rule)."""
        work, unknown = 0.0, Counter()
        for jobid, job in self.planned.items():
            if jobid in self.done:
                continue
            w = self._work(job)
            if w is None:
                unknown[job.rule] += 1
            else:
                work += w
        return work, unknown

    def finished(self, jobid: int, seconds: float | None) -> None:
        """A job finished, having measured ``seconds`` (None: no benchmark file)."""
        job = self.planned.get(jobid)
        if job is None or jobid in self.done:
            return
        if seconds is not None and job.key is not None:
            self.measured.setdefault(job.key, []).append(seconds)
        self.done.add(jobid)
        self.done_work += self._work(job) or 0.0

    @staticmethod
    def _unknown(unknown: Counter) -> str:
        kinds = ", ".join(f"{rule} x{n}" for rule, n in sorted(unknown.items()))
        return f"{sum(unknown.values())} job(s) of kinds not measured yet ({kinds})"

    def longest_chain(self) -> float:
        """Seconds of the longest chain of planned jobs that wait for each other (priced
        ones; a run takes at least that long however many slots it has)."""
        ends: dict[int, float] = {}

        def end(jobid: int) -> float:
            if jobid not in ends:
                job = self.planned[jobid]
                before = [end(j) for j in job.after if j in self.planned and j not in self.done]
                ends[jobid] = (self.price(job) or 0.0) + max(before, default=0.0)
            return ends[jobid]

        return max((end(j) for j in self.planned if j not in self.done), default=0.0)

    def plan_line(self) -> str:
        """Before the run: its planned work and how long it takes on this machine: the
        work spread over the slots, or the longest chain of jobs if that is longer."""
        work, unknown = self.left()
        n = len(self.planned) - len(self.done)
        if not work and unknown:
            return (
                f"time: {n} planned job(s), none of a kind measured before on this machine; "
                "an estimate follows as jobs finish"
            )
        slots = f"{self.slots} core(s)" if self.per_core else f"{self.slots} job(s) at once"
        wall = max(work / max(self.slots, 1), self.longest_chain())
        text = f"time: {n} planned job(s): about {clock(wall)} on {slots}"
        text += ", from what this machine measured before"
        return text + (f"; plus {self._unknown(unknown)}" if unknown else "")

    def progress_line(self, elapsed: float) -> str:
        """While running: elapsed and time left at the pace kept so far."""
        work, unknown = self.left()
        if self.done_work > 0 and elapsed > 0:
            pace = self.done_work / elapsed  # priced seconds of work done per second
        else:
            pace = float(self.slots)
        text = f"time: {clock(elapsed)} elapsed, about {clock(work / pace)} left"
        return text + (f" and {self._unknown(unknown)}" if unknown else "")


def planned_jobs(dag: Any, results: str, method_of: Callable[[str, str], str]) -> dict[int, PlannedJob]:
    """The jobs a Snakemake DAG will run, by job id: their rule, kind, threads and the
    planned jobs each waits for."""
    jobs = list(dag.needrun_jobs())
    return {
        dag.jobid(job): PlannedJob(
            job.rule.name,
            None if job.benchmark is None else measurement_key(job.benchmark, results, method_of),
            job.threads,
            tuple(dag.jobid(j) for j in dag.dependencies[job]),
        )
        for job in jobs
    }


class RunTimes(logging.Handler):
    """The run's time estimate from Snakemake's log events (added to its logger by the
    workflow): at the first job stats (a dry run's too), the planned jobs of ``dag()``
    priced by what this machine measured; after each finished job, elapsed and left
    (not in a dry run). ``say``: where the lines go (Snakemake's logger)."""

    def __init__(self, dag, results, experiments, method_of, *, slots, per_core, dry_run, say):
        super().__init__(level=logging.INFO)
        self.dag, self.results, self.experiments, self.method_of = dag, results, list(experiments), method_of
        self.slots, self.per_core, self.dry_run, self.say = slots, per_core, dry_run, say
        self.estimate: RunEstimate | None = None
        self.benchmarks: dict[int, Any] = {}
        self.start = time.monotonic()

    def plan(self) -> None:
        dag = self.dag()
        self.benchmarks = {dag.jobid(job): job.benchmark for job in dag.needrun_jobs()}
        planned = planned_jobs(dag, self.results, self.method_of)
        measured = past_measurements(self.results, self.experiments, self.method_of)
        self.estimate = RunEstimate(planned, measured, self.slots, per_core=self.per_core)
        self.start = time.monotonic()
        self.say(self.estimate.plan_line())

    def emit(self, record: logging.LogRecord) -> None:
        from snakemake_interface_logger_plugins.common import LogEvent

        event = getattr(record, "event", None)
        if event == LogEvent.RUN_INFO and self.estimate is None:
            self.plan()
        elif self.estimate is None or self.dry_run:
            return
        elif event == LogEvent.JOB_FINISHED:
            bench = self.benchmarks.get(record.job_id)
            self.estimate.finished(record.job_id, None if bench is None else read_seconds(bench))
        elif event == LogEvent.PROGRESS:
            self.say(self.estimate.progress_line(time.monotonic() - self.start))
