"""The tiny config through a real SLURM cluster (profiles/slurm), started on this machine.

Needs root, SLURM and munge (Debian: slurmctld slurmd slurm-client munge) and the
Snakemake SLURM plugin (`pip install -e ".[slurm]"`); skipped, with the reason, without
them. tests/helpers/slurm_cluster.py starts munged, slurmctld and slurmd for the test and stops
them again, also when the run fails or hangs.
"""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from clpipe.config import validate_config
from conftest import ROOT, SCHEMA, SNAKEFILE, write_config
from helpers.slurm_cluster import ClusterUnavailable, SlurmCluster, unavailable_reason

PROFILE = ROOT / "profiles" / "slurm"
SITE_TEMPLATE = ROOT / "profiles" / "slurm-site.template"
# The tiny run takes a few minutes through SLURM; a hang (say, a status command that
# never answers) must fail the test, not block CI.
TIMEOUT_S = 20 * 60
# The tiny config's arms that between them use every kind of step (importance of two
# methods, MAG's freezing progress, a task C started from another arm's task B): the
# other arms add jobs of the same kinds, and minutes on CI's two cores.
ARMS = ("mag_b20", "mag_b20_c50", "ewc")
TRAIN_JOBS = 5  # train_first_task once; train_next_task: mag_b20 task 2, mag_b20_c50 task 3, ewc tasks 2-3


@pytest.fixture
def slurm_cluster():
    reason = unavailable_reason()
    if reason is None and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        reason = 'the Snakemake SLURM plugin is not installed (pip install -e ".[test]")'
    if reason:
        pytest.skip(f"no SLURM test cluster here: {reason}")
    # a CPU partition (the default) and a GPU partition with two fake GPUs, as the site
    # profile template expects
    cluster = SlurmCluster(partitions=("cpu", "gpu"), gpus=2)
    try:
        cluster.__enter__()
    except ClusterUnavailable as err:
        pytest.skip(f"no SLURM test cluster here: {err}")
    try:
        yield cluster
    finally:
        cluster.__exit__(None, None, None)  # cancels every job, stops every daemon


def snakemake_with_timeout(cluster, workdir, *args, timeout=TIMEOUT_S):
    """Run snakemake; on a timeout stop it with SIGINT (it ignores SIGTERM while polling)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **cluster.env},
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as interrupted:  # the timeout, or ^C: never leave snakemake behind
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        if not isinstance(interrupted, subprocess.TimeoutExpired):
            raise
        pytest.fail(
            f"snakemake did not finish in {timeout} s; stopped.\n{out[-3000:]}\n{err[-5000:]}\n"
            f"--- cluster ---\n{cluster.describe()}"
        )
    if proc.returncode != 0:
        pytest.fail(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{out[-3000:]}\n{err[-8000:]}\n"
            f"--- cluster ---\n{cluster.describe()}"
        )
    return out + err


def slurm_plugin_or_skip():
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip('the Snakemake SLURM plugin is not installed (pip install -e ".[test]")')


def submissions(workdir, *args):
    """What each cluster job of a dry run through the SLURM profiles would ask for
    (tests/helpers/slurm_requests.py: Snakemake's own group calculation and the plugin's flags)."""
    slurm_plugin_or_skip()
    cmd = [
        sys.executable,
        str(ROOT / "tests" / "helpers" / "slurm_requests.py"),
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "-n",
        "--quiet",
        "rules",
        "--workflow-profile",
        str(PROFILE),
        "--executor",
        "slurm",
        "--jobs",
        "50",
        # a cluster run has no --cores (threads are not capped); a dry run assumes 1
        "--cores",
        "1024",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    found = [
        json.loads(line.split(" ", 1)[1])
        for line in proc.stdout.splitlines()
        if line.startswith("SUBMISSION ")
    ]
    # for the record (pytest -s): what each cluster job asks for
    for job in found:
        print(
            job["group"],
            job["rules"],
            job["sbatch_gpus"] or "no GPU",
            job["sbatch_cpus"],
            f"-t {job['resources'].get('runtime')}",
        )
    return found


GPU_STEPS = {"train_first_task", "train_next_task", "evaluate", "compute_importance"}
MODEL_STEPS = {"init_model", "train_first_task", "train_next_task"}
FOLLOWERS = {"evaluate", "compute_importance", "update_progress"}


def assert_one_gpu_per_gpu_job(jobs):
    for job in jobs:
        if GPU_STEPS & set(job["rules"]):
            assert job["sbatch_gpus"] == "--gpus=1", job
        else:
            assert job["sbatch_gpus"] == "", job
        # the one-GPU limit holds per cluster job, not for the run: GPU jobs run side by side
        assert "gpu" not in job["scheduler_resources"], job


def test_the_slurm_profile_submits_one_job_per_model_with_one_gpu(tmp_path):
    """Dry run of the default config on a GPU cluster (needs no SLURM): each trained model
    is one submission with its evaluation and consolidation inside, asking for exactly
    one GPU and its training's threads; CPU-only jobs ask for no GPU; resources come
    from the experiment's config."""
    cfg = write_config(tmp_path / "c.yaml", ROOT / "config/config.yaml", data_dir=str(tmp_path / "data"))
    jobs = submissions(tmp_path, "--configfile", str(cfg), "--config", "device=cuda")
    experiments = validate_config(yaml.safe_load(cfg.read_text()), str(SCHEMA))
    assert len(jobs) > 300
    assert_one_gpu_per_gpu_job(jobs)
    steps = sum(len(job["rules"]) for job in jobs)
    assert len(jobs) < steps / 2, f"{len(jobs)} cluster jobs for {steps} steps"
    for job in jobs:
        group, rules = job["group"], job["rules"]
        if group is None:  # ungrouped: only the data step (the download is a local rule)
            assert rules == ["prepare_data"], job
            continue
        makers = [r for r in rules if r in MODEL_STEPS]
        if group.startswith("model_"):
            assert len(makers) == 1, f"{group} makes {len(makers)} models: {rules}"
            assert set(rules) - MODEL_STEPS <= FOLLOWERS
            for step in job["steps"]:  # the followers all read the group's one model
                if step["rule"] in FOLLOWERS:
                    wc = step["wildcards"]
                    who = wc.get("owner", wc.get("arm"))
                    assert f"model_{wc['experiment']}_seed{wc['seed']}_{who}_task{wc['task']}" == group, job
            asked = experiments[job["steps"][0]["wildcards"]["experiment"]].resources["train"]
            if {"train_first_task", "train_next_task"} & set(rules):
                assert job["resources"]["mem_mb"] == asked["mem_mb"], job
                assert job["sbatch_cpus"] == f"--cpus-per-task={asked['threads']}", job  # never lowered
        else:
            assert group == "figures" and not makers, job
    sizes = {(e.resources["train"]["mem_mb"], e.resources["train"]["threads"]) for e in experiments.values()}
    assert len(sizes) > 1  # the experiments ask for different sizes, and each gets its own


def test_steps_rerun_without_their_training_still_get_a_gpu(tiny_run):
    """Evaluations (or importance steps) out of date on their own -- their script or an
    eval setting changed -- are cluster jobs of their own that still ask for one GPU."""
    work, cfg = tiny_run
    # every evaluation; the importance steps after task 1 (a later one would follow the
    # retraining its rerun causes)
    for rule, limit in (("evaluate", "--until"), ("compute_importance", "--omit-from")):
        until = rule if limit == "--until" else "train_next_task"
        jobs = submissions(
            work, "--configfile", str(cfg), "--config", "device=cuda", "-R", rule, limit, until
        )
        alone = [job for job in jobs if job["group"] and job["group"].startswith("model_")]
        assert len(alone) >= 3 and all(set(job["rules"]) == {rule} for job in alone), jobs
        assert_one_gpu_per_gpu_job(jobs)
        assert all(job["sbatch_gpus"] == "--gpus=1" for job in alone)


def test_a_retried_job_asks_for_a_longer_time_limit():
    """Attempt n of a job asks for n times the config's runtime (the profile retries twice)."""
    from clpipe.resources import resource

    experiments = {}
    top = {"train": {"mem_mb": 1000, "runtime": 45, "threads": 2}}
    assert [resource(experiments, top, "train", "runtime", None, a) for a in (1, 2, 3)] == [45, 90, 135]
    assert resource(experiments, top, "train", "mem_mb", None, 3) == 1000
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["retries"] == 2 and profile["keep-going"] is True


def site_profile(folder, cluster):
    """profiles/slurm-site.template filled in for the test cluster, as a user would: its
    partitions (the GPU one with the cluster's fake GPUs), no account (no accounting)."""
    folder.mkdir()
    text = (SITE_TEMPLATE / "config.yaml").read_text()
    text = text.replace("/path/to/this/profile/partitions.yaml", str(folder / "partitions.yaml"))
    text = text.replace('  slurm_account: "<account>"', "  # (no account on the test cluster)")
    # the test cluster's files are on the same disk, not a shared filesystem
    text = text.replace("latency-wait: 60", "latency-wait: 5")
    text = text.replace("cores: 32", f"cores: {cluster.cpus}")  # its one node's
    assert "<" not in text.split("default-resources:")[1].split("#")[0], "a placeholder is left"
    (folder / "config.yaml").write_text(text)
    partitions = yaml.safe_load((SITE_TEMPLATE / "partitions.yaml").read_text())["partitions"]
    assert set(partitions) == {"gpu", "cpu"}
    partitions["gpu"]["max_gpu"] = cluster.gpus
    (folder / "partitions.yaml").write_text(yaml.safe_dump({"partitions": partitions}))
    return folder


@pytest.mark.slow
def test_tiny_run_on_a_real_slurm_cluster(tmp_path, data_dir, slurm_cluster, tiny_run):
    work = tmp_path / "run"
    work.mkdir()
    tiny = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    tiny["experiments"]["tiny"]["arms"] = {a: tiny["experiments"]["tiny"]["arms"][a] for a in ARMS}
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump({**tiny, "data_dir": str(data_dir)}))
    log = snakemake_with_timeout(
        slurm_cluster,
        work,
        "--profile",
        str(site_profile(tmp_path / "site", slurm_cluster)),
        "--workflow-profile",
        str(PROFILE),
        "--configfile",
        str(cfg),
        # device auto: the steps that run a model ask SLURM for a GPU (a fake one here:
        # SLURM allocates it and sets CUDA_VISIBLE_DEVICES; torch sees none and uses the CPU)
        "--config",
        "device=auto",
        # test-only settings, on the command line as the site profile template says: no
        # accounting database here, so poll with squeue; and the plugin waits 40 s before
        # each status poll after a job ends (polite on a shared cluster), while the tiny
        # DAG is 11 jobs deep, so poll sooner
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "5",
    )
    assert re.search(r"\b(\d+) of \1 steps \(100%\) done", log), log[-3000:]

    # The same numbers, to the last digit, as the suite's local run of the same arms: a
    # job's result depends on its spec alone, not on where or beside what it ran.
    key = ["arm", "seed", "trained_task", "eval_task"]
    numbers = [*key, "accuracy", "loss", "n", "val_accuracy", "val_loss", "spec_hash"]
    here = pd.read_csv(work / "results/tiny/metrics.csv")[numbers].sort_values(key)
    local = pd.read_csv(tiny_run[0] / "results/tiny/metrics.csv")[numbers]
    local = local[local["arm"].isin(ARMS)].sort_values(key)
    assert set(here["arm"]) == set(ARMS) and len(here) >= 12, here
    assert here.to_csv(index=False) == local.to_csv(index=False)
    for name in ("summary.csv", "accuracy_matrix.csv", "summary.md", "figures/methods.png"):
        assert (work / "results/tiny" / name).is_file(), name

    # Each training step ran inside a SLURM job of its own, on this cluster's node.
    logs = sorted((work / "results").rglob("train.log"))
    assert len(logs) == TRAIN_JOBS, [str(p) for p in logs]
    ids = []
    for path in logs:
        found = re.findall(r"SLURM job (\S+) on ([^,\s]+)", path.read_text())
        assert len(found) == 1, f"{path} has no single 'SLURM job <id> on <node>' line:\n{path.read_text()}"
        job_id, node = found[0]
        assert job_id.isdigit(), f"{path}: job id {job_id!r} is not a number"
        assert node == slurm_cluster.node, f"{path}: ran on {node}, not {slurm_cluster.node}"
        ids.append(int(job_id))
    assert len(set(ids)) == len(ids), f"training jobs share SLURM job ids: {sorted(ids)}"

    # GPU steps went to the GPU partition with a GPU of their own; the rest to the CPU one.
    for path in logs + sorted((work / "results").rglob("evaluate.log")):
        partition, gpus = re.findall(r"partition (\S+), GPUs (\S+)", path.read_text())[0]
        assert partition == "gpu" and gpus in ("0", "1"), (path, partition, gpus)
    for name in ("results/tiny/aggregate.log", "results/tiny/data/prepare_data.log"):
        partition, gpus = re.findall(r"partition (\S+), GPUs (\S+)", (work / name).read_text())[0]
        assert (partition, gpus) == ("cpu", "none"), (name, partition, gpus)

    # The dataset check is a local rule: it ran on the submitting host, outside SLURM.
    assert "SLURM job" not in (work / "results/datasets/mnist.log").read_text()

    # A model's evaluation ran inside its training job (one job group, one submission).
    for path in logs:
        evaluation = path.with_name("evaluate.log").read_text()
        assert re.findall(r"SLURM job (\S+) on", evaluation) == re.findall(
            r"SLURM job (\S+) on", path.read_text()
        )
