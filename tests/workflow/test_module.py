"""The workflow used as a Snakemake module by another workflow, with clpipe not installed.

A host workflow in a temporary folder imports this one from its path (``module clpipe:
snakefile: ...; use rule * from clpipe as clpipe_*``) and runs a small tiny config
through it, in a Python environment where ``import clpipe`` fails: the workflow must
find its package beside its own Snakefile, its jobs too, and leave the host's
PYTHONPATH alone.
"""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, SNAKEFILE

pytestmark = pytest.mark.slow

HOST = """configfile: "config.yaml"


module clpipe:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from clpipe as clpipe_*


rule host_environment:
    # what a host's own job sees: the module must not have rewritten it
    output:
        "host_env.txt",
    shell:
        "echo PYTHONPATH=${{{{PYTHONPATH:-unset}}}} > {{output}}"
"""


def python_without_clpipe(folder: Path) -> Path:
    """A virtual environment that sees this one's packages but not its clpipe (the
    editable install is a .pth file, which a path added by another .pth does not run)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    ours = Path(sysconfig.get_paths()["purelib"])
    lines = [str(ours)]
    if (ours / "torchvision_cpu_compat.py").is_file():  # this machine's torchvision fix, if any
        lines.append("import torchvision_cpu_compat")
    (Path(site) / "parent_env.pth").write_text("\n".join(lines) + "\n")
    return python


def test_the_workflow_runs_as_a_module_of_another_without_clpipe_installed(tmp_path, data_dir):
    python = python_without_clpipe(tmp_path / "venv")
    probe = subprocess.run([str(python), "-c", "import clpipe"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'clpipe'" in probe.stderr
    host = tmp_path / "host"
    host.mkdir()
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["data_dir"] = str(data_dir)
    exp = cfg["experiments"]["tiny"]
    exp["tasks"] = exp["tasks"][:2]
    exp["arms"] = {k: exp["arms"][k] for k in ("finetune", "mag_b20", "ewc")}
    (host / "config.yaml").write_text(yaml.safe_dump(cfg))
    (host / "Snakefile").write_text(HOST.format(snakefile=SNAKEFILE))
    proc = subprocess.run(
        [str(python), "-m", "snakemake", "--cores", "2", "clpipe_all", "host_environment"],
        cwd=host, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "localrules directive specifies rules that are not present" not in proc.stderr
    metrics = pd.read_csv(host / "results/tiny/metrics.csv")
    assert set(metrics["arm"]) == {"finetune", "mag_b20", "ewc"}
    assert (host / "results/tiny/figures/freeze.png").is_file()
    # the jobs imported the module's own clpipe, beside its Snakefile
    log = (host / "results/tiny/seed0/mag_b20/task2/train.log").read_text()
    assert f"clpipe from {ROOT / 'src' / 'clpipe'}" in log, log[:500]
    assert (host / "host_env.txt").read_text().strip() == "PYTHONPATH=unset"
    # and a second run has nothing to do
    again = subprocess.run(
        [str(python), "-m", "snakemake", "-n", "clpipe_all", "host_environment"],
        cwd=host, capture_output=True, text=True,
    )  # fmt: skip
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]
