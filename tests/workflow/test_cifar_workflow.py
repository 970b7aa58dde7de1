"""CIFAR through the workflow: the four-dataset benchmark end to end on generated CIFAR files,
and a generated file refused while the release check is on."""

import math
import re

import pandas as pd
import pytest
import torch

from clpipe import io
from clpipe.catalog import dataset_info
from clpipe.checkpoints import load_model
from clpipe.md5_cache import md5sum
from clpipe.networks import count_parameters
from clpipe.networks.growing import dense_parameter_count
from conftest import ROOT, planned_jobs, snakemake, write_config
from helpers.cifar_files import make_cifar10, make_cifar100, read_batch, write_batch

# --- the four-dataset benchmark end to end ------------------------------------------------

ARMS = {"isolated": "isolated", "read": "read"}
CONV0, HIDDEN0 = 8, 32
GROW_CONV, GROW_HIDDEN = [8, 8, 16], [32, 32, 64]
HEADS = [10, 10, 10, 100]


def four_dataset_dir(root, data_dir):
    """A data dir: the shared MNIST and Fashion-MNIST (symlinked) and generated CIFAR trees."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("MNIST", "FashionMNIST"):
        (root / folder).symlink_to(data_dir / folder)
    make_cifar10(root, per_class_per_batch=4, test_per_class=5)
    make_cifar100(root, train_per_class=2, test_per_class=1)
    return root


def test_the_workflow_stops_on_a_generated_file_while_the_switch_is_on(tmp_path, data_dir):
    data = four_dataset_dir(tmp_path / "data", data_dir)
    cfg = write_config(
        tmp_path / "config.yaml",
        ROOT / "tests/configs/four_datasets_tiny.yaml",
        data_dir=str(data),
        verify_release_md5=True,
    )
    proc = snakemake(tmp_path, "-n", "--configfile", str(cfg), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(r"cifar-10-batches-py/data_batch_1: md5 \w+ does not match the release's", out), out[
        -3000:
    ]
    assert "verify_release_md5: false" in out  # says how to use such files
    assert not (tmp_path / "results" / "four_datasets_tiny").exists()


@pytest.fixture(scope="module")
def four_run(tmp_path_factory, data_dir):
    work = tmp_path_factory.mktemp("four")
    data = four_dataset_dir(work / "data", data_dir)
    cfg = write_config(
        work / "config.yaml", ROOT / "tests/configs/four_datasets_tiny.yaml", data_dir=str(data)
    )
    proc = snakemake(work, "--cores", "2", "--configfile", str(cfg))
    return work, cfg, data, proc


def evaluation(results, owner, task):
    return pd.read_csv(results / f"seed0/{owner}/task{task}/eval.csv").set_index("eval_task")


@pytest.mark.slow
def test_four_tasks_with_their_own_heads(four_run):
    work, _, data, proc = four_run
    results = work / "results/four_datasets_tiny"
    for arm in ARMS:
        model, _ = load_model(str(results / f"seed0/{arm}/task4/model.pt"), torch.device("cpu"))
        assert model.outputs_per_task == HEADS and model.mode == arm
        final = evaluation(results, arm, 4)
        assert list(final.index) == [1, 2, 3, 4] and final["accuracy"].between(0, 1).all()
    tasks = io.load(results / "data/tasks.pt", "tasks")["tasks"]
    assert [t["dataset"] for t in tasks] == ["mnist", "fashion_mnist", "cifar10", "cifar100"]
    assert [t["train"]["x"].shape[1:] for t in tasks] == [(1, 28, 28)] * 2 + [(3, 32, 32)] * 2
    # every generated file was accepted with a warning naming it, and its content md5 recorded
    for name in ("cifar10", "cifar100"):
        manifest = (work / f"results/datasets/{name}.md5").read_text().splitlines()
        assert manifest == [f"{md5sum(data / rel)}  {rel}" for rel in dataset_info(name).files]
        for rel in dataset_info(name).files:
            assert f"{rel}: md5" in proc.stdout + proc.stderr, rel
    assert "match the release's md5 sums" in (work / "results/datasets/mnist.log").read_text()


@pytest.mark.slow
def test_earlier_tasks_are_bit_identical_after_the_later_ones(four_run):
    results = four_run[0] / "results/four_datasets_tiny"
    for arm in ARMS:
        rows = {1: evaluation(results, "scratch", 1)}
        rows.update({t: evaluation(results, arm, t) for t in (2, 3, 4)})
        for task in (1, 2, 3):
            for later in range(task + 1, 5):
                for column in ("accuracy", "loss"):  # exactly equal, not approximately
                    assert rows[later].loc[task, column] == rows[task].loc[task, column], (arm, task, later)
            assert math.isnan(rows[task].loc[task + 1, "accuracy"])  # no head for the next task yet
    summary = pd.read_csv(results / "summary.csv").set_index("arm")
    assert (summary["bwt_mean"] == 0.0).all() and (summary["forgetting_mean"] == 0.0).all()


@pytest.mark.slow
def test_the_final_network_has_the_configured_widths_parameters(four_run):
    results = four_run[0] / "results/four_datasets_tiny"
    conv = CONV0 + sum(GROW_CONV)
    expected = dense_parameter_count(
        3, [conv] * 4, HIDDEN0 + sum(GROW_HIDDEN), sum(HEADS), kernel=3, pooled_size=2
    )
    for arm in ARMS:
        model, checkpoint = load_model(str(results / f"seed0/{arm}/task4/model.pt"), torch.device("cpu"))
        assert [layer.n_units for layer in model.convs] == [conv] * 4
        assert count_parameters(model) == expected
        names = dict(model.named_parameters())  # the file holds them all (and the task-id buffers)
        assert sum(v.numel() for k, v in checkpoint["state_dict"].items() if k in names) == expected
    training = pd.read_csv(results / "training.csv")
    assert set(training.loc[training["task"] == 4, "parameters_total"]) == {expected}


@pytest.mark.slow
def test_a_changed_generated_file_rebuilds_the_data(four_run):
    """With the switch off, reruns follow the files' content: a touched file changes
    nothing; a changed one reruns the data steps and everything after them."""
    work, cfg, data, _ = four_run
    assert planned_jobs(work, cfg) == {}
    path = data / "cifar-100-python/test"
    original = path.read_bytes()
    batch = read_batch(path)
    batch["data"][0, 0] ^= 1
    write_batch(path, batch)
    try:
        jobs = planned_jobs(work, cfg)
        assert jobs["download_data"] == 1 and jobs["prepare_data"] == 1
        assert jobs["train_first_task"] == 1 and jobs["train_next_task"] == 6
    finally:
        path.write_bytes(original)
    assert planned_jobs(work, cfg) == {}
