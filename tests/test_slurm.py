"""The tiny config through a real SLURM cluster (profiles/slurm), started on this machine.

Needs root, SLURM and munge (Debian: slurmctld slurmd slurm-client munge) and the
Snakemake SLURM plugin (`pip install -e ".[slurm]"`); skipped, with the reason, without
them. tests/slurm_cluster.py starts munged, slurmctld and slurmd for the test and stops
them again, also when the run fails or hangs.
"""

import importlib.util
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest
from slurm_cluster import ClusterUnavailable, SlurmCluster, unavailable_reason
from test_workflow import assert_tiny_outputs

from conftest import ROOT, SNAKEFILE, snakemake, write_config

PROFILE = ROOT / "profiles" / "slurm"
# The tiny run takes a few minutes through SLURM; a hang (say, a status command that
# never answers) must fail the test, not block CI.
TIMEOUT_S = 20 * 60
TRAIN_JOBS = 13  # train_first_task once, train_next_task for 12 (arm, task) pairs (joint: one)


@pytest.fixture
def slurm_cluster():
    reason = unavailable_reason()
    if reason is None and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        reason = 'the Snakemake SLURM plugin is not installed (pip install -e ".[slurm]")'
    if reason:
        pytest.skip(f"no SLURM test cluster here: {reason}")
    cluster = SlurmCluster()
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


def dry_run_jobs(text):
    """[(group or None, rule, wildcards, resources)] of a dry run's job listing."""
    jobs, group = [], None
    for line in text.splitlines():
        if m := re.match(r"^\[.*\] Group job (\S+) ", line):
            group = m.group(1)
        elif m := re.match(r"^( *)(?:local)?rule (\w+):$", line):
            if not m.group(1):
                group = None  # a job of its own ends the group's listing
            jobs.append([group, m.group(2), {}, {}])
        elif jobs and (m := re.match(r"^ *(wildcards|resources): (.*)$", line)):
            pairs = (p.split("=", 1) for p in m.group(2).split(", ") if "=" in p)
            jobs[-1][2 if m.group(1) == "wildcards" else 3].update(pairs)
    return jobs


def test_the_slurm_profile_submits_one_job_per_model_sized_by_its_experiment(tmp_path):
    """Dry run of the default config on a GPU cluster (needs no SLURM): each trained model
    is one submission, with its evaluation and consolidation inside; training jobs are
    never grouped together; resources come from the experiment's config."""
    cfg = write_config(tmp_path / "c.yaml", ROOT / "config/config.yaml", data_dir=str(tmp_path / "data"))
    out = snakemake(
        tmp_path,
        "-n",
        "--workflow-profile",
        str(PROFILE),
        "--configfile",
        str(cfg),
        "--config",
        "device=cuda",
    ).stdout
    jobs = dry_run_jobs(out)
    assert len(jobs) > 200
    groups = {}
    for group, rule, wildcards, resources in jobs:
        groups.setdefault(group, []).append((rule, wildcards, resources))
    model_steps = {"init_model", "train_first_task", "train_next_task"}
    followers = {"evaluate", "compute_importance", "update_progress"}
    for group, members in groups.items():
        if group is None:  # ungrouped: only the data steps and the target
            assert {rule for rule, _, _ in members} <= {"download_data", "prepare_data", "all"}, members
            continue
        makers = [m for m in members if m[0] in model_steps]
        if group.startswith("model_"):
            assert len(makers) == 1, f"{group} makes {len(makers)} models: {members}"
            assert {rule for rule, _, _ in members} - model_steps <= followers
            for rule, wc, _ in members:  # the followers all read the group's one model
                if rule in followers:
                    who = wc.get("owner", wc.get("arm"))
                    node = f"model_{wc['experiment']}_seed{wc['seed']}_{who}_task{wc['task']}"
                    assert node == group, (group, rule, wc)
        else:
            assert group.startswith("figures") and not makers, members
    # a GPU per training job, none for the steps that ride along (they use its GPU)
    for _, rule, wildcards, resources in jobs:
        if rule in ("train_first_task", "train_next_task"):
            assert resources["gpu"] == "1", (rule, wildcards)
            expected = {
                "split_mnist": "24000",
                "split_mnist_task": "24000",
                "split_mnist_growing": "8000",
                "four_datasets_growing": "8000",
            }.get(wildcards["experiment"], "4000")
            assert resources["mem_mb"] == expected, (rule, wildcards, resources)
        elif rule in ("evaluate", "compute_importance"):
            assert resources["gpu"] == "0", (rule, wildcards)
    local = {"all", "download_data"}  # localrules: run by Snakemake itself
    submissions = sum(r not in local for r, _, _ in groups.get(None, [])) + len(groups) - (None in groups)
    assert submissions < len(jobs) / 2, f"{submissions} cluster jobs for {len(jobs)} steps"


@pytest.mark.slow
def test_tiny_run_on_a_real_slurm_cluster(tmp_path, data_dir, slurm_cluster):
    work = tmp_path / "run"
    work.mkdir()
    cfg = write_config(work / "config.yaml", ROOT / "tests/configs/tiny.yaml", data_dir=str(data_dir))
    log = snakemake_with_timeout(
        slurm_cluster,
        work,
        "--workflow-profile",
        str(PROFILE),
        "--configfile",
        str(cfg),
        # A job group may use at most this many cores (the test node's; see the profile).
        "--cores",
        str(slurm_cluster.cpus),
        # The plugin waits 40 s before each status poll after a job ends (polite on a
        # shared cluster); the tiny DAG is 11 jobs deep, so poll sooner here.
        "--slurm-init-seconds-before-status-checks",
        "5",
    )
    assert re.search(r"\b(\d+) of \1 steps \(100%\) done", log), log[-3000:]

    assert_tiny_outputs(work)
    arms = set(pd.read_csv(work / "results/tiny/metrics.csv")["arm"])
    assert arms == {"finetune", "mag_0", "mag_b20", "mag_b50", "mag_b20_c50", "ewc", "replay", "joint"}

    # Each training step ran inside a SLURM job of its own, on this cluster's node.
    logs = sorted((work / "results").rglob("train.log"))
    assert len(logs) == TRAIN_JOBS, [str(p) for p in logs]
    ids = []
    for path in logs:
        found = re.findall(r"SLURM job (\S+) on (\S+)", path.read_text())
        assert len(found) == 1, f"{path} has no single 'SLURM job <id> on <node>' line:\n{path.read_text()}"
        job_id, node = found[0]
        assert job_id.isdigit(), f"{path}: job id {job_id!r} is not a number"
        assert node == slurm_cluster.node, f"{path}: ran on {node}, not {slurm_cluster.node}"
        ids.append(int(job_id))
    assert len(set(ids)) == len(ids), f"training jobs share SLURM job ids: {sorted(ids)}"

    # The dataset check is a local rule: it ran on the submitting host, outside SLURM.
    assert "SLURM job" not in (work / "results/datasets/mnist.log").read_text()

    # A model's evaluation ran inside its training job (one job group, one submission).
    for path in logs:
        evaluation = path.with_name("evaluate.log").read_text()
        assert re.findall(r"SLURM job (\S+) on", evaluation) == re.findall(
            r"SLURM job (\S+) on", path.read_text()
        )
