"""An experiment as the pipeline sees it: its tasks, methods and arms, each arm in its
place in the task sequence (torch-free).

:func:`clpipe.config.check_experiment` builds an :class:`Experiment` from a validated
config section; the task resolution (each task's dataset, bucket and classes) and the
arm resolution here are a few named steps, each raising :class:`ConfigError` with the
key of the setting that cannot be resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clpipe.catalog import DATASETS
from clpipe.config_input import schema_problem
from clpipe.errors import ConfigError
from clpipe.layout import SCRATCH
from clpipe.methods import REGISTRY, REQUIRED, MethodTraits, SettingError, traits
from clpipe.model_settings import TASK_HEADED_MODELS
from clpipe.transforms import expand

if TYPE_CHECKING:
    from clpipe.user_datasets import UserDataset


@dataclass(frozen=True)
class TaskSpec:
    index: int  # 1-based position in the training sequence
    dataset: str
    classes: tuple[int, ...]
    bucket: int | None = None  # image-folder datasets (CLEAR-10): the time bucket
    # the images under a transform of the task's own (clpipe.transforms): ("permute",
    # seed) or ("rotate", degrees); None: as they are
    transform: tuple[str, Any] | None = None


@dataclass(frozen=True)
class Arm:
    """One line of a result table: a method applied over a stretch of tasks.

    An arm trains tasks ``first_task..last_task``. Before ``first_task`` it shares the
    models of its parent arm (``start_from``) or, without a parent, the first task
    trained from scratch (owner ``scratch``), so shared steps run once.
    """

    name: str
    method: str  # key in Experiment.methods
    start_from: str | None
    first_task: int
    last_task: int
    per_task: dict[int, dict[str, Any]]  # task -> that task's per-task settings
    # the train settings of the tasks it trains itself: the experiment's with this arm's
    # and its ancestors' changes (arms.<name>.train); None: the experiment's own
    train: dict[str, Any] | None = None


@dataclass
class Experiment:
    name: str
    raw: dict[str, Any]  # the validated config section (defaults filled)
    tasks: list[TaskSpec]
    seeds: list[int]
    methods: dict[str, dict[str, Any]]  # name -> settings incl. "type"
    arms: dict[str, Arm] = field(default_factory=dict)
    resources: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> mem_mb, runtime, threads
    # the config's own datasets (top-level datasets:) its tasks read, by name
    datasets: dict[str, UserDataset] = field(default_factory=dict)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def scenario(self) -> str:
        return self.raw["scenario"]

    def method_of(self, arm: str) -> dict[str, Any]:
        return self.methods[self.arms[arm].method]

    def traits_of(self, arm: str) -> MethodTraits:
        return traits(self.method_of(arm)["type"])

    def train_of(self, arm: str) -> dict[str, Any]:
        """The train settings of the tasks ``arm`` trains itself."""
        own = self.arms[arm].train
        return self.raw["train"] if own is None else own

    def owner(self, arm: str, task: int) -> str:
        """The arm whose job trained ``task`` in ``arm``'s history."""
        a = self.arms[arm]
        if task > a.last_task or task < 0:
            raise ValueError(f"arm {arm!r} does not train task {task}")
        if task >= a.first_task:
            return arm
        if self.traits_of(arm).joint:
            if task == 0:
                return SCRATCH
            raise ValueError(
                f"joint arm {arm!r} trains every task at once; it has no model after task {task}"
            )
        if a.start_from is not None:
            return self.owner(a.start_from, task)
        return SCRATCH

    def lineage(self, arm: str) -> list[tuple[str, int]]:
        """(owner, task) of every model in the arm's history, task 0 = random init."""
        if self.traits_of(arm).joint:
            return [(SCRATCH, 0), (arm, self.arms[arm].last_task)]
        return [(self.owner(arm, t), t) for t in range(self.arms[arm].last_task + 1)]

    def head_size(self) -> int:
        """Outputs of the model as built: a growing network's first head has the first
        task's classes (it grows a head per later task); a shared head has every output
        of the scenario."""
        if self.raw["model"]["name"] in TASK_HEADED_MODELS:
            return len(self.tasks[0].classes)
        if self.scenario == "domain":
            return max(len(t.classes) for t in self.tasks)
        return sum(len(t.classes) for t in self.tasks)


def _known_datasets(declared: dict[str, UserDataset]) -> str:
    """The datasets a config may name, both kinds."""
    own = ", ".join(sorted(declared)) or "none in this config"
    return f"built-in: {', '.join(sorted(DATASETS))}; declared under datasets: {own}"


def resolve_tasks(
    key: str, exp: dict[str, Any], declared: dict[str, UserDataset] | None = None
) -> list[TaskSpec]:
    """Each task's (dataset, classes, bucket), no class of a dataset (bucket) in two
    tasks; ``declared``: the config's own datasets (clpipe.user_datasets.resolve)."""
    declared = declared or {}
    tasks: list[TaskSpec] = []
    seen: dict[tuple, int] = {}
    given = exp["tasks"]
    listed = expand(given) if isinstance(given, dict) else given  # a benchmark: permuted, rotated
    for i, task in enumerate(listed, start=1):
        tkey = f"{key}.tasks" if isinstance(given, dict) else f"{key}.tasks[{i - 1}]"
        task = {"classes": task} if isinstance(task, list) else task
        dataset, buckets, n_classes = _task_dataset(key, tkey, i, task, exp, declared)
        bucket = _task_bucket(tkey, task, dataset, buckets)
        classes = _task_classes(tkey, task, dataset, n_classes, declared)
        transform = next(iter(task["transform"].items())) if task.get("transform") else None
        where = dataset if bucket is None else f"{dataset} bucket {bucket}"
        if transform is not None:
            where += f" under {transform[0]} {transform[1]}"
        for c in classes:
            if (dataset, bucket, transform, c) in seen:  # a transform makes other images
                raise ConfigError(
                    tkey,
                    f"class {c} of {where} is already in task {seen[(dataset, bucket, transform, c)]}; "
                    "tasks must not overlap",
                )
            seen[(dataset, bucket, transform, c)] = i
        tasks.append(TaskSpec(i, dataset, tuple(classes), bucket, transform))
    return tasks


def _task_dataset(key, tkey, i, task, exp, declared) -> tuple[str, tuple[int, ...], int | None]:
    """A task's dataset (its own, or the experiment's), its buckets and its number of
    classes (None: a tensor-file or loader dataset, whose classes only the data step sees)."""
    dataset = task.get("dataset", exp.get("dataset"))
    if dataset is None:
        raise ConfigError(
            f"{key}.dataset",
            f"task {i} names no dataset and the experiment has no default 'dataset' "
            f"({_known_datasets(declared)})",
        )
    if dataset in declared:
        return dataset, (), declared[dataset].n_classes
    if dataset not in DATASETS:
        raise ConfigError(
            f"{tkey}.dataset" if "dataset" in task else f"{key}.dataset",
            f"unknown dataset {dataset!r} ({_known_datasets(declared)})",
        )
    return dataset, DATASETS[dataset].buckets, DATASETS[dataset].n_classes


def _task_bucket(tkey, task, dataset, buckets) -> int | None:
    """The time bucket a task trains on: given for a dataset in buckets, only for one."""
    bucket = task.get("bucket")
    if buckets and bucket is None:
        raise ConfigError(
            f"{tkey}.bucket",
            f"dataset {dataset!r} comes in time buckets ({buckets[0]}..{buckets[-1]}); "
            "name the task's bucket",
        )
    if bucket is not None and bucket not in buckets:
        has = f"buckets {buckets[0]}..{buckets[-1]}" if buckets else "no buckets"
        raise ConfigError(f"{tkey}.bucket", f"{bucket} is not a bucket of {dataset!r}, which has {has}")
    return bucket


def _task_classes(tkey, task, dataset, n_classes, declared) -> list[int]:
    """A task's classes (default: all of its dataset's), each one of the dataset's."""
    if n_classes is None and "classes" not in task:
        raise ConfigError(
            f"{tkey}.classes",
            f"dataset {dataset!r} is a {declared[dataset].kind} dataset, whose classes only the "
            "data step sees: list the task's classes",
        )
    classes = task.get("classes", list(range(n_classes or 0)))
    bad = [c for c in classes if n_classes is not None and c >= n_classes]
    if bad:
        raise ConfigError(
            tkey, f"class(es) {bad} not in dataset {dataset!r}, which has classes 0..{n_classes - 1}"
        )
    return classes


def resolve_methods(exp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every method type under its own name with its defaults, and the config's named
    method configurations completed with theirs."""
    methods = {name: {"type": name, **t.defaults} for name, t in REGISTRY.items()}
    for name, settings in exp.get("methods", {}).items():
        methods[name] = {**traits(settings["type"]).defaults, **settings}
    return methods


def resolve_arms(key: str, exp: dict[str, Any], n_tasks: int, methods) -> dict[str, Arm]:
    """Every arm of the experiment, parents before the arms that start from them."""
    raw_arms: dict[str, dict[str, Any]] = exp["arms"]
    if SCRATCH in raw_arms:
        raise ConfigError(f"{key}.arms.{SCRATCH}", f"'{SCRATCH}' is reserved for shared models")
    arms: dict[str, Arm] = {}

    def resolve(name: str, stack: tuple[str, ...]) -> Arm:
        if name not in arms:
            akey, spec = f"{key}.arms.{name}", raw_arms[name]
            if name in stack:
                cycle = " -> ".join(stack[stack.index(name) :] + (name,))
                raise ConfigError(f"{akey}.start_from", f"arms start from each other in a cycle: {cycle}")
            parent = _parent(akey, spec.get("start_from"), raw_arms, lambda p: resolve(p, stack + (name,)))
            arms[name] = _resolve_arm(akey, name, spec, parent, arms, methods, n_tasks)
        return arms[name]

    for name in raw_arms:
        resolve(name, ())
    return arms


def _parent(akey: str, parent: str | None, raw_arms: dict[str, dict[str, Any]], resolve) -> Arm | None:
    """The arm an arm starts from (resolved first), or None."""
    if parent is None:
        return None
    if parent not in raw_arms:
        raise ConfigError(
            f"{akey}.start_from", f"arm {parent!r} does not exist (arms: {', '.join(sorted(raw_arms))})"
        )
    return resolve(parent)


def _resolve_arm(akey, name, spec, parent: Arm | None, arms, methods, n_tasks) -> Arm:
    method, first = _method_and_first_task(akey, spec, parent, methods)
    declared = traits(methods[method]["type"])
    if parent is not None and (declared.joint or traits(methods[parent.method]["type"]).joint):
        raise ConfigError(f"{akey}.start_from", "a joint arm trains every task at once: no start_from")
    if declared.joint:
        first = n_tasks  # one job: from the random init, on tasks 1..n_tasks together
    _check_arm_settings(akey, spec, declared)
    spec = _rewritten(akey, spec, declared, _history(arms, parent))
    if first > n_tasks and parent is not None:
        raise ConfigError(
            f"{akey}.start_from",
            f"arm {parent.name!r} already ends at the last task ({n_tasks}); nothing is left to train",
        )
    if first > n_tasks:
        raise ConfigError(
            f"{akey}.method",
            "the experiment has one task, which the model every arm shares trains: nothing is "
            "left for this arm (give it a joint method, or the experiment more tasks)",
        )
    last = _last_task(akey, spec, declared, first, n_tasks)
    return Arm(
        name, method, parent and parent.name, first, last, _per_task(akey, spec, declared, first, last)
    )


def _method_and_first_task(akey, spec, parent: Arm | None, methods) -> tuple[str, int]:
    """The arm's method (its parent's, unless it says the same) and its first task."""
    if parent is not None:
        method = spec.get("method", parent.method)
        if method != parent.method:
            raise ConfigError(
                f"{akey}.method",
                f"{method!r} differs from the method of the arm it starts from "
                f"({parent.name!r} uses {parent.method!r})",
            )
        first = parent.last_task + 1
    else:
        if "method" not in spec:
            raise ConfigError(f"{akey}.method", "missing (needed unless the arm has 'start_from')")
        method = spec["method"]
        # task 1 is trained from scratch once and shared, unless the method acts during it
        first = 1 if method in methods and traits(methods[method]["type"]).trains_first_task else 2
    if method not in methods:
        raise ConfigError(
            f"{akey}.method",
            f"unknown method {method!r}; known: {', '.join(sorted(methods))} (a method of your own "
            "is named under the experiment's methods:, e.g. mine: {type: mypackage.mymethod:MyMethod})",
        )
    return method, first


def _history(arms: dict[str, Arm], parent: Arm | None) -> list[dict[str, Any]]:
    """The per-task settings of every task the arm's ancestors trained, in task order."""
    history: list[dict[str, Any]] = []
    while parent is not None:
        history = [parent.per_task[t] for t in range(parent.first_task, parent.last_task + 1)] + history
        parent = arms.get(parent.start_from) if parent.start_from else None
    return history


def _rewritten(akey, spec, declared: MethodTraits, history) -> dict[str, Any]:
    """The method's rewrite of the arm's settings (MAG: freeze_total into freeze)."""
    if declared.arm_settings is None:
        return spec
    try:
        return declared.arm_settings(dict(spec), history)
    except SettingError as err:
        raise ConfigError(f"{akey}.{err.key}", str(err)) from None


ARM_KEYS = ("method", "start_from", "n_tasks", "train")  # an arm's own keys; the rest are its method's


def _check_arm_settings(akey, spec, declared: MethodTraits) -> None:
    """The arm's settings are its own or its method's, each value (or each task's, in a
    list) valid under the method's declaration."""
    own = {**declared.per_task_settings, **declared.rewritten_settings}
    for k, value in spec.items():
        if k in ARM_KEYS:
            continue
        if k not in own:
            raise ConfigError(
                f"{akey}.{k}",
                f"not a setting of method {declared.name!r} (per-task settings: {', '.join(own) or 'none'})",
            )
        if value == []:
            raise ConfigError(f"{akey}.{k}", "an empty list: give a value for every task, or one per task")
        for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
            problem = schema_problem(v, own[k])
            if problem is not None:
                where, message = problem
                raise ConfigError(f"{akey}.{k}" + ("" if i is None else f"[{i}]") + where, message)


def _last_task(akey, spec, declared: MethodTraits, first: int, n_tasks: int) -> int:
    """The arm's last task: from n_tasks, its per-task lists' length, or the experiment's end."""
    lengths = {k: len(spec[k]) for k in declared.per_task if isinstance(spec.get(k), list)}
    if "n_tasks" in spec:
        count = spec["n_tasks"]
    elif lengths:
        count = next(iter(lengths.values()))
    else:
        count = n_tasks - first + 1
    for k, n in lengths.items():
        if n != count:
            raise ConfigError(
                f"{akey}.{k}",
                f"has {n} values but the arm trains {count} task(s) (tasks {first}..{first + count - 1})",
            )
    last = first + count - 1
    if last > n_tasks:
        raise ConfigError(
            f"{akey}.n_tasks" if "n_tasks" in spec else f"{akey}.{next(iter(lengths))}",
            f"the arm would train tasks {first}..{last} but the experiment has {n_tasks}",
        )
    return last


def _per_task(akey, spec, declared: MethodTraits, first: int, last: int) -> dict[int, dict[str, Any]]:
    """Each task's per-task settings: a list's entry for the task, or the one value."""
    for k, default in declared.per_task.items():
        if default is REQUIRED and k not in spec:
            raise ConfigError(f"{akey}.{k}", f"required by method {declared.name!r}")
    per_task = {}
    for j, t in enumerate(range(first, last + 1)):
        values = {}
        for k, default in declared.per_task.items():
            v = spec.get(k, default)
            values[k] = v[j] if isinstance(v, list) else v
        per_task[t] = values
    return per_task
