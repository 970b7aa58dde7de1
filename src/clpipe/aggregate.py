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

from clpipe import io, receipts
from clpipe.layout import SCRATCH, identity_of
from clpipe.metrics import ALL_METRICS, LABELS, METRICS, all_metrics, mean_sd_sem
from clpipe.stats import holm, paired_difference

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
    optional = PARAMETER_COLUMNS + VALIDATION_COLUMNS + PROVENANCE_COLUMNS
    out = out[METRICS_COLUMNS + [c for c in optional if c in out.columns]]
    groups = spec.get("select") or {}
    if groups:  # an arm chosen per seed on the validation split: its rows, marked
        kinds = {a["name"]: (a["method"], a["method_type"]) for a in spec["arms"]}
        method_of = {}
        for group, members in groups.items():
            found = {kinds[m] for m in members}
            method_of[group] = found.pop() if len(found) == 1 else ("selected", "selected")
        out = pd.concat(
            [out.assign(**{SELECTED_FROM: None}), select_members(out, groups, method_of)], ignore_index=True
        )
    arm_order = {a["name"]: i for i, a in enumerate(spec["arms"])} | {
        g: len(spec["arms"]) + i for i, g in enumerate(groups)
    }
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


def per_seed_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every metric of clpipe.metrics for each (arm, seed): the values the tables average
    and the paired comparisons difference."""
    rows = []
    for arm, arm_rows in metrics.groupby("arm", sort=False):
        for seed, seed_rows in arm_rows.groupby("seed"):
            rows.append({"arm": arm, "seed": seed, **all_metrics(accuracy_matrix(seed_rows))})
    return pd.DataFrame(rows, columns=["arm", "seed", *ALL_METRICS])


# --- choosing among arms on the validation split (report.select) -------------------------

SELECTED_FROM = "selected_from"  # metrics.csv: the member arm a selected arm's rows are from


def validation_score(rows: pd.DataFrame) -> float:
    """An arm's final model's mean validation accuracy over the tasks it trained: what a
    choice among arms looks at (never the test split)."""
    if rows.empty:
        return math.nan
    last = int(rows["trained_task"].max())
    final = rows[(rows["trained_task"] == last) & (rows["eval_task"] <= last)]
    return float(final["val_accuracy"].mean())


def select_members(
    metrics: pd.DataFrame, groups: dict[str, list[str]], method_of: dict[str, tuple]
) -> pd.DataFrame:
    """For each group and seed, the member arm whose final model has the best mean
    validation accuracy (ties: the first listed), as rows of a new arm named after the
    group, marked with the member they come from."""
    if not groups:
        return metrics.iloc[0:0]
    if "val_accuracy" not in metrics.columns or metrics["val_accuracy"].isna().all():
        raise EvaluationFileError(
            "report.select needs every evaluation's validation accuracy (eval.csv's val_accuracy): "
            "rerun evaluate"
        )
    chosen = []
    for group, members in groups.items():
        for seed in sorted(metrics["seed"].unique()):
            scores = []
            for arm in members:
                rows = metrics[(metrics["arm"] == arm) & (metrics["seed"] == seed)]
                scores.append((validation_score(rows), -members.index(arm), arm, rows))
            best = max((s for s in scores if math.isfinite(s[0])), default=None)
            if best is None:
                continue
            method, method_type = method_of[group]
            chosen.append(
                best[3].assign(arm=group, method=method, method_type=method_type, **{SELECTED_FROM: best[2]})
            )
    return pd.concat(chosen, ignore_index=True) if chosen else metrics.iloc[0:0]


def selection_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Which member each selected arm took per seed, and every member's validation score."""
    if SELECTED_FROM not in metrics.columns:
        return pd.DataFrame(columns=["arm", "seed", "chosen"])
    picked = metrics[metrics[SELECTED_FROM].notna()]
    rows = []
    for (arm, seed), rows_of in picked.groupby(["arm", "seed"], sort=False):
        chosen = rows_of[SELECTED_FROM].iloc[0]
        row = {"arm": arm, "seed": seed, "chosen": chosen}
        rows.append(row)
    table = pd.DataFrame(rows)
    members = metrics[metrics[SELECTED_FROM].isna()]
    for i, row in table.iterrows():
        mine = members[(members["seed"] == row["seed"]) & (members["arm"] == row["chosen"])]
        table.loc[i, "val_accuracy"] = validation_score(mine)
    return table


# --- paired comparisons against reference arms (report.compare_to) ----------------------

COMPARED = ("acc", "bwt", "forgetting")


def metrics_after(metrics: pd.DataFrame, arm: str, stage: int) -> pd.DataFrame:
    """Every metric of ``arm``'s model after task ``stage``, by seed (empty where the arm
    has no model then: a joint arm has only the init and its last task)."""
    rows = metrics[(metrics["arm"] == arm) & (metrics["trained_task"] <= stage)]
    found = [
        {"seed": seed, **all_metrics(accuracy_matrix(seed_rows))}
        for seed, seed_rows in rows.groupby("seed")
        if stage in set(seed_rows["trained_task"])
    ]
    return pd.DataFrame(found, columns=["seed", *ALL_METRICS]).set_index("seed")


def paired_comparisons(metrics: pd.DataFrame, references: list[str]) -> pd.DataFrame:
    """Every arm against each reference: the mean per-seed difference of ACC, BWT and
    forgetting, its SEM, n, paired-t 95% interval and Holm-corrected p-value (across the
    arms compared with that reference, per metric); clpipe.stats.

    Both arms are taken after the same task: an arm that ends earlier than the reference
    (MAG's task-B arms against fine-tuning over three tasks) is compared with the
    reference's model after the arm's last task, not with its final model; ``after``
    says which task. n is 0 where the reference has no model then (a joint arm)."""
    last = metrics.groupby("arm", sort=False)["trained_task"].max()
    arms = list(dict.fromkeys(metrics["arm"]))
    rows = []
    for ref in references:
        for arm in arms:
            if arm == ref:
                continue
            stage = int(min(last[arm], last[ref]))
            mine, base = metrics_after(metrics, arm, stage), metrics_after(metrics, ref, stage)
            common = sorted(set(base.index) & set(mine.index))
            row: dict[str, Any] = {"reference": ref, "arm": arm, "after": stage}
            for m in COMPARED:
                d = paired_difference(list(mine.loc[common, m]), list(base.loc[common, m]))
                for k in ("mean", "sem", "n", "low", "high", "p"):
                    row[f"{m}_{k}"] = d[k]
            rows.append(row)
    stats_columns = [f"{m}_{k}" for m in COMPARED for k in ("mean", "sem", "n", "low", "high", "p")]
    # no other arm to compare (an experiment of one arm): the table with its columns, empty
    table = pd.DataFrame(rows, columns=["reference", "arm", "after", *stats_columns])
    for ref in references:
        mask = table["reference"] == ref
        for m in COMPARED:
            table.loc[mask, f"{m}_p_holm"] = holm(list(table.loc[mask, f"{m}_p"]))
    return table


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


def _ci(mean: float, low: float, high: float, p: float, digits: int = 3) -> str:
    """A paired difference: mean [95% interval] (Holm-corrected p)."""
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(low):
        return f"{mean:+.{digits}f}"
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}] (p {p:.3g})"


def _pm(mean: float, sd: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


ONE_SEED = "no SEM, sd, interval or p-value: a spread needs two seeds or more"


def summary_note(shown=METRICS, n_seeds: int = 2) -> str:
    what = (
        "test accuracy on each task after the arm's last task (– : task not trained by the arm), "
        f"and {' / '.join(LABELS[k] for k in shown)} as defined in clpipe/metrics.py"
    )
    if n_seeds == 1:
        return f"One seed: {what}; {ONE_SEED}."
    return (
        f"Mean ± SEM (standard error of the mean) over the seeds column's n seeds of {what}; "
        "summary.csv has the sd, SEM and n of every metric."
    )


def comparison_note(n_seeds: int) -> str:
    if n_seeds == 1:
        return (
            "Each arm minus the reference arm for the one seed (the arms of a seed share its "
            "task-1 model, data order and seed), both after the same task (the earlier of the two "
            f"arms' last tasks; '–' where the reference has no model then); {ONE_SEED}."
        )
    return COMPARISON_NOTE


COMPARISON_NOTE = (
    "Each arm minus the reference arm, seed by seed (the arms of a seed share its task-1 model, "
    "data order and seed), both after the same task (the earlier of the two arms' last tasks; "
    "'–' where the reference has no model then, as joint training has none before its last "
    "task), then averaged: mean difference [95% confidence interval] (p), the "
    "interval from Student's t over the n seeds both arms have (paired t: the per-seed "
    "differences taken as independent normal draws), p two-sided for no difference and "
    "corrected by Holm's method across the arms compared with this reference, per metric "
    "(clpipe/stats.py)."
)


def comparison_display(comparisons: pd.DataFrame, reference: str) -> pd.DataFrame:
    rows = []
    for _, row in comparisons[comparisons["reference"] == reference].iterrows():
        cells = {"arm": str(row["arm"]), "after task": str(int(row["after"]))}
        for m in COMPARED:
            cells[f"Δ {LABELS[m]}"] = _ci(
                row[f"{m}_mean"], row[f"{m}_low"], row[f"{m}_high"], row[f"{m}_p_holm"]
            )
        cells["n"] = str(int(row["acc_n"]))
        cells["SEM of Δ ACC"] = f"{row['acc_sem']:.3f}" if math.isfinite(row["acc_sem"]) else "–"
        rows.append(cells)
    return pd.DataFrame(rows)


SELECTION_NOTE = (
    "An arm chosen per seed among its group's arms on the validation split only (the final "
    "model's mean validation accuracy over the tasks it trained; never the test split); its row "
    "above reports the chosen arms' test results."
)


def selection_display(metrics: pd.DataFrame) -> pd.DataFrame:
    table = selection_table(metrics)
    return pd.DataFrame(
        [
            {
                "selected arm": str(r["arm"]),
                "seed": str(r["seed"]),
                "chosen": str(r["chosen"]),
                "its validation accuracy": f"{r['val_accuracy']:.3f}",
            }
            for _, r in table.iterrows()
        ]
    )


def with_comparisons(summary: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """summary.csv's comparison columns: ``<metric>_vs_<reference>_{diff, sem, n, low,
    high, p, p_holm}`` for every arm and reference (NaN against itself)."""
    out = summary.copy()
    for ref in comparisons["reference"].unique() if len(comparisons) else []:
        mine = comparisons[comparisons["reference"] == ref].set_index("arm")
        for m in COMPARED:
            for k, name in (("mean", "diff"), ("sem", "sem"), ("n", "n"), ("low", "low"), ("high", "high"),
                            ("p", "p"), ("p_holm", "p_holm")):  # fmt: skip
                out[f"{m}_vs_{ref}_{name}"] = out["arm"].map(mine[f"{m}_{k}"])
        out[f"vs_{ref}_after_task"] = out["arm"].map(mine["after"])
    return out


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
                _pm(fin.loc[j, "accuracy_mean"], fin.loc[j, "accuracy_sem"]) if trained else "–"
            )
        for k in shown:
            cells[LABELS[k]] = _pm(row[f"{k}_mean"], row[f"{k}_sem"])
        cells["seeds"] = str(row["n_seeds"])
        rows.append(cells)
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def markdown_table(summary: pd.DataFrame, matrix: pd.DataFrame, shown=METRICS) -> str:
    """Each arm's accuracy on every trained task after its last task, then the metrics."""
    note = summary_note(shown, int(summary["n_seeds"].max()))
    return _markdown(display_table(summary, matrix, shown)) + "\n\n" + note + "\n"


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


def _count(mean: float, sem: float) -> str:
    """A count over seeds: mean ± SEM (one decimal when the SEM is under 10)."""
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(sem) or sem == 0:
        return f"{mean:,.0f}"
    return f"{mean:,.0f} ± {sem:,.1f}" if sem < 10 else f"{mean:,.0f} ± {sem:,.0f}"


PARAMETERS_NOTE = (
    "Per task: test accuracy on the task right after training it, and the model's "
    "parameters then: added for the task (task 1: the first column), in use for the task "
    "(what can change its outputs) and in total (dense); mean ± SEM over seeds."
)


def parameters_note(table: pd.DataFrame) -> str:
    if int(table["n_seeds"].max()) == 1:
        return PARAMETERS_NOTE.replace("mean ± SEM over seeds.", f"one seed ({ONE_SEED}).")
    return PARAMETERS_NOTE


def parameters_display(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, row in table.iterrows():
        rows.append(
            {
                "arm": str(row["arm"]),
                "task": str(row["task"]),
                "accuracy after the task": _pm(row["accuracy_mean"], row["accuracy_sem"]),
                "parameters added": _count(row["parameters_added_mean"], row["parameters_added_sem"]),
                "parameters in use": _count(row["parameters_in_use_mean"], row["parameters_in_use_sem"]),
                "parameters total": _count(row["parameters_total_mean"], row["parameters_total_sem"]),
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
    comparisons: pd.DataFrame | None = None,
    selection: pd.DataFrame | None = None,
) -> str:
    table = display_table(summary, matrix, shown).to_html(index=False, border=0)
    n_seeds = int(summary["n_seeds"].max())
    body = table + f"<p>{summary_note(shown, n_seeds)}</p>"
    if selection is not None and len(selection):
        body += (
            "<h3>Chosen on validation</h3>"
            + selection.to_html(index=False, border=0)
            + f"<p>{SELECTION_NOTE}</p>"
        )
    if comparisons is not None and len(comparisons):
        for ref in comparisons["reference"].unique():
            body += (
                f"<h3>Paired differences against {ref}</h3>"
                + comparison_display(comparisons, ref).to_html(index=False, border=0)
                + f"<p>{comparison_note(n_seeds)}</p>"
            )
    if parameters is not None:
        body += (
            "<h3>Parameters per task</h3>"
            + parameters_display(parameters).to_html(index=False, border=0)
            + f"<p>{parameters_note(parameters)}</p>"
        )
    return html_page(f"{experiment}: summary", body)


def matrix_html(experiment: str, matrix: pd.DataFrame) -> str:
    """Every arm's accuracy matrix, mean ± SEM over seeds, one table per arm."""
    parts = []
    for arm, rows in matrix.groupby("arm", sort=False):
        cells = rows.assign(
            cell=[_pm(m, s) for m, s in zip(rows["accuracy_mean"], rows["accuracy_sem"], strict=True)]
        )
        table = cells.pivot(index="trained_task", columns="eval_task", values="cell").sort_index()
        table.index = ["random init" if i == 0 else f"after task {i}" for i in table.index]
        table.columns = [f"task {j}" for j in table.columns]
        parts.append(f"<h3>{arm}</h3>" + table.to_html(border=0))
    spread = (
        f"One seed ({ONE_SEED})."
        if int(matrix["n"].max()) == 1
        else "Mean ± SEM over seeds (accuracy_matrix.csv: sd, SEM and n of every cell)."
    )
    note = f"<p>Row: the model after training tasks 1..i; column: the task tested. {spread}</p>"
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
    order = {SCRATCH: -1} | {a["name"]: i for i, a in enumerate(spec["arms"])}
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
    live: bool = False,
) -> None:
    """The aggregate step: metrics.csv, summary.csv, accuracy_matrix.csv, training.csv,
    summary.md, and HTML renderings of the summary and the matrices for the report;
    with ``live`` (logging.tensorboard) the summary also as the experiment's TensorBoard
    text (clpipe.live).

    Everything is computed before anything is written; each table is also kept under
    the experiment's last_good/, which stays readable if a later aggregation fails."""
    training = collect_training(spec, histories)
    metrics = collect_metrics(spec, evaluations)
    texts = tables_from_metrics(metrics, *report_settings(spec))
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
    if live:
        from clpipe.live import LiveLog, run_dir

        with LiveLog(run_dir(metrics_out)) as view:
            view.text("summary", texts["summary.md"])


def report_settings(spec: dict[str, Any]) -> tuple[tuple[str, ...], list[str]]:
    """From an experiment's aggregate spec: the metrics its tables show and the arms
    every arm is compared with."""
    return tuple(spec.get("report_metrics", METRICS)), list(spec["compare_to"])


def tables_from_metrics(
    metrics: pd.DataFrame, shown=METRICS, references: list[str] | tuple[str, ...] = ()
) -> dict[str, str]:
    """Every table the aggregate step derives from metrics.csv, as file contents;
    ``shown``: the metrics the summary tables show (summary.csv has them all);
    ``references``: the arms every arm is compared with, seed by seed (the aggregate
    spec's compare_to: report.compare_to, or clpipe.plan.default_comparisons).

    The committed reference results are checked against this: their tables must be
    exactly what it makes from their metrics.csv.
    """
    experiment = str(metrics["experiment"].iloc[0])
    summary, matrix = summarize(metrics)
    references = list(references)
    comparisons = paired_comparisons(metrics, references) if references else None
    selection = selection_display(metrics) if SELECTED_FROM in metrics.columns else None
    markdown = f"# {experiment}\n\n" + markdown_table(summary, matrix, shown)
    if selection is not None and len(selection):
        markdown += "\n## Chosen on validation\n\n" + _markdown(selection) + f"\n\n{SELECTION_NOTE}\n"
    if comparisons is not None and len(comparisons):
        summary = with_comparisons(summary, comparisons)
        for ref in references:
            markdown += (
                f"\n## Paired differences against {ref}\n\n"
                + _markdown(comparison_display(comparisons, ref))
                + f"\n\n{comparison_note(int(summary['n_seeds'].max()))}\n"
            )
    parameters = parameters_per_task(metrics) if reports_parameters(metrics) else None
    if parameters is not None:  # a growing network: what each task cost
        markdown += (
            "\n## Parameters per task\n\n"
            + _markdown(parameters_display(parameters))
            + f"\n\n{parameters_note(parameters)}\n"
        )
    return {
        "summary.csv": summary.to_csv(index=False, lineterminator="\n"),
        "accuracy_matrix.csv": matrix.to_csv(index=False, lineterminator="\n"),
        "summary.md": markdown,
        "summary.html": summary_html(experiment, summary, matrix, shown, parameters, comparisons, selection),
        "accuracy_matrix.html": matrix_html(experiment, matrix),
    }
