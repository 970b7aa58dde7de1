"""From every node's evaluation to an experiment's metrics.csv and summary tables.

Each evaluated model (node) is one ``eval.csv``. An arm's accuracy matrix is the rows
of the nodes in its history (a shared node contributes to every arm that shares it), so
``metrics.csv`` has one row per (experiment, method, arm, seed, trained_task, eval_task).

The step's entry points are here (write_tables; tables_from_metrics, which the committed
references are checked against; report_settings), with collect_metrics, which makes
metrics.csv. Reading the files and the tables over seeds are clpipe.results_tables,
choices among arms and paired comparisons clpipe.comparisons, the text and HTML
clpipe.rendering.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from clpipe import io
from clpipe.comparisons import SELECTED_FROM, paired_comparisons, select_members, with_comparisons
from clpipe.metrics import METRICS
from clpipe.rendering import matrix_html, selection_display, summary_html, summary_markdown
from clpipe.results_tables import (
    METRICS_COLUMNS,
    PARAMETER_COLUMNS,
    PROVENANCE_COLUMNS,
    VALIDATION_COLUMNS,
    EvaluationFileError,
    collect_training,
    parameters_per_task,
    read_evaluation,
    reports_parameters,
    summarize,
)


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
    parameters = parameters_per_task(metrics) if reports_parameters(metrics) else None
    markdown = summary_markdown(
        experiment, summary, matrix, shown, parameters, comparisons, selection, references
    )
    if comparisons is not None and len(comparisons):
        summary = with_comparisons(summary, comparisons)
    return {
        "summary.csv": summary.to_csv(index=False, lineterminator="\n"),
        "accuracy_matrix.csv": matrix.to_csv(index=False, lineterminator="\n"),
        "summary.md": markdown,
        "summary.html": summary_html(experiment, summary, matrix, shown, parameters, comparisons, selection),
        "accuracy_matrix.html": matrix_html(experiment, matrix),
    }
