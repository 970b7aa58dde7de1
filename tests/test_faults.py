"""Runs that survive bad input, killed jobs and files that lie (and say so clearly)."""

import copy
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from test_config import BAD_CONFIGS, mutate
from test_workflow import SNAKEFILE, snakemake

from clpipe import io
from clpipe.runtime import make_runtime
from clpipe.steps.consolidate import compute_importance
from clpipe.steps.init import init_model
from clpipe.steps.train import train_first_task, train_next_task
from conftest import ROOT


def test_bad_configs_fail_before_any_job_runs(tmp_path):
    """Every refused config of test_config, through Snakemake itself: no job starts."""
    assert len(BAD_CONFIGS) >= 15
    for i, (change, key) in enumerate(BAD_CONFIGS):
        work = tmp_path / f"c{i}"
        work.mkdir()
        cfg = mutate(change)
        if key.endswith("arms.a.start_from"):
            cfg["experiments"]["tiny"]["arms"]["b"] = {"start_from": "a"}
        path = work / "config.yaml"
        path.write_text(yaml.safe_dump(copy.deepcopy(cfg)))
        proc = snakemake(work, "--cores", "1", "--configfile", str(path), check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, key
        assert f"invalid configuration: config key '{key}'" in out, (key, out[-2000:])
        assert not (work / "results").exists(), key


def small_config(data_dir, **train):
    """Two tasks, fine-tuning only: the smallest run with a resumable training job."""
    return {
        "data_dir": str(data_dir),
        "device": "cpu",
        "seeds": [0],
        "resources": {
            kind: {"mem_mb": 2000, "runtime": 10, "threads": 1}
            for kind in ("train", "consolidate", "evaluate")
        },
        "experiments": {
            "small": {
                "dataset": "mnist",
                "tasks": [[0, 1], [2, 3]],
                "data": {"max_train_per_task": 4000, "max_test_per_task": 300},
                "input": {"size": 32, "channels": 3},
                "model": {"name": "vgg16", "width": 0.0625},
                "train": {"epochs": 6, "batch_size": 64, "optimizer": {"name": "adam", "lr": 1e-3}, **train},
                "arms": {"finetune": {"method": "finetune"}},
            }
        },
    }


def write(work, cfg):
    work.mkdir(parents=True, exist_ok=True)
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def job_processes(work, script):
    """PIDs of the processes running a rule's script from this working directory (the
    python that Snakemake starts for a job, not Snakemake itself)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if any(str(work).encode() in a and a.endswith(script.encode()) for a in args):
            found.append(int(entry))
    return found


@pytest.mark.slow
def test_a_job_killed_with_sigkill_is_retried_with_more_time_and_resumes_bit_identical(tmp_path, data_dir):
    """The job itself dies (as at a time limit, a preemption or an OOM kill) after an
    epoch; Snakemake retries it (--retries, as the SLURM profile sets) with twice the time
    limit, and it resumes from its epoch checkpoint to the same weights, bit for bit."""
    ref = tmp_path / "uninterrupted"
    snakemake(ref, "--cores", "1", "--configfile", str(write(ref, small_config(data_dir))))

    work = tmp_path / "killed"
    cfg = write(work, small_config(data_dir))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(work)]
    proc = subprocess.Popen(
        [*cmd, "--cores", "1", "--retries", "1", "--configfile", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    state = work / "results/small/seed0/scratch/task1/train.resume.pt"
    try:
        deadline = time.time() + 300
        while not state.exists():
            assert proc.poll() is None, "the run ended before its first epoch checkpoint"
            assert time.time() < deadline, "no epoch checkpoint appeared"
            time.sleep(0.05)
        pids = job_processes(work, "train_first_task.py")
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    assert "Error in rule train_first_task" in out and "Trying to restart job" in out, out[-3000:]
    log = (work / "results/small/seed0/scratch/task1/train.log").read_text()
    assert "resuming after epoch" in log, log
    assert "time limit 20 min" in log, log  # the config's 10 min, times the second attempt
    assert not state.exists(), "the epoch checkpoint is removed once the job is done"
    for node in ("scratch/task1", "finetune/task2"):
        a = io.load(ref / f"results/small/seed0/{node}/model.pt", "model")["state_dict"]
        b = io.load(work / f"results/small/seed0/{node}/model.pt", "model")["state_dict"]
        for k in a:
            assert torch.equal(a[k], b[k]), (node, k)
    assert (ref / "results/small/metrics.csv").read_bytes() == (
        work / "results/small/metrics.csv"
    ).read_bytes()


def test_a_non_finite_loss_stops_the_job_and_nothing_runs_on_it(tmp_path, data_dir):
    cfg = small_config(data_dir, epochs=1)
    cfg["experiments"]["small"]["train"]["optimizer"] = {"name": "sgd", "lr": 1e30}
    work = tmp_path / "nan"
    proc = snakemake(work, "--cores", "1", "--configfile", str(write(work, cfg)), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Error in rule train_first_task" in out
    log = (work / "results/small/seed0/scratch/task1/train.log").read_text()
    assert "NonFiniteLossError: small seed 0 scratch task 1: non-finite loss at epoch 1, batch" in log
    assert not (work / "results/small/seed0/scratch/task1/model.pt").exists()
    assert not (work / "results/small/seed0/finetune").exists()
    assert not (work / "results/small/metrics.csv").exists()


@pytest.fixture
def trained(tmp_path):
    """A task-1 model and its EWC Fisher, made by the real steps on toy data."""
    runtime = make_runtime("cpu", deterministic=True, threads=1)
    g = torch.Generator().manual_seed(0)
    tasks = []
    for classes in ([0, 1], [2, 3]):
        y = torch.tensor(classes)[torch.randint(0, 2, (32,), generator=g)]
        split = {
            "x": torch.randint(0, 256, (32, 1, 8, 8), generator=g, dtype=torch.uint8),
            "y": y,
            "index": torch.arange(32),
        }
        tasks.append({"dataset": "toy", "classes": classes, "train": split, "val": split, "test": split})
    p = lambda name: str(tmp_path / name)  # noqa: E731
    io.save(p("tasks.pt"), "tasks", {"step": "prepare_data"}, tasks=tasks)
    inp = {"size": 8, "channels": 1, "normalize": None}
    base = {
        "experiment": "toy",
        "seed": 0,
        "scenario": "domain",
        "tasks": [[0, 1], [2, 3]],
        "input": inp,
        "eval": {"batch_size": 32},
        "train": {"epochs": 1, "batch_size": 16, "optimizer": {"name": "adam", "lr": 1e-3}},
    }
    spec = {
        "name": "mlp",
        "hidden": [8],
        "output_relu": False,
        "init": "glorot",
        "input": inp,
        "n_outputs": 2,
    }
    init_model({"experiment": "toy", "seed": 0, "model": spec}, p("init.pt"), runtime)
    train_first_task(p("init.pt"), p("tasks.pt"), {**base, "task": 1}, p("a.pt"), p("a.csv"), runtime)
    ewc = {
        "type": "ewc",
        "fisher_labels": "empirical",
        "fisher_samples": None,
        "fisher_batch_size": 16,
        "online": False,
        "decay": 1.0,
    }
    compute_importance(
        p("a.pt"), p("tasks.pt"), None, None, {**base, "task": 1, "method": ewc}, p("f.pt"), runtime
    )
    spec_b = {**base, "task": 2, "arm": "ewc", "method": ewc, "task_settings": {"lambda": 1.0}}
    return p, spec_b, runtime  # fmt: skip


def test_a_truncated_fisher_file_is_named_with_its_step(trained):
    p, spec, runtime = trained
    data = open(p("f.pt"), "rb").read()
    open(p("f.pt"), "wb").write(data[: len(data) // 3])
    with pytest.raises(io.FileFormatError, match=r"f.pt: cannot be read .*\(compute_importance\)"):
        train_next_task(p("a.pt"), p("tasks.pt"), p("f.pt"), spec, p("b.pt"), p("b.csv"), p("b.rec"), runtime)
    assert not os.path.exists(p("b.pt"))


def test_a_corrupted_model_is_named(trained):
    p, spec, runtime = trained
    with open(p("a.pt"), "r+b") as f:
        f.seek(200)
        f.write(os.urandom(400))
    with pytest.raises(io.FileFormatError, match=r"a.pt: cannot be read as a clpipe model file"):
        train_next_task(p("a.pt"), p("tasks.pt"), p("f.pt"), spec, p("b.pt"), p("b.csv"), p("b.rec"), runtime)


def test_a_fisher_file_of_another_architecture_is_refused_with_names_and_shapes(trained):
    p, spec, runtime = trained
    imp = io.load(p("f.pt"), "importance")
    imp["terms"][0]["fisher"]["net.1.weight"] = torch.zeros(9, 64)
    io.save(p("g.pt"), "importance", imp["meta"], terms=imp["terms"], online=False, labels="empirical")
    with pytest.raises(ValueError, match=r"net.1.weight: shape \(9, 64\) but the model has \(8, 64\)"):
        train_next_task(p("a.pt"), p("tasks.pt"), p("g.pt"), spec, p("b.pt"), p("b.csv"), p("b.rec"), runtime)


def test_a_model_file_where_an_importance_file_belongs_is_refused(trained):
    p, spec, runtime = trained
    with pytest.raises(
        io.FileFormatError, match=r"a.pt: is a 'clpipe.model/1' file .* expected 'clpipe.importance/1'"
    ):
        train_next_task(p("a.pt"), p("tasks.pt"), p("a.pt"), spec, p("b.pt"), p("b.csv"), p("b.rec"), runtime)


@pytest.mark.slow
def test_two_runs_in_separate_folders_give_identical_metrics(tmp_path, data_dir):
    rows = []
    for name in ("one", "two"):
        cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
        cfg["data_dir"] = str(data_dir)
        cfg["experiments"]["tiny"]["arms"] = {
            "mag_b20": {"method": "mag", "freeze": [20]},
            "mag_b20_c50": {"start_from": "mag_b20", "freeze": [50]},
        }
        work = tmp_path / name
        snakemake(work, "--cores", "2", "--configfile", str(write(work, cfg)))
        rows.append((work / "results/tiny/metrics.csv").read_bytes())
    assert rows[0] == rows[1]
