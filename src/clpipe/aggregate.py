"""From every node's evaluation to an experiment's metrics.csv and summary tables.

Each evaluated model (node) is one ``eval.csv``. An arm's accuracy matrix is the rows
of the nodes in its history (a shared node contributes to every arm that shares it), so
``metrics.csv`` has one row per (experiment, method, arm, seed, trained_task, eval_task).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clpipe import io
from clpipe.layout import identity_of
from clpipe.metrics import ALL_METRICS, LABELS, METRICS, all_metrics, mean_sd_sem

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
# network after a task (clpipe.models.evaluation_parameters), NaN otherwise.
PARAMETER_COLUMNS = ["parameters_total", "parameters_added", "parameters_in_use"]
# Optional provenance of the evaluated model (eval.csv has them since the GPU work):
# the threads its training job used, whether the checkout had uncommitted changes, and
# the clpipe release that made it.
PROVENANCE_COLUMNS = ["threads", "git_dirty", "clpipe_version"]


class EvaluationFileError(io.FileFormatError):
    """An evaluation (or training history) file that is not what its job should have made."""


EVALUATION_REQUIRED = ("experiment", "seed", "owner", "trained_task", "eval_task", "accuracy", "loss", "n")


def _read_table(path: str, what: str) -> pd.DataFrame:
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


def collect_metrics(spec: dict[str, Any], evaluations: Iterable[str]) -> pd.DataFrame:
    """metrics.csv: each arm's rows from the evaluations of the models in its history.

    ``spec`` is plan.aggregate_spec: the experiment, its seeds and its arms in order.
    """
    frames = [read_evaluation(p, spec.get("n_tasks")) for p in evaluations]
    nodes = pd.concat(frames, ignore_index=True)
    nodes = nodes[(nodes["experiment"] == spec["experiment"]) & nodes["seed"].isin(spec["seeds"])]
    frames = []
    for arm_spec in spec["arms"]:
        arm = arm_spec["name"]
        lineage = pd.DataFrame(arm_spec["lineage"], columns=["owner", "trained_task"])
        rows = nodes.merge(lineage, on=["owner", "trained_task"], how="inner")
        expected = len(lineage) * len(spec["seeds"])
        got = rows.groupby(["seed", "trained_task"]).ngroups
        if got != expected:
            raise EvaluationFileError(f"arm {arm!r}: found evaluations of {got} models, expected {expected}")
        frames.append(rows.assign(arm=arm, method=arm_spec["method"], method_type=arm_spec["method_type"]))
    out = pd.concat(frames, ignore_index=True)
    out = out[METRICS_COLUMNS + [c for c in PARAMETER_COLUMNS + PROVENANCE_COLUMNS if c in out.columns]]
    arm_order = {a["name"]: i for i, a in enumerate(spec["arms"])}
    out = out.sort_values(
        by=["arm", "seed", "trained_task", "eval_task"],
        key=lambda col: col.map(arm_order) if col.name == "arm" else col,
        kind="stable",
    )
    return out.reset_index(drop=True)


def accuracy_matrix(rows: pd.DataFrame) -> np.ndarray:
    """R for one (arm, seed): rows trained_task 0..T, columns eval_task 1..n.

    Rows of models the arm never had are NaN (joint training: only the init and T)."""
    table = rows.pivot(index="trained_task", columns="eval_task", values="accuracy").sort_index()
    T = int(table.index.max())
    if 0 not in table.index:
        raise ValueError(f"trained tasks {list(table.index)} lack the random init (0)")
    return table.reindex(range(T + 1)).sort_index(axis=1).to_numpy(dtype=float)


def summarize(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Over seeds: (summary, accuracy matrix).

    summary: one row per arm with every metric of clpipe.metrics (mean, sd, sem, n): ACC,
    BWT, FWT, forgetting and the CLEAR metrics.
    accuracy matrix: one row per (arm, trained_task, eval_task), the cell's mean, sd,
    sem and n over seeds; ``final`` marks the rows after the arm's last task.
    """
    summary_rows, cells = [], []
    for arm, arm_rows in metrics.groupby("arm", sort=False):
        per_seed: dict[str, list[float]] = {m: [] for m in ALL_METRICS}
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


def _pm(mean: float, sd: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def summary_note(shown=METRICS) -> str:
    return (
        "Mean ± sd over seeds of test accuracy on each task after the arm's last task "
        f"(– : task not trained by the arm), and {' / '.join(LABELS[k] for k in shown)} "
        "as defined in clpipe/metrics.py."
    )


def display_table(summary: pd.DataFrame, matrix: pd.DataFrame, shown=METRICS) -> pd.DataFrame:
    """The summary as text cells: final accuracy per task, then the metrics ``shown``
    (mean ± sd)."""
    final = matrix[matrix["final"]]
    n_tasks = int(final["eval_task"].max())
    rows = []
    for _, row in summary.iterrows():
        cells = {"arm": str(row["arm"]), "method": str(row["method"]), "tasks": str(row["tasks_trained"])}
        fin = final[final["arm"] == row["arm"]].set_index("eval_task")
        for j in range(1, n_tasks + 1):
            trained = j <= row["tasks_trained"]
            cells[f"task {j}"] = (
                _pm(fin.loc[j, "accuracy_mean"], fin.loc[j, "accuracy_sd"]) if trained else "–"
            )
        for k in shown:
            cells[LABELS[k]] = _pm(row[f"{k}_mean"], row[f"{k}_sd"])
        cells["seeds"] = str(row["n_seeds"])
        rows.append(cells)
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def markdown_table(summary: pd.DataFrame, matrix: pd.DataFrame, shown=METRICS) -> str:
    """Each arm's accuracy on every trained task after its last task, then the metrics."""
    return _markdown(display_table(summary, matrix, shown)) + "\n\n" + summary_note(shown) + "\n"


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
            row["accuracy_mean"], row["accuracy_sd"] = stats["mean"], stats["sd"]
            per_seed = after.groupby("seed").first()  # one model per seed: the same on every row
            for column in PARAMETER_COLUMNS:
                values = per_seed[column] if column in per_seed.columns else pd.Series(dtype=float)
                stats = mean_sd_sem(values.dropna())
                row[f"{column}_mean"], row[f"{column}_sd"] = stats["mean"], stats["sd"]
            row["n_seeds"] = len(per_seed)
            rows.append(row)
    return pd.DataFrame(rows)


def _count(mean: float, sd: float) -> str:
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(sd) or sd == 0:
        return f"{mean:,.0f}"
    return f"{mean:,.0f} ± {sd:,.0f}"


PARAMETERS_NOTE = (
    "Per task: test accuracy on the task right after training it, and the model's "
    "parameters then: added for the task (task 1: the first column), in use for the task "
    "(what can change its outputs) and in total (dense); mean ± sd over seeds."
)


def parameters_display(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, row in table.iterrows():
        rows.append(
            {
                "arm": str(row["arm"]),
                "task": str(row["task"]),
                "accuracy after the task": _pm(row["accuracy_mean"], row["accuracy_sd"]),
                "parameters added": _count(row["parameters_added_mean"], row["parameters_added_sd"]),
                "parameters in use": _count(row["parameters_in_use_mean"], row["parameters_in_use_sd"]),
                "parameters total": _count(row["parameters_total_mean"], row["parameters_total_sd"]),
            }
        )
    return pd.DataFrame(rows)


_HTML_STYLE = (
    "<style>body{font-family:sans-serif;font-size:14px;margin:1em}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}</style>"
)


def html_page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"{_HTML_STYLE}</head><body><h2>{title}</h2>{body}</body></html>\n"
    )


def summary_html(
    experiment: str,
    summary: pd.DataFrame,
    matrix: pd.DataFrame,
    shown=METRICS,
    parameters: pd.DataFrame | None = None,
) -> str:
    table = display_table(summary, matrix, shown).to_html(index=False, border=0)
    body = table + f"<p>{summary_note(shown)}</p>"
    if parameters is not None:
        body += (
            "<h3>Parameters per task</h3>"
            + parameters_display(parameters).to_html(index=False, border=0)
            + f"<p>{PARAMETERS_NOTE}</p>"
        )
    return html_page(f"{experiment}: summary", body)


def matrix_html(experiment: str, matrix: pd.DataFrame) -> str:
    """Every arm's accuracy matrix, mean ± sd over seeds, one table per arm."""
    parts = []
    for arm, rows in matrix.groupby("arm", sort=False):
        cells = rows.assign(
            cell=[_pm(m, s) for m, s in zip(rows["accuracy_mean"], rows["accuracy_sd"], strict=True)]
        )
        table = cells.pivot(index="trained_task", columns="eval_task", values="cell").sort_index()
        table.index = ["random init" if i == 0 else f"after task {i}" for i in table.index]
        table.columns = [f"task {j}" for j in table.columns]
        parts.append(f"<h3>{arm}</h3>" + table.to_html(border=0))
    note = "<p>Row: the model after training tasks 1..i; column: the task tested. Mean ± sd over seeds.</p>"
    return html_page(f"{experiment}: accuracy matrices", note + "".join(parts))


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
    order = {"scratch": -1} | {a["name"]: i for i, a in enumerate(spec["arms"])}
    table = table.sort_values(
        by=["arm", "seed", "task", "epoch"],
        key=lambda col: col.map(order) if col.name == "arm" else col,
        kind="stable",
    )
    first = ["experiment", "seed", "arm", "task", "epoch"]
    return table[first + [c for c in table.columns if c not in first]].reset_index(drop=True)


def write_tables(
    evaluations: list[str],
    histories: list[str],
    spec: dict[str, Any],
    metrics_out: str,
    summary_out: str,
    matrix_out: str,
    training_out: str,
    markdown_out: str,
    summary_html_out: str,
    matrix_html_out: str,
) -> None:
    """The aggregate step: metrics.csv, summary.csv, accuracy_matrix.csv, training.csv,
    summary.md, and HTML renderings of the summary and the matrices for the report.

    Everything is computed before anything is written; each table is also kept under
    the experiment's last_good/, which stays readable if a later aggregation fails."""
    training = collect_training(spec, histories)
    metrics = collect_metrics(spec, evaluations)
    texts = tables_from_metrics(metrics, tuple(spec.get("report_metrics", METRICS)))
    texts["metrics.csv"] = metrics.to_csv(index=False, lineterminator="\n")
    texts["training.csv"] = training.to_csv(index=False, lineterminator="\n")
    experiment_dir = Path(metrics_out).parent
    for name, path in (
        ("metrics.csv", metrics_out),
        ("training.csv", training_out),
        ("summary.csv", summary_out),
        ("accuracy_matrix.csv", matrix_out),
        ("summary.md", markdown_out),
        ("summary.html", summary_html_out),
        ("accuracy_matrix.html", matrix_html_out),
    ):
        io.atomic_write(path, lambda f, t=texts[name]: f.write(t), mode="w")
        io.keep_last_good(path, experiment_dir)


def tables_from_metrics(metrics: pd.DataFrame, shown=METRICS) -> dict[str, str]:
    """Every table the aggregate step derives from metrics.csv, as file contents;
    ``shown``: the metrics the summary tables show (summary.csv has them all).

    The committed reference results are checked against this: their tables must be
    exactly what it makes from their metrics.csv.
    """
    experiment = str(metrics["experiment"].iloc[0])
    summary, matrix = summarize(metrics)
    markdown = f"# {experiment}\n\n" + markdown_table(summary, matrix, shown)
    parameters = parameters_per_task(metrics) if reports_parameters(metrics) else None
    if parameters is not None:  # a growing network: what each task cost
        markdown += (
            "\n## Parameters per task\n\n"
            + _markdown(parameters_display(parameters))
            + f"\n\n{PARAMETERS_NOTE}\n"
        )
    return {
        "summary.csv": summary.to_csv(index=False, lineterminator="\n"),
        "accuracy_matrix.csv": matrix.to_csv(index=False, lineterminator="\n"),
        "summary.md": markdown,
        "summary.html": summary_html(experiment, summary, matrix, shown, parameters),
        "accuracy_matrix.html": matrix_html(experiment, matrix),
    }
