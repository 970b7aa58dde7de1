"""Methods' own arms through the workflow, on two tasks of the tiny config with a small MLP."""

import pandas as pd
import pytest
import torch
import yaml

from clpipe import io
from clpipe.checkpoints import load_model
from clpipe.networks.masked import TaskMaskedNetwork
from conftest import ROOT, snakemake


@pytest.mark.slow
def test_a_packnet_arm_through_the_workflow_never_forgets_its_first_task(tmp_path, data_dir):
    """Its own task-1 job, each model file a network with owners, each task evaluated
    with its own weights: the first task's test accuracy after the second is the one
    right after it, to the last digit."""
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["data_dir"] = str(data_dir)
    exp = cfg["experiments"]["tiny"]
    exp.update(tasks=[[0, 1], [2, 3]], scenario="task", model={"name": "mlp", "hidden": [32]})
    exp.update(input={"size": 28, "channels": 1})
    exp["data"] = {"validation_fraction": 0.1, "max_train_per_task": 300, "max_test_per_task": 200}
    exp["arms"] = {"finetune": {"method": "finetune"}, "packnet": {"method": "packnet", "prune": 0.5}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    snakemake(tmp_path, "--cores", "2", "--configfile", str(path))
    model, stored = load_model(
        str(tmp_path / "results/tiny/seed0/packnet/task2/model.pt"), torch.device("cpu")
    )
    assert isinstance(model, TaskMaskedNetwork) and stored["model_spec"]["name"] == "packnet"
    metrics = pd.read_csv(tmp_path / "results/tiny/metrics.csv")
    mine = metrics[(metrics["arm"] == "packnet") & (metrics["eval_task"] == 1)].set_index("trained_task")
    assert mine.loc[2, "accuracy"] == mine.loc[1, "accuracy"] > 0.9


@pytest.mark.slow
def test_an_si_arm_trains_its_own_task_1_through_the_workflow(tmp_path, data_dir):
    """Its own task-1 job (train_next_task from the random init), the record, progress and
    importance after it, then task 2; its task-1 model is the shared one bit for bit
    (the same seed and data order, nothing to protect yet), its task 2 is not."""
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["data_dir"] = str(data_dir)
    exp = cfg["experiments"]["tiny"]
    exp.update(
        tasks=[[0, 1], [2, 3]], model={"name": "mlp", "hidden": [32]}, input={"size": 28, "channels": 1}
    )
    exp["data"] = {"validation_fraction": 0.1, "max_train_per_task": 300, "max_test_per_task": 200}
    exp["arms"] = {"finetune": {"method": "finetune"}, "si": {"method": "si", "c": 10.0}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    snakemake(tmp_path, "--cores", "2", "--configfile", str(path))
    seed0 = tmp_path / "results/tiny/seed0"
    own, shared = (io.load(seed0 / f"{o}/task1/model.pt", "model")["state_dict"] for o in ("si", "scratch"))
    assert all(torch.equal(own[k], shared[k]) for k in shared)
    importance = io.load_saved(seed0 / "si/task1/si/importance.pt", "importance")
    assert set(importance) == {"importance", "anchor"}
    assert {k: v.shape for k, v in importance["importance"].items()} == {k: v.shape for k, v in own.items()}
    assert any(v.abs().sum() > 0 for v in importance["importance"].values())
    si2, ft2 = (io.load(seed0 / f"{o}/task2/model.pt", "model")["state_dict"] for o in ("si", "finetune"))
    assert any(not torch.equal(si2[k], ft2[k]) for k in ft2)
    summary = (tmp_path / "results/tiny/summary.md").read_text()
    assert "| si | si | 2 |" in summary
