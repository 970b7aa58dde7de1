"""From every node's evaluation to an experiment's metrics.csv and summary tables.

Each evaluated model (node) is one ``eval.csv``. An arm's accuracy matrix is the rows
of the nodes in its history (a shared node contributes to every arm that shares it), so
``metrics.csv`` has one row per (experiment, method, arm, seed, trained_task, eval_task).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from clpipe import io
from clpipe.metrics import METRICS, all_metrics, mean_sd_sem

METRICS_COLUMNS = [
    "experiment",
    "method",
    "method_type",
    "arm",
    "seed",
    "trained_task",
    "eval_task",
    "accuracy",
    "loss",
    "n",
    "owner",
    "dataset",
    "classes",
    "spec_hash",
    "config_hash",
    "git_commit",
    "device",
    "torch",
]


def collect_metrics(spec: dict[str, Any], evaluations: Iterable[str]) -> pd.DataFrame:
    """metrics.csv: each arm's rows from the evaluations of the models in its history.

    ``spec`` is plan.aggregate_spec: the experiment, its seeds and its arms in order.
    """
    nodes = pd.concat([pd.read_csv(p) for p in evaluations], ignore_index=True)
    nodes = nodes[(nodes["experiment"] == spec["experiment"]) & nodes["seed"].isin(spec["seeds"])]
    frames = []
    for arm_spec in spec["arms"]:
        arm = arm_spec["name"]
        lineage = pd.DataFrame(arm_spec["lineage"], columns=["owner", "trained_task"])
        rows = nodes.merge(lineage, on=["owner", "trained_task"], how="inner")
        expected = len(lineage) * len(spec["seeds"])
        got = rows.groupby(["seed", "trained_task"]).ngroups
        if got != expected:
            raise ValueError(f"arm {arm!r}: found evaluations of {got} models, expected {expected}")
        frames.append(rows.assign(arm=arm, method=arm_spec["method"], method_type=arm_spec["method_type"]))
    out = pd.concat(frames, ignore_index=True)
    out = out[METRICS_COLUMNS]
    arm_order = {a["name"]: i for i, a in enumerate(spec["arms"])}
    out = out.sort_values(
        by=["arm", "seed", "trained_task", "eval_task"],
        key=lambda col: col.map(arm_order) if col.name == "arm" else col,
        kind="stable",
    )
    return out.reset_index(drop=True)


def accuracy_matrix(rows: pd.DataFrame) -> np.ndarray:
    """R for one (arm, seed): rows trained_task 0..T, columns eval_task 1..n."""
    table = rows.pivot(index="trained_task", columns="eval_task", values="accuracy").sort_index()
    T = int(table.index.max())
    if list(table.index) != list(range(T + 1)):
        raise ValueError(f"trained tasks {list(table.index)} are not 0..{T}")
    return table.sort_index(axis=1).to_numpy(dtype=float)


def summarize(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Over seeds: (summary, accuracy matrix).

    summary: one row per arm with ACC, BWT, FWT and forgetting (mean, sd, sem, n).
    accuracy matrix: one row per (arm, trained_task, eval_task), the cell's mean, sd,
    sem and n over seeds; ``final`` marks the rows after the arm's last task.
    """
    summary_rows, cells = [], []
    for arm, arm_rows in metrics.groupby("arm", sort=False):
        per_seed: dict[str, list[float]] = {m: [] for m in METRICS}
        T = int(arm_rows["trained_task"].max())
        for _, seed_rows in arm_rows.groupby("seed"):
            for k, v in all_metrics(accuracy_matrix(seed_rows)).items():
                per_seed[k].append(v)
        first = arm_rows.iloc[0]
        row: dict[str, Any] = {
            "experiment": first["experiment"],
            "method": first["method"],
            "method_type": first["method_type"],
            "arm": arm,
            "tasks_trained": T,
            "n_seeds": arm_rows["seed"].nunique(),
        }
        for k in METRICS:
            stats = mean_sd_sem(per_seed[k])
            for s in ("mean", "sd", "sem"):
                row[f"{k}_{s}"] = stats[s]
            row[f"{k}_n"] = stats["n"]
        summary_rows.append(row)
        for (i, j), cell in arm_rows.groupby(["trained_task", "eval_task"]):
            stats = mean_sd_sem(cell["accuracy"])
            cells.append(
                {
                    "experiment": first["experiment"],
                    "method": first["method"],
                    "arm": arm,
                    "trained_task": i,
                    "eval_task": j,
                    "final": i == T,
                    "accuracy_mean": stats["mean"],
                    "accuracy_sd": stats["sd"],
                    "accuracy_sem": stats["sem"],
                    "n": stats["n"],
                }
            )
    return pd.DataFrame(summary_rows), pd.DataFrame(cells)


def _pm(mean: float, sd: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def markdown_table(summary: pd.DataFrame, matrix: pd.DataFrame) -> str:
    """Each arm's accuracy on every trained task after its last task, then the metrics."""
    final = matrix[matrix["final"]]
    n_tasks = int(final["eval_task"].max())
    head = ["arm", "method", "tasks"] + [f"task {j}" for j in range(1, n_tasks + 1)]
    head += ["ACC", "BWT", "FWT", "forgetting", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in summary.iterrows():
        cells = [str(row["arm"]), str(row["method"]), str(row["tasks_trained"])]
        fin = final[final["arm"] == row["arm"]].set_index("eval_task")
        for j in range(1, n_tasks + 1):
            if j <= row["tasks_trained"]:
                cells.append(_pm(fin.loc[j, "accuracy_mean"], fin.loc[j, "accuracy_sd"]))
            else:
                cells.append("–")
        for k in METRICS:
            cells.append(_pm(row[f"{k}_mean"], row[f"{k}_sd"]))
        cells.append(str(row["n_seeds"]))
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "\nMean ± sd over seeds of test accuracy on each task after the arm's last task "
        "(– : task not trained by the arm), and ACC / BWT / FWT / forgetting as defined "
        "in clpipe/metrics.py.\n"
    )
    return "\n".join(lines) + "\n" + note


def write_tables(
    evaluations: list[str],
    spec: dict[str, Any],
    metrics_out: str,
    summary_out: str,
    matrix_out: str,
    markdown_out: str,
) -> None:
    """The aggregate step: metrics.csv, summary.csv, accuracy_matrix.csv, summary.md."""
    metrics = collect_metrics(spec, evaluations)
    summary, matrix = summarize(metrics)
    io.save_csv(metrics_out, metrics)
    io.save_csv(summary_out, summary)
    io.save_csv(matrix_out, matrix)
    text = f"# {spec['experiment']}\n\n" + markdown_table(summary, matrix)
    io.atomic_write(markdown_out, lambda f: f.write(text), mode="w")
