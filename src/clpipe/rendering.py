"""The aggregate step's tables as text: summary.md and the HTML pages of the report.

Numbers become cells here (mean ± SEM, paired differences with their intervals and
p-values, parameter counts), with the notes that say what each table shows, how it was
computed and what one seed leaves out. Nothing here computes a statistic:
clpipe.results_tables and clpipe.comparisons do.
"""

from __future__ import annotations

import math

import pandas as pd

from clpipe.comparisons import COMPARED, selection_table
from clpipe.metrics import LABELS, METRICS


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


# --- the pages: summary.md, summary.html and accuracy_matrix.html -----------------------


def summary_markdown(
    experiment: str,
    summary: pd.DataFrame,
    matrix: pd.DataFrame,
    shown=METRICS,
    parameters: pd.DataFrame | None = None,
    comparisons: pd.DataFrame | None = None,
    selection: pd.DataFrame | None = None,
    references: list[str] | tuple[str, ...] = (),
) -> str:
    """summary.md: the summary, then the choices on validation, the paired differences
    against each of ``references`` and a growing network's parameters per task, where
    the experiment has them."""
    markdown = f"# {experiment}\n\n" + markdown_table(summary, matrix, shown)
    if selection is not None and len(selection):
        markdown += "\n## Chosen on validation\n\n" + _markdown(selection) + f"\n\n{SELECTION_NOTE}\n"
    if comparisons is not None and len(comparisons):
        for ref in references:
            markdown += (
                f"\n## Paired differences against {ref}\n\n"
                + _markdown(comparison_display(comparisons, ref))
                + f"\n\n{comparison_note(int(summary['n_seeds'].max()))}\n"
            )
    if parameters is not None:  # a growing network: what each task cost
        markdown += (
            "\n## Parameters per task\n\n"
            + _markdown(parameters_display(parameters))
            + f"\n\n{parameters_note(parameters)}\n"
        )
    return markdown


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
