import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SNAKEFILE = ROOT / "workflow" / "Snakefile"
# A test's kind is its folder: tests/unit/ (the package's functions on their own; the fast
# loop, ``pytest -m unit``) or tests/workflow/ (Snakemake runs, DAG builds, dry runs, a
# SLURM cluster, the benchmark scripts). ``slow`` marks the end-to-end runs among the
# latter. tests/helpers/ holds what several modules share.
KINDS = ("unit", "workflow")


# The suite runs on two pytest-xdist workers (pyproject's addopts) with the scheduler
# below: each workflow module's tests run on one worker, beside their module fixture (a
# finished run), computed once as without workers, and the SLURM tests one at a time on
# the machine's one test cluster; unit tests go one by one to whichever worker is free.
# Modules start longest first (their times on CI), so that no long one starts last.
# (xdist's own --dist loadgroup does not group with pytest 9.2: pytest-xdist#1386.)
LONGEST_FIRST = ("test_faults", "test_readme", "test_slurm", "test_benchmarks", "test_reruns")


def start_order(item) -> tuple[int, int]:
    """(unit after workflow, the module's place in LONGEST_FIRST, else after them)."""
    name = item.path.stem
    rank = LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    return (item.path.parent.name == "unit", rank)


if importlib.util.find_spec("xdist") is not None:

    @pytest.hookimpl(tryfirst=True)  # before xdist's own
    def pytest_xdist_make_scheduler(config, log):
        from xdist.scheduler import LoadScopeScheduling

        class ByWorkflowModule(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                path = nodeid.split("::", 1)[0]
                return path if path.startswith("tests/workflow/") else nodeid

        config.option.loadscopereorder = False  # the collection's order: start_order
        return ByWorkflowModule(config, log)


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = item.path.resolve().parent
        kind = folder.name
        if folder.parent != ROOT / "tests" or kind not in KINDS:
            raise pytest.UsageError(f"{item.nodeid}: a test module belongs in tests/unit/ or tests/workflow/")
        if kind == "unit" and item.get_closest_marker("slow"):
            raise pytest.UsageError(
                f"{item.nodeid}: a slow test runs the workflow; it belongs in tests/workflow/"
            )
        item.add_marker(getattr(pytest.mark, kind))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=start_order)  # stable: a module's tests keep their order


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
    with the live view on (tests/workflow/test_live.py reads it; it changes no result).

    With pytest-xdist the run is made once, by the first worker that needs it, and kept
    as it was made; each other worker gets a copy of its own (its results and
    Snakemake's records, as tests/workflow/test_faults.py copies it to break it)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return _make_tiny_run(tmp_path_factory.mktemp("tiny"), data_dir)
    root = tmp_path_factory.getbasetemp().parent  # shared by the workers of this session
    made = root / "tiny_run_as_made"
    with FileLock(str(root / "tiny_run.lock")):
        if not made.exists():
            work, _ = _make_tiny_run(tmp_path_factory.mktemp("tiny"), data_dir)
            shutil.copytree(work, made, symlinks=True, ignore=shutil.ignore_patterns("*.lock", "locks"))
            return work, work / "config.yaml"
    work = tmp_path_factory.mktemp("tiny")
    shutil.copytree(made, work, symlinks=True, dirs_exist_ok=True)
    return work, work / "config.yaml"


def _make_tiny_run(work, data_dir):
    cfg = write_config(
        work / "config.yaml",
        ROOT / "tests/configs/tiny.yaml",
        data_dir=str(data_dir),
        logging={"tensorboard": True},
    )
    snakemake(work, "--cores", "2", "--configfile", str(cfg))
    return work, cfg
