"""The growing network end to end through Snakemake (tests/configs/growing_tiny.yaml, real MNIST)."""

import math

import pandas as pd
import pytest
import torch

from clpipe import io
from clpipe.checkpoints import load_model
from clpipe.networks.growing import GrowingTaskNet, dense_parameter_count
from conftest import ROOT, snakemake, write_config

K, POOLED, IN = 3, 2, 1  # kernel, pooled size, input channels of growing_tiny
# each arm's column per task: (conv channels per layer, hidden, head outputs)
COLUMNS = {
    "isolated": [([8] * 4, 32, 2), ([8] * 4, 32, 2), ([4, 4, 8, 8], 16, 3)],
    "read": [([8] * 4, 32, 2), ([4] * 4, 16, 2), ([4] * 4, 16, 3)],
}


def dense_total(columns):
    """GrowingTaskNet's dense count of the network with these columns (sums of widths)."""
    conv = [sum(c[0][i] for c in columns) for i in range(4)]
    return dense_parameter_count(IN, conv, sum(c[1] for c in columns), sum(c[2] for c in columns), K, POOLED)


def isolated_in_use(column):
    """What an isolated column uses: its own units reading the image / its own units below."""
    conv, hidden, outputs = column
    total, below = 0, IN
    for channels in conv:
        total += channels * (below * K * K + 1)
        below = channels
    return total + hidden * (below * POOLED**2 + 1) + outputs * (hidden + 1)


@pytest.fixture(scope="module")
def growing_run(tmp_path_factory, data_dir):
    work = tmp_path_factory.mktemp("growing")
    cfg = write_config(work / "config.yaml", ROOT / "tests/configs/growing_tiny.yaml", data_dir=str(data_dir))
    snakemake(work, "--cores", "2", "--configfile", str(cfg))
    return work / "results" / "growing_tiny"


def evaluation(results, owner, task):
    return pd.read_csv(results / f"seed0/{owner}/task{task}/eval.csv").set_index("eval_task")


@pytest.mark.slow
def test_grown_checkpoints_rebuild_from_the_file_alone(growing_run):
    for arm, columns in COLUMNS.items():
        model, checkpoint = load_model(str(growing_run / f"seed0/{arm}/task3/model.pt"), torch.device("cpu"))
        assert isinstance(model, GrowingTaskNet) and model.mode == arm
        assert model.outputs_per_task == [c[2] for c in columns]
        assert [layer.unit_widths for layer in model.convs] == [[c[0][i] for c in columns] for i in range(4)]
        assert model.fc.unit_widths == [c[1] for c in columns]
        assert checkpoint["model_spec"]["growth"] == model.spec()["growth"] and len(model.growth) == 2
    first, _ = load_model(str(growing_run / "seed0/scratch/task1/model.pt"), torch.device("cpu"))
    assert first.n_tasks == 1 and first.outputs_per_task == [2]
    # task 1's column is the same tensor entries in every later model
    later, _ = load_model(str(growing_run / "seed0/isolated/task3/model.pt"), torch.device("cpu"))
    for (name, p), q in zip(first.named_parameters(), dict(later.named_parameters()).values(), strict=True):
        part = q[: p.shape[0], : p.shape[1]] if p.ndim > 1 else q[: p.shape[0]]
        assert torch.equal(part, p), name


@pytest.mark.slow
def test_earlier_tasks_test_results_are_bit_identical_after_growth(growing_run):
    after_task1 = evaluation(growing_run, "scratch", 1)
    assert after_task1.loc[1, "accuracy"] > 0.9  # 0 vs 1 learned
    for arm in COLUMNS:
        after_task2, after_task3 = evaluation(growing_run, arm, 2), evaluation(growing_run, arm, 3)
        for later in (after_task2, after_task3):  # exactly equal, not approximately
            assert later.loc[1, "accuracy"] == after_task1.loc[1, "accuracy"]
            assert later.loc[1, "loss"] == after_task1.loc[1, "loss"]
        assert after_task3.loc[2, "accuracy"] == after_task2.loc[2, "accuracy"]
        assert after_task3.loc[2, "loss"] == after_task2.loc[2, "loss"]
        assert math.isnan(after_task2.loc[3, "accuracy"])  # no head for task 3 yet
    for task in (2, 3):  # neither the random init nor the task-1 model has these heads
        assert math.isnan(evaluation(growing_run, "scratch", 0).loc[task, "accuracy"])
        assert math.isnan(after_task1.loc[task, "loss"])


@pytest.mark.slow
def test_parameter_counts_follow_the_networks_formula(growing_run):
    training = pd.read_csv(growing_run / "training.csv")
    counts = training.groupby(["arm", "task"])[
        ["parameters_total", "parameters_added", "parameters_in_use", "parameters_trainable"]
    ].agg(lambda v: v.unique().tolist())
    assert counts.map(len).eq(1).all().all()  # one value per trained model
    counts = counts.map(lambda v: v[0])
    first = dense_total(COLUMNS["isolated"][:1])
    assert counts.loc[("scratch", 1)].tolist() == [first, first, first, first]
    for arm, columns in COLUMNS.items():
        for task in (2, 3):
            row = counts.loc[(arm, task)]
            assert row["parameters_total"] == dense_total(columns[:task])
            assert row["parameters_added"] == dense_total(columns[:task]) - dense_total(columns[: task - 1])
            record = io.load(growing_run / f"seed0/{arm}/task{task}/record.pt", "record")
            for key in row.index:
                assert record[key] == row[key], (arm, task, key)
            model, _ = load_model(str(growing_run / f"seed0/{arm}/task{task}/model.pt"), torch.device("cpu"))
            in_use, trainable = row["parameters_in_use"], row["parameters_trainable"]
            expected = model.parameter_counts(task)
            assert (in_use, trainable) == (expected.in_use, expected.trainable)
            if arm == "isolated":  # the column alone, in closed form
                assert in_use == trainable == isolated_in_use(columns[task - 1])
            else:  # a read column also uses the earlier columns it reads, and trains only its own
                assert in_use > trainable


@pytest.mark.slow
def test_the_summary_shows_no_forgetting_and_no_defined_fwt(growing_run):
    summary = pd.read_csv(growing_run / "summary.csv").set_index("arm")
    assert list(summary.index) == ["auto", "isolated", "read"]  # the written config sorts its keys
    for arm in summary.index:
        assert summary.loc[arm, "bwt_mean"] == 0.0 and summary.loc[arm, "forgetting_mean"] == 0.0
        assert math.isnan(summary.loc[arm, "fwt_mean"])  # no head before a task: nothing to transfer to
    assert "| isolated | growing | 3 |" in (growing_run / "summary.md").read_text()
    for name in ("forgetting", "methods", "training", "accuracy_matrix/isolated", "accuracy_matrix/read"):
        assert (growing_run / f"figures/{name}.png").stat().st_size > 10_000


@pytest.mark.slow
def test_automatic_growth_probes_a_head_decides_and_records_it(growing_run):
    record = io.load(growing_run / "seed0/auto/task2/record.pt", "record")
    decision = record["auto_grow"]
    assert decision["task"] == 2 and decision["threshold"] == 1.0 and decision["probe_epochs"] == 1
    assert decision["accuracy"] == decision["probe_history"][-1]["val_accuracy"] < 1.0
    assert decision["grow"] is True  # the threshold of 1 grows: the other branch is unit-tested
    head = 2 * (32 + 1)  # task 2's two outputs over task 1's 32 hidden units
    first = dense_total(COLUMNS["read"][:1])
    assert decision["parameters_before"] == first + head
    # grown by the arm's settings: the same network as the read arm that always grows
    read_record = io.load(growing_run / "seed0/read/task2/record.pt", "record")
    assert decision["parameters_after"] == record["parameters_total"] == read_record["parameters_total"]
    assert record["growth"] == read_record["growth"] and record["mode"] == "read"
    model, _ = load_model(str(growing_run / "seed0/auto/task2/model.pt"), torch.device("cpu"))
    assert [layer.unit_widths for layer in model.convs] == [[8, 4]] * 4 and model.fc.unit_widths == [32, 16]
    assert [g["outputs"] for g in model.growth] == [2, 0]  # the head, then the widening
    log = (growing_run / "seed0/auto/task2/train.log").read_text()
    assert "task 2 growth probe: training task 2" in log and f"val_acc {decision['accuracy']:.4f} <" in log
    after_task1, after_task2 = evaluation(growing_run, "scratch", 1), evaluation(growing_run, "auto", 2)
    assert after_task2.loc[1, "accuracy"] == after_task1.loc[1, "accuracy"]  # through probe and growth
    assert after_task2.loc[1, "loss"] == after_task1.loc[1, "loss"]


@pytest.mark.slow
def test_every_evaluation_reports_the_models_parameters_and_the_summary_shows_them(growing_run):
    columns = ["parameters_total", "parameters_added", "parameters_in_use"]
    init = evaluation(growing_run, "scratch", 0)
    assert (init["parameters_total"] == dense_total(COLUMNS["isolated"][:1])).all()
    assert init[columns[1:]].isna().all().all()  # the random init: no task trained
    training = pd.read_csv(growing_run / "training.csv").groupby(["arm", "task"])[columns].first()
    metrics = pd.read_csv(growing_run / "metrics.csv")
    assert [c for c in metrics.columns if c in columns] == columns
    nodes = [("scratch", 1), ("isolated", 2), ("isolated", 3), ("read", 2), ("read", 3), ("auto", 2)]
    for arm, task in nodes:
        rows = evaluation(growing_run, arm, task)[columns]
        assert (rows == training.loc[(arm, task)]).all().all(), (arm, task)  # every eval_task's row
    table = (growing_run / "summary.md").read_text().split("## Parameters per task")[1]
    after = metrics[metrics["trained_task"] == metrics["eval_task"]].set_index(["arm", "trained_task"])
    for arm, task in [("read", 1), ("isolated", 3), ("auto", 2)]:
        counts = training.loc[("scratch" if task == 1 else arm, task)]
        cells = [arm, str(task), f"{after.loc[(arm, task), 'accuracy']:.3f}"]
        cells += [f"{int(counts[c]):,}" for c in columns[1:] + columns[:1]]
        assert "| " + " | ".join(cells) + " |" in table, cells
    assert "<h3>Parameters per task</h3>" in (growing_run / "summary.html").read_text()
