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
                           "plot_accuracy_matrix", "plot_setting_figure"}  # fmt: skip


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
    # accepting the change without rerunning: --touch (Snakemake marks the files up to
    # date; the workflow writes their receipts afresh for the new settings)
    run(repo, work, "--touch", "--cores", "1", "--configfile", str(path))
    counts, _ = jobs(repo, work, path)
    assert counts["train_next_task"] == 0 and counts["compute_importance"] == 0
    # the results now claim the new lambda: under the old one they are out of date,
    # until accepted again (the other tests share this run)
    original = work / "config.yaml"
    assert jobs(repo, work, original)[0]["train_next_task"] == 2
    run(repo, work, "--touch", "--cores", "1", "--configfile", str(original))
    assert jobs(repo, work, original)[0]["train_next_task"] == 0


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


# --- edits of the clpipe package: exactly the jobs whose code includes the module --------

FIGURES = {
    "plot_experiment": 1,
    "plot_accuracy_matrix": 4,
    "plot_setting_figure": 1,
}  # 4 arms, MAG among them


def edit_package(repo, module, change):
    """Apply ``change`` (text -> text) to a module of the copy's clpipe; returns a function
    that puts the original back."""
    path = repo / "src" / "clpipe" / module
    original = path.read_text()
    path.write_text(change(original))
    return lambda: path.write_text(original)


def planned(repo, work, cfg_path):
    counts, planned_jobs = jobs(repo, work, cfg_path)
    return {k: v for k, v in counts.items() if k != "all"}, planned_jobs


def test_a_method_file_edited_reruns_that_methods_jobs_and_nothing_of_the_others(finished):
    repo, work, cfg = finished
    restore = edit_package(repo, "methods/ewc.py", lambda s: s + "\n_EDITED = True\n")
    try:
        counts, planned_jobs = planned(repo, work, work / "config.yaml")
    finally:
        restore()
    # the EWC arm's tasks 2 and 3, its Fisher after task 1 and after task 2, the two
    # models' evaluations, then the tables and figures
    assert counts == {"train_next_task": 2, "compute_importance": 2, "evaluate": 2, "aggregate": 1, **FIGURES}
    for rule, wc in planned_jobs:
        if rule in ("train_next_task", "evaluate"):
            assert wc.get("arm", wc.get("owner")) == "ewc", (rule, wc)
        if rule == "compute_importance":
            assert wc["method"] == "ewc", wc


def test_the_training_loop_edited_reruns_every_training_and_what_follows(finished):
    repo, work, cfg = finished
    restore = edit_package(repo, "training.py", lambda s: s + "\n_EDITED = True\n")
    try:
        counts, _ = planned(repo, work, work / "config.yaml")
    finally:
        restore()
    # 7 trainings (task 1; finetune 2, 3; mag_b20 2; mag_b20_c50 3; ewc 2, 3), their
    # consolidation steps, the 7 trained models' evaluations; not the init or the data
    assert counts == {
        "train_first_task": 1,
        "train_next_task": 6,
        "compute_importance": 4,
        "update_progress": 1,
        "evaluate": 7,
        "aggregate": 1,
        **FIGURES,
    }


def test_the_models_or_the_data_path_edited_rerun_every_model(finished):
    repo, work, cfg = finished
    everything = {
        "train_first_task": 1,
        "train_next_task": 6,
        "compute_importance": 4,
        "update_progress": 1,
        "evaluate": 8,  # the init's too: it is a model, and it reads the tasks file
        "aggregate": 1,
        **FIGURES,
    }
    # the networks: the init too; the data path: not the init it does not feed; the task
    # building: the data step too
    edits = (
        ("networks/plain.py", {"init_model": 1}),
        ("data/pipeline.py", {}),
        ("data/tasks.py", {"prepare_data": 1}),
    )
    for module, first in edits:
        restore = edit_package(repo, module, lambda s: s + "\n_EDITED = True\n")
        try:
            counts, _ = planned(repo, work, work / "config.yaml")
        finally:
            restore()
        assert counts == {**everything, **first}, (module, counts)


def test_the_metrics_edited_rerun_the_tables_and_figures_only(finished):
    repo, work, cfg = finished
    for module in ("metrics.py", "aggregate.py"):
        restore = edit_package(repo, module, lambda s: s + "\n_EDITED = True\n")
        try:
            counts, _ = planned(repo, work, work / "config.yaml")
        finally:
            restore()
        assert counts == {"aggregate": 1, **FIGURES}, (module, counts)


def test_the_figures_edited_rerun_the_figures_only(finished):
    repo, work, cfg = finished
    restore = edit_package(repo, "figures.py", lambda s: s + "\n_EDITED = True\n")
    try:
        counts, _ = planned(repo, work, work / "config.yaml")
    finally:
        restore()
    assert counts == FIGURES


def test_comments_docstrings_formatting_and_the_version_rerun_nothing(finished):
    repo, work, cfg = finished

    def cosmetic(source):
        out = source.replace('"""The training loop', '"""The training loop (reworded)', 1)
        out = out.replace("\ndef ", "\n# a comment\n\ndef ", 1)
        signature = "(n_samples: int, train_cfg: dict[str, Any]) -> tuple[int, int]:"
        wrapped = "(\n    n_samples: int, train_cfg: dict[str, Any]\n) -> tuple[int, int]:"
        return out.replace(signature, wrapped, 1)

    restore = [
        edit_package(repo, "training.py", cosmetic),
        edit_package(repo, "__init__.py", lambda s: s.replace('__version__ = "', '__version__ = "9', 1)),
    ]
    try:
        edited = (repo / "src/clpipe/training.py").read_text()
        assert "(reworded)" in edited and "# a comment" in edited and "Any]\n) -> tuple" in edited
        proc = run(repo, work, "-n", "--configfile", str(work / "config.yaml"))
    finally:
        for r in restore:
            r()
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]


def test_touch_accepts_a_code_edit_and_forcing_still_works(finished):
    repo, work, cfg = finished
    restore = edit_package(repo, "figures.py", lambda s: s + "\n_EDITED = True\n")
    try:
        run(repo, work, "--touch", "--cores", "1", "--configfile", str(work / "config.yaml"))
        proc = run(repo, work, "-n", "--configfile", str(work / "config.yaml"))
        assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]
        restore()
        restore = edit_package(repo, "metrics.py", lambda s: s + "\n_EDITED = True\n")
        run(repo, work, "--touch", "--cores", "1", "--configfile", str(work / "config.yaml"))
        proc = run(repo, work, "-n", "--configfile", str(work / "config.yaml"))
        assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]
        out = run(
            repo, work, "-n", "--configfile", str(work / "config.yaml"), "-R", "plot_setting_figure"
        ).stdout
        assert "rule plot_setting_figure:" in out and "rule aggregate:" not in out
    finally:
        restore()


def test_a_fingerprint_is_the_same_for_any_copy_of_the_code(tmp_path):
    """Not the checkout's folder, not the files' times: two copies, one touched, agree;
    a real change of one module changes exactly the jobs that run it."""
    from clpipe import fingerprint as fp
    from clpipe.methods import REGISTRY

    methods = tuple(sorted({t.implementation.split(":")[0] for t in REGISTRY.values()}))
    copies = []
    for name in ("one", "elsewhere/two"):
        shutil.copytree(ROOT / "src", tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(tmp_path / name)
    for f in (copies[1] / "clpipe").rglob("*.py"):
        os.utime(f, (1e9, 1e9))

    def codes(src):
        files = fp.module_files(src / "clpipe")
        return {
            (script, own): fp.fingerprint(fp.code_modules(src / script, own, methods, files), files)
            for script, own in [
                ("train_next_task.py", "clpipe.methods.mag"),
                ("train_next_task.py", "clpipe.methods.ewc"),
                ("evaluate.py", None),
                ("aggregate.py", None),
            ]
        }

    assert codes(copies[0]) == codes(copies[1])
    mag = copies[1] / "clpipe/methods/mag.py"
    mag.write_text(mag.read_text() + "\n_EDITED = True\n")
    fp._parsed.cache_clear()
    changed = {k for k, v in codes(copies[1]).items() if v != codes(copies[0])[k]}
    assert changed == {("train_next_task.py", "clpipe.methods.mag")}
