"""What each job needs: its spec (Snakemake params) and the files it reads (torch-free).

Paths come from :class:`clpipe.layout.Layout`: a trained model is a *node*
(experiment, seed, owner, task), and an arm that starts from another arm reads its
parent's files, so a shared step is one job. The workflow's input functions
(workflow/rules/common.smk) are thin wrappers around the functions here, which the
unit tests exercise directly.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from clpipe.experiment import Experiment
from clpipe.fingerprint import PACKAGE, job_code, method_modules, runs_module
from clpipe.layout import EXPERIMENT_FIGURES, SCRATCH, Layout
from clpipe.methods import ROLES
from clpipe.methods import traits as method_traits
from clpipe.model_settings import MODEL_SETTINGS
from clpipe.plugins import MODEL_ENTRY_POINTS, resolve, split_reference


def dataset_manifests(layout: Layout, exp: Experiment) -> list[str]:
    """Checksum manifests of the built-in datasets an experiment reads (a config's own
    datasets have none: the data step's spec holds what they are, data_spec)."""
    return [layout.manifest(d) for d in sorted({t.dataset for t in exp.tasks}) if d not in exp.datasets]


# --- job specifications: what defines each job's output (Snakemake params) ----------
#
# Snakemake reruns a job when the repr of its params changes, so a spec is returned with
# its keys sorted at every level: reordering code here must not rerun anything.


def canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def _spec(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return canonical(fn(*args, **kwargs))

    return wrapper


@_spec
def data_spec(exp: Experiment) -> dict[str, Any]:
    """The tasks and data settings; with the config's own datasets the experiment reads,
    how to read each (clpipe.user_datasets.UserDataset.spec; the workflow adds what
    their content is)."""
    own = {"datasets": {n: d.spec() for n, d in exp.datasets.items()}} if exp.datasets else {}
    return {
        "tasks": [
            {"dataset": t.dataset, "classes": list(t.classes)}
            | ({} if t.bucket is None else {"bucket": t.bucket})
            | ({} if t.transform is None else {"transform": dict([t.transform])})
            for t in exp.tasks
        ],
        "data": exp.raw["data"],
    } | own


@_spec
def model_spec(exp: Experiment) -> dict[str, Any]:
    """Everything needed to build the network: the checkpoint stores it too."""
    return {
        **exp.raw["model"],
        "input": exp.raw["input"],
        "n_outputs": exp.head_size(),
    }


@_spec
def init_spec(exp: Experiment, seed: int) -> dict[str, Any]:
    return {"experiment": exp.name, "seed": seed, "model": model_spec(exp)}


def _task_spec(exp: Experiment, seed: int, task: int) -> dict[str, Any]:
    """What every job that feeds a model a task's data needs."""
    return {
        "experiment": exp.name,
        "seed": seed,
        "task": task,
        "scenario": exp.scenario,
        "tasks": [list(t.classes) for t in exp.tasks],
        "input": exp.raw["input"],
        "eval": exp.raw["eval"],
    }


@_spec
def evaluation_spec(exp: Experiment, seed: int, owner: str, task: int) -> dict[str, Any]:
    return {**_task_spec(exp, seed, task), "owner": owner}


@_spec
def progress_spec(exp: Experiment, seed: int, arm: str, task: int) -> dict[str, Any]:
    return {
        "experiment": exp.name,
        "seed": seed,
        "arm": arm,
        "task": task,
        "method": {"type": exp.method_of(arm)["type"]},
    }


# train settings added after results existed, whose absence means this value: a config
# that writes the value out plans the same jobs (the same spec) as one that leaves it out
TRAIN_ABSENT_MEANS = {"optimizer_state": "reset", "precision": "fp32", "channels_last": False}


def train_settings(train: dict[str, Any]) -> dict[str, Any]:
    """The train block as a job's spec holds it: the values that mean absence left out."""
    return {k: v for k, v in train.items() if not (k in TRAIN_ABSENT_MEANS and v == TRAIN_ABSENT_MEANS[k])}


@_spec
def training_spec(exp: Experiment, seed: int, task: int) -> dict[str, Any]:
    return {**_task_spec(exp, seed, task), "train": train_settings(exp.raw["train"])}


@_spec
def next_task_spec(exp: Experiment, seed: int, arm: str, task: int) -> dict[str, Any]:
    a = exp.arms[arm]
    return {
        **_task_spec(exp, seed, task),
        "train": train_settings(exp.train_of(arm)),
        "arm": arm,
        "method": exp.methods[a.method],
        "task_settings": a.per_task[task],
    }


@_spec
def importance_spec(exp: Experiment, seed: int, task: int, method: str) -> dict[str, Any]:
    settings = exp.methods[method]
    traits = method_traits(settings["type"])
    kept = {k: settings[k] for k in traits.importance_settings}
    return {**_task_spec(exp, seed, task), "method": {"type": settings["type"], **kept}}


def user_modules(
    exp: Experiment, method_type: str | None, builds_models: bool
) -> tuple[tuple[str, str], ...]:
    """The modules of a user's own code a job of ``exp`` runs (clpipe.plugins), each with
    the config key that names it: its method's module when the method is not the
    package's, and the model's builder's module when the job builds models
    (``builds_models``) and the model is a user's."""
    modules = []
    if method_type is not None:
        module = method_traits(method_type).implementation.split(":")[0]
        if not module.startswith(f"{PACKAGE}."):
            entry = next(n for n, m in exp.methods.items() if m["type"] == method_type)
            modules.append((module, f"experiments.{exp.name}.methods.{entry}.type"))
    model = exp.raw["model"]["name"]
    if builds_models and model not in MODEL_SETTINGS:
        key = f"experiments.{exp.name}.model.name"
        modules.append((split_reference(resolve(model, MODEL_ENTRY_POINTS) or model, key)[0], key))
    return tuple(modules)


def job_code_of(
    script: str, exp: Experiment | None, method_type: str | None, besides: str | None = None
) -> str:
    """A job's rerun trigger (clpipe.fingerprint.job_code): the package code its script
    runs, its method's module, and the user's own code it runs, if any; ``exp`` None: a
    step of no experiment (download_data)."""
    module = method_traits(method_type).implementation.split(":")[0] if method_type else None
    own = module if module and module.startswith(f"{PACKAGE}.") else None
    users = user_modules(exp, method_type, runs_module(script, f"{PACKAGE}.networks")) if exp else ()
    return job_code(script, own, method_modules(), besides, users)


# --- the DAG: which files each job reads ---------------------------------------------


def parent_node(exp: Experiment, arm: str, task: int) -> tuple[str, int]:
    """The node a task of ``arm`` starts from (a joint arm: the random init)."""
    if exp.traits_of(arm).joint:
        return SCRATCH, 0
    return exp.owner(arm, task - 1), task - 1


def next_task_inputs(layout: Layout, exp: Experiment, seed: int, arm: str, task: int) -> dict[str, str]:
    a = exp.arms.get(arm)
    if a is None or not (a.first_task <= task <= a.last_task):
        raise ValueError(f"arm {arm!r} of experiment {exp.name!r} does not train task {task}")
    owner, prev = parent_node(exp, arm, task)
    inputs = {
        "model": layout.model(exp.name, seed, owner, prev),
        "data": layout.data(exp.name),
    }
    if exp.traits_of(arm).importance and prev > 0:  # the random init has no importance
        inputs["importance"] = layout.importance(exp.name, seed, owner, prev, a.method)
    return inputs


def importance_inputs(
    layout: Layout, exp: Experiment, seed: int, owner: str, task: int, method: str
) -> dict[str, str]:
    traits = method_traits(exp.methods[method]["type"])
    inputs = {
        "model": layout.model(exp.name, seed, owner, task),
        "data": layout.data(exp.name),
    }
    if owner != SCRATCH:
        if traits.progress:
            inputs["progress"] = layout.progress(exp.name, seed, owner, task)
        prev_owner, prev = parent_node(exp, owner, task)
        if traits.chained_importance and prev > 0:
            inputs["previous"] = layout.importance(exp.name, seed, prev_owner, prev, method)
    return inputs


def progress_inputs(layout: Layout, exp: Experiment, seed: int, arm: str, task: int) -> dict[str, str]:
    inputs = {"record": layout.record(exp.name, seed, arm, task)}
    prev_owner, prev = parent_node(exp, arm, task)
    if prev_owner != SCRATCH:
        inputs["previous"] = layout.progress(exp.name, seed, prev_owner, prev)
    return inputs


def nodes(exp: Experiment) -> list[tuple[int, str, int]]:
    """Every model of the experiment once: (seed, owner, task), task 0 = random init."""
    found: dict[tuple[int, str, int], None] = {}
    for seed in exp.seeds:
        for arm in exp.arms:
            for owner, task in exp.lineage(arm):
                found[(seed, owner, task)] = None
    return list(found)


def evaluation_files(layout: Layout, exp: Experiment) -> list[str]:
    """Every node's evaluation file of the experiment (each node once)."""
    return [layout.evaluation(exp.name, s, o, t) for s, o, t in nodes(exp)]


def history_files(layout: Layout, exp: Experiment) -> list[str]:
    """Every trained node's per-epoch training history."""
    return [layout.history(exp.name, s, o, t) for s, o, t in nodes(exp) if t > 0]


@_spec
def aggregate_spec(exp: Experiment) -> dict[str, Any]:
    """What the aggregation needs to know about an experiment's arms (in config order),
    the arms they are compared with, and the metrics its tables show when the config
    names them."""
    settings = exp.raw.get("report", {})
    report = settings.get("metrics")
    chosen = {}  # select only when configured: the specs without it stay as they were
    if settings.get("select"):
        chosen["select"] = {k: list(v) for k, v in settings["select"].items()}
    chosen["compare_to"] = (
        list(settings["compare_to"]) if settings.get("compare_to") is not None else default_comparisons(exp)
    )
    return (
        ({} if report is None else {"report_metrics": list(report)})
        | chosen
        | {
            "experiment": exp.name,
            "n_tasks": exp.n_tasks,
            "seeds": list(exp.seeds),
            "arms": [
                {
                    "name": name,
                    "method": arm.method,
                    "method_type": exp.methods[arm.method]["type"],
                    "lineage": [[owner, task] for owner, task in exp.lineage(name)],
                }
                for name, arm in exp.arms.items()
            ],
        }
    )


def _first_arm(exp: Experiment, role: str) -> str | None:
    return next((a for a in exp.arms if exp.traits_of(a).role == role), None)


def default_comparisons(exp: Experiment) -> list[str]:
    """The arms every arm is compared with when report.compare_to is not given: the first
    arm of each role (clpipe.methods.ROLES: the baseline, then the upper bound)."""
    return [arm for arm in (_first_arm(exp, role) for role in ROLES) if arm is not None]


def setting_figures(exp: Experiment) -> dict[str, dict[str, Any]]:
    """The methods' own figures (clpipe.methods.traits.SettingFigure) of the experiment's
    arms: name -> what it draws, with each arm's x after each task it trains itself."""
    figures: dict[str, dict[str, Any]] = {}
    for name, arm in exp.arms.items():
        own = exp.traits_of(name).figures
        if not own:
            continue
        history = [exp.arms[exp.owner(name, t)].per_task[t] for t in range(2, arm.last_task + 1)]
        for f in own:
            drawn = figures.setdefault(
                f.name,
                {
                    "axis": f.axis,
                    "title": f.title,
                    "caption": f.caption,
                    "reference_note": f.reference_note,
                    "axis_range": list(f.axis_range) if f.axis_range else None,
                    "points": {},
                },
            )
            stages = range(arm.first_task, arm.last_task + 1)
            drawn["points"][name] = {str(t): float(f.value(history[: t - 1])) for t in stages}
    return figures


def setting_figure_pattern(experiments: Iterable[Experiment]) -> str:
    """A regular expression of the names of the methods' own figures ``experiments``
    draw (the plot_setting_figure rule's wildcard); one that matches nothing for none."""
    names = sorted({name for exp in experiments for name in setting_figures(exp)})
    return "|".join(re.escape(n) for n in names) or "(?!)"


@_spec
def figures_spec(exp: Experiment) -> dict[str, Any]:
    """What the figures need beyond the tables: arms with their colours, the methods' own
    figures (setting_figures), the baseline arm."""
    agg = aggregate_spec(exp)
    arms = []
    for a in agg["arms"]:
        t = exp.traits_of(a["name"])
        arms.append({**a, "palette": t.palette, "colour": t.colour})
    return {
        "experiment": exp.name,
        "arms": arms,
        "setting_figures": setting_figures(exp),
        "reference": _first_arm(exp, "baseline"),
        "compare_to": agg["compare_to"],
    }


def figure_files(layout: Layout, exp: Experiment) -> list[str]:
    """Every figure the workflow draws for an experiment (PNG; each has an SVG twin)."""
    files = [layout.experiment_file(exp.name, f"figures/{n}.png") for n in EXPERIMENT_FIGURES[:-1]]
    files += [layout.experiment_file(exp.name, f"figures/accuracy_matrix/{a}.png") for a in exp.arms]
    files += [layout.experiment_file(exp.name, f"figures/{name}.png") for name in setting_figures(exp)]
    return files


# --- how many jobs a config makes, before any is planned ----------------------------


def jobs_per_seed(exp: Experiment) -> dict[str, int]:
    """The jobs of one seed of ``exp`` by kind, from its arms alone (no job is planned):
    the init, the shared task 1 and every arm's own trainings, an evaluation per model,
    an importance step per model an importance method's task starts from, a progress
    step per such model of an arm whose method keeps progress."""
    joint = {n for n in exp.arms if exp.traits_of(n).joint}
    own = {n: 1 if n in joint else a.last_task - a.first_task + 1 for n, a in exp.arms.items()}
    shared = any(exp.owner(n, 1) == SCRATCH for n in exp.arms if n not in joint)  # task 1, shared
    train = int(shared) + sum(own.values())
    read = set()  # (owner, task, method): the node each task of an importance arm starts from
    for n, a in exp.arms.items():
        if exp.traits_of(n).importance:
            read |= {(exp.owner(n, t), t, a.method) for t in range(max(a.first_task - 1, 1), a.last_task)}
    progress = {(o, t) for o, t, m in read if o != SCRATCH and method_traits(exp.methods[m]["type"]).progress}
    counts = {
        "init": 1,
        "train": train,
        "evaluate": train + 1,
        "importance": len(read),
        "progress": len(progress),
    }
    return counts | {"total": sum(counts.values())}


def job_count(exp: Experiment) -> int:
    """Every job of ``exp``: its seeds' jobs, its data step, its aggregation and its
    figures (one job for the experiment's own, one per arm's accuracy matrix and per
    method's figure); not the datasets' checks, which experiments share."""
    figures = 1 + len(exp.arms) + len(setting_figures(exp))
    return jobs_per_seed(exp)["total"] * len(exp.seeds) + 2 + figures


def run_job_count(experiments: dict[str, Experiment], run: Iterable[str]) -> dict[str, int]:
    """The jobs of each experiment a run makes (clpipe.plan.job_count), and ``datasets``:
    the built-in datasets' checks they share, and the run's target."""
    names = list(run)
    counts = {name: job_count(experiments[name]) for name in names}
    datasets = {t.dataset for n in names for t in experiments[n].tasks} - {
        d for n in names for d in experiments[n].datasets
    }
    return counts | {"datasets and target": len(datasets) + 1}


def too_many_jobs(counts: dict[str, int], bound: int) -> str | None:
    """Why a run of ``counts`` jobs is refused before it is planned, or None."""
    total = sum(counts.values())
    if total <= bound:
        return None
    biggest = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    shown = ", ".join(f"{name}: {n:,}" for name, n in biggest)
    return (
        f"the run would make {total:,} jobs ({shown}), more than max_jobs ({bound:,}); planning "
        "that many takes minutes and much memory. Run fewer experiments or seeds (--config "
        "'run=[...]'), or raise max_jobs if the run is meant to be that big"
    )
