import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SNAKEFILE = ROOT / "workflow" / "Snakefile"
# Test modules whose tests run Snakemake (DAG builds, dry runs, refusals, a SLURM cluster)
# or a benchmark script: marked ``workflow``; every other test not marked ``slow`` is a
# ``unit`` test (``pytest -m unit``: the fast loop).
WORKFLOW_MODULES = {
    "test_benchmarks", "test_faults", "test_growing_workflow", "test_live", "test_module", "test_readme",
    "test_report", "test_reruns", "test_slurm", "test_user_code", "test_user_datasets_workflow",
    "test_workflow",
}  # fmt: skip


# The suite runs on two pytest-xdist workers (pyproject's addopts). A test that uses the
# suite's one tiny run or the machine's one SLURM test cluster runs on the worker that
# holds them; a module's workflow tests run on one worker, beside their module fixture
# (a finished run each): computed once, as without workers.
SHARED_RUN = "tiny_run_and_slurm_cluster"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__ in WORKFLOW_MODULES:
            item.add_marker(pytest.mark.workflow)
        elif item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.unit)
        if {"tiny_run", "slurm_cluster"} & set(item.fixturenames):
            item.add_marker(pytest.mark.xdist_group(SHARED_RUN))
        elif item.get_closest_marker("unit") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


# Real MNIST / Fashion-MNIST in torchvision's layout (see README: "Tests").
DATA_DIR = Path(os.environ.get("CLPIPE_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(
            f"real MNIST not found under {DATA_DIR}; set CLPIPE_DATA_DIR to a folder "
            "with MNIST/raw/*-ubyte (torchvision layout)"
        )
    return DATA_DIR


def snakemake(workdir, *args, check=True, timeout=None, env=None):
    """Run the workflow in ``workdir`` (its own .snakemake and results) and return the
    process; ``env``: variables set for it (and its jobs) besides this process's."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *args]
    environment = {**os.environ, **env} if env else None
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=environment)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def write_config(path, source, **overrides):
    cfg = yaml.safe_load(source.read_text())
    cfg.update(overrides)
    path.write_text(yaml.safe_dump(cfg))
    return path


def planned_jobs(workdir, configfile, *extra, env=None):
    """{rule: count} of a dry run."""
    out = snakemake(
        workdir, "-n", "--quiet", "rules", "--configfile", str(configfile), *extra, env=env
    ).stdout
    counts = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, data_dir):
    """tests/configs/tiny.yaml run once through Snakemake on real MNIST: (workdir, config);
    with the live view on (tests/test_live.py reads it; it changes no result)."""
    work = tmp_path_factory.mktemp("tiny")
    cfg = write_config(
        work / "config.yaml",
        ROOT / "tests/configs/tiny.yaml",
        data_dir=str(data_dir),
        logging={"tensorboard": True},
    )
    snakemake(work, "--cores", "2", "--configfile", str(cfg))
    return work, cfg
