"""The run's time estimate: planned jobs priced by the machine's earlier measurements
(clpipe.progress), on hand-made benchmark files and plans."""

import pytest

from clpipe import progress


def method_of(experiment, owner):
    return {"ewc_a": "ewc", "ewc_b": "ewc", "finetune": "finetune"}[owner]


def bench(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:01\t10.0\n")
    return path


def test_a_job_s_kind_is_its_experiment_step_and_method_not_its_seed_task_or_arm(tmp_path):
    def key(rel):
        return progress.measurement_key(tmp_path / rel, tmp_path, method_of)

    assert key("e/seed0/ewc_a/task2/train.benchmark.tsv") == key("e/seed3/ewc_b/task4/train.benchmark.tsv")
    assert key("e/seed0/ewc_a/task2/train.benchmark.tsv") != key("e/seed0/finetune/task2/train.benchmark.tsv")
    assert key("e/seed0/ewc_a/task2/train.benchmark.tsv") != key("f/seed0/ewc_a/task2/train.benchmark.tsv")
    assert key("e/seed0/scratch/task1/train.benchmark.tsv") != key(
        "e/seed0/finetune/task2/train.benchmark.tsv"
    )
    assert key("e/seed0/scratch/task1/ewc/compute_importance.benchmark.tsv") != key(
        "e/seed0/scratch/task1/mag/compute_importance.benchmark.tsv"
    )
    assert key("e/figures/accuracy_matrix/ewc_a.benchmark.tsv") == key(
        "e/figures/accuracy_matrix/x.benchmark.tsv"
    )
    assert key("e/aggregate.benchmark.tsv") == ("e", "aggregate.benchmark.tsv")


def test_measurements_are_read_from_benchmark_files_and_others_are_skipped(tmp_path):
    bench(tmp_path / "e/seed0/ewc_a/task2/train.benchmark.tsv", 10.0)
    bench(tmp_path / "e/seed1/ewc_b/task3/train.benchmark.tsv", 30.0)
    bench(tmp_path / "datasets/mnist.benchmark.tsv", 1.5)
    (tmp_path / "e/seed0/ewc_a/task2/broken.benchmark.tsv").write_text("not a table")
    bench(tmp_path / "other/aggregate.benchmark.tsv", 99.0)  # an experiment not asked for
    found = progress.past_measurements(tmp_path, ["e"], method_of)
    key = progress.measurement_key(tmp_path / "e/seed0/ewc_a/task2/train.benchmark.tsv", tmp_path, method_of)
    assert sorted(found[key]) == [10.0, 30.0]
    assert found[("datasets", "mnist.benchmark.tsv")] == [1.5]
    assert sum(len(v) for v in found.values()) == 3
    assert progress.read_seconds(tmp_path / "nothing.tsv") is None


def _plan(chain: bool):
    """Four training jobs of 10 s (median of the measured 8, 10, 12), in a chain or
    side by side, and one job of a kind never measured."""
    train, other = ("e", "ewc", "train"), ("e", "never")
    planned = {
        i: progress.PlannedJob("train_next_task", train, 1, (i - 1,) if chain and i > 1 else ())
        for i in (1, 2, 3, 4)
    }
    planned[5] = progress.PlannedJob("aggregate", other, 1, (4,))
    return progress.RunEstimate(planned, {train: [8.0, 10.0, 12.0]}, slots=2)


def test_the_plan_is_the_work_over_the_cores_or_the_longest_chain_if_longer():
    side_by_side, chain = _plan(chain=False), _plan(chain=True)
    assert side_by_side.plan_line().startswith("time: 5 planned job(s): about 0:00:20 on 2 core(s)")
    assert chain.plan_line().startswith("time: 5 planned job(s): about 0:00:40 on 2 core(s)")
    assert "plus 1 job(s) of kinds not measured yet (aggregate x1)" in chain.plan_line()


def test_a_job_of_several_threads_takes_as_many_cores():
    estimate = _plan(chain=False)
    for job in estimate.planned.values():
        job.threads = 2
    assert "about 0:00:40 on 2 core(s)" in estimate.plan_line()


def test_while_running_the_time_left_follows_the_pace_kept_and_new_measurements_price_new_kinds():
    estimate = _plan(chain=False)
    estimate.finished(1, 10.0)
    estimate.finished(2, 10.0)
    # 20 s of priced work done in 40 s: half the pace planned; 20 s left -> 40 s
    assert estimate.progress_line(40.0).startswith("time: 0:00:40 elapsed, about 0:00:40 left and 1 job(s)")
    estimate.finished(3, 10.0)
    estimate.finished(4, 10.0)
    estimate.measured[("e", "never")] = [5.0]  # a job of that kind finished elsewhere
    assert estimate.progress_line(80.0) == "time: 0:01:20 elapsed, about 0:00:10 left"
    estimate.finished(5, 5.0)
    assert estimate.progress_line(90.0) == "time: 0:01:30 elapsed, about 0:00:00 left"


def test_nothing_measured_says_so():
    estimate = progress.RunEstimate({1: progress.PlannedJob("x", ("k",))}, {}, slots=4)
    assert estimate.plan_line() == (
        "time: 1 planned job(s), none of a kind measured before on this machine; "
        "an estimate follows as jobs finish"
    )


@pytest.mark.parametrize("seconds, text", [(0, "0:00:00"), (59.6, "0:01:00"), (3725, "1:02:05")])
def test_clock(seconds, text):
    assert progress.clock(seconds) == text


class FakeJob:
    def __init__(self, rule, benchmark, threads=1):
        self.rule = type("Rule", (), {"name": rule})()
        self.benchmark, self.threads = benchmark, threads


class FakeDag:
    """What RunTimes reads of Snakemake's DAG: the jobs to run, their ids, what they wait for."""

    def __init__(self, jobs, waits):
        self.jobs, self.dependencies = jobs, waits

    def needrun_jobs(self):
        return self.jobs

    def jobid(self, job):
        return self.jobs.index(job) + 1


def test_the_handler_says_the_plan_at_the_job_stats_and_the_time_left_after_each_job(tmp_path):
    import logging

    from snakemake_interface_logger_plugins.common import LogEvent

    old = bench(tmp_path / "e/seed0/ewc_a/task2/train.benchmark.tsv", 20.0)  # an earlier run's
    jobs = [
        FakeJob("train_next_task", str(tmp_path / f"e/seed1/ewc_b/task{t}/train.benchmark.tsv"))
        for t in (2, 3)
    ]
    dag = FakeDag(jobs, {jobs[0]: {}, jobs[1]: {jobs[0]: None}})
    said = []
    handler = progress.RunTimes(
        lambda: dag, str(tmp_path), ["e"], method_of, slots=2, per_core=True, dry_run=False, say=said.append
    )

    def event(kind, **extra):
        record = logging.LogRecord("snakemake", logging.INFO, "", 0, "", None, None)
        record.__dict__.update(event=kind, **extra)
        handler.emit(record)

    event(LogEvent.RUN_INFO)
    assert said == [
        "time: 2 planned job(s): about 0:00:40 on 2 core(s), from what this machine measured before"
    ]
    event(LogEvent.RUN_INFO)  # said once
    bench(tmp_path / "e/seed1/ewc_b/task2/train.benchmark.tsv", 30.0)
    event(LogEvent.JOB_FINISHED, job_id=1)
    assert sorted(handler.estimate.measured[progress.measurement_key(old, tmp_path, method_of)]) == [
        20.0,
        30.0,
    ]
    event(LogEvent.PROGRESS)
    assert said[-1].startswith("time: 0:00:") and said[-1].endswith(" left")
