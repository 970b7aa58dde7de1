"""The GPU acceptance check: what the pipeline promises on a GPU, in one command.

    python benchmarks/gpu_check.py [--data-dir DIR] [--out FILE] [--steps 20]
                                   [--headline] [--budget-minutes 30]
                                   [--allow-cpu --size 32 --width 0.125]

About 3-5 minutes on one modern GPU. Checks, each with its figures in the results file:

1. **workflow**: tests/configs/tiny.yaml end to end through Snakemake with ``device:
   cuda`` (51 steps); every evaluation's ``device`` column and every trained model's
   provenance name a CUDA device.
2. **determinism**: the run's first training job again, twice, with ``deterministic:
   true``: the three models (Snakemake's and the two) are bit-identical.
3. **mag_frozen**: MAG's frozen elements (the progress and record files of the arms
   ``mag_b20`` and ``mag_b20_c50``) are bit-identical between the model a task started
   from and the one it ended with; the frozen share is the configured one.
4. **fisher**: EWC's Fisher of the task-1 model on the GPU against the CPU's: relative
   L1 difference at most 1e-3 (fp32 both; cuDNN's kernels sum in another order).
5. **throughput**: benchmarks/throughput_224.py's VGG16 at 224 px (fp32, bf16,
   channels_last, both): images per second and the data path's share of a step
   (target under 5%), and the faithful config's training hours per seed from them.

Writes one JSON file (``--out``, default benchmarks/out/gpu_check.json) with the GPU's
name, the CUDA, cuDNN and torch versions, and every figure; exits 1 if a check failed.
``--headline`` then runs the faithful headline protocol of config/config.yaml
(split_mnist: VGG16 at 224 px, Adam 1e-5, 10 epochs per task) for seed 0 and the arms
finetune, mag_0, mag_b20 and mag_b20_c50, if the measured throughput says it fits in
``--budget-minutes`` (bf16 when fp32 does not fit; the results file says which).

Meant for a GPU machine with no package registry and none of the development
machine's files: benchmarks/gpu_carry.sh packs the wheels (Snakemake and what it needs)
and MNIST, compressed; this script decompresses MNIST itself and needs no particular
torch version. ``--allow-cpu`` runs it on a CPU (a smoke test; its figures say nothing
about a GPU).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

from clpipe.cpu_isa import pin  # noqa: E402,I001 -- torch-free, before torch loads

# the workflow's default (cpu_isa: avx2), as its jobs run: the CPU retraining of the
# determinism check must dispatch to the kernels that made the workflow's models
pin("avx2")

import torch  # noqa: E402
import yaml  # noqa: E402

from clpipe import io, plan  # noqa: E402
from clpipe.config import validate_config  # noqa: E402
from clpipe.runtime import make_runtime  # noqa: E402
from clpipe.steps.importance import compute_importance  # noqa: E402
from clpipe.steps.train import train_first_task  # noqa: E402

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FISHER_RTOL = 1e-3
HEADLINE_ARMS = ("finetune", "mag_0", "mag_b20", "mag_b20_c50")


def environment(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "device": str(device),
        "host_cpus": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {
            "gpu": props.name,
            "gpu_count": torch.cuda.device_count(),
            "gpu_memory_mb": int(props.total_memory // 2**20),
            "capability": f"{props.major}.{props.minor}",
            "cuda": str(torch.version.cuda),
            "cudnn": str(torch.backends.cudnn.version()),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        }
        try:
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["driver"] = "unknown"
    return env


def mnist_folder(source: Path, work: Path) -> Path:
    """A data folder with MNIST's four files in torchvision's layout: ``source`` itself,
    or a copy in ``work`` with the carried ``.gz`` files decompressed."""
    raw = source / "MNIST" / "raw"
    if all((raw / f).is_file() for f in MNIST_FILES):
        return source
    target = work / "data"
    (target / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
    for f in MNIST_FILES:
        packed = raw / f"{f}.gz"
        if not packed.is_file():
            raise SystemExit(f"{raw}: neither {f} nor {f}.gz (see benchmarks/gpu_carry.sh)")
        with gzip.open(packed, "rb") as src, open(target / "MNIST" / "raw" / f, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def timed(name: str, fn, *args) -> dict:
    t0 = time.perf_counter()
    try:
        result = fn(*args)
    except Exception as err:  # a check that breaks is a failed check, the others still run
        result = {"passed": False, "error": f"{type(err).__name__}: {err}"}
    result = {"name": name, **result, "seconds": round(time.perf_counter() - t0, 1)}
    mark = {True: "PASS", False: "FAIL", None: "info"}[result.get("passed")]
    print(
        f"[{mark}] {name} ({result['seconds']} s): "
        + json.dumps({k: v for k, v in result.items() if k not in ("name", "seconds")}),
        flush=True,
    )
    return result


def tiny_config(work: Path, data_dir: Path, device: str) -> tuple[Path, dict]:
    cfg = yaml.safe_load(TINY.read_text())
    # results/ inside the working folder (snakemake --directory work), as the tests do
    cfg |= {"data_dir": str(data_dir), "device": device, "results_dir": "results"}
    path = work / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def check_workflow(work: Path, config: Path, cores: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "workflow" / "Snakefile"),
        "--directory",
        str(work),
        "--cores",
        str(cores),
        "--configfile",
        str(config),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"passed": False, "ran": False, "error": (proc.stdout + proc.stderr)[-3000:]}
    import pandas as pd

    results = work / "results" / "tiny"
    devices = sorted(set(pd.read_csv(results / "metrics.csv")["device"]))
    made_on = {}
    for model in sorted(results.rglob("model.pt")):
        meta = io.load(model, "model")["meta"]
        if meta["step"] != "init_model":  # the init is drawn on the CPU, on purpose
            made_on[str(model.relative_to(results))] = meta.get("device", "?")
    trained = sorted(set(made_on.values()))
    ok = all(d.startswith("cuda:") for d in devices + trained) and len(made_on) == 13
    return {
        "passed": ok,
        "ran": True,
        "evaluation_devices": devices,
        "training_devices": trained,
        "models": len(made_on),
    }


def check_determinism(work: Path, cfg: dict, device: str) -> dict:
    exp = validate_config(json.loads(json.dumps(cfg)), str(SCHEMA))["tiny"]
    spec = plan.training_spec(exp, 0, 1)
    results = work / "results" / "tiny"
    # the config's threads: on a CPU the result depends on them (on a GPU hardly)
    runtime = make_runtime(
        device, deterministic=True, threads=exp.resources["train"]["threads"], resume=False
    )
    states = [io.load(results / "seed0/scratch/task1/model.pt", "model")["state_dict"]]
    for i in range(2):
        out = work / f"again{i}"
        train_first_task(
            str(results / "seed0/scratch/task0/model.pt"),
            str(results / "data/tasks.pt"),
            spec,
            str(out / "model.pt"),
            str(out / "history.csv"),
            runtime,
        )
        states.append(io.load(out / "model.pt", "model")["state_dict"])
    differ = [k for k in states[0] if not all(torch.equal(states[0][k], s[k]) for s in states[1:])]
    return {"passed": not differ, "tensors": len(states[0]), "differing_tensors": differ[:5]}


def check_mag_frozen(work: Path) -> dict:
    node = work / "results" / "tiny" / "seed0"

    def weights(path):
        return io.load(path, "model")["state_dict"]

    cases = {
        "task 2 (mag_b20, 20%)": (
            node / "scratch/task1/model.pt",
            node / "mag_b20/task2/model.pt",
            io.load(node / "mag_b20/task2/progress.pt", "progress")["frozen"],
        ),
    }
    before = io.load(node / "mag_b20/task2/progress.pt", "progress")["frozen"]
    new = io.load(node / "mag_b20_c50/task3/record.pt", "record")["new_frozen"]
    cases["task 3 (mag_b20_c50, +50%)"] = (
        node / "mag_b20/task2/model.pt",
        node / "mag_b20_c50/task3/model.pt",
        {k: before[k] | new[k] for k in new},
    )
    out, ok = {}, True
    for name, (start, end, frozen) in cases.items():
        a, b = weights(start), weights(end)
        moved = sum(int((a[k][m] != b[k][m]).sum()) for k, m in frozen.items())
        share = sum(int(m.sum()) for m in frozen.values()) / sum(m.numel() for m in frozen.values())
        out[name] = {"frozen_share": round(share, 4), "frozen_elements_moved": moved}
        ok &= moved == 0
    expected = {"task 2 (mag_b20, 20%)": 0.2, "task 3 (mag_b20_c50, +50%)": 0.6}
    ok &= all(abs(out[k]["frozen_share"] - v) < 0.01 for k, v in expected.items())
    return {"passed": ok, **out}


def check_fisher(work: Path, cfg: dict, device: str) -> dict:
    exp = validate_config(json.loads(json.dumps(cfg)), str(SCHEMA))["tiny"]
    spec = plan.importance_spec(exp, 0, 1, "ewc")
    results = work / "results" / "tiny"
    fisher = {}
    for where in ("cpu", device):
        out = work / f"fisher_{where}.pt"
        compute_importance(
            str(results / "seed0/scratch/task1/model.pt"),
            str(results / "data/tasks.pt"),
            None,
            None,
            spec,
            str(out),
            make_runtime(where, deterministic=True, threads=exp.resources["importance"]["threads"]),
        )
        fisher[where] = io.load(out, "importance")["terms"][0]["fisher"]
    cpu, gpu = fisher["cpu"], fisher[device]
    l1 = sum(float((cpu[k] - gpu[k]).abs().sum()) for k in cpu)
    total = sum(float(cpu[k].abs().sum()) for k in cpu)
    peak = max(float(cpu[k].abs().max()) for k in cpu)
    worst = max(float((cpu[k] - gpu[k]).abs().max()) for k in cpu) / peak
    rel = l1 / total
    return {
        "passed": rel <= FISHER_RTOL,
        "relative_l1": rel,
        "max_abs_over_peak": worst,
        "tolerance": FISHER_RTOL,
    }


def check_throughput(
    device: torch.device, steps_per_variant: int, data_dir: Path, size: int, width: float
) -> dict:
    import throughput_224 as tp

    measured = tp.measure(device, list(tp.VARIANTS), steps=steps_per_variant, size=size, width=width)
    hours = tp.hours_per_seed(ROOT / "config" / "config.yaml", data_dir, size, width, measured)
    share = measured["fp32"]["data_path_share"]
    return {
        "passed": share < 0.05,
        "variants": measured,
        "hours_per_seed": hours,
        "data_path_share_target": 0.05,
    }


def run_headline(work: Path, data_dir: Path, throughput: dict, budget_minutes: float, cores: int) -> dict:
    """The faithful headline protocol, seed 0, four arms, if it fits the budget."""
    import scale_cost
    import scale_jobs

    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    exp = raw["experiments"]["split_mnist"]
    exp["arms"] = {k: exp["arms"][k] for k in HEADLINE_ARMS}
    exp["seeds"] = [0]
    # the report's choices and comparisons name the arms left out: only those kept (a
    # choice is among two arms or more)
    report = exp.get("report", {})
    kept = {name: [a for a in arms if a in exp["arms"]] for name, arms in report.get("select", {}).items()}
    report["select"] = {name: arms for name, arms in kept.items() if len(arms) >= 2}
    report["compare_to"] = [a for a in report.get("compare_to", []) if a in exp["arms"]]
    raw |= {
        "experiments": {"split_mnist": exp},
        "run": ["split_mnist"],
        "data_dir": str(data_dir),
        "device": "cuda",
        "results_dir": str(work / "headline"),
    }
    headline = scale_jobs.one_seed(scale_jobs.experiments_of(raw)["split_mnist"])
    images = scale_cost.estimate(headline, data_dir)["train_images"]
    minutes = {k: images / v["images_per_second"] / 60 for k, v in throughput["variants"].items()}
    precision = "fp32" if minutes["fp32"] <= budget_minutes else "bf16"
    if minutes["fp32" if precision == "fp32" else "bf16 autocast"] > budget_minutes:
        return {"passed": None, "ran": False, "estimated_minutes": minutes, "budget_minutes": budget_minutes}
    if precision == "bf16":
        exp["train"]["precision"] = "bf16"
    path = work / "headline.yaml"
    path.write_text(yaml.safe_dump(raw))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "workflow" / "Snakefile"),
        "--directory",
        str(work),
        "--cores",
        str(cores),
        "--resources",
        "gpu=1",
        "--configfile",
        str(path),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = {
        "ran": True,
        "precision": precision,
        "estimated_minutes": minutes,
        "minutes": (time.perf_counter() - t0) / 60,
        "passed": proc.returncode == 0,
        "results": str(work / "headline" / "split_mnist"),
    }
    if proc.returncode != 0:
        out["error"] = (proc.stdout + proc.stderr)[-3000:]
    else:
        out["summary_md"] = (work / "headline" / "split_mnist" / "summary.md").read_text()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / ".gpu_carry" / "data",
        help="MNIST in torchvision's layout, or its .gz files (benchmarks/gpu_carry.sh)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "out" / "gpu_check.json")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per throughput variant")
    parser.add_argument(
        "--size", type=int, default=224, help="throughput: input size (224: the faithful one)"
    )
    parser.add_argument(
        "--width", type=float, default=1.0, help="throughput: VGG16 width (1: the faithful one)"
    )
    parser.add_argument("--cores", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--headline", action="store_true", help="then run the faithful headline protocol")
    parser.add_argument("--budget-minutes", type=float, default=30.0)
    parser.add_argument("--allow-cpu", action="store_true", help="run on a CPU (a smoke test)")
    args = parser.parse_args()
    if torch.cuda.is_available():
        device = torch.device("cuda", 0)
    elif args.allow_cpu:
        device = torch.device("cpu")
    else:
        print(
            "no CUDA device: this is the GPU acceptance check (--allow-cpu for a smoke test)", file=sys.stderr
        )
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir = mnist_folder(args.data_dir.resolve(), work)
    name = "cuda" if device.type == "cuda" else "cpu"
    report = {"environment": environment(device), "checks": []}
    print(json.dumps(report["environment"]), flush=True)
    config, cfg = tiny_config(work, data_dir, name)
    checks = report["checks"]
    checks.append(timed("workflow", check_workflow, work, config, args.cores))
    if checks[-1].get("ran"):  # its results are what the next three checks read
        checks.append(timed("determinism", check_determinism, work, cfg, name))
        checks.append(timed("mag_frozen", check_mag_frozen, work))
        checks.append(timed("fisher", check_fisher, work, cfg, name))
    checks.append(timed("throughput", check_throughput, device, args.steps, data_dir, args.size, args.width))
    if args.headline and checks[-1].get("variants"):
        checks.append(
            timed("headline", run_headline, work, data_dir, checks[-1], args.budget_minutes, args.cores)
        )
    report["passed"] = all(c.get("passed") is not False for c in checks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"{'all checks passed' if report['passed'] else 'a check FAILED'}; results in {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
