"""Runs that survive bad input, killed jobs and files that lie (and say so clearly)."""

import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from clpipe import io
from clpipe.runtime import make_runtime
from clpipe.steps.importance import compute_importance
from clpipe.steps.init import init_model
from clpipe.steps.train import train_first_task, train_next_task
from conftest import ROOT, SNAKEFILE, snakemake
from helpers.bad_configs import BAD_CONFIGS, mutate
from helpers.snakemake_runner import SnakemakeRunner

# --- bad input, refused before any job: a table of cases through Snakemake itself -------


@pytest.fixture(scope="module")
def runner():
    """Snakemake's command line, forked from one process that imported it once
    (tests/helpers/snakemake_runner.py): each refused config costs a DAG build, not an import."""
    run = SnakemakeRunner()
    yield run
    run.close()


def refuse(runner, work, text=None, cfg=None, args=(), env=None):
    """Run the workflow in ``work`` on a config (YAML text, or a dict) and expect a
    refusal before any job: non-zero exit, no traceback, no results. Returns the output."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "config.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(cfg))
    rc, out = runner.run(
        ["-s", SNAKEFILE, "--directory", work, "--cores", "1", "--configfile", path, *args], env=env
    )
    assert rc != 0, out[-2000:]
    assert "Traceback" not in out and 'File "' not in out, out[-3000:]
    assert not (work / "results").exists() or not any((work / "results").rglob("*.csv")), "a job ran"
    return out


def test_bad_configs_fail_before_any_job_runs(runner, tmp_path):
    """Every refused config of test_config, through Snakemake itself: no job starts."""
    assert len(BAD_CONFIGS) >= 15
    for i, (change, key) in enumerate(BAD_CONFIGS):
        cfg = mutate(change)
        if key.endswith("arms.a.start_from"):
            cfg["experiments"]["tiny"]["arms"]["b"] = {"start_from": "a"}
        out = refuse(runner, tmp_path / f"c{i}", cfg=copy.deepcopy(cfg))
        assert f"invalid configuration: config key '{key}'" in out, (key, out[-2000:])
        assert not (tmp_path / f"c{i}" / "results").exists(), key


def tiny(data_dir, **top):
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["data_dir"] = str(data_dir)
    cfg.update(top)
    return cfg


def exp(cfg):
    return cfg["experiments"]["tiny"]


def _tasks(tasks, scenario="domain"):
    def change(cfg, tmp):
        exp(cfg)["tasks"] = tasks
        exp(cfg)["scenario"] = scenario
        if scenario != "domain":  # the methods that mix tasks need the domain scenario's head
            exp(cfg)["arms"] = {"finetune": {"method": "finetune"}}

    return change


def _set(where, key, value):
    def change(cfg, tmp):
        node = cfg
        for k in where:
            node = node(cfg) if callable(node) else node[k]
        node[key] = value

    return change


def _in_exp(*path, value):
    def change(cfg, tmp):
        node = exp(cfg)
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value

    return change


def _results(where):
    def change(cfg, tmp):
        cfg["results_dir"] = str(where(tmp)) if callable(where) else where

    return change


def _foreign(tmp):
    folder = tmp / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my own notes\n")
    return folder


def _yaml(text):
    """A config file written by hand (duplicate keys, syntax errors): ``text`` with the
    tiny config's experiment after it."""

    def change(cfg, tmp):
        return text.replace("DATA", cfg["data_dir"])

    return change


TINY_EXPERIMENT = """experiments:
  tiny:
    dataset: mnist
    tasks: [[0, 1], [2, 3]]
    model: {name: mlp, hidden: [8]}
    train: {epochs: 1, batch_size: 32, optimizer: {name: adam, lr: 1.0e-3}}
    arms: {finetune: {method: finetune}}
"""

# (id, class of the issue, change, what the message must name)
CASES = [
    # 5. a results folder may not be anything
    (
        "results-root",
        "results folder",
        _results("/"),
        "config key 'results_dir': '/' (/): it holds other folders",
    ),
    ("results-etc", "results folder", _results("/etc"), "'/etc' (/etc): it is a system folder"),
    ("results-usr-sub", "results folder", _results("/usr/share/clpipe"), "it is a system folder"),
    (
        "results-home",
        "results folder",
        _results(lambda tmp: Path.home()),
        "it holds other folders of the system or a user",
    ),
    (
        "results-is-data",
        "results folder",
        lambda cfg, tmp: cfg.update(results_dir=cfg["data_dir"]),
        "data folder",
    ),
    (
        "results-in-data",
        "results folder",
        lambda cfg, tmp: cfg.update(results_dir=cfg["data_dir"] + "/out"),
        "data folder",
    ),
    (
        "results-checkout",
        "results folder",
        _results(lambda tmp: ROOT),
        "it is or holds the checkout of this workflow",
    ),
    (
        "results-reference",
        "results folder",
        _results(lambda tmp: ROOT / "results/reference"),
        "committed reference results",
    ),
    (
        "results-foreign",
        "results folder",
        _results(_foreign),
        "holds files this pipeline did not make (notes.txt)",
    ),
    # 6. configs whose results cannot mean anything
    (
        "one-class-domain",
        "meaningless",
        _tasks([[0], [1]]),
        "config key 'experiments.tiny.tasks[0]': task 1 has one class (0)",
    ),
    (
        "one-class-task",
        "meaningless",
        _tasks([[0, 1], [2]], "task"),
        "config key 'experiments.tiny.tasks[1]': task 2 has one class",
    ),
    (
        "one-class-in-all",
        "meaningless",
        _tasks([[3]], "class"),
        "config key 'experiments.tiny.tasks': one class in all",
    ),
    (
        "empty-validation",
        "meaningless",
        lambda cfg, tmp: (
            exp(cfg)["data"].update(max_train_per_task=4),
            exp(cfg)["train"].update(early_stopping={"patience": 1}),
        ),
        "'experiments.tiny.train.early_stopping': watches the validation split, but the validation split is",
    ),
    (
        "no-training-left",
        "meaningless",
        lambda cfg, tmp: exp(cfg)["data"].update(validation_fraction=0.99, max_train_per_task=20),
        "'experiments.tiny.data.validation_fraction': 0.99 of data.max_train_per_task 20 leaves no training",
    ),
    # 7. every number finite
    (
        "nan-lr",
        "non-finite",
        _in_exp("train", "optimizer", "lr", value=float("nan")),
        "'experiments.tiny.train.optimizer.lr': nan is not a finite number",
    ),
    (
        "inf-lambda",
        "non-finite",
        _in_exp("arms", "ewc", "lambda", value=float("inf")),
        "'experiments.tiny.arms.ewc.lambda': inf is not a finite",
    ),
    (
        "nan-freeze",
        "non-finite",
        _in_exp("arms", "mag_b20", "freeze", value=[float("nan")]),
        "'experiments.tiny.arms.mag_b20.freeze[0]': nan",
    ),
    (
        "inf-gamma",
        "non-finite",
        _in_exp("methods", "mag", "gamma", value=float("inf")),
        "'experiments.tiny.methods.mag.gamma': inf",
    ),
    (
        "nan-validation",
        "non-finite",
        _in_exp("data", "validation_fraction", value=float("nan")),
        "'experiments.tiny.data.validation_fraction': nan",
    ),
    (
        "nan-width",
        "non-finite",
        _in_exp("model", "width", value=float("nan")),
        "'experiments.tiny.model.width': nan",
    ),
    (
        "inf-normalize",
        "non-finite",
        _in_exp("input", "normalize", value={"mean": [float("inf")], "std": [1.0]}),
        "'experiments.tiny.input.normalize.mean[0]': inf",
    ),
    (
        "nan-decay",
        "non-finite",
        _in_exp("methods", "ewc", "decay", value=float("nan")),
        "'experiments.tiny.methods.ewc.decay': nan",
    ),
    # 8. YAML that hides a mistake
    (
        "duplicate-lr",
        "yaml",
        _yaml(
            "data_dir: DATA\nexperiments:\n  tiny:\n    dataset: mnist\n    tasks: [[0, 1], [2, 3]]\n"
            "    model: {name: mlp, hidden: [8]}\n    train:\n      epochs: 1\n      batch_size: 32\n"
            "      optimizer:\n        name: adam\n        lr: 0.1\n        lr: 0.001\n"
            "    arms: {finetune: {method: finetune}}\n"
        ),
        "key 'lr' is given twice in one mapping (lines 12 and 13)",
    ),
    (
        "duplicate-seeds",
        "yaml",
        _yaml("data_dir: DATA\nseeds: [0, 1, 2]\nseeds: [0]\n" + TINY_EXPERIMENT),
        "key 'seeds' is given twice in one mapping (lines 2 and 3)",
    ),
    (
        "duplicate-arm",
        "yaml",
        _yaml("data_dir: DATA\n" + TINY_EXPERIMENT + "    arms: {finetune: {method: finetune}}\n"),
        "key 'arms' is given twice",
    ),
    (
        "duplicate-json",
        "yaml",
        lambda cfg, tmp: ("JSON", '{"data_dir": "x", "seeds": [0], "seeds": [1], "experiments": {}}'),
        "key 'seeds' is given twice in one object",
    ),
    # 9. tracebacks instead of messages
    (
        "experiments-list",
        "traceback",
        lambda cfg, tmp: cfg.update(experiments=[exp(cfg)]),
        "config key 'experiments': [{",
    ),
    (
        "experiments-string-cli",
        "traceback",
        ("--config", "experiments=tiny"),
        "config key 'experiments': 'tiny' is not of type 'object'",
    ),
    (
        "arms-a-list",
        "traceback",
        _in_exp("arms", value=[{"method": "finetune"}]),
        "config key 'experiments.tiny.arms': [{'method': 'finetune'}] is not of type 'object'",
    ),
    (
        "experiment-named-datasets",
        "traceback",
        lambda cfg, tmp: cfg.update(experiments={"datasets": exp(cfg)}),
        "config key 'experiments.datasets': 'datasets' is the results folder's datasets/",
    ),
    (
        "method-named-model.pt",
        "traceback",
        lambda cfg, tmp: exp(cfg)["methods"].update({"model.pt": {"type": "mag"}}),
        "config key 'experiments.tiny.methods.model.pt': 'model.pt' is a file every model's folder holds",
    ),
    (
        "data-dir-is-a-file",
        "traceback",
        lambda cfg, tmp: ((tmp / "f").write_text("x"), cfg.update(data_dir=str(tmp / "f"))),
        "config key 'data_dir': ",
    ),
    # 11. integers written as decimals (the schema's integer took 64.0)
    (
        "decimal-hidden",
        "types",
        _in_exp("model", "hidden", value=[64.0]),
        "config key 'experiments.tiny.model.hidden[0]': 64.0 is not of type 'integer' (a count or an "
        "index: write it as 64",
    ),
    (
        "decimal-max-train",
        "types",
        _in_exp("data", "max_train_per_task", value=200.0),
        "config key 'experiments.tiny.data.max_train_per_task': 200.0 is not of type 'integer', 'null'",
    ),
    (
        "decimal-split-seed",
        "types",
        _in_exp("data", "split_seed", value=0.0),
        "config key 'experiments.tiny.data.split_seed': 0.0 is not of type 'integer'",
    ),
    (
        "decimal-seed",
        "types",
        lambda cfg, tmp: cfg.update(seeds=[0.0]),
        "config key 'seeds[0]': 0.0 is not of",
    ),
    (
        "decimal-method-setting",
        "types",
        _in_exp("methods", "ewc", "fisher_samples", value=200.0),
        "config key 'experiments.tiny.methods.ewc.fisher_samples': 200.0 is not of type 'integer', 'null'",
    ),
    # 12. names that collide with the results folder's own entries
    (
        "experiment-named-README.md",
        "names",
        lambda cfg, tmp: cfg.update(experiments={"README.md": exp(cfg)}),
        "config key 'experiments.README.md': 'README.md' is the results folder's README.md",
    ),
    (
        "experiment-named-reference",
        "names",
        lambda cfg, tmp: cfg.update(experiments={"reference": exp(cfg)}),
        "config key 'experiments.reference': 'reference' is the results folder's reference/",
    ),
    (
        "method-named-a-receipt",
        "names",
        lambda cfg, tmp: exp(cfg)["methods"].update({"train.receipt.json": {"type": "mag"}}),
        "'train.receipt.json' is a file every model's folder holds",
    ),
    # 13. scale: refused at once with the count, before anything is planned
    (
        "100000-seeds",
        "scale",
        lambda cfg, tmp: cfg.update(seeds=list(range(100_000))),
        "config key 'max_jobs': the run would make 3,700,014 jobs (tiny: 3,700,012, datasets and target: 2)",
    ),
    (
        "over-max-jobs",
        "scale",
        lambda cfg, tmp: cfg.update(max_jobs=20),
        "config key 'max_jobs': the run would make 51 jobs (tiny: 49, datasets and target: 2), more than",
    ),
    # 14. the file system's failures, one line naming the path
    (
        "results-below-a-file",
        "file system",
        lambda cfg, tmp: (
            (tmp / "plain").write_text("x"),
            cfg.update(results_dir=str(tmp / "plain" / "out")),
        ),
        "plain/out: Not a directory (a part of the path is a file where a folder should be)",
    ),
    # 10. messages that mislead
    (
        "name-trailing-newline",
        "message",
        lambda cfg, tmp: exp(cfg)["arms"].update({"finetune\n": {"method": "finetune"}}),
        "config key 'experiments.tiny.arms.finetune\n': 'finetune\\n' is not a name",
    ),
    ("boolean-from-cli", "message", ("--config", "deterministic=false"), "write --config key=False"),
    (
        "nested-boolean-from-cli",
        "message",
        ("--config", 'logging={"tensorboard": True}'),
        "config key 'logging.tensorboard': 'True' is not of type 'boolean' (a value inside a mapping",
    ),
]


def _case_id(case):
    return case[0]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bad_input_is_refused_before_any_job_naming_what_is_wrong(case, runner, tmp_path, data_dir):
    name, _, change, expected = case
    work = tmp_path / "work"
    cfg = tiny(data_dir)
    text, args = None, ()
    if isinstance(change, tuple):
        args = change
    else:
        result = change(cfg, tmp_path)
        if isinstance(result, str):
            text = result
        elif isinstance(result, tuple) and result[0] == "JSON":
            work.mkdir(parents=True)
            path = work / "config.json"
            path.write_text(result[1])
            rc, out = runner.run(["-s", SNAKEFILE, "--directory", work, "--cores", "1", "--configfile", path])
            assert rc != 0 and expected in out and "Traceback" not in out, out[-2000:]
            return
    out = refuse(runner, work, text=text, cfg=None if text is not None else cfg, args=args)
    assert expected in out, out[-2000:]


# (id, change, what the data step's one-line refusal names): sizes that mean nothing
SIZE_CASES = [
    ("one-test-image", {"max_test_per_task": 1}, "its test split has 0 image(s) of class 0"),
    (
        "validation-takes-all",
        {"validation_fraction": 0.999, "max_train_per_task": None},
        "its train split has",
    ),
    ("a-handful-to-validate", {"validation_fraction": 0.002}, "its val split has"),
]


@pytest.mark.parametrize("case", SIZE_CASES, ids=[c[0] for c in SIZE_CASES])
def test_splits_too_small_to_mean_anything_are_refused_by_the_data_step(case, runner, tmp_path, data_dir):
    """Before any model trains: the data step counts each class in each split."""
    _, data, expected = case
    cfg = tiny(data_dir)
    exp(cfg)["data"].update(data)
    work = tmp_path / "work"
    path = write(work, cfg)
    rc, out = runner.run(
        [
            "-s",
            SNAKEFILE,
            "--directory",
            work,
            "results/tiny/data/tasks.pt",  # the target first: --configfile takes every word after it
            "--cores",
            "1",
            "--configfile",
            path,
        ]
    )
    assert rc != 0 and expected in out and "data.min_images_per_class" in out, out[-2000:]
    assert "Traceback" not in out and not (work / "results/tiny/data/tasks.pt").exists()


def test_the_table_has_a_case_of_every_class():
    classes = {c[1] for c in CASES}
    assert classes == {
        "results folder", "meaningless", "non-finite", "yaml", "traceback", "message", "types", "names",
        "scale", "file system",
    }  # fmt: skip
    assert len(CASES) >= 30


def test_a_dry_run_writes_nothing_outside_snakemake_s_folder(runner, tmp_path, data_dir):
    work = tmp_path / "dry"
    work.mkdir()
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(tiny(data_dir)))
    rc, out = runner.run(["-s", SNAKEFILE, "--directory", work, "-n", "--configfile", path])
    assert rc == 0, out[-2000:]
    assert sorted(p.name for p in work.iterdir()) == [".snakemake", "config.yaml"]


def test_a_results_folder_with_foreign_files_is_used_when_allowed(runner, tmp_path, data_dir):
    work = tmp_path / "w"
    work.mkdir()
    mine = _foreign(tmp_path)
    cfg = tiny(data_dir, results_dir=str(mine), allow_foreign_files=True)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    rc, out = runner.run(["-s", SNAKEFILE, "--directory", work, "-n", "--configfile", work / "config.yaml"])
    assert rc == 0, out[-2000:]


def small_config(data_dir, **train):
    """Two tasks, fine-tuning only: the smallest run with a resumable training job."""
    return {
        "data_dir": str(data_dir),
        "device": "cpu",
        "epoch_checkpoint_seconds": 0,  # a checkpoint after every epoch: the kill comes after one
        "seeds": [0],
        "resources": {
            kind: {"mem_mb": 2000, "runtime": 10, "threads": 1}
            for kind in ("train", "importance", "evaluate")
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
    # both runs make the second task's model and its evaluation (not the tables and
    # figures, which add nothing here and cost a third of the time)
    target = "results/small/seed0/finetune/task2/eval.csv"
    ref = tmp_path / "uninterrupted"
    snakemake(ref, target, "--cores", "1", "--configfile", str(write(ref, small_config(data_dir))))

    work = tmp_path / "killed"
    cfg = write(work, small_config(data_dir))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(work)]
    proc = subprocess.Popen(
        [*cmd, target, "--cores", "1", "--retries", "1", "--configfile", str(cfg)],
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
    import pandas as pd

    numbers = ["eval_task", "accuracy", "loss", "n"]  # the file also records how it was run
    assert pd.read_csv(ref / target)[numbers].equals(pd.read_csv(work / target)[numbers])


def test_a_file_system_error_inside_a_job_is_one_line_naming_the_path(tmp_path, data_dir):
    """A write or read that the file system refuses inside a job (a full disk, a
    permission, a folder where a file goes: the last here, as root can write anywhere)
    stops the job with one line naming the path and what to do, no traceback, and
    nothing runs on it."""
    work = tmp_path / "fs"
    node = work / "results/small/seed0/scratch/task1"
    (node / "train.resume.pt").mkdir(parents=True)  # where the epoch checkpoint goes
    cfg = write(work, small_config(data_dir, epochs=1))
    target = "results/small/seed0/finetune/task2/model.pt"
    proc = snakemake(work, target, "--cores", "1", "--configfile", str(cfg), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Error in rule train_first_task" in out, out[-3000:]
    # the atomic write's temporary file -> its place: both named, then what to do
    line = re.compile(
        r"\S+/\.train\.resume\.pt\.\S+\.tmp -> results/small/seed0/scratch/task1/train\.resume\.pt: "
        r"Is a directory \(the path is a folder where a file should be\)"
    )
    assert re.search(rf"clpipe: {line.pattern}", out), out[-3000:]
    log = (node / "train.log").read_text()
    assert re.search(rf"ERROR {line.pattern}", log) and "Traceback" not in log, log
    assert not (node / "model.pt").exists() and not (work / target).exists()
    assert not list(node.glob(".*.tmp")), "the temporary file is left behind"


def test_a_non_finite_loss_stops_the_job_and_nothing_runs_on_it(tmp_path, data_dir):
    cfg = small_config(data_dir, epochs=1)
    cfg["experiments"]["small"]["train"]["optimizer"] = {"name": "sgd", "lr": 1e30}
    work = tmp_path / "nan"
    proc = snakemake(work, "--cores", "1", "--configfile", str(write(work, cfg)), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Error in rule train_first_task" in out
    log = (work / "results/small/seed0/scratch/task1/train.log").read_text()
    assert "ERROR small seed 0 scratch task 1: non-finite loss at epoch 1, batch" in log
    assert "Traceback" not in log and "Traceback" not in out  # the input's problem: one message
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
def test_two_runs_in_separate_folders_give_identical_metrics(tiny_run, tmp_path, data_dir):
    """A second run, in a folder of its own and with two of the suite's tiny run's arms
    only, gives those arms' models the same numbers to the last digit (each job's result
    depends on its spec alone, not on the arms beside it)."""
    import pandas as pd

    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["data_dir"] = str(data_dir)
    cfg["experiments"]["tiny"]["arms"] = {
        "mag_b20": {"method": "mag", "freeze": [20]},
        "mag_b20_c50": {"start_from": "mag_b20", "freeze": [50]},
    }
    work = tmp_path / "two"
    snakemake(work, "--cores", "2", "--configfile", str(write(work, cfg)))
    key = ["arm", "seed", "trained_task", "eval_task"]
    numbers = [*key, "accuracy", "loss", "n", "val_accuracy", "val_loss", "spec_hash"]
    mine = pd.read_csv(work / "results/tiny/metrics.csv")[numbers].sort_values(key)
    first = pd.read_csv(tiny_run[0] / "results/tiny/metrics.csv")[numbers]
    first = first[first["arm"].isin(mine["arm"].unique())].sort_values(key)
    assert len(mine) >= 10 and mine.to_csv(index=False) == first.to_csv(index=False)


# --- files that lie, on copies of the suite's finished tiny run -------------------------


@pytest.fixture
def copy_of_tiny_run(tiny_run, tmp_path):
    """A copy of the finished tiny run (its results and Snakemake's records), to break."""
    work, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(work, copy, symlinks=True, ignore=shutil.ignore_patterns("*.lock", "locks"))
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    return copy, cfg


def run_in(runner, work, *args, env=None):
    """The workflow on ``work``'s config; targets and flags first (Snakemake reads what
    follows --configfile as config files)."""
    args = ["-s", SNAKEFILE, "--directory", work, *args, "--cores", "1", "--configfile", work / "config.yaml"]
    return runner.run(args, env=env)


NODE = "results/tiny/seed0"


def _swap(a, b):
    def change(work):
        pa, pb = work / NODE / a, work / NODE / b
        da, db = pa.read_bytes(), pb.read_bytes()
        pa.write_bytes(db)
        pb.write_bytes(da)

    return change


def _copy(src, dst):
    return lambda work: (work / NODE / dst).write_bytes((work / NODE / src).read_bytes())


def _made_elsewhere(rel, kind):
    """The file as another experiment would have made it (its bytes copied in)."""

    def change(work):
        path = work / "results/tiny" / rel
        obj = torch.load(path, weights_only=True)
        node = dict(obj["meta"]["node"], experiment="other")
        obj["meta"] = dict(obj["meta"], node=node)
        torch.save(obj, path)

    return change


def _edit_eval(rel, edit):
    def change(work):
        import pandas as pd

        path = work / NODE / rel
        frame = edit(pd.read_csv(path))
        frame.to_csv(path, index=False)

    return change


def _raw_pickle(rel):
    def change(work):
        import pickle

        (work / NODE / rel).write_bytes(
            pickle.dumps({"format": "clpipe.model/1", "payload": {1, 2}}, protocol=4)
        )

    return change


EVAL = "results/tiny/seed0/finetune/task2/eval.csv"
# (id, change, the file the run makes, what the message must name)
FILE_CASES = [
    (
        "swapped-models",
        _swap("finetune/task2/model.pt", "mag_b20/task2/model.pt"),
        EVAL,
        "finetune/task2/model.pt: was made for experiment tiny, seed 0, owner mag_b20, task 2, but its "
        "place is experiment tiny, seed 0, owner finetune, task 2's",
    ),
    (
        "another-experiments-model",
        _made_elsewhere("seed0/finetune/task2/model.pt", "model"),
        EVAL,
        "model.pt: was made for experiment other",
    ),
    (
        "another-methods-importance",
        _copy("scratch/task1/mag/importance.pt", "scratch/task1/ewc/importance.pt"),
        f"{NODE}/ewc/task2/model.pt",
        "scratch/task1/ewc/importance.pt: was made for experiment tiny, seed 0, owner scratch, task 1, "
        "method mag, but its place is experiment tiny, seed 0, owner scratch, task 1, method ewc's",
    ),
    (
        "another-arms-progress",
        _copy("mag_b20/task2/progress.pt", "mag_0/task2/progress.pt"),
        f"{NODE}/mag_0/task2/mag/importance.pt",
        "mag_0/task2/progress.pt: was made for experiment tiny, seed 0, owner mag_b20",
    ),
    (
        "another-experiments-data",
        _made_elsewhere("data/tasks.pt", "tasks"),
        EVAL,
        "data/tasks.pt: was made for experiment other, but its place is experiment tiny's",
    ),
    (
        "a-raw-pickle-model",
        _raw_pickle("finetune/task2/model.pt"),
        EVAL,
        "finetune/task2/model.pt: cannot be read as a clpipe model file (refused to load it",
    ),
    (
        "accuracy-out-of-range",
        _edit_eval("finetune/task2/eval.csv", lambda f: f.assign(accuracy=1.5)),
        "results/tiny/metrics.csv",
        "finetune/task2/eval.csv: task 1 has accuracy 1.5",
    ),
    (
        "non-finite-loss",
        _edit_eval("finetune/task2/eval.csv", lambda f: f.assign(loss=float("inf"))),
        "results/tiny/metrics.csv",
        "finetune/task2/eval.csv: task 1 has accuracy",
    ),
    (
        "a-missing-row",
        _edit_eval("finetune/task2/eval.csv", lambda f: f[f["eval_task"] != 3]),
        "results/tiny/metrics.csv",
        "finetune/task2/eval.csv: no row for task(s) [3] (the experiment has tasks 1..3)",
    ),
    (
        "an-extra-row",
        _edit_eval("finetune/task2/eval.csv", lambda f: pd_concat(f, f.iloc[:1])),
        "results/tiny/metrics.csv",
        "finetune/task2/eval.csv: extra or repeated row(s) for task(s) [1]",
    ),
    (
        "another-nodes-evaluation",
        _copy("mag_b20/task2/eval.csv", "finetune/task2/eval.csv"),
        "results/tiny/metrics.csv",
        "finetune/task2/eval.csv: its rows are for owner mag_b20, but this file belongs to owner finetune",
    ),
    (
        "another-arms-history",
        _copy("mag_b20/task2/history.csv", "finetune/task2/history.csv"),
        "results/tiny/metrics.csv",
        "finetune/task2/history.csv: its rows are for arm or seed mag_b20",
    ),
]


def pd_concat(*frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: c[0])
def test_a_file_that_is_not_the_jobs_own_is_refused_even_when_accepted(case, runner, copy_of_tiny_run):
    name, change, target, expected = case
    work, _ = copy_of_tiny_run
    tables = {p.name: p.read_bytes() for p in (work / "results/tiny").glob("*.csv")}
    change(work)
    # Left as it is, the file's receipt no longer lists it and its job makes it afresh
    # (the test below). Accepted as it is (--touch writes the receipts afresh), the step
    # that reads it still refuses it, naming it:
    rc, out = run_in(runner, work, "--touch")
    assert rc == 0, out[-3000:]
    rc, out = run_in(runner, work, target, "--forcerun", target)
    assert rc != 0, out[-3000:]
    assert expected in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    # the step wrote nothing; the tables the last good aggregation made are still readable
    last_good = work / "results/tiny/last_good"
    for table, content in tables.items():
        here = work / "results/tiny" / table
        assert (here.read_bytes() if here.exists() else (last_good / table).read_bytes()) == content, table
    if target.endswith("model.pt") or target.endswith("importance.pt"):
        assert not (work / target).exists() or (work / target).stat().st_mtime < time.time() - 5


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [
        _swap("finetune/task2/model.pt", "mag_b20/task2/model.pt"),
        _made_elsewhere("seed0/finetune/task2/model.pt", "model"),
    ],
    ids=["swapped-models", "another-experiments-model"],
)
def test_a_model_that_is_not_its_jobs_own_is_made_afresh_by_its_job(change, runner, copy_of_tiny_run):
    """Its bytes are not what its receipt lists: the job that makes it runs again before
    anything reads it, and the model then at its place is its own (a job's stale receipt
    does not refuse the files it writes afresh)."""
    work, _ = copy_of_tiny_run
    change(work)
    rc, out = run_in(runner, work, EVAL)
    assert rc == 0, out[-3000:]
    assert re.search(
        r"rule train_next_task:\n(?:.*\n)*?\s+wildcards: experiment=tiny, seed=0, arm=finetune, task=2", out
    )
    node = torch.load(work / NODE / "finetune/task2/model.pt", weights_only=True)["meta"]["node"]
    assert (node["experiment"], node["owner"], node["task"]) == ("tiny", "finetune", 2)


@pytest.mark.slow
def test_the_table_of_file_cases_is_large_enough():
    assert len(FILE_CASES) >= 12


@pytest.mark.slow
def test_every_spelling_of_the_results_and_data_folders_is_the_same_run(runner, copy_of_tiny_run):
    work, cfg = copy_of_tiny_run
    for spelling in ("./results/", str(work / "results"), "results/../results"):
        rc, out = run_in(runner, work, "-n", "--config", f"results_dir={spelling}")
        assert rc == 0 and "Nothing to be done" in out, (spelling, out[-2000:])
    data = cfg["data_dir"]
    rc, out = run_in(runner, work, "-n", "--config", f"data_dir={data}/../{Path(data).name}/")
    assert rc == 0 and "Nothing to be done" in out, out[-2000:]
    # and the records are found: a changed setting under another spelling reruns what it changes
    changed = dict(cfg)
    changed["results_dir"] = str(work / "results") + "/"
    changed["experiments"] = copy.deepcopy(cfg["experiments"])
    changed["experiments"]["tiny"]["eval"] = {"batch_size": 7}
    (work / "changed.yaml").write_text(yaml.safe_dump(changed))
    rc, out = runner.run(["-s", SNAKEFILE, "--directory", work, "-n", "--quiet", "rules", "--configfile",
                          work / "changed.yaml"])  # fmt: skip
    assert rc == 0 and re.search(r"^evaluate\s+14$", out, re.M), out[-2000:]


@pytest.mark.slow
def test_a_second_run_on_one_results_folder_is_refused_until_the_first_ends(runner, copy_of_tiny_run):
    work, _ = copy_of_tiny_run
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
         "from clpipe import run_folder; run_folder.hold(sys.argv[2]);"
         "print('HELD', flush=True); time.sleep(600)",
         str(ROOT / "src"), str(work / "results")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "HELD"
        rc, out = run_in(runner, work)
        assert rc != 0 and "Traceback" not in out, out[-2000:]
        assert f"results folder {work / 'results'} is in use by another run (pid {holder.pid} on" in out, out[
            -2000:
        ]
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, and no stale lock is left
        holder.wait()
    rc, out = run_in(runner, work)
    assert rc == 0 and "Nothing to be done" in out, out[-2000:]


@pytest.mark.slow
def test_a_wrong_checksum_cache_entry_does_not_blame_an_intact_file(runner, copy_of_tiny_run):
    import json

    work, _ = copy_of_tiny_run
    cache_path = work / "results/datasets/checksum-cache.json"
    cache = json.loads(cache_path.read_text())
    key = next(k for k in cache if "t10k-labels" in k)
    right = cache[key][2]  # [size, mtime_ns, md5]
    cache[key][2] = "0" * 32
    cache_path.write_text(json.dumps(cache))
    rc, out = run_in(runner, work)
    assert rc == 0 and "Nothing to be done" in out, out[-2000:]
    assert json.loads(cache_path.read_text())[key][2] == right  # repaired, not believed


@pytest.mark.slow
def test_a_temporary_file_left_by_a_killed_write_is_removed_when_the_step_next_runs(runner, copy_of_tiny_run):
    work, _ = copy_of_tiny_run
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid is free: the writer of the leftover is gone
    node = work / NODE / "finetune/task2"
    leftover = node / f".eval.csv.{dead.pid}.x1y2.tmp"
    leftover.write_bytes(b"half a file")
    alive = node / f".eval.csv.{os.getpid()}.x3y4.tmp"  # a live writer's: kept
    alive.write_bytes(b"being written")
    rc, out = run_in(runner, work, f"{NODE}/finetune/task2/eval.csv", "--force")  # that one job again
    assert rc == 0, out[-2000:]
    assert not leftover.exists() and alive.exists()


@pytest.mark.slow
def test_a_dataset_that_cannot_be_downloaded_is_one_message(runner, tmp_path):
    work = tmp_path / "offline"
    work.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = tiny(empty)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    offline = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    rc, out = run_in(runner, work, "results/datasets/mnist.md5", env=offline)
    assert rc != 0, out[-2000:]
    assert f"dataset 'mnist': could not download it into {empty}" in out, out[-3000:]
    assert "copy its files into" in out and "Traceback" not in out, out[-3000:]
