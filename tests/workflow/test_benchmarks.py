"""The benchmark scripts still run (a smoke test: one step, the smallest model; no timing)."""

import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT


def test_method_overhead_prints_its_table():
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/method_overhead.py"),
            "--steps",
            "1",
            "--threads",
            "1",
            "--repeats",
            "1",
            "--models",
            "mlp 784-256-256-256-10",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| mlp")]
    assert len(rows) == 2  # step cost, then replay scoring
    ratios = [float(v) for v in re.findall(r"\| (\d+\.\d{3}) ", rows[0] + " ")]
    assert len(ratios) == 2 and all(r > 0 for r in ratios), rows[0]
    scoring = [float(v) for v in re.findall(r"\| (\d+\.\d{3}) ", rows[1] + " ")]
    assert len(scoring) == 4 and all(r > 0 for r in scoring), rows[1]  # one per score


def run_benchmark(script, *args, timeout=300, returncode=0):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == returncode, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def table_row(stdout, start):
    rows = [line for line in stdout.splitlines() if line.startswith(start)]
    assert len(rows) == 1, stdout
    return rows[0]


def test_data_path_prints_its_table(data_dir):
    out = run_benchmark(
        "data_path.py",
        "--data-dir", str(data_dir),
        "--models", "mlp 784-256-256-256-10",
        "--turns", "1",
        "--batches", "1",
        "--workers", "0",
        "--threads", "1",
    )  # fmt: skip
    assert out.startswith("device: cpu")
    row = table_row(out, "| mlp")
    ratios = [float(v) for v in re.findall(r"\| (\d+\.\d{3}) ", row + " ")]
    assert len(ratios) == 2 and all(r > 0 for r in ratios), row
    assert row.rstrip().endswith("| >= 2.00 |")


def test_data_path_names_missing_data(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/data_path.py"), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "MNIST not found" in proc.stderr and str(tmp_path) in proc.stderr


def test_compute_efficiency_prints_its_table():
    out = run_benchmark(
        "compute_efficiency.py",
        "--widths", "1/8",
        "--no-knobs",
        "--steps", "1",
        "--threads", "1",
        "--matmul", "256",
    )  # fmt: skip
    row = table_row(out, "| 1/8 width, default")
    ratios = [float(v) for v in re.findall(r"\| (\d+\.\d{3}) ", row + " ")]
    assert len(ratios) == 1 and ratios[0] > 0, row
    # the analytic count and torch's FlopCounterMode agree on conv and linear layers
    analytic, counted = re.search(r"per step ([\d.]+) G .*FlopCounterMode ([\d.]+) G", out).groups()
    assert abs(float(analytic) - float(counted)) <= 0.02 * float(counted), out


def test_workflow_overhead_prints_its_table(data_dir):
    out = run_benchmark("workflow_overhead.py", "--data-dir", str(data_dir), "--repeats", "1")
    row = table_row(out, "| **job start -> first training batch**")
    seconds, share = row.split("|")[2:4]
    assert float(seconds) > 0 and 0 < float(share.strip().rstrip("%")) <= 100, row


def test_scale_prints_its_table(data_dir):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/scale.py")]
        + ["--configfile", str(ROOT / "tests/configs/tiny.yaml"), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the main table's row, then the passes outside training, then the dry run's
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 3, proc.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:3] == ["8", "3"], rows[0]  # arms, tasks
    assert int(cells[3].replace(",", "")) > 0, rows[0]  # parameters
    train, evaluate, importance, progress, total = (int(v) for v in cells[4].split(" / "))
    assert total > 0 and total == 1 + train + evaluate + importance + progress, rows[0]
    assert evaluate == train + 1, rows[0]
    assert rows[2].split("|")[2].strip() == cells[4], rows[2]  # the Snakemake dry run plans the same
    assert "The dry run's per-seed jobs match the table." in proc.stdout


def test_throughput_224_prints_variants_and_the_estimate(data_dir):
    out = run_benchmark(
        "throughput_224.py",
        "--size", "32",
        "--width", "0.125",
        "--steps", "1",
        "--threads", "1",
        "--config", str(ROOT / "config/quick.yaml"),
        "--data-dir", str(data_dir),
    )  # fmt: skip
    speeds = {}
    for variant in ("fp32", "bf16 autocast", "channels_last", "bf16 + channels_last"):
        cells = [c.strip() for c in table_row(out, f"| {variant} |").strip("|").split("|")]
        speeds[variant] = float(cells[1].replace(",", ""))
        assert speeds[variant] > 0 and 0 < float(cells[5].rstrip("%")) < 100, cells
    # the quick headline's network: its training images x passes over each variant's speed
    cells = [c.strip() for c in table_row(out, "| split_mnist_quick |").strip("|").split("|")]
    images = float(cells[1].rstrip("M")) * 1e6
    for variant, hours in zip(speeds, cells[2:], strict=True):
        assert float(hours) == pytest.approx(images / speeds[variant] / 3600, rel=0.05, abs=0.06)


@pytest.mark.slow
def test_gpu_check_runs_its_checks_on_a_cpu(tiny_run, tmp_path):
    """The GPU acceptance check's smoke test (--allow-cpu), on the suite's finished tiny
    run: its workflow check finds nothing left to do, then every other check runs."""
    import json

    work, cfg = tiny_run
    data_dir = yaml.safe_load(cfg.read_text())["data_dir"]
    out = run_benchmark(
        "gpu_check.py", "--allow-cpu", "--work", str(work), "--data-dir", data_dir, "--steps", "1",
        "--size", "32", "--width", "0.125", "--out", str(tmp_path / "check.json"), returncode=1,
    )  # fmt: skip
    report = json.loads((tmp_path / "check.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == ["workflow", "determinism", "mag_frozen", "fisher", "throughput"], out
    # on a CPU the device checks fail (no CUDA) and the rest pass: bit-identical reruns,
    # frozen weights unmoved, the same Fisher on the same device
    assert checks["workflow"]["passed"] is False and checks["workflow"]["evaluation_devices"][0].startswith(
        "cpu"
    )
    for name in ("determinism", "mag_frozen", "fisher"):
        assert checks[name]["passed"] is True, checks[name]
    assert checks["mag_frozen"]["task 2 (mag_b20, 20%)"]["frozen_share"] == pytest.approx(0.2, abs=0.01)
    assert set(checks["throughput"]["variants"]) == {
        "fp32",
        "bf16 autocast",
        "channels_last",
        "bf16 + channels_last",
    }
    assert report["environment"]["device"] == "cpu" and report["passed"] is False


@pytest.mark.slow
def test_small_experiment_times_the_pipeline_against_one_plain_process(data_dir, tmp_path):
    """benchmarks/small_experiment.py on a shortened protocol (2 tasks, 20 iterations)."""
    import json

    out = run_benchmark(
        "small_experiment.py", "--data-dir", str(data_dir), "--cores", "2", "--repeats", "1",
        "--iterations", "20", "--tasks", "2", "--json", str(tmp_path / "figures.json"), timeout=600,
    )  # fmt: skip
    figures = json.loads((tmp_path / "figures.json").read_text())
    run = figures["runs"][0]
    assert run["counts"]["train_next_task"] == 2 and run["counts"]["evaluate"] == 4, run["counts"]
    assert 0 < run["efficiency"] < 1 and figures["plain"]["wall"] > 0
    assert "pipeline at --cores 2 / plain process:" in out and "| evaluate | 4 |" in out


def test_planning_prints_time_and_memory_per_job(data_dir, tmp_path):
    out = run_benchmark(
        "planning.py",
        "--jobs",
        "60",
        "--repeats",
        "1",
        "--workdir",
        str(tmp_path),
        "--data-dir",
        str(data_dir),
    )
    row = next(line for line in out.splitlines() if re.match(r"\| \d", line))
    jobs, seeds, seconds, per_thousand, mb, kb = (
        float(c.replace(",", "")) for c in row.strip("| ").split(" | ")
    )
    assert jobs >= 60 and seeds == 2 and seconds > 0 and mb > 10 and kb > 0, row


def test_transformed_tasks_prints_the_files_and_their_loading(data_dir, tmp_path):
    out = run_benchmark(
        "transformed_tasks.py", "--tasks", "2", "--data-dir", str(data_dir), "--workdir", str(tmp_path)
    )
    rows = [
        line for line in out.splitlines() if line.startswith("| the images once") or line.startswith("| 2 ")
    ]
    shared, copies = (float(r.split(" | ")[1]) for r in rows)
    assert len(rows) == 2 and copies > 1.8 * shared, out
