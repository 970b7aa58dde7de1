"""No stale or edited number in any table: every result checked against the config and
code that claim it, whatever Snakemake's own metadata says (clpipe.receipts), and a
report only of results that are up to date. One small finished run, changed case by
case in copies of it."""

import shutil

import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, planned_jobs, snakemake

pytestmark = pytest.mark.slow

# what a changed EWC lambda reruns, with Snakemake's metadata or without it: the EWC
# arm's training, its evaluation, the tables and the figures (nothing of fine-tuning)
LAMBDA_RERUNS = {
    "train_next_task": 1,
    "evaluate": 1,
    "aggregate": 1,
    "plot_experiment": 1,
    "plot_accuracy_matrix": 2,
    "all": 1,
}


def config(data_dir, lam=1000.0, **top):
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["data_dir"] = str(data_dir)
    exp = cfg["experiments"]["tiny"]
    exp["tasks"] = [[0, 1], [2, 3]]
    exp["model"] = {"name": "mlp", "hidden": [32]}
    exp["input"] = {"size": 28, "channels": 1}
    exp["data"] = {"validation_fraction": 0.1, "max_train_per_task": 300, "max_test_per_task": 200}
    exp["arms"] = {"finetune": {"method": "finetune"}, "ewc": {"method": "ewc", "lambda": lam}}
    cfg.update(top)
    return cfg


def write(work, cfg):
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    work = tmp_path_factory.mktemp("stale") / "run"
    work.mkdir()
    snakemake(work, "--cores", "2", "--configfile", str(write(work, config(data_dir))))
    return work


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run (its results and Snakemake's metadata)."""
    work = tmp_path / "run"
    shutil.copytree(finished, work, symlinks=True)
    return work


def node(work, owner, task, name):
    return work / "results" / "tiny" / "seed0" / owner / f"task{task}" / name


def test_a_changed_setting_reruns_the_same_jobs_with_or_without_snakemakes_metadata(run, data_dir):
    changed = write(run, config(data_dir, lam=1.0))
    assert planned_jobs(run, changed) == LAMBDA_RERUNS  # Snakemake's params trigger
    shutil.rmtree(run / ".snakemake")
    assert planned_jobs(run, changed) == LAMBDA_RERUNS  # the receipts alone


def test_a_second_checkout_reading_the_first_ones_results_reruns_what_changed(run, data_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    changed = write(other, config(data_dir, lam=1.0, results_dir=str(run / "results")))
    assert planned_jobs(other, changed) == LAMBDA_RERUNS
    same = write(other, config(data_dir, results_dir=str(run / "results")))
    assert planned_jobs(other, same) == {}


def test_an_edited_evaluation_is_made_again_before_it_is_aggregated(run, data_dir):
    cfg = write(run, config(data_dir))
    evaluation = node(run, "ewc", 2, "eval.csv")
    true = pd.read_csv(evaluation)
    edited = true.copy()
    edited.loc[0, "accuracy"] = 0.99
    edited.to_csv(evaluation, index=False)
    jobs = planned_jobs(run, cfg)
    assert jobs.get("evaluate") == 1 and jobs.get("aggregate") == 1 and "train_next_task" not in jobs, jobs
    snakemake(run, "--cores", "2", "--configfile", str(cfg))
    metrics = pd.read_csv(run / "results" / "tiny" / "metrics.csv")
    mine = metrics[(metrics["owner"] == "ewc") & (metrics["trained_task"] == 2)]
    assert sorted(mine["accuracy"]) == sorted(true["accuracy"])


def test_edited_rows_of_a_training_jobs_evaluation_are_not_used(run, data_dir):
    cfg = write(run, config(data_dir))
    cache = node(run, "ewc", 2, "eval.cache.json")
    true = pd.read_csv(node(run, "ewc", 2, "eval.csv"))
    cache.write_text(cache.read_text().replace('"accuracy": 0.', '"accuracy": 0.0'))
    snakemake(run, "--cores", "1", "--configfile", str(cfg), "-f", "results/tiny/seed0/ewc/task2/eval.csv")
    assert pd.read_csv(node(run, "ewc", 2, "eval.csv"))["accuracy"].tolist() == true["accuracy"].tolist()
    assert "not using the training job's rows" in node(run, "ewc", 2, "evaluate.log").read_text()


def test_permuted_labels_in_the_data_remake_the_data_and_everything_after_it(run, data_dir):
    cfg = write(run, config(data_dir))
    path = run / "results" / "tiny" / "data" / "tasks.pt"
    data = torch.load(path, weights_only=True)
    labels = data["tasks"][0]["train"]["y"]
    data["tasks"][0]["train"]["y"] = labels[
        torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    ]
    torch.save(data, path)  # its metadata kept
    jobs = planned_jobs(run, cfg)
    assert (
        jobs.get("prepare_data") == 1 and jobs.get("train_first_task") == 1 and jobs.get("evaluate") == 4
    ), jobs
    from clpipe.data.pipeline import load_tasks
    from clpipe.receipts import EditedFileError

    with pytest.raises(EditedFileError, match="tasks.pt: its content is not what prepare_data wrote"):
        load_tasks(str(path))


def test_a_zeroed_fisher_is_computed_again(run, data_dir):
    cfg = write(run, config(data_dir))
    path = node(run, "scratch", 1, "ewc/importance.pt")
    importance = torch.load(path, weights_only=True)
    for term in importance["terms"]:
        term["fisher"] = {k: torch.zeros_like(v) for k, v in term["fisher"].items()}
    torch.save(importance, path)
    jobs = planned_jobs(run, cfg)
    assert jobs.get("compute_importance") == 1 and jobs.get("train_next_task") == 1, jobs


@pytest.mark.parametrize("why", ["a changed setting", "a failed job"])
def test_a_report_of_results_that_are_not_up_to_date_is_refused(run, data_dir, why):
    if why == "a changed setting":
        cfg = write(run, config(data_dir, lam=1.0))
    else:  # its job fails (a non-finite loss) and --keep-going finishes the others
        cfg = write(run, config(data_dir, lam=1e39))
        out = snakemake(run, "--cores", "1", "--keep-going", "--configfile", str(cfg), check=False)
        assert out.returncode != 0 and not node(run, "ewc", 2, "model.pt").exists()
    out = snakemake(run, "--configfile", str(cfg), "--report", str(run / "report.html"), check=False)
    assert out.returncode == 1 and not (run / "report.html").exists()
    text = out.stdout + out.stderr
    assert "cannot build the report: the results are not up to date with the config and code" in text
    assert "train_next_task x1" in text and "Traceback" not in text, text[-2000:]
