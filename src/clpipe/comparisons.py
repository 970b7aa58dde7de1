"""Comparisons among an experiment's arms: choices on the validation split, paired differences.

report.select: for each group of arms and each seed, the member whose final model has
the best mean validation accuracy (never the test split) gives a new arm's rows in
metrics.csv. report.compare_to: every arm against each reference arm, seed by seed and
after the same task: the mean difference of ACC, BWT and forgetting, its SEM, paired-t
95% interval and Holm-corrected p-value, and summary.csv's columns for them. The
statistics are SciPy's, through clpipe.stats.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from clpipe.metrics import ALL_METRICS, all_metrics
from clpipe.results_tables import EvaluationFileError, accuracy_matrix
from clpipe.stats import holm, paired_difference

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
