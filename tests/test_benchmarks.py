"""The benchmark scripts still run (a smoke test: one step, the smallest model; no timing)."""

import re
import subprocess
import sys

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
            "--models",
            "mlp 784-256-256-256-10",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| mlp")]
    assert len(rows) == 1
    ratios = [float(v) for v in re.findall(r"\| (\d+\.\d{3}) ", rows[0] + " ")]
    assert len(ratios) == 2 and all(r > 0 for r in ratios), rows[0]
