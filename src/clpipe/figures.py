"""Figures from an experiment's tables: seaborn, one style, PNG and SVG.

Every figure is drawn from the CSV files the aggregate step writes (``metrics.csv``,
``accuracy_matrix.csv``, ``summary.csv``, ``training.csv``), so a figure can be redrawn
without retraining anything. Arms keep one colour everywhere: a colour family per
method (its traits' ``palette``, clpipe.methods: fine-tuning grey, MAG blue, EWC
orange, ...), shades in config order.
Torch-free.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.colors
import matplotlib.ticker

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from clpipe import io, receipts  # noqa: E402
from clpipe.layout import SCRATCH  # noqa: E402
from clpipe.metrics import all_metrics  # noqa: E402


def set_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "svg.hashsalt": "clpipe",  # stable ids in the SVG: same data, same file
            "axes.titleweight": "bold",
        }
    )


def arm_colors(arms: list[dict[str, Any]]) -> dict[str, Any]:
    """A colour per arm: shades of its method's palette in config order, or the method's
    one colour (``palette`` and ``colour`` of each arm: the method's traits, clpipe.plan)."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for a in arms:
        by_method.setdefault(a["method_type"], []).append(a)
    colors: dict[str, Any] = {}
    for members in by_method.values():
        first = members[0]
        if first.get("colour"):
            shades = [matplotlib.colors.to_rgb(first["colour"])] * len(members)
        else:
            shades = sns.color_palette(first.get("palette", "viridis"), n_colors=len(members) + 2)[2:]
        colors.update(zip([a["name"] for a in members], shades, strict=True))
    colors[SCRATCH] = (0.55, 0.55, 0.55)
    return colors


def save(fig, stem: str | Path) -> list[str]:
    """Write ``stem``.png and ``stem``.svg (no timestamps: same data, same bytes), and a
    copy of each under the experiment's last_good/ (clpipe.io.keep_last_good)."""
    paths = []
    experiment_dir = next(p.parent for p in Path(stem).parents if p.name == "figures")
    for ext, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        path = f"{stem}.{ext}"
        io.atomic_write(path, lambda f, e=ext, m=metadata: fig.savefig(f, format=e, metadata=m))
        io.keep_last_good(path, experiment_dir)
        paths.append(path)
    plt.close(fig)
    return paths


def _spread(n: int, what: str = "mean ± sd") -> str:
    """What a figure's error bars or bands show, for its title: ``what`` over n seeds, or,
    with one seed, that none is drawn (a spread needs two seeds or more)."""
    return "one seed: no spread drawn" if n == 1 else f"{what} over {n} seeds"


def _task_label(t: int) -> str:
    return "random init" if t == 0 else f"after task {t}"


def accuracy_matrix_figure(matrix: pd.DataFrame, arm: str):
    """Heatmap of R (mean over seeds, ± sd in each cell) for one arm."""
    rows = matrix[matrix["arm"] == arm]
    if rows.empty:
        raise ValueError(f"no accuracy matrix rows for arm {arm!r}")
    mean = rows.pivot(index="trained_task", columns="eval_task", values="accuracy_mean").sort_index()
    sd = rows.pivot(index="trained_task", columns="eval_task", values="accuracy_sd").reindex_like(mean)
    notes = mean.map(lambda v: f"{v:.3f}").astype(object)
    for i in mean.index:
        for j in mean.columns:
            s = sd.loc[i, j]
            if isinstance(s, float) and math.isfinite(s):
                notes.loc[i, j] = f"{mean.loc[i, j]:.3f}\n±{s:.3f}"
    fig, ax = plt.subplots(
        figsize=(1.3 + 1.3 * mean.shape[1], 0.9 + 0.75 * mean.shape[0]), layout="constrained"
    )
    sns.heatmap(
        mean, annot=notes, fmt="", vmin=0, vmax=1, cmap="viridis", cbar_kws={"label": "test accuracy"},
        linewidths=0.5, ax=ax,
    )  # fmt: skip
    ax.set_xticklabels([f"task {j}" for j in mean.columns])
    ax.set_yticklabels([_task_label(i) for i in mean.index], rotation=0)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("model")
    n = int(rows["n"].max())
    ax.set_title(f"{arm}: accuracy matrix ({_spread(n)})")
    return fig


def forgetting_figure(metrics: pd.DataFrame, arms: list[dict[str, Any]]):
    """Each task's accuracy across the training sequence: one panel per task, a line
    per arm, a band of ± one sd over seeds."""
    colors = arm_colors(arms)
    order = [a["name"] for a in arms]
    tasks = sorted(metrics["eval_task"].unique())
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(4.2 * len(tasks), 3.8), sharey=True, squeeze=False, layout="constrained"
    )
    for ax, task in zip(axes[0], tasks, strict=True):
        sns.lineplot(
            data=metrics[metrics["eval_task"] == task], x="trained_task", y="accuracy", hue="arm",
            hue_order=order, palette=colors, errorbar="sd", marker="o", ax=ax, legend=ax is axes[0][-1],
        )  # fmt: skip
        ax.axvline(task, color="0.6", lw=0.8, ls=":")
        ax.set_title(f"task {task}")
        ax.set_xlabel("tasks trained")
        ax.set_xticks(sorted(metrics["trained_task"].unique()))
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("test accuracy")
    sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title="arm", fontsize=8)
    n = int(metrics["seed"].nunique())
    fig.suptitle(
        "Accuracy on each task as training goes on (the dotted line: when it was trained; "
        f"{_spread(n, 'bands: ± sd')})"
    )
    return fig


def methods_figure(summary: pd.DataFrame, arms: list[dict[str, Any]]):
    """ACC and forgetting of every arm, bars with ± one sd over seeds."""
    colors = arm_colors(arms)
    order = [a["name"] for a in arms if a["name"] in set(summary["arm"])]
    s = summary.set_index("arm").loc[order]
    n = int(s["n_seeds"].max())
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 0.55 * len(order) + 3), 4.2), layout="constrained")
    for ax, (metric, label) in zip(
        axes, (("acc", "ACC (final average accuracy)"), ("forgetting", "forgetting")), strict=True
    ):
        ax.bar(
            range(len(order)), s[f"{metric}_mean"], yerr=s[f"{metric}_sd"].fillna(0) if n > 1 else None,
            capsize=3, color=[colors[a] for a in order], edgecolor="0.2", linewidth=0.5,
        )  # fmt: skip
        ticks = [f"{a} ({int(s.loc[a, 'tasks_trained'])})" for a in order]
        ax.set_xticks(range(len(order)), ticks, rotation=60, ha="right")
        ax.set_title(label)
        ax.set_ylim(
            0,
            1.0
            if metric == "acc"
            else max(0.1, float((s[f"{metric}_mean"] + s[f"{metric}_sd"].fillna(0)).max()) * 1.15),
        )
    fig.suptitle(f"Every arm after its last task (in brackets: tasks trained); {_spread(n)}")
    return fig


def comparisons_figure(summary: pd.DataFrame, arms: list[dict[str, Any]], references: list[str]):
    """The paired differences of ACC against each reference arm (summary.csv's
    ``acc_vs_<reference>_*`` columns): per arm the mean per-seed difference and its 95%
    interval, one panel per reference; an arm compared after an earlier task than the
    reference's last says so in its label, an arm chosen on validation is a diamond."""
    colors = arm_colors(arms)
    present = set(summary["arm"])
    refs = [r for r in references if f"acc_vs_{r}_diff" in summary.columns]
    # constrained: the figure's title, each panel's title and its arm labels never overlap
    fig, axes = plt.subplots(
        1, max(1, len(refs)), figsize=(6.4 * max(1, len(refs)), 1.4 + 0.32 * len(summary)), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    if not refs:
        axes[0][0].text(0.5, 0.5, "no reference arm to compare with (report.compare_to)", ha="center")
        axes[0][0].set_axis_off()
        return fig
    s = summary.set_index("arm")
    for ax, ref in zip(axes[0], refs, strict=True):
        order = [a["name"] for a in arms if a["name"] in present and a["name"] != ref]
        order += [a for a in s.index if a not in order and a != ref]  # the selected arms
        rows = s.loc[order]
        y = np.arange(len(order))[::-1]
        for yi, arm in zip(y, order, strict=True):
            diff, low, high = (rows.loc[arm, f"acc_vs_{ref}_{k}"] for k in ("diff", "low", "high"))
            if not math.isfinite(diff):
                continue
            err = [[diff - low], [high - diff]] if math.isfinite(low) else None
            chosen = arm not in colors  # an arm chosen on validation (report.select): a diamond
            marker, colour = ("D", "0.15") if chosen else ("o", colors[arm])
            ax.errorbar(diff, yi, xerr=err, fmt=marker, color=colour, capsize=3, label=arm)
        after = rows[f"vs_{ref}_after_task"]
        last = s.loc[ref, "tasks_trained"]  # an arm compared after an earlier task says so
        labels = [
            a if not math.isfinite(t) or t == last else f"{a} (after task {int(t)})" for a, t in after.items()
        ]
        ax.set_yticks(y, labels, fontsize=8)
        ax.axvline(0, color="0.4", lw=0.8, ls="--")
        ax.set_xlabel(f"ACC minus {ref}'s, seed by seed")
        ax.set_title(f"against {ref}")
    n = int(s["n_seeds"].max())
    fig.suptitle(
        "Paired differences of ACC for one seed (an interval needs two seeds or more)"
        if n == 1
        else f"Paired differences of ACC: mean and 95% paired-t interval over {n} seeds"
    )
    fig.get_layout_engine().set(wspace=0.1)  # room between panels for each one's arm labels
    return fig


def training_figure(training: pd.DataFrame, arms: list[dict[str, Any]]):
    """Training curves: train loss and validation accuracy per epoch, a panel per task."""
    colors = arm_colors(arms)
    order = [SCRATCH] + [a["name"] for a in arms]
    present = [a for a in order if a in set(training["arm"])]
    tasks = sorted(training["task"].unique())
    fig, axes = plt.subplots(
        2, len(tasks), figsize=(4.2 * len(tasks), 6.4), squeeze=False, sharex="col", layout="constrained"
    )
    for col, task in enumerate(tasks):
        data = training[training["task"] == task]
        for row, (y, label) in enumerate(
            (("train_loss", "train loss"), ("val_accuracy", "validation accuracy"))
        ):
            ax = axes[row][col]
            sns.lineplot(
                data=data, x="epoch", y=y, hue="arm", hue_order=[a for a in present if a in set(data["arm"])],
                palette=colors, errorbar="sd", marker="o", ax=ax, legend=(row == 0 and col == len(tasks) - 1),
            )  # fmt: skip
            ax.set_ylabel(label if col == 0 else "")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            if row == 0:
                ax.set_title(f"task {task}")
                ax.set_yscale("log")
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title="trained by", fontsize=8)
    fig.suptitle(f"Training curves ({_spread(int(training['seed'].nunique()))})")
    return fig


def stage_metrics(metrics: pd.DataFrame, arm: str, stage: int) -> list[dict[str, float]]:
    """ACC and forgetting of ``arm`` right after task ``stage``, one dict per seed."""
    out = []
    for seed, rows in metrics[metrics["arm"] == arm].groupby("seed"):
        R = rows.pivot(index="trained_task", columns="eval_task", values="accuracy").sort_index()
        R = R.sort_index(axis=1).to_numpy(dtype=float)[: stage + 1]
        out.append({"seed": seed, **all_metrics(R)})
    return out


def setting_figure(metrics: pd.DataFrame, figure: dict[str, Any], reference: str | None):
    """ACC and forgetting right after each task against the number a method's per-task
    settings give by then (a method's own figure, clpipe.plan.setting_figures: MAG's share
    of weights frozen in all).

    ``figure["points"]`` maps each arm drawn to its x after each task it trained itself;
    ``reference`` (the baseline, fine-tuning) is drawn as a dashed line per task with its
    ± sd band.
    """
    points = []
    for arm, values in figure["points"].items():
        for stage, x in values.items():
            for m in stage_metrics(metrics, arm, int(stage)):
                points.append({"arm": arm, "after": f"after task {stage}", "x": x, **m})
    if not points:
        raise ValueError(f"no arm drawn on this figure has results ({figure['axis']})")
    data = pd.DataFrame(points)
    stages = sorted(data["after"].unique())
    palette = dict(zip(stages, sns.color_palette("deep", len(stages)), strict=True))
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), layout="constrained")
    for ax, (metric, label) in zip(
        axes, (("acc", "ACC (average accuracy)"), ("forgetting", "forgetting")), strict=True
    ):
        sns.lineplot(
            data=data, x="x", y=metric, hue="after", hue_order=stages, palette=palette, errorbar="sd",
            err_style="bars", marker="o", ax=ax, legend=ax is axes[0], err_kws={"capsize": 3},
        )  # fmt: skip
        if reference is not None:
            for stage in stages:
                t = int(stage.split()[-1])
                ref = [m[metric] for m in stage_metrics(metrics, reference, t)]
                if ref:
                    ax.axhline(float(np.mean(ref)), color=palette[stage], ls="--", lw=1)
                if len(ref) > 1:  # a band of ± one sd, where there is a spread
                    mean, sd = float(np.mean(ref)), float(np.std(ref, ddof=1))
                    ax.axhspan(mean - sd, mean + sd, color=palette[stage], alpha=0.08, lw=0)
        ax.set_xlabel(figure["axis"])
        ax.set_ylabel(label)
        ax.set_title(label)
        if figure.get("axis_range"):
            ax.set_xlim(*figure["axis_range"])
    if reference is not None:
        note = f" {figure['reference_note']}" if figure.get("reference_note") else ""
        axes[0].plot([], [], color="0.3", ls="--", label=f"{reference}{note}")
        axes[0].legend(title=None, fontsize=8)
    n = int(data["seed"].nunique())
    fig.suptitle(f"{figure['title']} Right after each task ({_spread(n)})")
    return fig


def table(path: str) -> pd.DataFrame:
    """One of the aggregate step's tables, refused if edited since (clpipe.receipts)."""
    receipts.check_file(path)
    return pd.read_csv(path)


def draw_experiment(
    spec: dict[str, Any], metrics_csv: str, summary_csv: str, training_csv: str, out_dir: str
) -> None:
    """The plot_experiment step: forgetting, methods, paired comparisons and training figures."""
    set_style()
    metrics, summary = table(metrics_csv), table(summary_csv)
    save(forgetting_figure(metrics, spec["arms"]), f"{out_dir}/forgetting")
    save(methods_figure(summary, spec["arms"]), f"{out_dir}/methods")
    save(comparisons_figure(summary, spec["arms"], spec["compare_to"]), f"{out_dir}/comparisons")
    save(training_figure(table(training_csv), spec["arms"]), f"{out_dir}/training")


def draw_accuracy_matrix(matrix_csv: str, arm: str, stem: str) -> None:
    set_style()
    save(accuracy_matrix_figure(table(matrix_csv), arm), stem)


def draw_setting_figure(spec: dict[str, Any], name: str, metrics_csv: str, stem: str) -> None:
    """The plot_setting_figure step: the method's own figure ``name``."""
    set_style()
    figure = spec["setting_figures"][name]
    save(setting_figure(table(metrics_csv), figure, spec["reference"]), stem)
