"""A user's own method, model and dataset, from a module outside the package, through
the workflow: docs/your_code.md's worked example method, a model builder and a dataset loader
on the tiny config, and reruns that follow the user's code."""

import contextlib
import re

import pytest
import torch
import yaml

from conftest import ROOT, planned_jobs, snakemake

YOUR_CODE = (ROOT / "docs" / "your_code.md").read_text()  # the worked examples

DATA = '''"""A user's dataset: a loader the data step calls with the entry's settings."""

SETTINGS = {k: {"type": "integer", "minimum": 1} for k in ("seed", "classes", "train", "test")}

import torch


def stripes(settings):
    """Class k: a bright row k of a 12 x 12 image, over seeded noise."""
    g = torch.Generator().manual_seed(settings["seed"])

    def split(n):
        labels = torch.arange(n) % settings["classes"]
        images = torch.randint(0, 60, (n, 12, 12), generator=g, dtype=torch.uint8)
        images[torch.arange(n), labels] = 255
        return {"images": images, "labels": labels}

    return {"train": split(settings["train"]), "test": split(settings["test"])}
'''


def printed_example(path: str = "mymethods/anchor.py") -> str:
    """A file of docs/your_code.md's worked examples (the method, the model) as shown."""
    match = re.search(rf"<!-- example: {re.escape(path)} -->\n```python\n(.*?)```", YOUR_CODE, re.S)
    assert match, f"docs/your_code.md has no example {path}"
    return match.group(1)


@contextlib.contextmanager
def edited(path, old, new):
    """``path`` with ``old`` replaced by ``new`` inside the block, as it was after it."""
    original = path.read_text()
    assert old in original, (path, old)
    path.write_text(original.replace(old, new))
    try:
        yield
    finally:
        path.write_text(original)


def test_the_worked_example_of_a_method_is_under_60_lines():
    assert len(printed_example().splitlines()) < 60


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("user_code")
    code = work / "code"
    for package, module, text in (
        ("mymethods", "anchor", printed_example()),
        ("mymodels", "tiny", printed_example("mymodels/tiny.py")),
        ("mydata", "stripes", DATA),
    ):
        # as docs/your_code.md shows them: a folder with the file, no __init__.py
        (code / package).mkdir(parents=True)
        (code / package / f"{module}.py").write_text(text)
    cfg = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    cfg["data_dir"] = str(work / "no_builtin_data")  # only the user's dataset is read
    (work / "no_builtin_data").mkdir()
    cfg["datasets"] = {
        "stripes": {"loader": "mydata.stripes:stripes", "seed": 3, "classes": 4, "train": 400, "test": 200}
    }
    cfg["experiments"] = {
        "mine": {
            "dataset": "stripes",
            "tasks": [[0, 1], [2, 3]],
            "scenario": "class",
            "input": {"size": 12, "channels": 1},
            "model": {"name": "mymodels.tiny:build_tiny", "hidden": 16},  # SETTINGS' default: 64
            "train": {"epochs": 1, "batch_size": 32, "optimizer": {"name": "sgd", "lr": 0.05}},
            "methods": {"anchor": {"type": "mymethods.anchor:Anchor"}},
            "arms": {"finetune": {"method": "finetune"}, "anchor": {"method": "anchor", "strength": 10.0}},
        }
    }
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {"PYTHONPATH": str(code)}
    snakemake(work, "--cores", "2", "--configfile", str(config), env=env)
    return work, code, config, env


def test_the_users_method_model_and_dataset_run_through_the_workflow(user_run):
    work, _, _, _ = user_run
    summary = (work / "results" / "mine" / "summary.md").read_text()
    assert re.search(r"^\| anchor \| anchor \| 2 \|", summary, re.M), summary
    importance = torch.load(
        work / "results" / "mine" / "seed0" / "scratch" / "task1" / "anchor" / "importance.pt",
        weights_only=True,
    )
    anchors = importance["anchor"]
    assert sorted(anchors) == ["1.bias", "1.weight", "3.bias", "3.weight"]  # the user's model's parameters
    assert anchors["1.weight"].shape == (16, 144)
    model = torch.load(
        work / "results" / "mine" / "seed0" / "anchor" / "task2" / "model.pt", weights_only=True
    )
    assert model["model_spec"]["name"] == "mymodels.tiny:build_tiny" and model["model_spec"]["n_outputs"] == 4
    assert model["model_spec"]["hidden"] == 16  # the user's own key, passed as written
    tasks = torch.load(work / "results" / "mine" / "data" / "tasks.pt", weights_only=True)
    assert tasks["tasks"][0]["train"]["x"].shape[1:] == (1, 12, 12)


def test_a_comment_in_the_users_code_reruns_nothing_and_its_code_what_runs_it(user_run):
    work, code, config, env = user_run
    anchor = code / "mymethods" / "anchor.py"
    with edited(anchor, "# added to every batch's loss", "# added to the loss of each batch"):
        assert planned_jobs(work, config, env=env) == {}
    with edited(anchor, "self.strength / 2 *", "0.5 * self.strength *"):
        jobs = planned_jobs(work, config, env=env)
        # the anchor arm's importance step, its training and evaluation; not fine-tuning's
        assert (jobs.get("compute_importance"), jobs.get("train_next_task"), jobs.get("evaluate")) == (
            1,
            1,
            1,
        ), jobs
    with edited(code / "mymodels" / "tiny.py", "nn.ReLU()", "nn.Tanh()"):
        jobs = planned_jobs(work, config, env=env)
        assert jobs.get("init_model") == 1 and jobs.get("train_first_task") == 1, jobs  # every model
        assert "prepare_data" not in jobs, jobs
    with edited(code / "mydata" / "stripes.py", "(0, 60,", "(0, 50,"):
        assert planned_jobs(work, config, env=env).get("prepare_data") == 1


def test_without_the_users_module_on_the_path_the_run_is_refused_naming_the_key(user_run):
    work, _, config, _ = user_run
    out = snakemake(work, "-n", "--configfile", str(config), check=False, env={"PYTHONPATH": ""})
    assert out.returncode != 0
    assert (
        "config key 'experiments.mine.methods.anchor.type': module 'mymethods.anchor' not found"
        in out.stdout + out.stderr
    )
