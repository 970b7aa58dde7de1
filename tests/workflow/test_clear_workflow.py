"""The tiny CLEAR config through Snakemake on a generated CLEAR-10 tree."""

import pandas as pd
import pytest

from clpipe import io
from conftest import ROOT, snakemake, write_config
from helpers.clear_tree import make_clear_tree


@pytest.mark.slow
def test_two_bucket_run_of_the_tiny_clear_config(tmp_path):
    """tests/configs/clear_tiny.yaml through Snakemake on a generated CLEAR-10 tree."""
    data = make_clear_tree(tmp_path / "data", images_per_class=4)
    cfg = write_config(tmp_path / "config.yaml", ROOT / "tests/configs/clear_tiny.yaml", data_dir=str(data))
    snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg))
    out = tmp_path / "results" / "clear_tiny"
    summary = pd.read_csv(out / "summary.csv").set_index("arm")
    assert sorted(summary.index) == ["finetune", "joint", "replay_el2n"]
    for k in ("in_domain", "next_domain", "clear_acc", "clear_bwt", "clear_fwt"):
        assert summary.loc[["finetune", "replay_el2n"], f"{k}_mean"].between(0, 1).all(), k
    metrics = pd.read_csv(out / "metrics.csv")
    rows = metrics[(metrics["arm"] == "finetune")]
    R = rows.pivot(index="trained_task", columns="eval_task", values="accuracy").to_numpy()
    assert summary.loc["finetune", "in_domain_mean"] == pytest.approx((R[1, 0] + R[2, 1]) / 2)
    assert summary.loc["finetune", "next_domain_mean"] == pytest.approx(R[1, 1])
    assert summary.loc["finetune", "clear_acc_mean"] == pytest.approx((R[1, 0] + R[2, 0] + R[2, 1]) / 3)
    assert (
        "| in-domain | next-domain | CLEAR Acc | CLEAR BwT | CLEAR FwT |" in (out / "summary.md").read_text()
    )
    assert (rows["n"] == 11).all()  # round(0.3 * 4) = 1 test image of each of the 11 classes
    training = pd.read_csv(out / "training.csv")
    assert {"lr", "kept"} <= set(training.columns)
    for _, model in training.groupby(["arm", "task"]):
        assert model["kept"].sum() == 1  # the epoch whose weights the model file holds
        assert model["lr"].iloc[0] == pytest.approx(0.01)
        assert len(model) >= 2  # min_epochs
    manifest = (tmp_path / "results/datasets/clear10.md5").read_text().splitlines()
    assert len(manifest) == 10 and manifest[0].endswith("(44 images)  clear10/labeled_images/1")
    buffer = io.load(out / "seed0/scratch/task1/replay_el2n/importance.pt", "importance")
    assert buffer["task_buckets"] == [1, 2] and (buffer["task"] == 1).all()
    assert len(buffer["task"]) == int(0.25 * 22)  # int(f * |bucket 1's train split|)
    assert (buffer["source_index"] < 44).all()  # indices into bucket 1's 44 files
