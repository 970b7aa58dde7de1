"""Reading an experiment's evaluations and training histories, and its tables over seeds.

Each evaluated model (node) is one ``eval.csv``, checked as it is read (the model its
path names, each task of the experiment once, accuracies and losses in range); each
trained model's per-epoch history is one ``history.csv``. From metrics.csv's rows
(clpipe.aggregate.collect_metrics) come every (arm, seed)'s accuracy matrix and the
metrics of clpipe.metrics, their mean, sd, SEM and n over seeds (summary.csv,
accuracy_matrix.csv), and a growing network's accuracy and parameters per task.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from clpipe import io, receipts
from clpipe.layout import SCRATCH, identity_of
from clpipe.metrics import ALL_METRICS, all_metrics, mean_sd_sem

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

# Optional columns after METRICS_COLUMNS: the evaluated model's size (eval.csv has them
# since the growing network's per-task report; older metrics.csv files do not).
# parameters_total for every model; parameters_added / parameters_in_use for a growing
# network after a task (clpipe.networks.evaluation_parameters), NaN otherwise.
PARAMETER_COLUMNS = ["parameters_total", "parameters_added", "parameters_in_use"]
# Optional provenance of the evaluated model (eval.csv has them since the GPU work):
# the threads its training job used, whether the checkout had uncommitted changes, and
# the clpipe release that made it.
PROVENANCE_COLUMNS = ["threads", "git_dirty", "clpipe_version", "cpu_kernels"]
# Optional: each task's validation split, for choices among arms (report.select).
VALIDATION_COLUMNS = ["val_accuracy", "val_loss", "val_n"]


class EvaluationFileError(io.FileFormatError):
    """An evaluation (or training history) file that is not what its job should have made."""


EVALUATION_REQUIRED = ("experiment", "seed", "owner", "trained_task", "eval_task", "accuracy", "loss", "n")


def _read_table(path: str, what: str) -> pd.DataFrame:
    """A step's table, refused if it was edited after its job wrote it (clpipe.receipts)."""
    receipts.check_file(path)
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as err:  # missing, empty, not CSV
        raise EvaluationFileError(
            f"{path}: cannot be read as {what} ({type(err).__name__}: {err}); delete it and rerun its step"
        ) from None


def read_evaluation(path: str, n_tasks: int | None = None) -> pd.DataFrame:
    """One model's eval.csv, checked: the model its path names, one row per task of the
    experiment (eval_task 1..n_tasks, each once), accuracy in [0, 1] and a finite loss
    (both NaN only where the model cannot answer for a task: a growing network before it
    grew for it). A file that fails is named with what is wrong, never used."""
    frame = _read_table(path, "an evaluation (eval.csv)")
    missing = [c for c in EVALUATION_REQUIRED if c not in frame.columns]
    if missing:
        raise EvaluationFileError(
            f"{path}: has no column(s) {', '.join(missing)}; not an eval.csv of this pipeline"
        )
    expected = identity_of(path)
    if expected is not None:
        columns = {"experiment": "experiment", "seed": "seed", "owner": "owner", "task": "trained_task"}
        for key, column in columns.items():
            wrong = sorted(set(frame[column].astype(str)) - {str(expected[key])})
            if wrong:
                raise EvaluationFileError(
                    f"{path}: its rows are for {column} {', '.join(wrong)}, but this file belongs to "
                    f"{key} {expected[key]}; it was copied or moved here. Delete it and rerun evaluate"
                )
    tasks = list(frame["eval_task"])
    if n_tasks is not None:
        lacking = sorted(set(range(1, n_tasks + 1)) - set(tasks))
        extra = sorted(
            {t for t in tasks if t not in range(1, n_tasks + 1)} | {t for t in tasks if tasks.count(t) > 1}
        )
        if lacking or extra:
            parts = ([f"no row for task(s) {lacking}"] if lacking else []) + (
                [f"extra or repeated row(s) for task(s) {extra}"] if extra else []
            )
            raise EvaluationFileError(
                f"{path}: {'; '.join(parts)} (the experiment has tasks 1..{n_tasks}); rerun evaluate"
            )
    acc, loss = frame["accuracy"].astype(float), frame["loss"].astype(float)
    answered = acc.notna() | loss.notna()
    bad = frame[answered & ~(acc.between(0, 1) & loss.map(math.isfinite) & (loss >= 0))]
    if len(bad):
        row = bad.iloc[0]
        raise EvaluationFileError(
            f"{path}: task {row['eval_task']} has accuracy {row['accuracy']} and loss {row['loss']} "
            "(an accuracy is in [0, 1] and a loss finite and >= 0); rerun evaluate"
        )
    return frame


def collect_training(spec: dict[str, Any], histories: Iterable[str]) -> pd.DataFrame:
    """training.csv: every trained model's per-epoch history, with the arms it serves.

    A shared model (e.g. task 1 from scratch) is listed once, under its owner.
    """
    frames = [_read_table(p, "a training history (history.csv)") for p in histories]
    for path, frame in zip(histories, frames, strict=True):
        node = identity_of(path)
        if node is None or "arm" not in frame.columns:
            continue
        wrong = sorted(set(frame["arm"].astype(str)) - {node["owner"]}) + sorted(
            set(frame["seed"].astype(str)) - {str(node["seed"])}
        )
        if wrong:
            raise EvaluationFileError(
                f"{path}: its rows are for arm or seed {', '.join(wrong)}, but this file belongs to "
                f"{node['owner']} seed {node['seed']}; it was copied or moved here. Rerun its training"
            )
    if not frames:
        return pd.DataFrame(columns=["experiment", "seed", "arm", "task", "epoch"])
    table = pd.concat(frames, ignore_index=True)
    order = {SCRATCH: -1} | {a["name"]: i for i, a in enumerate(spec["arms"])}
    table = table.sort_values(
        by=["arm", "seed", "task", "epoch"],
        key=lambda col: col.map(order) if col.name == "arm" else col,
        kind="stable",
    )
    first = ["experiment", "seed", "arm", "task", "epoch"]
    return table[first + [c for c in table.columns if c not in first]].reset_index(drop=True)


def accuracy_matrix(rows: pd.DataFrame) -> np.ndarray:
    """R for one (arm, seed): rows trained_task 0..T, columns eval_task 1..n.

    Rows of models the arm never had are NaN (joint training: only the init and T)."""
    table = rows.pivot(index="trained_task", columns="eval_task", values="accuracy").sort_index()
    T = int(table.index.max())
    if 0 not in table.index:
        raise ValueError(f"trained tasks {list(table.index)} lack the random init (0)")
    return table.reindex(range(T + 1)).sort_index(axis=1).to_numpy(dtype=float)


def per_seed_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every metric of clpipe.metrics for each (arm, seed): the values the tables average
    and the paired comparisons difference."""
    rows = []
    for arm, arm_rows in metrics.groupby("arm", sort=False):
        for seed, seed_rows in arm_rows.groupby("seed"):
            rows.append({"arm": arm, "seed": seed, **all_metrics(accuracy_matrix(seed_rows))})
    return pd.DataFrame(rows, columns=["arm", "seed", *ALL_METRICS])


def summarize(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Over seeds: (summary, accuracy matrix).

    summary: one row per arm with every metric of clpipe.metrics (mean, sd, sem, n): ACC,
    BWT, FWT, forgetting and the CLEAR metrics.
    accuracy matrix: one row per (arm, trained_task, eval_task), the cell's mean, sd,
    sem and n over seeds; ``final`` marks the rows after the arm's last task.
    """
    summary_rows, cells = [], []
    seeds = per_seed_metrics(metrics)
    for arm, arm_rows in metrics.groupby("arm", sort=False):
        per_seed = {m: list(seeds.loc[seeds["arm"] == arm, m]) for m in ALL_METRICS}
        T = int(arm_rows["trained_task"].max())
        first = arm_rows.iloc[0]
        row: dict[str, Any] = {
            "experiment": first["experiment"],
            "method": first["method"],
            "method_type": first["method_type"],
            "arm": arm,
            "tasks_trained": T,
            "n_seeds": arm_rows["seed"].nunique(),
        }
        for k in ALL_METRICS:
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


# --- per task: accuracy and size of a growing network -----------------------------------


def reports_parameters(metrics: pd.DataFrame) -> bool:
    """Whether the experiment's models report what each task added (a growing network)."""
    return "parameters_added" in metrics.columns and bool(metrics["parameters_added"].notna().any())


def parameters_per_task(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, task it trained or shares): the task's test accuracy right after
    training it, R[t][t], and the model's parameters then (added for the task, in use for
    it, total), each mean, sd and n over seeds (the parameters differ between seeds only
    where the network decides its own growth)."""
    rows = []
    for arm, arm_rows in metrics.groupby("arm", sort=False):
        for task, after in arm_rows[arm_rows["trained_task"] >= 1].groupby("trained_task"):
            row: dict[str, Any] = {"experiment": arm_rows["experiment"].iloc[0], "arm": arm, "task": task}
            stats = mean_sd_sem(after.loc[after["eval_task"] == task, "accuracy"])
            row["accuracy_mean"], row["accuracy_sd"], row["accuracy_sem"] = (
                stats["mean"],
                stats["sd"],
                stats["sem"],
            )
            per_seed = after.groupby("seed").first()  # one model per seed: the same on every row
            for column in PARAMETER_COLUMNS:
                values = per_seed[column] if column in per_seed.columns else pd.Series(dtype=float)
                stats = mean_sd_sem(values.dropna())
                row[f"{column}_mean"], row[f"{column}_sd"] = stats["mean"], stats["sd"]
                row[f"{column}_sem"] = stats["sem"]
            row["n_seeds"] = len(per_seed)
            rows.append(row)
    return pd.DataFrame(rows)
