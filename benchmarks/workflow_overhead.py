"""What a training job costs before its first batch: interpreter, imports, data file, model.

    python benchmarks/workflow_overhead.py [--data-dir ../shared/data] [--repeats 5]
                                           [--workdir DIR]
                                           [--wall [--wall-config config/quick.yaml] [--wall-run EXP ...]]

Prepares the inputs of one real training job by running the workflow on the tests' tiny
config (tests/configs/tiny.yaml: MNIST, VGG16 at 1/16 width, 540 training images) up to
``train_first_task`` with ``--skip-script-cleanup``, which keeps the script Snakemake
generated for that job (.snakemake/scripts/tmp*.train_first_task.py: Snakemake's
preamble with the pickled job, then src/train_first_task.py). Then it runs that script
the way Snakemake runs it (``python <script>`` in the working directory) ``--repeats``
times and watches the job's log file: the first line ("clpipe from ...") is written
once the preamble and the imports are done, the line "training task 1: ..." just
before the first training batch (after the runtime's setup -- threads, deterministic
algorithms --, loading the tasks.pt data file, building the model and the optimizer).
For scale, the table also gives a bare ``python -c pass``, ``import torch`` and
``torch.use_deterministic_algorithms(True)`` timed alone in a fresh interpreter, the
job's whole run and a Snakemake dry run of the same config (building the DAG, paid once
per ``snakemake`` call, not per job).

``--wall`` (off by default: the whole quick config takes hours on 2 cores) also runs the
``--wall-config`` (default config/quick.yaml; ``--wall-run`` picks some of its
experiments, as ``--config run=[...]`` does) from scratch at ``--cores 1`` and at
``--cores 2``, each in its own temporary directory, and reports both wall times and the
speed-up.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, add_data_dir_argument, load_note, machine_line, median, table  # noqa: E402

SNAKEFILE = ROOT / "workflow" / "Snakefile"
FIRST_LINE = "clpipe from"
FIRST_BATCH = "training task"


def snakemake(workdir: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"error: snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def write_config(path: Path, source: Path, **overrides) -> Path:
    cfg = yaml.safe_load(source.read_text())
    cfg.update(overrides)
    path.write_text(yaml.safe_dump(cfg))
    return path


def prepare(workdir: Path, data_dir: Path) -> tuple[Path, Path, Path]:
    """Run the tiny config up to train_first_task; (config, the job's script, its log)."""
    cfg = write_config(workdir / "config.yaml", ROOT / "tests/configs/tiny.yaml", data_dir=str(data_dir))
    snakemake(
        workdir,
        "--cores",
        "2",
        "--configfile",
        str(cfg),
        "--until",
        "train_first_task",
        "--skip-script-cleanup",
    )
    scripts = sorted((workdir / ".snakemake" / "scripts").glob("tmp*.train_first_task.py"))
    logs = sorted((workdir / "results").glob("**/train.log"))
    if len(scripts) != 1 or len(logs) != 1:
        sys.exit(f"error: expected one train_first_task script and log, found {scripts} and {logs}")
    return cfg, scripts[0], logs[0]


def run_job(workdir: Path, script: Path, log: Path, timeout: float = 300.0) -> dict[str, float]:
    """Seconds from the job's start to its log's first line, to the first batch, to its end."""
    log.unlink(missing_ok=True)
    for stale in log.parent.glob("*.resume.pt"):  # an epoch checkpoint would be resumed from
        stale.unlink()
    stderr = tempfile.TemporaryFile()
    seen: dict[str, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=workdir, stdout=subprocess.DEVNULL, stderr=stderr
    )
    while True:
        now = time.perf_counter()
        done = proc.poll() is not None
        if len(seen) < 2 and log.exists():
            text = log.read_text()
            for key, marker in (("first line", FIRST_LINE), ("first batch", FIRST_BATCH)):
                if key not in seen and marker in text:
                    seen[key] = now - t0
        if done:
            seen["end"] = time.perf_counter() - t0
            break
        if now - t0 > timeout:
            proc.kill()
            proc.wait()
            sys.exit(f"error: the training job ran past {timeout} s")
        time.sleep(0.001)
    if proc.returncode != 0 or len(seen) != 3:
        stderr.seek(0)
        sys.exit(
            f"error: the training job exited {proc.returncode}; saw {sorted(seen)}\n"
            f"{stderr.read().decode()[-3000:]}\n{log.read_text() if log.exists() else '(no log)'}"
        )
    return seen


# in a fresh interpreter: seconds to import torch, then to switch on deterministic algorithms
IMPORTS = (
    "import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
    "torch.use_deterministic_algorithms(True); print(t1 - t0, time.perf_counter() - t1)"
)


def timed(cmd: list[str], cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def wall(config: Path, data_dir: Path, experiments: list[str] | None) -> None:
    which = f" (experiments {', '.join(experiments)})" if experiments else ""
    print(f"\nthe workflow of {config}{which}, from scratch:\n")
    print(table(["cores", "wall time (s)", "speed-up over 1 core"]))
    seconds = {}
    for cores in (1, 2):
        with tempfile.TemporaryDirectory(prefix=f"clpipe-wall-{cores}-") as tmp:
            work = Path(tmp)
            overrides = {"data_dir": str(data_dir)} | ({"run": experiments} if experiments else {})
            cfg = write_config(work / "config.yaml", config, **overrides)
            t0 = time.perf_counter()
            snakemake(work, "--cores", str(cores), "--configfile", str(cfg))
            seconds[cores] = time.perf_counter() - t0
        print(f"| {cores} | {seconds[cores]:.0f} | {seconds[1] / seconds[cores]:.2f} |", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir_argument(parser)
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs of the training job (after a warm-up run, unless 1)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the prepared run here (default: a temp dir)"
    )
    parser.add_argument(
        "--wall", action="store_true", help="also time the whole --wall-config at 1 and 2 cores"
    )
    parser.add_argument("--wall-config", type=Path, default=ROOT / "config" / "quick.yaml")
    parser.add_argument(
        "--wall-run", nargs="+", default=None, metavar="EXP", help="only these experiments of --wall-config"
    )
    return parser


def time_runs(
    workdir: Path, cfg: Path, script: Path, log: Path, repeats: int
) -> tuple[list[tuple[str, float]], float]:
    """(median seconds of the job's phases, of the interpreter, torch's import and the dry
    run; the median seconds of the whole job)."""
    if repeats > 1:
        run_job(workdir, script, log)  # warm-up: file system caches
    jobs, bare, torch_import, deterministic, dry = [], [], [], [], []
    for _ in range(repeats):
        jobs.append(run_job(workdir, script, log))
        bare.append(timed([sys.executable, "-c", "pass"]))
        out = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True)
        seconds = [float(v) for v in out.stdout.split()[-2:]]
        torch_import.append(seconds[0])
        deterministic.append(seconds[1])
    for _ in range(min(repeats, 3)):
        t = time.perf_counter()
        snakemake(workdir, "-n", "--configfile", str(cfg))
        dry.append(time.perf_counter() - t)
    first_line = median([j["first line"] for j in jobs])
    first_batch = median([j["first batch"] for j in jobs])
    end = median([j["end"] for j in jobs])
    rows = [
        ("python -c pass (interpreter start and exit)", median(bare)),
        ("import torch (alone, in a fresh interpreter)", median(torch_import)),
        ("job start -> log's first line (preamble, imports)", first_line),
        (
            "log's first line -> first batch (runtime, data file, model, optimizer)",
            first_batch - first_line,
        ),
        (
            "torch.use_deterministic_algorithms(True) (alone, after import torch: it imports "
            "torch._inductor; the job's runtime sets the flag without that import)",
            median(deterministic),
        ),
        ("**job start -> first training batch**", first_batch),
        ("job start -> job end (the whole tiny training job)", end),
        ("snakemake dry run of the tiny config (DAG, once per call)", median(dry)),
    ]
    return rows, end


def print_phases(rows: list[tuple[str, float]], end: float) -> None:
    """The table: seconds per phase and its share of the whole job (``end`` seconds)."""
    print(table(["phase", "seconds", "share of the job"]))
    for label, s in rows:
        share = "-" if "alone" in label or "dry run" in label else f"{s / end:.0%}"
        print(f"| {label} | {s:.2f} | {share} |")


def run(workdir: Path, data_dir: Path, args: argparse.Namespace) -> None:
    """Prepare the tiny config's job in ``workdir``, time it and print the table."""
    t0 = time.perf_counter()
    cfg, script, log = prepare(workdir, data_dir)
    prepare_s = time.perf_counter() - t0
    data_file = sorted((workdir / "results").glob("**/tasks.pt"))
    size = f"{data_file[0].stat().st_size / 1e6:.1f} MB" if data_file else "?"
    print(machine_line(torch.device("cpu"), f"python {sys.version.split()[0]}"))
    print(
        f"tiny config prepared in {prepare_s:.1f} s (data file {size}); the job: {script.name}, "
        f"{args.repeats} run(s){' after a warm-up' if args.repeats > 1 else ''}; median seconds\n"
    )
    print_phases(*time_runs(workdir, cfg, script, log, args.repeats))
    print(f"\nat the end{load_note()}")
    if args.wall:
        wall(args.wall_config.resolve(), data_dir, args.wall_run)


def main() -> int:
    args = build_parser().parse_args()
    data_dir = args.data_dir.resolve()
    if not (data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        sys.exit(
            f"error: MNIST not found under {data_dir} (expected MNIST/raw/train-images-idx3-ubyte, "
            "torchvision's layout); pass --data-dir"
        )

    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="clpipe-overhead-")
        workdir = Path(tmp)
    else:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        run(workdir, data_dir, args)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
