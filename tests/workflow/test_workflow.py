"""The Snakemake workflow: its shape, which jobs it plans, and a real run end to end."""

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

import clpipe
from clpipe import io
from conftest import ROOT, SNAKEFILE, planned_jobs, snakemake, write_config  # noqa: F401 (re-exported)


def test_rulegraph_reads_like_the_notebook_order(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", ROOT / "tests/configs/tiny.yaml", data_dir=str(tmp_path / "data"))
    dot = snakemake(tmp_path, "--rulegraph", "--configfile", str(cfg)).stdout
    names = dict(re.findall(r'(\d+)\[label = "(\w+)"', dot))
    edges = {(names[a], names[b]) for a, b in re.findall(r"(\d+) -> (\d+)", dot)}
    notebook_order = [
        ("init_model", "train_first_task"),
        ("train_first_task", "compute_importance"),  # train task A -> compute freezing values
        ("compute_importance", "train_next_task"),  # -> train task B at each freeze %
        ("train_next_task", "update_progress"),  # -> update freezing progress
        ("update_progress", "compute_importance"),  # -> compute freezing values -> task C
        ("download_data", "prepare_data"),
        ("prepare_data", "train_first_task"),
        ("train_next_task", "evaluate"),
        ("evaluate", "aggregate"),
        ("aggregate", "all"),
        ("aggregate", "plot_experiment"),
        ("aggregate", "plot_accuracy_matrix"),
        ("aggregate", "plot_setting_figure"),
        ("plot_experiment", "all"),
    ]
    for edge in notebook_order:
        assert edge in edges, f"missing edge {edge} in rule graph {sorted(edges)}"
    assert set(names.values()) == {a for e in notebook_order for a in e}


def test_default_config_shares_task_a_and_the_20_percent_task_b(tmp_path):
    cfg = write_config(
        tmp_path / "c.yaml", ROOT / "config/config.yaml", data_dir=str(tmp_path / "data"), run=["split_mnist"]
    )
    jobs = planned_jobs(tmp_path, cfg)
    seeds = 5  # the headline's (config/config.yaml)
    assert jobs["download_data"] == 1 and jobs["prepare_data"] == 1 and jobs["aggregate"] == 1
    assert jobs["init_model"] == seeds
    assert jobs["train_first_task"] == seeds  # task A once per seed, for every arm that shares it
    # task B: finetune, mag_0, p = 10/20/50/80, 3 EWC lambdas, 9 replay arms;
    # task C: finetune, mag_0, q = 10/20/50/80 from p = 20, 3 EWC lambdas, 9 replay arms;
    # + joint: one job on all tasks; + 3 MAS and 3 LwF arms: tasks B and C; + 3 SI and
    # 3 DER++ arms, which train their own task A (own_first_task): tasks A, B and C
    assert jobs["train_next_task"] == seeds * (18 + 18 + 1 + 6 * 2 + 6 * 3)
    # MAG: freezing values after A (shared by all MAG arms), after B for mag_0 and for
    # p = 20 (shared by the 4 C arms); EWC: Fisher after A (shared), after B per lambda;
    # replay: a buffer after A per replay method, after B per replay arm; MAS: after A
    # (shared), after B per lambda; SI and DER++: after A and B per arm (their own
    # path integral, their own buffer); LwF: none (it distils from the previous model)
    assert jobs["compute_importance"] == seeds * (3 + 4 + 9 + 9 + 4 + 6 * 2)
    # MAG's freezing progress after B (mag_0, p = 20); SI's and DER++'s running state
    # after A and B per arm
    assert jobs["update_progress"] == seeds * (2 + 6 * 2)
    assert jobs["evaluate"] == seeds * (2 + 36 + 1 + 30)  # + every new arm's trained task


def test_device_auto_asks_for_a_gpu_only_where_the_machine_has_one(tmp_path):
    """A local run on a machine without a GPU plans no GPU for any step (the dry run
    showed gpu=1 on CPU-only machines); a machine with one, or device cuda, asks."""
    from clpipe.gpus import machine_has_gpu

    shown = {}
    for device in ("auto", "cuda"):
        cfg = write_config(tmp_path / f"{device}.yaml", ROOT / "tests/configs/tiny.yaml", device=device)
        out = snakemake(tmp_path, "-n", "--configfile", str(cfg)).stdout
        shown[device] = set(re.findall(r"gpu=(\d)", out))
    assert shown == {"auto": {"1" if machine_has_gpu() else "0"}, "cuda": {"1"}}


def test_adding_a_task_c_arm_plans_only_its_jobs(tmp_path):
    cfg = write_config(
        tmp_path / "c.yaml", ROOT / "config/config.yaml", data_dir=str(tmp_path / "data"), run=["split_mnist"]
    )
    base = planned_jobs(tmp_path, cfg)
    raw = yaml.safe_load(cfg.read_text())
    raw["experiments"]["split_mnist"]["arms"]["mag_b20_c30"] = {"start_from": "mag_b20", "freeze": [30]}
    cfg.write_text(yaml.safe_dump(raw))
    more = planned_jobs(tmp_path, cfg)
    diff = {k: more[k] - base.get(k, 0) for k in more if more[k] != base.get(k, 0)}
    assert diff == {"train_next_task": 5, "evaluate": 5, "plot_accuracy_matrix": 1}  # 5 seeds


def test_a_bad_config_fails_before_any_job(tmp_path):
    raw = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    raw["experiments"]["tiny"]["arms"]["x"] = {"start_from": "mag_b30", "freeze": [10]}
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    proc = snakemake(tmp_path, "--cores", "1", "--configfile", str(cfg), check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "config key 'experiments.tiny.arms.x.start_from': arm 'mag_b30' does not exist" in text
    assert not (tmp_path / "results").exists()


def test_fewer_threads_than_the_config_asks_are_refused_unless_allowed(tmp_path, data_dir):
    """A CPU result depends on its threads: --cores below a step's threads is refused
    before any job runs, naming the key; allow_fewer_threads accepts it with a warning."""
    raw = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    raw["data_dir"] = str(data_dir)
    raw["resources"]["train"]["threads"] = 2
    cfg = tmp_path / "threads.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    proc = snakemake(tmp_path, "--cores", "1", "--configfile", str(cfg), check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "experiments.tiny.resources.train.threads: 2 asked, 1 given" in text, text[-2000:]
    assert "allow_fewer_threads" in text and "Traceback" not in text
    assert not (tmp_path / "results").exists()
    dry = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(cfg))  # a dry run: a warning
    assert "dry run: threads lowered" in dry.stdout + dry.stderr
    raw["allow_fewer_threads"] = True
    cfg.write_text(yaml.safe_dump(raw))
    proc = snakemake(tmp_path, "results/datasets/mnist.md5", "--cores", "1", "--configfile", str(cfg))
    assert "threads lowered below the config's (allow_fewer_threads: true)" in proc.stdout + proc.stderr


# --- a real run on MNIST -------------------------------------------------------------


def assert_tiny_outputs(work):
    """The files a run of tests/configs/tiny.yaml in ``work`` must leave, and two it must not."""
    r = work / "results" / "tiny"
    for name in ("metrics.csv", "summary.csv", "accuracy_matrix.csv", "summary.md"):
        assert (r / name).is_file(), name
    node = r / "seed0"
    expected = [
        "scratch/task0/model.pt",
        "scratch/task0/eval.csv",
        "scratch/task1/model.pt",
        "scratch/task1/history.csv",
        "scratch/task1/train.log",
        "scratch/task1/train.benchmark.tsv",
        "scratch/task1/mag/importance.pt",
        "finetune/task3/model.pt",
        "mag_0/task2/record.pt",
        "mag_0/task2/progress.pt",
        "mag_0/task2/mag/importance.pt",
        "mag_0/task3/model.pt",
        "mag_b20/task2/progress.pt",
        "mag_b20/task2/mag/importance.pt",
        "mag_b20_c50/task3/model.pt",
        "mag_b20_c50/task3/record.pt",
    ]
    for rel in expected:
        assert (node / rel).is_file(), rel
    # nothing that no arm needs: no task-3 node for the arms that stop after task B
    assert not (node / "mag_b20" / "task3").exists()
    assert not (node / "mag_b50" / "task2" / "mag").exists()


@pytest.mark.slow
def test_tiny_run_writes_every_file(tiny_run):
    work, _ = tiny_run
    assert_tiny_outputs(work)


@pytest.mark.slow
def test_tiny_run_metrics_are_sane(tiny_run):
    work, _ = tiny_run
    m = pd.read_csv(work / "results/tiny/metrics.csv")
    assert {"method", "arm", "seed", "trained_task", "eval_task", "accuracy", "loss"} <= set(m.columns)
    assert set(m["arm"]) == {
        "finetune",
        "mag_0",
        "mag_b20",
        "mag_b50",
        "mag_b20_c50",
        "ewc",
        "replay",
        "joint",
    }
    assert not m.duplicated(["experiment", "method", "arm", "seed", "trained_task", "eval_task"]).any()
    acc = m.set_index(["arm", "trained_task", "eval_task"])["accuracy"]
    assert acc[("finetune", 1, 1)] > 0.9  # task A right after task A
    assert acc[("finetune", 0, 1)] < 0.75  # the random init row is there and untrained
    # every arm but joint shares the first task's model; the task-C arm shares mag_b20's B
    assert len({acc[(a, 1, 1)] for a in set(m["arm"]) - {"joint"}}) == 1
    for j in (1, 2, 3):
        assert acc[("mag_b20_c50", 2, j)] == acc[("mag_b20", 2, j)]
    assert ((m["accuracy"] >= 0) & (m["accuracy"] <= 1)).all()
    s = pd.read_csv(work / "results/tiny/summary.csv").set_index("arm")
    assert s.loc["mag_b20", "tasks_trained"] == 2 and s.loc["mag_b20_c50", "tasks_trained"] == 3
    for col in ("acc_mean", "acc_sd", "acc_n", "bwt_mean", "fwt_mean", "forgetting_mean"):
        assert col in s.columns


@pytest.mark.slow
def test_tiny_run_records_where_and_how_each_result_was_made(tiny_run):
    """Provenance: device, threads used, the checkout's commit and whether it had
    uncommitted changes, in every model file and every metrics.csv row."""
    work, _ = tiny_run
    m = pd.read_csv(work / "results/tiny/metrics.csv")
    assert set(m["threads"]) == {1}  # tests/configs/tiny.yaml's train threads
    assert m["git_dirty"].isin([True, False]).all() or m["git_dirty"].isna().all()
    assert m["device"].str.startswith("cpu:").all()
    assert set(m["clpipe_version"]) == {clpipe.__version__}
    for path in (work / "results/tiny/seed0").rglob("model.pt"):
        meta = io.load(path, "model")["meta"]
        assert meta["threads"] == 1 and meta["device"].startswith("cpu:"), path
        assert "git_dirty" in meta and "gpu" not in meta, path  # no GPU: no GPU details
    log = (work / "results/tiny/seed0/scratch/task1/train.log").read_text()
    assert "device cpu:" in log and "1 thread(s); CPU kernels AVX2 (ATEN_CPU_CAPABILITY=avx2," in log, log
    assert "time limit 10 min" in log, log
    assert set(m["cpu_kernels"]) == {"AVX2"}  # pinned (cpu_isa: avx2, the default)
    meta = io.load(work / "results/tiny/seed0/scratch/task1/model.pt", "model")["meta"]
    assert meta["cpu"]["pins"].startswith("ATEN_CPU_CAPABILITY=avx2") and meta["cpu"]["cpu_model"]


@pytest.mark.slow
def test_tiny_run_mag_really_ran(tiny_run):
    """The source's bug: its per-weight learning rate never ran. Here it must."""
    work, _ = tiny_run
    node = work / "results/tiny/seed0"
    model = lambda rel: io.load(node / rel, "model")["state_dict"]  # noqa: E731
    finetune_b, mag0_b = model("finetune/task2/model.pt"), model("mag_0/task2/model.pt")
    assert any(not torch.equal(finetune_b[k], mag0_b[k]) for k in finetune_b)
    # 20% of every kernel frozen at B, then 50% of the rest at C: 60% in all
    b20 = model("mag_b20/task2/model.pt")
    c50 = model("mag_b20_c50/task3/model.pt")
    frozen_b = io.load(node / "mag_b20/task2/progress.pt", "progress")["frozen"]
    new_c = io.load(node / "mag_b20_c50/task3/record.pt", "record")["new_frozen"]
    assert set(frozen_b) == {k for k, v in b20.items() if v.ndim >= 2}
    for name, mask in frozen_b.items():
        assert abs(mask.float().mean().item() - 0.2) <= 1 / mask.numel()
        total = (mask | new_c[name]).sum().item()
        assert abs(total - 0.6 * mask.numel()) <= 1
        # what task B froze did not move during task C
        assert torch.equal(c50[name][mask], b20[name][mask])
        assert not torch.equal(c50[name], b20[name])


@pytest.mark.slow
def test_tiny_run_ewc_accumulates_one_fisher_per_task(tiny_run):
    work, _ = tiny_run
    node = work / "results/tiny/seed0"
    after_a = io.load(node / "scratch/task1/ewc/importance.pt", "importance")
    after_b = io.load(node / "ewc/task2/ewc/importance.pt", "importance")
    assert [t["task"] for t in after_a["terms"]] == [1]
    assert [t["task"] for t in after_b["terms"]] == [1, 2]
    assert after_b["terms"][0]["samples"] == 200
    for k, f in after_a["terms"][0]["fisher"].items():
        assert torch.equal(after_b["terms"][0]["fisher"][k], f)  # task 1's term carried over
    model_b = io.load(node / "ewc/task2/model.pt", "model")["state_dict"]
    for k, anchor in after_b["terms"][1]["anchor"].items():
        assert torch.equal(anchor, model_b[k])  # task 2's anchor: the weights after task 2
    assert (node / "ewc/task3/model.pt").is_file()
    assert not (node / "ewc/task3/ewc").exists()  # nothing after the last task


@pytest.mark.slow
def test_tiny_run_replay_buffer_grows_by_task_and_is_trained_on(tiny_run):
    work, _ = tiny_run
    node = work / "results/tiny/seed0"
    tasks = io.load(work / "results/tiny/data/tasks.pt", "tasks")["tasks"]
    n_train = [len(t["train"]["y"]) for t in tasks]
    after_a = io.load(node / "scratch/task1/replay/importance.pt", "importance")
    after_b = io.load(node / "replay/task2/replay/importance.pt", "importance")
    assert after_a["task"].tolist() == [1] * int(0.05 * n_train[0])
    assert after_b["task"].tolist() == [1] * int(0.05 * n_train[0]) + [2] * int(0.05 * n_train[1])
    assert torch.equal(after_b["source_index"][: len(after_a["task"])], after_a["source_index"])
    log_b = (node / "replay/task2/train.log").read_text()
    assert (
        f"{n_train[1] + len(after_a['task'])} samples ({len(after_a['task'])} of them from earlier tasks)"
        in log_b
    )
    log_c = (node / "replay/task3/train.log").read_text()
    assert f"({len(after_b['task'])} of them from earlier tasks)" in log_c


@pytest.mark.slow
def test_tiny_run_joint_is_one_job_on_every_task(tiny_run):
    work, _ = tiny_run
    node = work / "results/tiny/seed0"
    tasks = io.load(work / "results/tiny/data/tasks.pt", "tasks")["tasks"]
    assert (node / "joint/task3/model.pt").is_file()
    assert not (node / "joint/task1").exists() and not (node / "joint/task2").exists()
    log = (node / "joint/task3/train.log").read_text()
    n_all = sum(len(t["train"]["y"]) for t in tasks)
    earlier = n_all - len(tasks[2]["train"]["y"])
    assert f"{n_all} samples ({earlier} of them from earlier tasks)" in log
    m = pd.read_csv(work / "results/tiny/metrics.csv")
    assert sorted(m[m["arm"] == "joint"]["trained_task"].unique()) == [0, 3]
    s = pd.read_csv(work / "results/tiny/summary.csv").set_index("arm")
    assert s.loc["joint", "acc_mean"] > 0.6 and s.loc["joint", "tasks_trained"] == 3
    assert pd.isna(s.loc["joint", "bwt_mean"]) and pd.isna(s.loc["joint", "forgetting_mean"])


@pytest.mark.slow
def test_tiny_run_rerun_has_nothing_to_do(tiny_run):
    work, cfg = tiny_run
    proc = snakemake(work, "-n", "--configfile", str(cfg))
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_dry_run_prices_the_planned_work_by_the_finished_run_s_measurements(tiny_run):
    """Every job kind of the tiny config was measured by its run: a forced rerun's dry run
    prices all of its jobs (clpipe.progress) in the longest chain of jobs or more."""
    work, cfg = tiny_run
    out = snakemake(work, "-n", "-F", "--cores", "2", "--configfile", str(cfg)).stdout
    found = re.search(
        r"time: (\d+) planned job\(s\): about (\d+):(\d\d):(\d\d) on 2 core\(s\), from what", out
    )
    assert found, out[-2000:]
    jobs, seconds = int(found[1]), int(found[2]) * 3600 + int(found[3]) * 60 + int(found[4])
    assert jobs == int(re.search(r"^total\s+(\d+)", out, re.M)[1]) and seconds > 0
    assert "not measured yet" not in out


def test_snakemake_lint_is_clean(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", ROOT / "tests/configs/tiny.yaml", data_dir=str(tmp_path / "data"))
    proc = snakemake(tmp_path, "--lint", "--configfile", str(cfg), check=False)
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr, proc.stdout


def test_jobs_import_this_workflows_clpipe_ahead_of_any_other(tmp_path, data_dir):
    """Another clpipe first on PYTHONPATH (another checkout, a stale install) is not the
    one the DAG or the jobs use: each rule's script puts its own src/ first."""
    fake = tmp_path / "elsewhere" / "clpipe"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('the wrong clpipe was imported')\n")
    cfg = write_config(tmp_path / "c.yaml", ROOT / "tests/configs/tiny.yaml", data_dir=str(data_dir))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(tmp_path),
           "results/datasets/mnist.md5", "--cores", "1", "--configfile", str(cfg)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    log = (tmp_path / "results/datasets/mnist.log").read_text()
    assert f"clpipe from {ROOT / 'src' / 'clpipe'}" in log, log


@pytest.mark.slow
def test_a_model_is_evaluated_where_it_is_trained_and_the_rows_are_the_same(tiny_run):
    """Each training job evaluates the model file it wrote; the evaluate rule uses those
    rows when they are its own evaluation's (clpipe.steps.evaluate) -- and they equal a
    fresh evaluation of the file, bit for bit."""
    work, cfg = tiny_run
    node = work / "results/tiny/seed0"
    used = {p.parent.relative_to(node).as_posix() for p in node.rglob("evaluate.log")
            if "the rows its training job computed" in p.read_text()}  # fmt: skip
    trained = {p.parent.relative_to(node).as_posix() for p in node.rglob("train.log")}
    assert used == trained and "scratch/task0" not in used  # the init has no training job
    exp = yaml.safe_load(cfg.read_text())["experiments"]["tiny"]
    for rel in ("scratch/task1", "mag_b20_c50/task3", "joint/task3"):
        owner, task = rel.split("/")
        spec = {
            "experiment": "tiny", "seed": 0, "task": int(task[4:]), "owner": owner,
            "scenario": exp["scenario"], "tasks": exp["tasks"], "eval": {"batch_size": 1000},
            "input": {"size": 32, "channels": 3, "normalize": None},
        }  # fmt: skip
        # a fresh process with the jobs' CPU pins (clpipe.cpu_isa), as an evaluate job is
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1])\n"
            "from clpipe.cpu_isa import pin; pin('avx2')\n"
            "from clpipe.runtime import make_runtime\n"
            "from clpipe.steps.evaluate import evaluation_rows\n"
            "runtime = make_runtime('cpu', True, 1)\n"
            "rows = evaluation_rows(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), runtime)\n"
            "print(json.dumps([[r['accuracy'], r['loss']] for r in rows]))\n"
        )
        args = [
            str(ROOT / "src"),
            str(node / rel / "model.pt"),
            str(work / "results/tiny/data/tasks.pt"),
            json.dumps(spec),
        ]
        fresh = json.loads(subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                                          check=True).stdout)  # fmt: skip
        written = pd.read_csv(node / rel / "eval.csv")
        assert list(written["accuracy"]) == [a for a, _ in fresh], rel
        assert list(written["loss"]) == [lo for _, lo in fresh], rel


@pytest.mark.slow
def test_carrying_the_optimizer_state_reruns_every_training_job_and_what_follows(tiny_run, tmp_path):
    """train.optimizer_state is part of every training job's spec: switching it to carry
    (or back) plans each training job again, and nothing of a different experiment."""
    work, cfg = tiny_run
    changed = yaml.safe_load(cfg.read_text())
    changed["experiments"]["tiny"]["train"]["optimizer_state"] = "carry"
    carry = tmp_path / "carry.yaml"
    carry.write_text(yaml.safe_dump(changed))
    planned = planned_jobs(work, carry)
    trained = len(list((work / "results" / "tiny").glob("seed*/*/task*/history.csv")))
    assert sum(planned.get(r, 0) for r in ("train_first_task", "train_next_task", "train_joint")) == trained
    assert planned.get("aggregate") == 1
    changed["experiments"]["tiny"]["train"]["optimizer_state"] = "reset"  # the default, said
    carry.write_text(yaml.safe_dump(changed))
    assert planned_jobs(work, carry) == {}
