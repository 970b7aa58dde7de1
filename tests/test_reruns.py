"""Only what changed reruns: dry runs on a finished run of the tiny config.

The run happens in a copy of the workflow and of the data, so a test can edit a rule's
script or touch and change dataset files without disturbing anything else.
"""

import os
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow


def run(repo, work, *args, check=True):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(repo / "workflow/Snakefile"),
        "--directory",
        str(work),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def jobs(repo, work, cfg):
    """Counter of planned rules, and (rule, wildcards) of each planned job."""
    out = run(repo, work, "-n", "--configfile", str(cfg)).stdout
    planned = []
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            planned.append((m.group(1), {}))
        elif planned and line.startswith("wildcards:"):
            pairs = line.removeprefix("wildcards:").split(",")
            planned[-1] = (planned[-1][0], dict(p.strip().split("=", 1) for p in pairs if "=" in p))
    counts = Counter(r for r, _ in planned)
    # for the record (pytest -s): what each change plans
    print(f"\n[{cfg.name}] {sum(counts.values())} jobs planned: {dict(sorted(counts.items()))}")
    return counts, planned


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    base = tmp_path_factory.mktemp("reruns")
    repo = base / "repo"
    for part in ("workflow", "src", "config", "envs"):
        shutil.copytree(ROOT / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    data = base / "data"
    shutil.copytree(data_dir / "MNIST", data / "MNIST")
    work = base / "work"
    work.mkdir()
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["data_dir"] = str(data)
    # the arms the changes below need (MAG with task B and C, EWC, a baseline): half the run
    arms = cfg["experiments"]["tiny"]["arms"]
    cfg["experiments"]["tiny"]["arms"] = {k: arms[k] for k in ("finetune", "mag_b20", "mag_b20_c50", "ewc")}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run(repo, work, "--cores", "2", "--configfile", str(path))
    return repo, work, cfg


def variant(work, cfg, name, change):
    changed = yaml.safe_load(yaml.safe_dump(cfg))
    change(changed)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(changed))
    return path


def test_nothing_changed_nothing_to_do(finished):
    repo, work, cfg = finished
    proc = run(repo, work, "-n", "--configfile", str(work / "config.yaml"))
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_a_new_task_c_percentage_plans_only_its_jobs(finished):
    repo, work, cfg = finished
    arms = lambda c: c["experiments"]["tiny"]["arms"]  # noqa: E731
    path = variant(
        work, cfg, "c80", lambda c: arms(c).update(mag_b20_c80={"start_from": "mag_b20", "freeze": [80]})
    )
    counts, planned = jobs(repo, work, path)
    trained = [wc for rule, wc in planned if rule.startswith("train")]
    assert trained == [{"experiment": "tiny", "seed": "0", "arm": "mag_b20_c80", "task": "3"}]
    assert counts["evaluate"] == 1 and counts["train_first_task"] == 0
    assert counts["compute_importance"] == 0 and counts["update_progress"] == 0
    assert counts["aggregate"] == 1  # and the tables and figures after it
    assert set(counts) <= {"train_next_task", "evaluate", "aggregate", "all", "plot_experiment",
                           "plot_accuracy_matrix", "plot_freeze"}  # fmt: skip


def test_an_ewc_lambda_change_reruns_only_ewc(finished):
    repo, work, cfg = finished
    path = variant(
        work, cfg, "lambda", lambda c: c["experiments"]["tiny"]["arms"]["ewc"].update({"lambda": 500})
    )
    counts, planned = jobs(repo, work, path)
    model_jobs = [
        (rule, wc) for rule, wc in planned if rule in ("train_next_task", "compute_importance", "evaluate")
    ]
    assert model_jobs and all(wc.get("arm", wc.get("owner")) == "ewc" for _, wc in model_jobs), model_jobs
    assert counts["train_next_task"] == 2  # tasks 2 and 3 of the EWC arm, nothing of MAG
    assert counts["train_first_task"] == 0 and counts["update_progress"] == 0
    # accepting the change without rerunning: forget the old settings of those files
    # (the paths as the rules name them: relative to the working directory)
    outputs = [
        str(p.relative_to(work))
        for p in (work / "results/tiny/seed0/ewc").rglob("*")
        if p.is_file() and p.suffix in (".pt", ".csv")
    ]
    run(repo, work, "--cleanup-metadata", *outputs, "--configfile", str(path))
    counts, _ = jobs(repo, work, path)
    assert counts["train_next_task"] == 0 and counts["compute_importance"] == 0


def test_a_new_seed_plans_only_that_seeds_jobs(finished):
    repo, work, cfg = finished
    path = variant(work, cfg, "seed", lambda c: c.update(seeds=[0, 1]))
    counts, planned = jobs(repo, work, path)
    per_seed = [wc["seed"] for rule, wc in planned if "seed" in wc]
    assert per_seed and set(per_seed) == {"1"}
    assert counts["train_first_task"] == 1 and counts["init_model"] == 1
    assert counts["prepare_data"] == 0 and counts["download_data"] == 0


def test_touched_data_retrains_nothing_and_changed_data_is_caught(finished):
    repo, work, cfg = finished
    raw = sorted((work.parent / "data/MNIST/raw").iterdir())
    later = os.stat(raw[0]).st_mtime + 3600
    for f in raw:
        os.utime(f, (later, later))
    proc = run(repo, work, "-n", "--configfile", str(work / "config.yaml"))
    assert "Nothing to be done" in proc.stdout + proc.stderr
    labels = work.parent / "data/MNIST/raw/t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[200] ^= 0x01
    labels.write_bytes(bytes(data))
    # a changed file stops the run while the DAG is built, before any job, naming it
    proc = run(repo, work, "--cores", "1", "--configfile", str(work / "config.yaml"), check=False)
    assert proc.returncode != 0
    assert re.search(r"t10k-labels-idx1-ubyte: md5 \w+ does not match the release", proc.stdout + proc.stderr)
    assert (work / "results/datasets/mnist.md5").is_file()  # nothing was deleted
    data[200] ^= 0x01  # put the right byte back: nothing to do, nothing retrains
    labels.write_bytes(bytes(data))
    proc = run(repo, work, "-n", "--configfile", str(work / "config.yaml"))
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_an_edited_script_reruns_its_rule_and_what_follows(finished):
    repo, work, cfg = finished
    script = repo / "src/evaluate.py"
    script.write_text(script.read_text() + "# edited\n")
    counts, _ = jobs(repo, work, work / "config.yaml")
    assert counts["evaluate"] == 8  # every model: init, A, 2 finetune, 2 MAG, 2 EWC
    assert counts["train_first_task"] == 0 and counts["train_next_task"] == 0
    assert counts["compute_importance"] == 0 and counts["aggregate"] == 1
    # accepting an edit without rerunning (--touch), then forcing one step (-R)
    run(repo, work, "--touch", "--cores", "1", "--configfile", str(work / "config.yaml"))
    proc = run(repo, work, "-n", "--configfile", str(work / "config.yaml"))
    assert "Nothing to be done" in proc.stdout + proc.stderr
    out = run(repo, work, "-n", "--configfile", str(work / "config.yaml"), "-R", "aggregate").stdout
    assert "rule aggregate:" in out and "rule train_next_task:" not in out
