"""Where every file of a run lives, and which model a path belongs to (no dependencies).

A trained model is a *node*: (experiment, seed, owner, task). ``owner`` is the arm
whose job trained that task, or ``scratch`` for the models all arms share (the random
init, task 0, and the first task trained from scratch, task 1). The path says the
history::

    <results>/<experiment>/seed<seed>/<owner>/task<t>/model.pt
    <results>/<experiment>/seed<seed>/<owner>/task<t>/<method>/importance.pt
    <results>/<experiment>/seed<seed>/<arm>/task<t>/progress.pt
    <results>/<experiment>/data/tasks.pt

Every file a step writes records the node it was made for (``meta["node"]``), and
every step that reads one checks it against the node its path names
(:func:`identity_of`, clpipe.io): a file copied or swapped into another model's folder
is refused, not used under the wrong name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

SCRATCH = "scratch"  # owner of the models every arm shares (random init, first task)
# every experiment's figures (plot_experiment; accuracy_matrix/ holds one per arm): a
# method's own figure (its declaration's figures) takes none of these names
EXPERIMENT_FIGURES = ("forgetting", "methods", "comparisons", "training", "accuracy_matrix")


@dataclass(frozen=True)
class Layout:
    results: str

    def experiment_file(self, exp: str, name: str) -> str:
        return f"{self.results}/{exp}/{name}"

    def manifest(self, dataset: str) -> str:
        return f"{self.results}/datasets/{dataset}.md5"

    def checksum_cache(self) -> str:
        """md5 sums of dataset files by path, size and mtime (read by the workflow)."""
        return f"{self.results}/datasets/checksum-cache.json"

    def user_datasets_cache(self) -> str:
        """md5 sums of the config's own datasets' files by path, size and mtime."""
        return f"{self.results}/datasets/user-datasets-cache.json"

    def data(self, exp: str) -> str:
        return self.experiment_file(exp, "data/tasks.pt")

    def node_file(self, exp: str, seed: int, owner: str, task: int, name: str) -> str:
        """A file of the model trained on ``task`` by ``owner`` (an arm or scratch)."""
        return f"{self.results}/{exp}/seed{seed}/{owner}/task{task}/{name}"

    def model(self, exp: str, seed: int, owner: str, task: int) -> str:
        return self.node_file(exp, seed, owner, task, "model.pt")

    def evaluation(self, exp: str, seed: int, owner: str, task: int) -> str:
        return self.node_file(exp, seed, owner, task, "eval.csv")

    def importance(self, exp: str, seed: int, owner: str, task: int, method: str) -> str:
        return self.node_file(exp, seed, owner, task, f"{method}/importance.pt")

    def history(self, exp: str, seed: int, owner: str, task: int) -> str:
        return self.node_file(exp, seed, owner, task, "history.csv")

    def record(self, exp: str, seed: int, arm: str, task: int) -> str:
        return self.node_file(exp, seed, arm, task, "record.pt")

    def progress(self, exp: str, seed: int, arm: str, task: int) -> str:
        return self.node_file(exp, seed, arm, task, "progress.pt")

    def aggregate_outputs(self, exp: str) -> dict[str, str]:
        return {
            "metrics": self.experiment_file(exp, "metrics.csv"),
            "summary": self.experiment_file(exp, "summary.csv"),
            "matrix": self.experiment_file(exp, "accuracy_matrix.csv"),
            "training": self.experiment_file(exp, "training.csv"),
            "markdown": self.experiment_file(exp, "summary.md"),
            "summary_html": self.experiment_file(exp, "summary.html"),
            "matrix_html": self.experiment_file(exp, "accuracy_matrix.html"),
        }


_NODE = re.compile(r"seed(\d+)")
_TASK = re.compile(r"task(\d+)")


def identity_of(path: str | PurePath) -> dict[str, Any] | None:
    """The model (or data) a path of the layout belongs to: ``{experiment, seed, owner,
    task}`` (and ``method`` for a method's files below a node), ``{experiment}`` for an
    experiment's data file; None for a path outside the layout."""
    parts = PurePath(path).parts
    if len(parts) >= 3 and parts[-2] == "data" and parts[-1] == "tasks.pt":
        return {"experiment": parts[-3]}
    for depth in (5, 6):  # .../<exp>/seed<s>/<owner>/task<t>/[<method>/]<file>
        if len(parts) < depth:
            continue
        exp, seed, owner, task = parts[-depth : -depth + 4]
        s, t = _NODE.fullmatch(seed), _TASK.fullmatch(task)
        if s and t:
            found = {"experiment": exp, "seed": int(s.group(1)), "owner": owner, "task": int(t.group(1))}
            if depth == 6:
                found["method"] = parts[-2]
            return found
    return None
