"""A live view of long runs: TensorBoard event files, written as the jobs go (optional).

With ``logging: {tensorboard: true}`` every training job writes its per-epoch metrics
(losses, accuracies, learning rate, images per second) to a run of its own, named by
the job's path, and the aggregation writes the experiment's final tables, so

    tensorboard --logdir results/<experiment>/tensorboard

shows every curve while a multi-hour run is still going::

    results/<experiment>/tensorboard/seed<seed>/<owner>/task<t>/   one training job
    results/<experiment>/tensorboard/tables/                        the final tables

The files are written by ``tensorboardX``, a maintained writer of TensorBoard's format
that needs neither TensorFlow nor the ``tensorboard`` package (``torch.utils.tensorboard``
imports ``tensorboard``, a far larger install, in every training environment); only
viewing them needs ``tensorboard``. tests/workflow/test_live.py reads them back with TensorBoard's
own reader. Off by default; it changes no result, so turning it on or off reruns nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from clpipe.layout import identity_of

SCALARS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "images_per_second")
EVENT_FILE = "events.out.tfevents"  # the part of a name TensorBoard looks for


def run_dir(output: str | Path) -> Path:
    """The run of the job that writes ``output``: ``tensorboard/seed<s>/<owner>/task<t>``
    under its experiment's folder (``tensorboard/tables`` for the experiment's tables)."""
    output = Path(output)
    node = identity_of(output)
    if node is None or "seed" not in node:  # an experiment-level file (the tables)
        return output.parent / "tensorboard" / "tables"
    experiment_dir = output.parents[3]  # <experiment>/seed<s>/<owner>/task<t>/<file>
    return experiment_dir / "tensorboard" / f"seed{node['seed']}" / node["owner"] / f"task{node['task']}"


class LiveLog:
    """One job's run: scalars per epoch, text at the end.

    A job that runs again (rerun, retried, resumed) starts its run afresh: the earlier
    attempt's event files are removed, so a curve is never drawn twice; a resumed
    training job writes its restored epochs again first."""

    def __init__(self, folder: str | Path):
        # imported here: only jobs that write a live view pay for its import (~0.5 s)
        from tensorboardX import SummaryWriter

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob(f"{EVENT_FILE}.*"):
            old.unlink()
        self._writer = SummaryWriter(logdir=str(self.folder))

    def scalars(self, step: int, values: dict[str, Any], prefix: str = "") -> None:
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self._writer.add_scalar(f"{prefix}{name}", float(value), max(0, int(step)))
        self._writer.flush()  # a live view: every epoch is on disk when it ends

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        self._writer.add_text(tag, markdown, step)
        self._writer.flush()

    def epoch(self, row: dict[str, Any]) -> None:
        """A training job's epoch (its history row), at its optimizer step count."""
        self.scalars(row["step"], {k: row[k] for k in SCALARS if k in row})

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> LiveLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
